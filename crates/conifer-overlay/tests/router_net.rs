//! Routers wired together through the in-memory driver in `common`.

mod common;

use std::time::Duration;

use common::{identities, Net};
use conifer_overlay::router::{Event, RouterConfig};
use conifer_overlay::wire::{Coordinates, Frame, FrameType};
use conifer_overlay::{Identity, PublicKey};

fn quiet() -> RouterConfig {
    RouterConfig {
        wakeup_broadcasts: false,
        ..RouterConfig::default()
    }
}

fn vector_hex(id: &str) -> Vec<u8> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("data/pinecone-vectors.json")).unwrap();
    let f = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap();
    hex::decode(f["hex"].as_str().unwrap()).unwrap()
}

/// Two of our routers, with the reference seeds, put on the wire exactly the
/// frames the Go routers did: announcements before and after reparenting, the
/// SNEK-routed ping and the tree-routed pong.
#[test]
fn two_routers_reproduce_the_captured_exchange() {
    let ids = vec![
        Identity::from_seed([0x00; 32]),
        Identity::from_seed([0xff; 32]),
    ];
    let mut net = Net::new(ids, quiet());
    net.log_wire = true;
    net.connect(0, 1);
    let (a, b) = (net.key(0), net.key(1));

    let sent_by = |net: &Net, from: usize| -> Vec<Vec<u8>> {
        net.wire_log
            .iter()
            .filter(|(f, _, _)| *f == from)
            .map(|(_, _, bytes)| bytes.clone())
            .collect()
    };
    let from_a = sent_by(&net, 0);
    assert_eq!(from_a[0], vector_hex("tree_announcement_a_initial"));
    assert!(from_a.contains(&vector_hex("tree_announcement_a_after_reparent")));
    assert_eq!(
        sent_by(&net, 1)[0],
        vector_hex("tree_announcement_b_initial")
    );

    assert_eq!(net.nodes[0].router.root().key, b);
    assert_eq!(net.nodes[1].router.root().key, b);
    assert_eq!(net.nodes[0].router.coords(), Coordinates(vec![1]));
    assert!(net.nodes[1].router.coords().is_empty());

    net.wire_log.clear();
    assert!(net.ping(0, 1, b"ping"));
    assert_eq!(sent_by(&net, 0), vec![vector_hex("traffic_snek_ping")]);
    net.wire_log.clear();
    assert!(net.ping(1, 0, b"pong"));
    assert_eq!(sent_by(&net, 1), vec![vector_hex("traffic_tree_pong")]);
    assert_eq!(net.nodes[1].delivered, vec![(a, b"ping".to_vec())]);
}

fn assert_converged(net: &Net, alive: &[usize]) {
    let root = alive.iter().map(|&i| net.key(i)).max().unwrap();
    for &i in alive {
        assert_eq!(net.nodes[i].router.root().key, root, "node {i} root");
    }
}

fn build(n: usize, edges: &[(usize, usize)]) -> Net {
    let mut net = Net::new(identities(n, 1), quiet());
    for &(a, b) in edges {
        net.connect(a, b);
    }
    // Long enough for announcements and a few bootstrap rounds.
    net.settle(12);
    net
}

#[test]
fn line_of_five() {
    let mut net = build(5, &[(0, 1), (1, 2), (2, 3), (3, 4)]);
    let all: Vec<usize> = (0..5).collect();
    assert_converged(&net, &all);
    assert_eq!(net.all_pairs(&all), vec![]);
}

#[test]
fn star() {
    let mut net = build(7, &[(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6)]);
    let all: Vec<usize> = (0..7).collect();
    assert_converged(&net, &all);
    assert_eq!(net.all_pairs(&all), vec![]);
}

#[test]
fn ring() {
    let edges: Vec<(usize, usize)> = (0..8).map(|i| (i, (i + 1) % 8)).collect();
    let mut net = build(8, &edges);
    let all: Vec<usize> = (0..8).collect();
    assert_converged(&net, &all);
    assert_eq!(net.all_pairs(&all), vec![]);
}

#[test]
fn two_trees_join() {
    let mut net = Net::new(identities(8, 40), quiet());
    for (a, b) in [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)] {
        net.connect(a, b);
    }
    net.settle(12);
    // Two separate trees with their own roots.
    let left_root = (0..4).map(|i| net.key(i)).max().unwrap();
    let right_root = (4..8).map(|i| net.key(i)).max().unwrap();
    assert_eq!(net.nodes[0].router.root().key, left_root);
    assert_eq!(net.nodes[7].router.root().key, right_root);
    assert!(!net.ping(0, 7, b"across the gap"));

    net.connect(3, 4);
    net.settle(12);
    let all: Vec<usize> = (0..8).collect();
    assert_converged(&net, &all);
    assert_eq!(net.all_pairs(&all), vec![]);
}

#[test]
fn snek_repairs_after_a_node_leaves() {
    // A ring with one chord, so removing any node leaves the rest connected.
    let mut edges: Vec<(usize, usize)> = (0..8).map(|i| (i, (i + 1) % 8)).collect();
    edges.push((0, 4));
    let mut net = build(8, &edges);
    let all: Vec<usize> = (0..8).collect();
    assert_eq!(net.all_pairs(&all), vec![]);

    // Remove the root: the hardest case, every node must re-elect and re-bootstrap.
    let root = (0..8).max_by_key(|&i| net.key(i)).unwrap();
    net.isolate(root);
    net.settle(15);
    let alive: Vec<usize> = (0..8).filter(|&i| i != root).collect();
    assert_converged(&net, &alive);
    assert_eq!(net.all_pairs(&alive), vec![]);
}

#[test]
fn partition_delivers_nothing_across_the_cut_then_heals() {
    let mut net = build(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]);
    net.disconnect(2, 3);
    net.settle(12);
    assert!(!net.ping(0, 5, b"x"));
    assert!(!net.ping(5, 0, b"x"));
    assert!(net.ping(0, 2, b"left side still works"));
    assert!(net.ping(5, 3, b"right side still works"));
    net.connect(2, 3);
    net.settle(12);
    let all: Vec<usize> = (0..6).collect();
    assert_eq!(net.all_pairs(&all), vec![]);
}

#[test]
fn first_packet_snek_then_tree() {
    let mut net = build(4, &[(0, 1), (1, 2), (2, 3)]);
    net.log_wire = true;
    assert!(net.ping(0, 3, b"hello"));
    let first: Vec<Frame> = net.frame_types_logged();
    assert!(first
        .iter()
        .all(|f| matches!(f, Frame::Traffic(t) if t.destination_coords.is_empty())));
    net.wire_log.clear();
    assert!(net.ping(3, 0, b"reply"));
    let reply = net.frame_types_logged();
    assert!(
        reply
            .iter()
            .all(|f| matches!(f, Frame::Traffic(t) if !t.destination_coords.is_empty())),
        "the reply uses the coordinates learned from the first packet"
    );
}

#[test]
fn traffic_for_an_unknown_key_is_not_delivered() {
    let mut net = build(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]);
    let before: usize = net.nodes.iter().map(|n| n.delivered.len()).sum();
    for i in 0..20u8 {
        let ghost = Identity::from_seed([200 + i; 32]).public_key();
        net.nodes[0].router.send(net.now, ghost, vec![i]).unwrap();
        net.pump();
    }
    let after: usize = net.nodes.iter().map(|n| n.delivered.len()).sum();
    assert_eq!(
        before, after,
        "no application saw traffic not addressed to it"
    );
}

#[test]
fn go_compatible_dead_end_delivery_is_opt_in() {
    let mut net = Net::new(
        identities(6, 1),
        RouterConfig {
            deliver_misrouted: true,
            wakeup_broadcasts: false,
            ..RouterConfig::default()
        },
    );
    for i in 0..5 {
        net.connect(i, i + 1);
    }
    net.settle(12);
    for i in 0..20u8 {
        let ghost = Identity::from_seed([200 + i; 32]).public_key();
        net.nodes[0].router.send(net.now, ghost, vec![i]).unwrap();
        net.pump();
    }
    let delivered: usize = net.nodes.iter().map(|n| n.delivered.len()).sum();
    assert!(
        delivered > 0,
        "like Go, some dead ends reach an application"
    );
}

#[test]
fn malformed_frame_closes_only_that_peering() {
    let mut net = build(3, &[(0, 1), (1, 2)]);
    let port_to_0 = net.nodes[1]
        .router
        .peers()
        .into_iter()
        .find(|p| p.key == net.key(0))
        .unwrap()
        .port;
    // The 10-byte frame that crashes Go Pinecone.
    net.inject(1, port_to_0, &hex::decode("70696e65000000000005").unwrap());
    assert_eq!(net.nodes[1].closed.len(), 1);
    assert!(net.nodes[1].closed[0]
        .1
        .contains("below the 10-byte header"));
    assert_eq!(net.nodes[1].router.peers().len(), 1);
    net.settle(6);
    assert!(net.ping(1, 2, b"still alive"));
    assert!(net.ping(2, 1, b"still alive"));
}

#[test]
fn forged_announcement_closes_the_peering() {
    let mut net = build(2, &[(0, 1)]);
    let ids = identities(2, 1);
    // An announcement whose last hop is not the peer that sent it.
    let stranger = Identity::from_seed([99; 32]);
    let root = conifer_overlay::wire::Root {
        key: stranger.public_key(),
        seq: 7,
    };
    let ann = conifer_overlay::wire::SwitchAnnouncement::new(root).with_hop(1, &stranger, true);
    let bytes = Frame::TreeAnnouncement(ann).encode().unwrap();
    let port = net.nodes[0].router.peers()[0].port;
    net.inject(0, port, &bytes);
    assert_eq!(net.nodes[0].closed.len(), 1, "{:?}", net.nodes[0].closed);
    let _ = ids;
}

#[test]
fn silent_peer_times_out_and_keepalives_keep_links_up() {
    let mut net = build(2, &[(0, 1)]);
    net.settle(30);
    assert!(
        net.nodes[0].closed.is_empty(),
        "keepalives keep an idle link up"
    );
    // A peer that never sends anything: connect on one side only.
    let ghost = Identity::from_seed([77; 32]).public_key();
    let now = net.now;
    let port = net.nodes[0]
        .router
        .peer_connected(now, ghost, conifer_overlay::router::PeerType::Remote, "x")
        .unwrap();
    net.run_for(Duration::from_millis(5_500), Duration::from_millis(100));
    assert!(net.nodes[0]
        .closed
        .iter()
        .any(|(p, why)| *p == port && why.contains("5 seconds")));
}

#[test]
fn hop_limiting_caps_paths_at_nine_hops() {
    let mut net = Net::new(
        identities(13, 1),
        RouterConfig {
            hop_limiting: true,
            wakeup_broadcasts: false,
            ..RouterConfig::default()
        },
    );
    for i in 0..12 {
        net.connect(i, i + 1);
    }
    net.settle(40);
    for d in 1..=12 {
        let ok = net.ping(0, d, b"hop");
        assert_eq!(ok, d <= 9, "{d} hops away");
    }
}

#[test]
fn wakeup_broadcasts_reach_five_hops() {
    let mut net = Net::new(identities(8, 1), RouterConfig::default());
    for i in 0..7 {
        net.connect(i, i + 1);
    }
    // Past the 30 s per-source filter left by the broadcasts sent on connect.
    net.settle(35);
    for n in &mut net.nodes {
        n.events.clear();
    }
    let now = net.now;
    net.nodes[0].router.set_wakeup_broadcasts(now, true);
    net.pump();
    let source = net.key(0);
    for i in 1..8 {
        let got = net.nodes[i]
            .events
            .contains(&Event::BroadcastReceived { source });
        assert_eq!(got, i <= 5, "node {i} hops away");
    }
}

#[test]
fn keepalives_are_the_only_idle_chatter() {
    let mut net = build(3, &[(0, 1), (1, 2)]);
    net.log_wire = true;
    net.run_for(Duration::from_secs(10), Duration::from_millis(250));
    let types: Vec<_> = net
        .frame_types_logged()
        .iter()
        .filter_map(|f| f.frame_type())
        .collect();
    assert!(types
        .iter()
        .all(|t| matches!(t, FrameType::Keepalive | FrameType::Bootstrap)));
    assert!(
        types.contains(&FrameType::Bootstrap),
        "SNEK keeps refreshing"
    );
}

#[test]
fn last_peer_leaving_resets_but_keeps_sequence() {
    let mut net = build(2, &[(0, 1)]);
    let low = if net.key(0) < net.key(1) { 0 } else { 1 };
    let seq_before = net.nodes[low].router.root().seq;
    net.disconnect(0, 1);
    let me: PublicKey = net.key(low);
    let r = net.nodes[low].router.root();
    assert_eq!(r.key, me, "alone, a node is its own root");
    assert!(r.seq > 0);
    let _ = seq_before;
    assert!(net.nodes[low].router.routes().next().is_none());
}

#[test]
fn a_peer_that_never_drains_cannot_grow_memory() {
    use conifer_overlay::router::{Action, PeerType, Router, Time};
    let now = Time::from_unix_millis(1_800_000_000_000);
    let mut r = Router::new(Identity::from_seed([1; 32]), quiet(), now);
    // The slow peer is the root, so all traffic heads its way.
    let slow_id = (2..60u8)
        .map(|i| Identity::from_seed([i; 32]))
        .max_by_key(|i| i.public_key())
        .unwrap();
    let slow = slow_id.public_key();
    assert!(slow > r.public_key());
    let port = r.peer_connected(now, slow, PeerType::Remote, "x").unwrap();
    let root = conifer_overlay::wire::Root { key: slow, seq: 1 };
    let ann = conifer_overlay::wire::SwitchAnnouncement::new(root).with_hop(1, &slow_id, true);
    r.receive_frame(now, port, &Frame::TreeAnnouncement(ann).encode().unwrap());
    assert_eq!(r.parent().map(|p| p.1), Some(slow));
    // Many flows' worth of traffic towards the peer, which never takes any.
    for i in 0..100_000u32 {
        let dest = Identity::from_seed([(i % 200) as u8 + 3; 32]).public_key();
        let _ = r.send(now, dest, vec![0; 1024]);
        let _ = r.send(now, slow, i.to_be_bytes().to_vec());
    }
    while let Some(a) = r.poll_action() {
        assert!(!matches!(a, Action::Deliver { .. }));
    }
    let queued = r.peers()[0].queued;
    assert!(queued <= 254 * 16 + 1024, "queue bounded, got {queued}");
    assert!(
        r.stats().traffic_dropped_queue > 0,
        "oldest frames were dropped"
    );
    // Head drop: what is left is the newest traffic of the slow flow.
    let mut last = None;
    while let Some(f) = r.poll_transmit(now, 1) {
        if let Ok(Frame::Traffic(t)) = Frame::decode(&f) {
            if t.destination == slow {
                last = Some(u32::from_be_bytes(t.payload[..4].try_into().unwrap()));
            }
        }
    }
    assert_eq!(last, Some(99_999));
}
