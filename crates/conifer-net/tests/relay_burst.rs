//! A relay keeps a flow's burst: a sender and a receiver peered through a
//! Conifer relay on 127.0.0.1; bursts of 17, 32 and 64 frames of one flow,
//! sent back to back, all arrive, and no queue on the way drops a frame.
//! (A relay used to cut any burst to 16 frames: a whole socket read was
//! queued before its writer ran, into per-flow queues of 16.)

use std::collections::BTreeSet;
use std::time::Duration;

use conifer_net::{Delivery, Node, PeeringInfo};
use conifer_overlay::router::{PeerType, RouterConfig};
use conifer_overlay::Identity;
use tokio::sync::mpsc;

const LOOPBACK: &str = "127.0.0.1:0";
/// 1 KiB payloads: a burst of 64 is more than one 64 KiB socket read.
const PAYLOAD: usize = 1024;
/// Marks burst payloads apart from pongs.
const MAGIC: &[u8; 4] = b"BRST";

fn node(seed: u8) -> (Node, mpsc::Receiver<Delivery>) {
    let config = RouterConfig {
        wakeup_broadcasts: false,
        ..RouterConfig::default()
    };
    Node::start(Identity::from_seed([seed; 32]), config)
}

fn payload(burst: u32, i: u32) -> Vec<u8> {
    let mut p = vec![0x5a; PAYLOAD];
    p[..4].copy_from_slice(MAGIC);
    p[4..8].copy_from_slice(&burst.to_be_bytes());
    p[8..12].copy_from_slice(&i.to_be_bytes());
    p
}

type Receiver = mpsc::Receiver<Delivery>;

/// Waits for a path from `from` to `to` (SNEK paths take a bootstrap round):
/// sends probes until one arrives, then waits for the tree path too (the
/// bursts must not switch routes half-way), and drains stray probes.
async fn path(from: &Node, to: &Node, rx: &mut Receiver) {
    let mut ok = false;
    for _ in 0..100 {
        let _ = from.send(to.public_key(), b"probe".to_vec());
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            if d.payload == b"probe" {
                ok = true;
                break;
            }
        }
    }
    assert!(ok, "no path from sender to receiver through the relay");
    for _ in 0..100 {
        if from.has_coords_for(&to.public_key()) {
            break;
        }
        let _ = from.send(to.public_key(), b"probe".to_vec());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}
}

/// Sends bursts of 17, 32 and 64 frames of one flow, each back to back with
/// no yield in between (so each lands in the queues at once), and checks each
/// burst arrives whole, in order, before sending the next.
async fn bursts_arrive_whole(sender: &Node, receiver: &Node, mut rx: Receiver, relay: &Node) {
    for (b, burst) in [17u32, 32, 64, 64, 32, 17].into_iter().enumerate() {
        let b = b as u32;
        for i in 0..burst {
            sender
                .send(receiver.public_key(), payload(b, i))
                .expect("a path exists");
        }
        let mut got = Vec::new();
        // Not a timing assertion: a generous bound on "never arrives".
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < burst as usize {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(d)) if d.payload.starts_with(MAGIC) => {
                    assert_eq!(d.source, sender.public_key());
                    let tag: [u8; 4] = d.payload[4..8].try_into().unwrap();
                    let i: [u8; 4] = d.payload[8..12].try_into().unwrap();
                    assert_eq!(u32::from_be_bytes(tag), b, "a frame of another burst");
                    got.push(u32::from_be_bytes(i));
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("receiver stopped"),
                Err(_) => break,
            }
        }
        let want: Vec<u32> = (0..burst).collect();
        assert_eq!(
            got,
            want,
            "burst of {burst}: {} of {burst} frames arrived",
            got.len()
        );
        // Nothing was dropped anywhere, and nothing more arrives.
        for (who, n) in [("sender", sender), ("relay", relay), ("receiver", receiver)] {
            let dropped: u64 = n
                .status()
                .peers
                .iter()
                .map(|p| p.stats.traffic_dropped)
                .sum();
            assert_eq!(dropped, 0, "the {who} dropped frames of a burst of {burst}");
        }
        let unique: BTreeSet<u32> = got.iter().copied().collect();
        assert_eq!(unique.len(), burst as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_relay_keeps_bursts_of_17_to_64_frames() {
    let (relay, _relay_rx) = node(0x50);
    let (sender, _srx) = node(0x10);
    let (receiver, mut rx) = node(0x90);
    let addr = relay.listen_tcp(LOOPBACK.parse().unwrap()).await.unwrap();
    sender.connect_tcp(&addr.to_string(), "test").await.unwrap();
    receiver
        .connect_tcp(&addr.to_string(), "test")
        .await
        .unwrap();
    path(&sender, &receiver, &mut rx).await;
    bursts_arrive_whole(&sender, &receiver, rx, &relay).await;
}

/// The same through byte streams that take no vectored writes (in-process
/// pipes, as a BLE channel would be): the writer's frame-by-frame branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_relay_keeps_bursts_of_17_to_64_frames() {
    let (relay, _relay_rx) = node(0x51);
    let (sender, _srx) = node(0x11);
    let (receiver, mut rx) = node(0x91);
    for (n, name) in [(&sender, "sender"), (&receiver, "receiver")] {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let info = |remote: &str| PeeringInfo {
            peer_type: PeerType::Remote,
            zone: "pipe".into(),
            remote: remote.into(),
        };
        let (x, y) = tokio::join!(
            relay.start_stream(ar, aw, info(name), None),
            n.start_stream(br, bw, info("relay"), None)
        );
        x.unwrap();
        y.unwrap();
    }
    path(&sender, &receiver, &mut rx).await;
    bursts_arrive_whole(&sender, &receiver, rx, &relay).await;
}
