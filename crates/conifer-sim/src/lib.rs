//! Conifer's network simulator: the real sans-IO Pinecone router
//! ([`conifer_overlay::router::Router`]) driven by a discrete-event engine in
//! virtual time.
//!
//! * [`engine`]: routers, links and the event queue ([`queue`], [`link`],
//!   [`time`]); frames cross links with latency, jitter, loss and bandwidth.
//! * [`topology`]: line, ring, grid, random geometric, Barabási–Albert and the
//!   Go simulator's edge-list files.
//! * [`scenario`]: the TOML/JSON scenario format; [`builtin`] the named ones.
//! * [`runner`]: plays a scenario (mobility, pings, churn, scripted events,
//!   [`adversary`] placement and [`filter`]s); [`metrics`] and [`ping`]
//!   measure it; [`results`] and [`plot`] write it out.
//!
//! **Determinism:** one scenario and one seed always give the same results
//! file. All randomness comes from ChaCha8 streams of the seed, every
//! collection whose order affects the run is ordered (`BTreeMap`, `Vec`),
//! ties in the event queue break by insertion order, node keys come from the
//! seeded RNG and routers get a fixed virtual clock.
//!
//! **`unsafe`:** denied everywhere but `part_nodes`, the audited module that
//! lets the threads of a parallel run share the node slice.

#![deny(unsafe_code)]

pub mod adversary;
pub mod builtin;
pub mod engine;
pub mod filter;
pub mod link;
pub mod metrics;
mod part_nodes;
pub mod ping;
pub mod plot;
#[cfg(feature = "prefetch")]
mod prefetch;
pub mod queue;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod time;
pub mod topology;

use serde_json::{json, Value};

pub use results::{LabelledSeries, Results};
pub use scenario::{Scenario, ScenarioError};

/// How to run a scenario.
pub struct RunOptions<'a> {
    pub seed: u64,
    /// Recorded in the results file (see [`Results::git_revision`]).
    pub git_revision: String,
    /// Called with the fraction of virtual time done (0–1).
    pub progress: Option<&'a mut dyn FnMut(f64)>,
    /// Engine threads (`None`: up to 2 for networks of 2 000 nodes or more;
    /// see [`engine::Engine::set_threads`]). Results do not depend on it.
    pub threads: Option<usize>,
}

fn pct_label(f: f64) -> String {
    let p = f * 100.0;
    if p.fract() == 0.0 {
        format!("{p:.0}pct")
    } else {
        format!("{p}pct")
    }
}

/// Runs a scenario: once, or once per adversary fraction.
pub fn run(sc: &Scenario, opts: RunOptions<'_>) -> Result<Results, ScenarioError> {
    sc.validate()?;
    let started = std::time::Instant::now();
    let fractions = match &sc.adversary {
        Some(a) => a.fractions.clone(),
        None => vec![0.0],
    };
    let mut noop = |_: f64| {};
    let progress: &mut dyn FnMut(f64) = match opts.progress {
        Some(p) => p,
        None => &mut noop,
    };
    let count = fractions.len();
    let mut outcomes = Vec::new();
    for (i, &f) in fractions.iter().enumerate() {
        let mut sub = |p: f64| progress((i as f64 + p) / count as f64);
        outcomes.push(runner::run_once(sc, opts.seed, f, opts.threads, &mut sub)?);
    }
    let events = outcomes.iter().map(|o| o.events).sum();
    let mut results = Results {
        scenario: sc.clone(),
        seed: opts.seed,
        git_revision: opts.git_revision,
        metrics: Default::default(),
        series: Vec::new(),
        wall_secs: 0.0,
        events,
        runs: Vec::new(),
    };
    if sc.adversary.is_none() {
        let o = outcomes.pop().expect("one run");
        results.metrics = o.metrics;
        results.series.push(LabelledSeries {
            label: sc.name.clone(),
            series: o.series,
        });
    } else {
        let mut runs = Vec::new();
        for o in outcomes {
            let label = pct_label(o.fraction);
            for key in ["honest_delivery_ratio", "victim_delivery_ratio"] {
                if let Some(v) = o.metrics.get(key) {
                    results
                        .metrics
                        .insert(format!("{key}_at_{label}"), v.clone());
                }
            }
            let mut m = o.metrics.clone();
            m.insert("adversary_fraction".into(), json!(o.fraction));
            runs.push(Value::Object(m.into_iter().collect()));
            results.series.push(LabelledSeries {
                label: label.clone(),
                series: o.series,
            });
            results.runs.push((label, o.metrics));
        }
        results.metrics.insert("runs".into(), Value::Array(runs));
    }
    results.wall_secs = started.elapsed().as_secs_f64();
    Ok(results)
}
