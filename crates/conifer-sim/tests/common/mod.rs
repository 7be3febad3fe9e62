//! Shared helpers: run a scenario with a pinned git revision.

#![allow(dead_code)]

use conifer_sim::{builtin, Results, RunOptions, Scenario};
use serde_json::Value;

pub fn run(sc: &Scenario, seed: u64) -> Results {
    run_threads(sc, seed, None)
}

pub fn run_threads(sc: &Scenario, seed: u64, threads: Option<usize>) -> Results {
    conifer_sim::run(
        sc,
        RunOptions {
            seed,
            git_revision: "test".into(),
            progress: None,
            threads,
        },
    )
    .expect("scenario runs")
}

pub fn builtin(name: &str) -> Scenario {
    builtin::load(name).expect("built-in exists")
}

pub fn metric(r: &Results, key: &str) -> f64 {
    match r.metrics.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap(),
        other => panic!("metric {key} is {other:?}"),
    }
}
