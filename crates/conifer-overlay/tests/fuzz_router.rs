//! The router fed arbitrary and mutated frame sequences from several peers
//! never panics, and everything it emits is a well-formed frame.

use conifer_overlay::router::{Action, PeerType, Router, RouterConfig, Time};
use conifer_overlay::wire::{
    Bootstrap, Coordinates, Frame, Root, SignedPayload, SwitchAnnouncement, Traffic,
    WakeupBroadcast, Watermark,
};
use conifer_overlay::Identity;
use proptest::prelude::*;

const START: u64 = 1_800_000_000_000;

/// Frames a real peer could plausibly send, signed by one of a few identities.
fn plausible_frames() -> Vec<Vec<u8>> {
    let ids: Vec<Identity> = (0..4).map(|i| Identity::from_seed([i * 40; 32])).collect();
    let mut out = vec![Frame::Keepalive.encode().unwrap()];
    for (i, id) in ids.iter().enumerate() {
        let root = Root {
            key: ids[3].public_key(),
            seq: i as u64 + 1,
        };
        let ann = SwitchAnnouncement::new(root).with_hop(1, &ids[3], true);
        let ann = if i == 3 {
            ann
        } else {
            ann.with_hop(2, id, true)
        };
        out.push(Frame::TreeAnnouncement(ann).encode().unwrap());
        let payload = SignedPayload::new(START + i as u64, root, id, true);
        out.push(
            Frame::Bootstrap(Bootstrap {
                destination: id.public_key(),
                watermark: Watermark::NONE,
                payload: payload.clone(),
            })
            .encode()
            .unwrap(),
        );
        out.push(
            Frame::WakeupBroadcast(WakeupBroadcast {
                hop_limit: 5,
                source: id.public_key(),
                payload,
            })
            .encode()
            .unwrap(),
        );
        out.push(
            Frame::Traffic(Traffic {
                hop_limit: 10,
                destination_coords: Coordinates(vec![1, i as u64]),
                source_coords: Coordinates(vec![2]),
                destination: ids[(i + 1) % 4].public_key(),
                source: id.public_key(),
                watermark: Watermark::NONE,
                payload: vec![i as u8; 8],
            })
            .encode()
            .unwrap(),
        );
    }
    out
}

#[derive(Debug, Clone)]
enum Step {
    Frame {
        peer: usize,
        pick: usize,
        mutation: Option<(usize, u8)>,
        cut: Option<usize>,
    },
    Raw {
        peer: usize,
        bytes: Vec<u8>,
    },
    Tick {
        ms: u64,
    },
    Send {
        to: usize,
        len: usize,
    },
    Reconnect {
        peer: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..4usize, any::<usize>(), proptest::option::of((any::<usize>(), any::<u8>())), proptest::option::of(any::<usize>()))
            .prop_map(|(peer, pick, mutation, cut)| Step::Frame { peer, pick, mutation, cut }),
        2 => (0..4usize, proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(peer, bytes)| Step::Raw { peer, bytes }),
        2 => (0..7_000u64).prop_map(|ms| Step::Tick { ms }),
        1 => (0..4usize, 0..2000usize).prop_map(|(to, len)| Step::Send { to, len }),
        1 => (0..4usize).prop_map(|peer| Step::Reconnect { peer }),
    ]
}

fn drain(r: &mut Router, now: Time) {
    while let Some(a) = r.poll_action() {
        match a {
            Action::Wake { port } => {
                while let Some(bytes) = r.poll_transmit(now, port) {
                    Frame::decode(&bytes).expect("the router only emits valid frames");
                }
            }
            Action::ClosePeer { port, .. } => r.peer_disconnected(now, port),
            Action::Deliver { .. } | Action::Event(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frame_sequences(steps in proptest::collection::vec(step(), 1..60), signatures in any::<bool>()) {
        let frames = plausible_frames();
        let peer_ids: Vec<Identity> = (0..4).map(|i| Identity::from_seed([i * 40; 32])).collect();
        let mut now = Time::from_unix_millis(START);
        let config = RouterConfig { signatures, ..RouterConfig::default() };
        let mut r = Router::new(Identity::from_seed([7; 32]), config, now);
        let mut ports: Vec<Option<u64>> = peer_ids
            .iter()
            .map(|id| r.peer_connected(now, id.public_key(), PeerType::Remote, "fuzz").ok())
            .collect();
        for s in steps {
            match s {
                Step::Frame { peer, pick, mutation, cut } => {
                    let mut bytes = frames[pick % frames.len()].clone();
                    if let Some((at, x)) = mutation {
                        let at = at % bytes.len();
                        bytes[at] ^= x;
                    }
                    if let Some(c) = cut {
                        bytes.truncate(c % (bytes.len() + 1));
                    }
                    if let Some(port) = ports[peer] {
                        r.receive_frame(now, port, &bytes);
                    }
                }
                Step::Raw { peer, bytes } => {
                    if let Some(port) = ports[peer] {
                        r.receive_frame(now, port, &bytes);
                    }
                }
                Step::Tick { ms } => {
                    now = now + std::time::Duration::from_millis(ms);
                    r.handle_timeout(now);
                }
                Step::Send { to, len } => {
                    let _ = r.send(now, peer_ids[to].public_key(), vec![0xab; len]);
                }
                Step::Reconnect { peer } => {
                    if let Some(port) = ports[peer].take() {
                        r.peer_disconnected(now, port);
                    }
                    ports[peer] = r.peer_connected(now, peer_ids[peer].public_key(), PeerType::Remote, "fuzz").ok();
                }
            }
            drain(&mut r, now);
            // Ports stay in range and the timer never points into the past by more than a tick.
            prop_assert!(r.peers().iter().all(|p| (1..=253).contains(&p.port)));
            prop_assert!(r.poll_timeout() >= now - std::time::Duration::from_secs(1));
        }
    }
}
