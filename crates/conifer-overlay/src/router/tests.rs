//! Table-driven tests of the router's pure decision functions (§3.1.3,
//! §3.1.4, §3.1.6, §3.3), in the spirit of the Go repository's case tables.

use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::time::Duration;

use super::*;
use crate::wire::{Hop, SwitchAnnouncement};

fn key(b: u8) -> PublicKey {
    PublicKey([b; 32])
}

/// An unsigned announcement rooted at `root` through `path` (root first),
/// with the given ports; signatures are irrelevant to routing decisions.
fn ann(root: u8, seq: u64, path: &[(u8, Port)]) -> SwitchAnnouncement {
    SwitchAnnouncement {
        root: Root {
            key: key(root),
            seq,
        },
        hops: path
            .iter()
            .map(|&(k, port)| Hop {
                port,
                key: key(k),
                signature: [0; 64],
            })
            .collect(),
    }
}

#[test]
fn announcement_decision_table() {
    use AnnouncementAction::*;
    // (from parent, contains our key, root delta, new seq, last seq) → action
    let cases: &[(bool, bool, Ordering, u64, u64, AnnouncementAction)] = &[
        // From the parent: loops and weaker roots are bad news.
        (true, true, Greater, 5, 1, SelectNewParentWithWait),
        (true, true, Equal, 5, 1, SelectNewParentWithWait),
        (true, true, Less, 5, 1, SelectNewParentWithWait),
        (true, false, Less, 1, 1, SelectNewParentWithWait),
        (true, false, Less, 9, 1, SelectNewParentWithWait),
        // Same root, same sequence: the parent moved; bad news too.
        (true, false, Equal, 3, 3, SelectNewParentWithWait),
        // Stronger root or a fresh sequence: pass it on.
        (true, false, Greater, 1, 7, AcceptUpdate),
        (true, false, Greater, 7, 7, AcceptUpdate),
        (true, false, Equal, 4, 3, AcceptUpdate),
        // A lower sequence from the parent (the replay check normally fires first).
        (true, false, Equal, 2, 3, Drop),
        // From anyone else: our own descendants are ignored…
        (false, true, Greater, 9, 1, Drop),
        (false, true, Less, 9, 1, Drop),
        (false, true, Equal, 9, 1, Drop),
        // …a stronger root is adopted at once…
        (false, false, Greater, 1, 1, AcceptNewParent),
        (false, false, Greater, 0, 9, AcceptNewParent),
        // …a weaker one is told about ours…
        (false, false, Less, 1, 1, InformPeerOfStrongerRoot),
        (false, false, Less, 9, 1, InformPeerOfStrongerRoot),
        // …and the same root means "is this a better parent?".
        (false, false, Equal, 1, 1, SelectNewParent),
        (false, false, Equal, 2, 1, SelectNewParent),
        (false, false, Equal, 0, 1, SelectNewParent),
    ];
    for &(parent, looped, delta, new, last, want) in cases {
        assert_eq!(
            announcement_action(parent, looped, delta, new, last),
            want,
            "parent={parent} loop={looped} delta={delta:?} seq {new} vs {last}"
        );
    }
}

#[test]
fn parent_candidate_table() {
    let best = Root {
        key: key(5),
        seq: 3,
    };
    let fresh = Duration::from_secs(1);
    let old = ANNOUNCEMENT_TIMEOUT;
    // (root key, seq, age, order, contains our key, best order) → better?
    let cases: &[(u8, u64, Duration, u64, bool, u64, bool)] = &[
        (6, 0, fresh, 9, false, 1, true),        // stronger root key wins…
        (6, 0, old, 9, false, 1, false),         // …unless expired
        (6, 0, fresh, 9, true, 1, false),        // …or a descendant of ours
        (4, 99, fresh, 0, false, 1, false),      // weaker key never wins
        (5, 4, fresh, 9, false, 1, true),        // same key, newer sequence
        (5, 2, fresh, 0, false, 1, false),       // same key, older sequence
        (5, 3, fresh, 0, false, 1, true),        // same root: earlier arrival wins
        (5, 3, fresh, 1, false, 1, false),       // not strictly earlier
        (5, 3, fresh, 2, false, 1, false),       // later arrival
        (5, 3, fresh, 5, false, u64::MAX, true), // anything beats "no best yet"
        (5, 3, old - Duration::from_millis(1), 0, false, 1, true), // just inside 45 min
    ];
    for &(k, seq, age, order, looped, best_order, want) in cases {
        let c = ParentCandidate {
            root: Root { key: key(k), seq },
            age,
            receive_order: order,
            contains_our_key: looped,
        };
        assert_eq!(
            is_better_parent_candidate(&c, best, best_order),
            want,
            "{c:?} vs order {best_order}"
        );
    }
}

fn view<'a>(port: Port, k: u8, a: &'a SwitchAnnouncement, order: u64) -> PeerView<'a> {
    PeerView {
        port,
        key: key(k),
        peer_type: PeerType::Remote,
        announcement: Some(a),
        receive_order: order,
    }
}

#[test]
fn tree_next_hop_table() {
    // We are [1 1] under root 9; our parent (port 1) is [1]; a child on
    // port 2 is [1 1 2]; a cousin on port 3 is [1 2 5]; port 4 follows
    // another root sequence.
    let root = Root {
        key: key(9),
        seq: 1,
    };
    let parent = ann(9, 1, &[(9, 1), (8, 1)]);
    let child = ann(9, 1, &[(9, 1), (8, 1), (7, 2), (6, 1)]);
    let cousin = ann(9, 1, &[(9, 1), (8, 2), (5, 5), (4, 1)]);
    let stale = ann(9, 0, &[(9, 1), (3, 1)]);
    let peers = [
        view(1, 8, &parent, 1),
        view(2, 6, &child, 2),
        view(3, 4, &cousin, 3),
        view(4, 3, &stale, 0),
    ];
    let us = [1, 1];
    let p = NextHop::Peer;
    // (destination, arrived from) → next hop
    let cases: &[(&[Port], NextHop, Option<NextHop>)] = &[
        (&[1, 1], NextHop::Local, Some(NextHop::Local)), // our own coordinates
        (&[], NextHop::Local, Some(p(1))),               // the root: up
        (&[1], NextHop::Local, Some(p(1))),              // the parent itself
        (&[1, 1, 2, 7], NextHop::Local, Some(p(2))),     // below the child
        (&[1, 2, 5, 3], NextHop::Local, Some(p(3))),     // below the cousin: direct link
        (&[1, 2], NextHop::Local, Some(p(1))), // a tie (both 1 away): earlier announcement
        (&[1, 1, 2, 7], p(2), None),           // never back where it came from
        (&[], p(1), None),                     // from the parent, nobody closer
        (&[1, 3], NextHop::Local, Some(p(1))), // another branch: via the parent
    ];
    for &(dest, from, want) in cases {
        assert_eq!(
            tree_next_hop(&us, dest, from, root, &peers),
            want,
            "dest {dest:?} from {from:?}"
        );
    }
    // A peer following a different root sequence is never used, even if closer.
    let only_stale = [view(4, 3, &stale, 0)];
    assert_eq!(
        tree_next_hop(&us, &[1], NextHop::Local, root, &only_stale),
        None
    );
}

#[test]
fn tree_ties_prefer_faster_then_earlier() {
    let root = Root {
        key: key(9),
        seq: 1,
    };
    let a = ann(9, 1, &[(9, 1), (5, 1)]); // peer coords [1]
    let b = ann(9, 1, &[(9, 1), (6, 1)]); // same coords through another link
    let mut peers = [view(1, 5, &a, 5), view(2, 6, &b, 3)];
    assert_eq!(
        tree_next_hop(&[2], &[1, 4], NextHop::Local, root, &peers),
        Some(NextHop::Peer(2)),
        "equal distance: the earlier announcement"
    );
    peers[0].peer_type = PeerType::Multicast;
    assert_eq!(
        tree_next_hop(&[2], &[1, 4], NextHop::Local, root, &peers),
        Some(NextHop::Peer(1)),
        "equal distance: the faster link type first"
    );
}

fn snek(
    our: u8,
    dest: u8,
    bootstrap: bool,
    wm: Watermark,
    parent: Option<Port>,
    peers: &[PeerView<'_>],
    routes: &[(u8, u64, Port)],
) -> (Option<NextHop>, Watermark) {
    let q = SnekQuery {
        our_key: key(our),
        destination: key(dest),
        bootstrap,
        watermark: wm,
        parent,
        root_key: key(0xf0),
        peers,
    };
    snek_next_hop(
        &q,
        routes.iter().map(|&(k, seq, source)| RouteView {
            key: key(k),
            seq,
            source,
        }),
    )
}

fn wm(k: u8, seq: u64) -> Watermark {
    Watermark { key: key(k), seq }
}

#[test]
fn snek_next_hop_scenarios() {
    // We are 0x50. Parent 0x60 (port 1) under root 0xf0 via 0x90; a child
    // 0x30 (port 2); a peer 0x55 (port 3) whose parent is 0x52.
    let parent = ann(0xf0, 1, &[(0xf0, 1), (0x90, 1), (0x60, 1)]);
    let child = ann(
        0xf0,
        1,
        &[(0xf0, 1), (0x90, 1), (0x60, 1), (0x50, 2), (0x30, 1)],
    );
    let side = ann(0xf0, 1, &[(0xf0, 1), (0x90, 2), (0x52, 1), (0x55, 1)]);
    let peers = [
        view(1, 0x60, &parent, 1),
        view(2, 0x30, &child, 2),
        view(3, 0x55, &side, 3),
    ];
    let none = Watermark::NONE;
    let p = |n| Some(NextHop::Peer(n));

    // Traffic for our own key stays here, watermark untouched.
    assert_eq!(
        snek(0x50, 0x50, false, none, Some(1), &peers, &[]),
        (Some(NextHop::Local), none)
    );
    // Exact hits on direct peers use the direct link.
    assert_eq!(
        snek(0x50, 0x60, false, none, Some(1), &peers, &[]),
        (p(1), wm(0x60, 0))
    );
    assert_eq!(
        snek(0x50, 0x55, false, none, Some(1), &peers, &[]),
        (p(3), wm(0x55, 0))
    );
    // An ancestor of a peer: the closest key at or above the target.
    assert_eq!(
        snek(0x50, 0x52, false, none, Some(1), &peers, &[]),
        (p(3), wm(0x52, 0))
    );
    // Above every known key short of the root: up the tree.
    assert_eq!(
        snek(0x50, 0xa0, false, none, Some(1), &peers, &[]),
        (p(1), wm(0xf0, 0))
    );
    // Below us with no route: nothing better than ourselves (a dead end).
    assert_eq!(
        snek(0x50, 0x10, false, none, Some(1), &peers, &[]),
        (p(2), wm(0x30, 0))
    );
    assert_eq!(
        snek(0x50, 0x40, false, none, Some(1), &peers, &[]),
        (Some(NextHop::Local), wm(0x50, 0))
    );
    // A soft route towards a bootstrapper carries its sequence into the watermark.
    assert_eq!(
        snek(0x50, 0x40, false, none, Some(1), &peers, &[(0x41, 77, 2)]),
        (p(2), wm(0x41, 77))
    );
    // …but not if it is worse than the frame's watermark (an older sequence).
    assert_eq!(
        snek(
            0x50,
            0x40,
            false,
            wm(0x41, 78),
            Some(1),
            &peers,
            &[(0x41, 77, 2)]
        ),
        (Some(NextHop::Local), wm(0x50, 0))
    );
    // Bootstraps never stop at their origin: ours goes to the root first,
    // then finds our successor among known keys.
    assert_eq!(
        snek(0x50, 0x50, true, none, Some(1), &peers, &[]),
        (p(3), wm(0x52, 0))
    );
    // A bootstrap for a key with no better candidate has nowhere to go.
    assert_eq!(
        snek(0x50, 0x58, true, none, Some(1), &peers, &[]),
        (p(1), wm(0x60, 0))
    );
    assert_eq!(
        snek(0xf0, 0xf0, true, none, None, &[], &[]),
        (None, wm(0xf0, 0))
    );
    // The root (no parent) routes traffic for higher keys nowhere but itself.
    assert_eq!(
        snek(0xf0, 0xf5, false, none, None, &[], &[]),
        (Some(NextHop::Local), wm(0xf0, 0))
    );
}

#[test]
fn snek_prefers_faster_link_to_the_same_node() {
    let a1 = ann(0xf0, 1, &[(0xf0, 1), (0x60, 1)]);
    let a2 = ann(0xf0, 1, &[(0xf0, 1), (0x60, 2)]);
    let mut peers = [view(1, 0x60, &a1, 1), view(2, 0x60, &a2, 2)];
    assert_eq!(
        snek(0x50, 0x60, false, Watermark::NONE, None, &peers, &[]).0,
        Some(NextHop::Peer(1)),
        "same type: earlier announcement"
    );
    peers[1].peer_type = PeerType::Multicast;
    assert_eq!(
        snek(0x50, 0x60, false, Watermark::NONE, None, &peers, &[]).0,
        Some(NextHop::Peer(2)),
        "a faster link type wins"
    );
}

#[test]
fn watermark_worse_than() {
    assert!(!wm(5, 0).worse_than(&Watermark::NONE));
    assert!(wm(6, 0).worse_than(&wm(5, 9)), "higher key is worse");
    assert!(!wm(4, 0).worse_than(&wm(5, 9)));
    assert!(wm(5, 3).worse_than(&wm(5, 4)), "same key, older sequence");
    assert!(!wm(5, 4).worse_than(&wm(5, 4)));
    assert!(!wm(5, 0).worse_than(&wm(5, 4)), "sequence 0 is never worse");
}

#[test]
fn ports_are_lowest_free_and_run_out_at_253() {
    let now = Time::from_unix_millis(1_000_000);
    let mut r = Router::new(Identity::from_seed([1; 32]), RouterConfig::default(), now);
    for i in 1..=253u64 {
        assert_eq!(r.peer_connected(now, key(2), PeerType::Remote, "z"), Ok(i));
    }
    assert_eq!(
        r.peer_connected(now, key(2), PeerType::Remote, "z"),
        Err(NoFreePorts)
    );
    r.peer_disconnected(now, 17);
    r.peer_disconnected(now, 5);
    assert_eq!(r.peer_connected(now, key(2), PeerType::Remote, "z"), Ok(5));
    assert_eq!(r.peer_connected(now, key(2), PeerType::Remote, "z"), Ok(17));
}

#[test]
fn oversized_payload_is_refused() {
    let now = Time::from_unix_millis(1_000_000);
    let mut r = Router::new(Identity::from_seed([1; 32]), RouterConfig::default(), now);
    assert!(matches!(
        r.send(now, key(3), vec![0; 65_535]),
        Err(SendError::TooLarge(_))
    ));
    assert!(r.send(now, key(3), vec![0; 60_000]).is_ok());
}

#[test]
fn verified_prefix_cache_still_checks_new_hops() {
    let now = Time::from_unix_millis(1_000_000);
    let mut r = Router::new(Identity::from_seed([1; 32]), RouterConfig::default(), now);
    let x = Identity::from_seed([50; 32]);
    let p = Identity::from_seed([51; 32]);
    let port = r
        .peer_connected(now, p.public_key(), PeerType::Remote, "z")
        .unwrap();
    let base = SwitchAnnouncement::new(Root {
        key: x.public_key(),
        seq: 1,
    })
    .with_hop(4, &x, true);
    let good = base.with_hop(2, &p, true);
    r.receive_frame(
        now,
        port,
        &Frame::TreeAnnouncement(good.clone()).encode().unwrap(),
    );
    assert!(!std::iter::from_fn(|| r.poll_action()).any(|a| matches!(a, Action::ClosePeer { .. })));
    // Same (cached) prefix, forged last hop: still rejected.
    let mut forged = good.clone();
    forged.hops[1].signature[3] ^= 1;
    r.receive_frame(
        now,
        port,
        &Frame::TreeAnnouncement(forged).encode().unwrap(),
    );
    assert!(std::iter::from_fn(|| r.poll_action()).any(|a| matches!(a, Action::ClosePeer { .. })));
    // And a forged early hop under a valid-looking last hop is caught too.
    let port = r
        .peer_connected(now, p.public_key(), PeerType::Remote, "z")
        .unwrap();
    let mut bad_base = base.clone();
    bad_base.hops[0].signature[0] ^= 1;
    let tricky = bad_base.with_hop(2, &p, true);
    r.receive_frame(
        now,
        port,
        &Frame::TreeAnnouncement(tricky).encode().unwrap(),
    );
    assert!(std::iter::from_fn(|| r.poll_action()).any(|a| matches!(a, Action::ClosePeer { .. })));
}

mod indexed_snek_matches_reference {
    use super::*;
    use proptest::prelude::*;
    use std::ops::RangeBounds;

    #[derive(Debug, Clone)]
    struct PeerSpec {
        key: u8,
        peer_type: u8,
        order: u64,
        ann: Option<(u8, u64, Vec<u8>)>,
    }

    fn peer_spec() -> impl Strategy<Value = PeerSpec> {
        (
            1..12u8,
            0..3u8,
            0..20u64,
            proptest::option::weighted(
                0.8,
                (1..12u8, 0..3u64, proptest::collection::vec(1..12u8, 1..5)),
            ),
        )
            .prop_map(|(key, peer_type, order, ann)| PeerSpec {
                key,
                peer_type,
                order,
                ann,
            })
    }

    fn peer_type(t: u8) -> PeerType {
        [PeerType::Multicast, PeerType::Remote, PeerType::Bluetooth][t as usize]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn same_answers(
            our in 1..12u8,
            dest in 1..12u8,
            root in 1..12u8,
            bootstrap in any::<bool>(),
            wm in proptest::option::of((1..12u8, 0..5u64)),
            peers in proptest::collection::vec(peer_spec(), 0..7),
            parent in proptest::option::of(1..9u64),
            routes in proptest::collection::btree_map(1..12u8, (0..5u64, 1..9u64), 0..6),
            shared_prefixes in any::<bool>(),
        ) {
            // Keys that differ only in their last byte, pairwise, exercise
            // the index's search among equal 64-bit prefixes.
            let key = |b: u8| {
                if shared_prefixes {
                    let mut k = [b / 2; 32];
                    k[31] = b;
                    PublicKey(k)
                } else {
                    key(b)
                }
            };
            let anns: Vec<Option<SwitchAnnouncement>> = peers
                .iter()
                .map(|p| p.ann.as_ref().map(|(r, seq, path)| {
                    let hops: Vec<(u8, Port)> = path.iter().map(|&k| (k, 1)).collect();
                    let mut a = ann(*r, *seq, &hops);
                    a.root.key = key(*r);
                    for (h, &k) in a.hops.iter_mut().zip(path) {
                        h.key = key(k);
                    }
                    a
                }))
                .collect();
            let views: Vec<PeerView<'_>> = peers
                .iter()
                .enumerate()
                .map(|(i, p)| PeerView {
                    port: i as Port + 1,
                    key: key(p.key),
                    peer_type: peer_type(p.peer_type),
                    announcement: anns[i].as_ref(),
                    receive_order: p.order,
                })
                .collect();
            let watermark = wm.map_or(Watermark::NONE, |(k, s)| Watermark { key: key(k), seq: s });
            let route_views: Vec<RouteView> = routes
                .iter()
                .map(|(&k, &(seq, source))| RouteView { key: key(k), seq, source })
                .collect();
            let q = SnekQuery {
                our_key: key(our),
                destination: key(dest),
                bootstrap,
                watermark,
                parent,
                root_key: key(root),
                peers: &views,
            };
            let reference = snek_next_hop(&q, route_views.iter().copied());
            let idx = SnekIndex::build(key(our), key(root), parent, &views);
            let fast = snek_next_hop_indexed(&idx, key(dest), bootstrap, watermark, route_views.iter().copied());
            prop_assert_eq!(fast, reference);
            // Only the routes inside the window, as the router fetches them.
            let windowed = snek_next_hop_windowed(&idx, key(dest), bootstrap, watermark, |w| {
                route_views.iter().copied().filter(move |r| w.contains(&r.key))
            });
            prop_assert_eq!(windowed, reference);
        }
    }
}

#[test]
fn forged_broadcast_closes_the_relaying_peer() {
    use crate::wire::{SignedPayload, WakeupBroadcast};
    let now = Time::from_unix_millis(1_000_000);
    let mut r = Router::new(Identity::from_seed([1; 32]), RouterConfig::default(), now);
    let p = Identity::from_seed([60; 32]);
    let port = r
        .peer_connected(now, p.public_key(), PeerType::Remote, "z")
        .unwrap();
    let source = Identity::from_seed([61; 32]);
    let mut payload = SignedPayload::new(now.as_unix_millis(), r.root(), &source, true);
    payload.signature[9] ^= 1;
    let frame = Frame::WakeupBroadcast(WakeupBroadcast {
        hop_limit: 5,
        source: source.public_key(),
        payload,
    });
    r.receive_frame(now, port, &frame.encode().unwrap());
    assert!(std::iter::from_fn(|| r.poll_action()).any(|a| matches!(a, Action::ClosePeer { .. })));
}

#[cfg(feature = "prefetch")]
/// The prefetch hints read a bootstrap's destination straight from the
/// encoded bytes: the offsets must match the codec, and anything else
/// (another frame type, a frame cut short) gives no key.
#[test]
fn bootstrap_destination_reads_the_encoded_frame() {
    use crate::wire::{Bootstrap, SignedPayload};
    let id = Identity::from_seed([9; 32]);
    let root = Root {
        key: key(0xee),
        seq: 3,
    };
    let frame = Frame::Bootstrap(Bootstrap {
        destination: id.public_key(),
        watermark: Watermark {
            key: key(0x42),
            seq: 7,
        },
        payload: SignedPayload::new(12, root, &id, true),
    })
    .encode()
    .expect("fits");
    assert_eq!(bootstrap_destination(&frame), Some(id.public_key()));
    assert_eq!(bootstrap_destination(&frame[..40]), None);
    let announcement = Frame::TreeAnnouncement(ann(0xee, 3, &[(0xee, 1)]))
        .encode()
        .expect("fits");
    assert_eq!(bootstrap_destination(&announcement), None);
}
