//! Same scenario + same seed ⇒ byte-identical results file; another seed
//! gives another run.

mod common;

use conifer_sim::scenario::{Mobility, TopologySpec};

fn small_mobility() -> conifer_sim::Scenario {
    let mut sc = common::builtin("mobility");
    sc.mobility = Some(Mobility {
        steps: 12,
        ..Mobility::default()
    });
    sc.traffic.per_step = 10;
    if let TopologySpec::RandomGeometric { nodes, range, .. } = &mut sc.topology {
        *nodes = 20;
        *range = Some(350.0);
    }
    // Loss and jitter exercise the link model's RNG too.
    sc.link.loss = 0.01;
    sc
}

#[test]
fn same_seed_same_bytes() {
    let sc = small_mobility();
    let a = common::run(&sc, 7).to_json();
    let b = common::run(&sc, 7).to_json();
    assert!(a == b, "two runs with one seed differ");
    let c = common::run(&sc, 8).to_json();
    assert_ne!(a, c, "another seed should give another run");
}

/// The parallel engine replays exactly what one thread does: the results
/// file is byte-identical for 1, 2 and 3 threads, on runs that exercise
/// loss and jitter, moves, churn (nodes and links going and coming back)
/// and adversaries with zero-latency links (which fall back to one thread).
#[test]
fn thread_count_does_not_change_results() {
    let mut churn = common::builtin("churn");
    if let TopologySpec::RandomGeometric { nodes, .. } = &mut churn.topology {
        *nodes = 40;
    }
    churn.duration = 200.0;
    if let Some(c) = &mut churn.churn {
        c.start = 40.0;
        c.node_leave_per_min = 6.0;
        c.node_join_per_min = 6.0;
        c.link_down_per_min = 12.0;
        c.link_up_per_min = 12.0;
    }
    churn.traffic.start = 20.0;
    let mut ba = common::builtin("scale-ba-100");
    ba.duration = 90.0;
    ba.traffic.start = 30.0;
    ba.traffic.rate = 5.0;
    let mut sybil = common::builtin("adv-sybil");
    if let Some(a) = &mut sybil.adversary {
        a.fractions = vec![0.1];
    }
    sybil.duration = 60.0;
    sybil.traffic.start = 20.0;
    // Keepalives over very lossy links: routers time peers out and close
    // them (a close crosses the link like a frame).
    let mut lossy = small_mobility();
    lossy.router.keepalives = true;
    lossy.link.loss = 0.6;
    let closed = common::run_threads(&lossy, 3, Some(2));
    assert!(common::metric(&closed, "peers_closed_by_router") > 0.0);
    for (name, sc) in [
        ("mobility", small_mobility()),
        ("lossy keepalives", lossy),
        ("churn", churn),
        ("scale-ba-100", ba),
        ("adv-sybil", sybil),
    ] {
        let one = common::run_threads(&sc, 3, Some(1)).to_json();
        for threads in [2, 3] {
            let many = common::run_threads(&sc, 3, Some(threads)).to_json();
            assert!(one == many, "{name}: {threads} threads differ from one");
        }
    }
}
