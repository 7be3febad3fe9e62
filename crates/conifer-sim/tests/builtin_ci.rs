//! A CI-sized run of every built-in scenario, each metric checked against a
//! floor. The sizes are cut down (fewer nodes, shorter runs) so the whole
//! file stays within seconds in a debug build; docs/simulation.md has the
//! full-size figures.

mod common;

use conifer_sim::scenario::{Mobility, TopologySpec};
use conifer_sim::Scenario;

fn shrink_nodes(sc: &mut Scenario, n: usize) {
    match &mut sc.topology {
        TopologySpec::RandomGeometric { nodes, .. }
        | TopologySpec::BarabasiAlbert { nodes, .. } => *nodes = n,
        _ => {}
    }
}

fn mobility(name: &str, steps: u32) -> Scenario {
    let mut sc = common::builtin(name);
    sc.mobility = Some(Mobility {
        steps,
        ..Mobility::default()
    });
    sc.traffic.per_step = 20;
    sc
}

#[test]
fn mobility_radio_range() {
    let r = common::run(&mobility("mobility", 40), 1);
    let m = common::metric(&r, "median_arrival_ratio");
    eprintln!("mobility CI: median arrival {m}");
    assert!(m >= 0.9, "median arrival ratio {m}");
}

#[test]
fn mobility_nearest_150() {
    let r = common::run(&mobility("mobility-nearest150", 30), 1);
    let m = common::metric(&r, "median_arrival_ratio");
    eprintln!("mobility-nearest150 CI: median arrival {m}");
    assert!(m >= 0.8, "median arrival ratio {m}");
}

#[test]
fn churn() {
    let mut sc = common::builtin("churn");
    shrink_nodes(&mut sc, 40);
    sc.duration = 240.0;
    if let Some(c) = &mut sc.churn {
        c.start = 60.0;
    }
    sc.traffic.start = 30.0;
    let r = common::run(&sc, 1);
    let d = common::metric(&r, "delivery_ratio");
    eprintln!("churn CI: {}", r.summary_table());
    assert!(d >= 0.8, "delivery ratio {d}");
    assert!(common::metric(&r, "disturbances") >= 5.0);
    let rc = common::metric(&r, "reconvergence_s_median");
    assert!(rc < 30.0, "median reconvergence {rc} s");
}

/// An adversary scenario cut to 40 nodes, 150 s, honest baseline and 20 %.
fn adversary(name: &str) -> conifer_sim::Results {
    let mut sc = common::builtin(name);
    shrink_nodes(&mut sc, 40);
    sc.duration = 150.0;
    sc.traffic.start = 40.0;
    let a = sc.adversary.as_mut().unwrap();
    a.fractions = vec![0.0, 0.2];
    a.key_search = 256;
    let r = common::run(&sc, 1);
    eprintln!("{name} CI:\n{}", r.summary_table());
    let base = common::metric(&r, "honest_delivery_ratio_at_0pct");
    assert!(base >= 0.95, "{name}: honest baseline {base}");
    r
}

fn attacked(r: &conifer_sim::Results) -> f64 {
    common::metric(r, "honest_delivery_ratio_at_20pct")
}

#[test]
fn adversary_drop() {
    let r = adversary("adv-drop");
    assert!(attacked(&r) >= 0.3, "{}", attacked(&r));
}

#[test]
fn adversary_drop_bootstrap() {
    let r = adversary("adv-drop-bootstrap");
    assert!(attacked(&r) >= 0.5, "{}", attacked(&r));
}

#[test]
fn adversary_drop_traffic() {
    let r = adversary("adv-drop-traffic");
    assert!(attacked(&r) >= 0.3, "{}", attacked(&r));
}

#[test]
fn adversary_sybil() {
    let r = adversary("adv-sybil");
    assert!(attacked(&r) >= 0.3, "{}", attacked(&r));
}

#[test]
fn adversary_eclipse() {
    let r = adversary("adv-eclipse");
    assert!(attacked(&r) >= 0.3, "{}", attacked(&r));
}

#[test]
fn adversary_keyspace() {
    // Keys next to the victims' make the attackers their SNEK neighbours:
    // the attack is effective, hence the low floor.
    let r = adversary("adv-keyspace");
    assert!(attacked(&r) >= 0.15, "{}", attacked(&r));
}

#[test]
fn adversary_root_hijack() {
    let r = adversary("adv-root-hijack");
    assert!(attacked(&r) >= 0.3, "{}", attacked(&r));
}

#[test]
fn adversary_churn() {
    let r = adversary("adv-churn");
    assert!(attacked(&r) >= 0.3, "{}", attacked(&r));
}

fn scale(name: &str) {
    let mut sc = common::builtin(name);
    sc.duration = 150.0;
    sc.traffic.start = 60.0;
    sc.traffic.rate = 2.0;
    let r = common::run(&sc, 1);
    eprintln!("{name} CI:\n{}", r.summary_table());
    let d = common::metric(&r, "delivery_ratio");
    assert!(d >= 0.95, "{name}: delivery {d}");
    let t = common::metric(&r, "time_to_converge_s");
    assert!(t <= 60.0, "{name}: converged after {t} s");
    let s = common::metric(&r, "stretch_mean");
    assert!((1.0..3.0).contains(&s), "{name}: stretch {s}");
}

#[test]
fn scale_rgg_100() {
    scale("scale-rgg-100");
}

#[test]
fn scale_ba_100() {
    scale("scale-ba-100");
}

#[test]
fn scale_large_builtins_parse() {
    for name in [
        "scale-rgg-1000",
        "scale-rgg-10000",
        "scale-ba-1000",
        "scale-ba-10000",
    ] {
        let sc = common::builtin(name);
        assert!(sc.run_length() >= 600.0);
    }
}
