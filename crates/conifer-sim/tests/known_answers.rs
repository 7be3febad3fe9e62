//! Small networks whose outcome is known in advance.

mod common;

use conifer_overlay::router::{PeerType, RouterConfig};
use conifer_overlay::Identity;
use conifer_sim::engine::{Engine, EngineConfig};
use conifer_sim::link::LinkParams;
use conifer_sim::ping::payload;
use conifer_sim::ping::PingRecord;
use conifer_sim::time::secs;

#[test]
fn line_of_five_delivers_everything() {
    let r = common::run(&common::builtin("line5"), 1);
    assert!(common::metric(&r, "pings_sent") > 100.0);
    assert_eq!(common::metric(&r, "delivery_ratio"), 1.0);
    assert_eq!(common::metric(&r, "stretch_mean"), 1.0);
    assert_eq!(r.metrics["converged_at_end"], true);
}

/// Two rings of four joined by the bridge 2–4, on the engine directly.
fn dumbbell() -> Engine {
    let mut e = Engine::new(EngineConfig {
        router: RouterConfig::default(),
        peer_type: PeerType::Remote,
        seed: 3,
    });
    for i in 0..8u8 {
        e.add_node(Identity::from_seed([i + 1; 32]));
    }
    let ring = |e: &mut Engine, base: usize| {
        for i in 0..4 {
            e.connect(base + i, base + (i + 1) % 4, LinkParams::default());
        }
    };
    ring(&mut e, 0);
    ring(&mut e, 4);
    e.connect(2, 4, LinkParams::default());
    e
}

/// Pings every ordered pair (a in `from`, b in `to`) and returns how many
/// arrived within 5 s.
fn ping_all(e: &mut Engine, from: &[usize], to: &[usize]) -> (usize, usize) {
    let first = e.pings.pings.len();
    for &a in from {
        for &b in to {
            if a == b {
                continue;
            }
            let id = e.pings.add(PingRecord {
                from: a,
                to: b,
                sent: e.now(),
                shortest: 0,
                hops: 0,
                delivered: None,
                delivered_hops: 0,
                pong_delivered: None,
                bucket: 0,
                class: 0,
            });
            let key = e.key(b);
            e.send(a, key, payload(id, false));
        }
    }
    e.run_until(e.now() + secs(5.0));
    let sent = &e.pings.pings[first..];
    (
        sent.iter().filter(|p| p.delivered.is_some()).count(),
        sent.len(),
    )
}

#[test]
fn partition_blocks_the_cut_and_heals() {
    let mut e = dumbbell();
    let (left, right) = ([0, 1, 2, 3], [4, 5, 6, 7]);
    let all: Vec<usize> = (0..8).collect();
    e.run_until(secs(30.0));
    let (ok, n) = ping_all(&mut e, &all, &all);
    assert_eq!(ok, n, "connected network delivers everything");

    e.disconnect(2, 4);
    e.run_until(e.now() + secs(20.0));
    assert_eq!(
        ping_all(&mut e, &left, &right).0,
        0,
        "nothing crosses the cut"
    );
    assert_eq!(
        ping_all(&mut e, &right, &left).0,
        0,
        "nothing crosses the cut"
    );
    let (ok, n) = ping_all(&mut e, &left, &left);
    assert_eq!(ok, n, "each side still works on its own");
    let (ok, n) = ping_all(&mut e, &right, &right);
    assert_eq!(ok, n, "each side still works on its own");

    e.connect(2, 4, LinkParams::default());
    e.run_until(e.now() + secs(20.0));
    let (ok, n) = ping_all(&mut e, &all, &all);
    assert_eq!(ok, n, "healed network delivers everything");
    assert!(conifer_sim::metrics::convergence_state(&e).converged);
}

#[test]
fn partition_scenario_recovers_after_heal() {
    let r = common::run(&common::builtin("partition"), 1);
    let delivery = &r.series[0].series.delivery;
    // Buckets from 20 s after the heal (at 150 s) deliver everything.
    let after: Vec<_> = delivery.iter().filter(|b| b[0] >= 170.0).collect();
    assert!(after.len() >= 5);
    assert!(after.iter().all(|b| b[1] == 1.0), "{after:?}");
    assert_eq!(r.metrics["converged_at_end"], true);
}
