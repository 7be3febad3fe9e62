//! Routing-decision benchmarks: the pure next-hop functions with 10 and 100
//! peers and 1 000 SNEK routes, and a whole router forwarding one frame
//! (decode, decide, re-encode, queue).
//!
//! `cargo bench -p conifer-overlay --bench routing`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use conifer_overlay::router::{
    snek_next_hop, tree_next_hop, Action, NextHop, PeerType, PeerView, RouteView, Router,
    RouterConfig, SnekQuery, Time,
};
use conifer_overlay::wire::{
    Coordinates, Frame, Hop, Root, SwitchAnnouncement, Traffic, Watermark,
};
use conifer_overlay::{Identity, PublicKey};

fn key(i: u32, salt: u8) -> PublicKey {
    let mut k = [salt; 32];
    k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
    PublicKey(k)
}

/// `n` peers, each 3–6 hops below a common root, with varied coordinates.
fn announcements(n: usize) -> Vec<SwitchAnnouncement> {
    let root = Root {
        key: PublicKey([0xff; 32]),
        seq: 1,
    };
    (0..n)
        .map(|i| {
            let depth = 3 + i % 4;
            let mut hops = vec![Hop {
                port: 1 + (i % 7) as u64,
                key: root.key,
                signature: [0; 64],
            }];
            for d in 1..depth {
                hops.push(Hop {
                    port: 1 + ((i * 31 + d * 7) % 200) as u64,
                    key: key((i * 10 + d) as u32, 0x11),
                    signature: [0; 64],
                });
            }
            SwitchAnnouncement { root, hops }
        })
        .collect()
}

fn views(anns: &[SwitchAnnouncement]) -> Vec<PeerView<'_>> {
    anns.iter()
        .enumerate()
        .map(|(i, a)| PeerView {
            port: i as u64 + 1,
            key: a.hops.last().unwrap().key,
            peer_type: PeerType::Remote,
            announcement: Some(a),
            receive_order: i as u64,
        })
        .collect()
}

fn routes(n: usize) -> Vec<RouteView> {
    let mut r: Vec<RouteView> = (0..n)
        .map(|i| RouteView {
            key: key(i as u32, 0x22),
            seq: 1 + i as u64,
            source: 1 + (i % 10) as u64,
        })
        .collect();
    r.sort_by_key(|r| r.key);
    r
}

fn bench_decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("next_hop");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 100] {
        let anns = announcements(n);
        let peers = views(&anns);
        let root = anns[0].root;
        let dest = Coordinates(vec![3, 45, 120, 9]);
        g.bench_with_input(BenchmarkId::new("tree", n), &n, |b, _| {
            b.iter(|| {
                tree_next_hop(
                    black_box(&[2, 17]),
                    black_box(&dest.0),
                    NextHop::Local,
                    root,
                    &peers,
                )
            })
        });
        let table = routes(1000);
        let target = key(123_456, 0x22);
        let q = SnekQuery {
            our_key: key(42, 0x33),
            destination: target,
            bootstrap: false,
            watermark: Watermark::NONE,
            parent: Some(1),
            root_key: root.key,
            peers: &peers,
        };
        g.bench_with_input(BenchmarkId::new("snek_1000_routes", n), &n, |b, _| {
            b.iter(|| {
                // As the router does: only routes at or above the target.
                let start = table.partition_point(|r| r.key < target);
                snek_next_hop(black_box(&q), table[start..].iter().copied())
            })
        });
    }
    g.finish();
}

/// A router with `n` peers forwarding SNEK and tree traffic between them.
fn bench_forwarding(c: &mut Criterion) {
    let mut g = c.benchmark_group("router_forward");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 100] {
        let now = Time::from_unix_millis(1_800_000_000_000);
        let config = RouterConfig {
            signatures: false,
            wakeup_broadcasts: false,
            ..RouterConfig::default()
        };
        let mut r = Router::new(Identity::from_seed([9; 32]), config, now);
        let anns = announcements(n);
        let mut ports = Vec::new();
        for a in &anns {
            let peer_key = a.hops.last().unwrap().key;
            let port = r
                .peer_connected(now, peer_key, PeerType::Remote, "bench")
                .unwrap();
            // Peers' announcements, as if each peer had signed its own last hop.
            let frame = Frame::TreeAnnouncement(a.clone()).encode().unwrap();
            r.receive_frame(now, port, &frame);
            ports.push(port);
        }
        while let Some(a) = r.poll_action() {
            if let Action::Wake { port } = a {
                while r.poll_transmit(now, port).is_some() {}
            }
        }
        let src = anns[0].hops.last().unwrap().key;
        let dst = anns[n / 2].hops.last().unwrap().key;
        for (label, coords) in [
            ("snek", Coordinates::root()),
            ("tree", anns[n / 2].peer_coords()),
        ] {
            let frame = Frame::Traffic(Traffic {
                hop_limit: 10,
                destination_coords: coords,
                source_coords: anns[0].peer_coords(),
                destination: dst,
                source: src,
                watermark: Watermark::NONE,
                payload: vec![0x5a; 1024],
            })
            .encode()
            .unwrap();
            g.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| {
                    r.receive_frame(now, ports[0], black_box(&frame));
                    while let Some(a) = r.poll_action() {
                        if let Action::Wake { port } = a {
                            while let Some(f) = r.poll_transmit(now, port) {
                                black_box(f);
                            }
                        }
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_decisions, bench_forwarding);
criterion_main!(benches);
