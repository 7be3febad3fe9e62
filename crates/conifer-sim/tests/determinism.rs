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
