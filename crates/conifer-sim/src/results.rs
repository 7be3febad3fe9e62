//! The results file and the stdout summary.
//!
//! `results.json` is a pure function of (scenario, seed, git revision):
//! wall-clock figures are printed, never stored, and maps are ordered.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::metrics::{Metrics, RunSeries};
use crate::scenario::Scenario;

#[derive(Clone, Debug, Serialize)]
pub struct LabelledSeries {
    pub label: String,
    #[serde(flatten)]
    pub series: RunSeries,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub scenario: Scenario,
    pub seed: u64,
    /// `git rev-parse HEAD` of the build that ran, or "unknown": the one
    /// field that may differ between two runs of one scenario and seed.
    pub git_revision: String,
    pub metrics: Metrics,
    pub series: Vec<LabelledSeries>,
    /// Not stored: how long the run took and how many engine events it had.
    #[serde(skip)]
    pub wall_secs: f64,
    #[serde(skip)]
    pub events: u64,
    /// An adversary sweep's runs (label, metrics); they are also in
    /// `metrics.runs`.
    #[serde(skip)]
    pub runs: Vec<(String, Metrics)>,
}

/// Headline metrics for the summary table, in display order.
const HEADLINE: &[&str] = &[
    "nodes",
    "median_arrival_ratio",
    "delivery_ratio",
    "honest_delivery_ratio",
    "victim_delivery_ratio",
    "malicious_identities",
    "pings_sent",
    "stretch_mean",
    "stretch_p95",
    "latency_ms_median",
    "time_to_converge_s",
    "converged_at_end",
    "reconvergence_s_median",
    "reconvergence_s_p90",
    "disturbances",
    "routes_per_node_mean",
    "routes_per_node_max",
    "control_bytes_per_node_per_sec_mean",
    "steps_connected_fraction",
    "mean_degree",
];

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "–".into(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.4}"),
            _ => n.to_string(),
        },
        Some(v) => v.to_string(),
    }
}

impl Results {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("results serialise");
        s.push('\n');
        s
    }

    pub fn write_json(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("results.json"), self.to_json())
    }

    /// A plain-text table: metric per row, one column per run.
    pub fn summary_table(&self) -> String {
        let runs: Vec<(&str, &Metrics)> = if self.runs.is_empty() {
            vec![("value", &self.metrics)]
        } else {
            self.runs.iter().map(|(l, m)| (l.as_str(), m)).collect()
        };
        let rows: Vec<&str> = HEADLINE
            .iter()
            .copied()
            .filter(|k| runs.iter().any(|(_, m)| m.contains_key(*k)))
            .collect();
        let w0 = rows.iter().map(|r| r.len()).max().unwrap_or(6).max(6);
        let mut out = format!("{:w0$}", "metric");
        for (label, _) in &runs {
            out += &format!("  {label:>12}");
        }
        out.push('\n');
        for r in rows {
            out += &format!("{r:w0$}");
            for (_, m) in &runs {
                out += &format!("  {:>12}", show(m.get(r)));
            }
            out.push('\n');
        }
        out
    }
}
