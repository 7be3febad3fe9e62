//! What a run measures: delivery, stretch, latency, convergence, routing
//! state and control traffic, summarised into flat named metrics plus the
//! time series the plots draw.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::{Engine, NodeId};
use crate::scenario::Scenario;
use crate::time::{as_secs, secs, SimTime};

/// Metric name → value. A `BTreeMap` so the results file lists them in a
/// fixed (alphabetical) order.
pub type Metrics = BTreeMap<String, Value>;

/// Time series of one run, for plots and for anyone re-analysing a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSeries {
    /// `[bucket start (s), arrival ratio]` per mobility step or time window.
    pub delivery: Vec<[f64; 2]>,
    /// `[t (s), fraction agreeing on the root, fraction with the right SNEK predecessor]`.
    pub convergence: Vec<[f64; 3]>,
    /// `[bin lower edge, count]`, bins 0.25 wide.
    pub stretch_histogram: Vec<[f64; 2]>,
    /// Per topology node, control bytes sent per second.
    pub control_bytes_per_node_per_sec: Vec<f64>,
}

/// Convergence: every node in each connected component agrees that the
/// highest key there is root, and every node's SNEK predecessor
/// (`descending`) is the next lower key in its component.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvergenceState {
    pub root_ok: f64,
    pub snek_ok: f64,
    pub converged: bool,
}

pub fn convergence_state(engine: &Engine) -> ConvergenceState {
    let (mut online, mut root_ok, mut snek_ok) = (0usize, 0usize, 0usize);
    for comp in engine.components() {
        let mut by_key: Vec<NodeId> = comp;
        by_key.sort_by_key(|&n| engine.key(n));
        let top = engine.key(*by_key.last().expect("non-empty"));
        for (i, &n) in by_key.iter().enumerate() {
            let r = engine.router(n).expect("components hold online nodes");
            online += 1;
            root_ok += (r.root().key == top) as usize;
            let want = i.checked_sub(1).map(|j| engine.key(by_key[j]));
            snek_ok += (r.descending() == want) as usize;
        }
    }
    let frac = |x: usize| {
        if online == 0 {
            1.0
        } else {
            x as f64 / online as f64
        }
    };
    ConvergenceState {
        root_ok: frac(root_ok),
        snek_ok: frac(snek_ok),
        converged: root_ok == online && snek_ok == online,
    }
}

/// Convergence checks over a run and the disturbances between them.
#[derive(Clone, Debug, Default)]
pub struct ConvergenceLog {
    pub first: Option<SimTime>,
    pending: Vec<SimTime>,
    /// Seconds from each disturbance to the first check that found the
    /// network converged again.
    pub reconvergence: Vec<f64>,
    pub last: ConvergenceState,
    pub checks: u64,
}

impl ConvergenceLog {
    pub fn check(&mut self, engine: &Engine, series: &mut RunSeries) {
        let now = engine.now();
        let s = convergence_state(engine);
        series
            .convergence
            .push([as_secs(now), round4(s.root_ok), round4(s.snek_ok)]);
        if s.converged {
            self.first.get_or_insert(now);
            for t in self.pending.drain(..) {
                self.reconvergence.push(as_secs(now - t));
            }
        }
        self.last = s;
        self.checks += 1;
    }

    /// The topology changed at `at`.
    pub fn disturbed(&mut self, at: SimTime) {
        self.pending.push(at);
    }

    pub fn unfinished(&self) -> usize {
        self.pending.len()
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Sorts `v` and returns its `p`-quantile (nearest rank), or `None` if empty.
pub fn quantile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
    Some(v[i])
}

/// The median, averaging the middle pair of an even-length list.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn num(x: Option<f64>) -> Value {
    match x {
        Some(x) if x.is_finite() => json!(round4(x)),
        _ => Value::Null,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn summarise(
    sc: &Scenario,
    engine: &Engine,
    series: &mut RunSeries,
    conv: &ConvergenceLog,
    n_topology: usize,
    victims: &[NodeId],
    malicious: usize,
    mobility: Option<(f64, f64)>,
) -> Metrics {
    let mut m = Metrics::new();
    let timeout = secs(sc.traffic.timeout);
    let duration = sc.run_length();
    let pings = &engine.pings.pings;
    let ok = |p: &crate::ping::PingRecord| p.delivered.is_some_and(|d| d - p.sent <= timeout);

    // Delivery, overall and per bucket.
    let bucket_width = match &sc.mobility {
        Some(mob) => mob.interval,
        None => sc.traffic.window,
    };
    let mut buckets: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let (mut sent, mut delivered) = (0u64, 0u64);
    let (mut vsent, mut vdelivered) = (0u64, 0u64);
    for p in pings {
        if p.class == 0 {
            sent += 1;
            delivered += ok(p) as u64;
            let b = buckets.entry(p.bucket).or_default();
            b.0 += 1;
            b.1 += ok(p) as u64;
        } else {
            vsent += 1;
            vdelivered += ok(p) as u64;
        }
    }
    let mut ratios: Vec<f64> = Vec::new();
    for (&b, &(s, d)) in &buckets {
        let r = d as f64 / s as f64;
        ratios.push(r);
        series
            .delivery
            .push([round4(b as f64 * bucket_width), round4(r)]);
    }
    let ratio = |d: u64, s: u64| (s > 0).then(|| d as f64 / s as f64);
    m.insert("nodes".into(), json!(n_topology));
    m.insert("pings_sent".into(), json!(sent));
    m.insert("pings_delivered".into(), json!(delivered));
    m.insert("delivery_ratio".into(), num(ratio(delivered, sent)));
    m.insert(
        "median_arrival_ratio".into(),
        num(median(&mut ratios.clone())),
    );
    m.insert(
        "p10_arrival_ratio".into(),
        num(quantile(&mut ratios.clone(), 0.1)),
    );
    m.insert(
        "mean_arrival_ratio".into(),
        num((!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64)),
    );
    if !victims.is_empty() {
        m.insert("victims".into(), json!(victims.len()));
        m.insert("victim_pings_sent".into(), json!(vsent));
        m.insert(
            "victim_delivery_ratio".into(),
            num(ratio(vdelivered, vsent)),
        );
    }
    if sc.adversary.is_some() {
        m.insert("malicious_identities".into(), json!(malicious));
        m.insert("honest_delivery_ratio".into(), num(ratio(delivered, sent)));
    }
    if sc.traffic.pong {
        let pongs = pings
            .iter()
            .filter(|p| p.pong_delivered.is_some_and(|d| d - p.sent <= timeout))
            .count() as u64;
        m.insert("pong_ratio".into(), num(ratio(pongs, sent + vsent)));
    }

    // Stretch and latency of delivered pings.
    let mut stretch: Vec<f64> = pings
        .iter()
        .filter(|p| ok(p) && p.shortest > 0)
        .map(|p| p.delivered_hops as f64 / p.shortest as f64)
        .collect();
    let mut latency: Vec<f64> = pings
        .iter()
        .filter(|p| ok(p))
        .map(|p| as_secs(p.delivered.expect("ok") - p.sent) * 1000.0)
        .collect();
    m.insert(
        "stretch_mean".into(),
        num((!stretch.is_empty()).then(|| stretch.iter().sum::<f64>() / stretch.len() as f64)),
    );
    m.insert("stretch_median".into(), num(median(&mut stretch)));
    m.insert("stretch_p95".into(), num(quantile(&mut stretch, 0.95)));
    m.insert("latency_ms_median".into(), num(median(&mut latency)));
    m.insert("latency_ms_p95".into(), num(quantile(&mut latency, 0.95)));
    let mut hist: BTreeMap<u32, u64> = BTreeMap::new();
    for s in &stretch {
        *hist.entry((s * 4.0).floor() as u32).or_default() += 1;
    }
    series.stretch_histogram = hist
        .into_iter()
        .map(|(b, c)| [b as f64 / 4.0, c as f64])
        .collect();

    // Control traffic and routing state.
    let per_sec: Vec<f64> = engine.nodes[..n_topology]
        .iter()
        .map(|n| round4(n.counters.control_bytes_sent as f64 / duration))
        .collect();
    let mut ps = per_sec.clone();
    m.insert(
        "control_bytes_per_node_per_sec_mean".into(),
        num(Some(ps.iter().sum::<f64>() / ps.len().max(1) as f64)),
    );
    m.insert(
        "control_bytes_per_node_per_sec_max".into(),
        num(quantile(&mut ps, 1.0)),
    );
    series.control_bytes_per_node_per_sec = per_sec;
    let frames: u64 = engine.nodes[..n_topology]
        .iter()
        .map(|n| n.counters.control_frames_sent)
        .sum();
    m.insert(
        "control_frames_per_node_per_sec".into(),
        num(Some(frames as f64 / n_topology.max(1) as f64 / duration)),
    );
    if sc.measure.routing_state {
        let mut routes: Vec<f64> = Vec::new();
        let mut peers: Vec<f64> = Vec::new();
        for n in 0..engine.len() {
            if let Some(r) = engine.router(n) {
                routes.push(r.routes().count() as f64);
                peers.push(engine.degree(n) as f64);
            }
        }
        m.insert(
            "routes_per_node_mean".into(),
            num(Some(
                routes.iter().sum::<f64>() / routes.len().max(1) as f64,
            )),
        );
        m.insert(
            "routes_per_node_max".into(),
            num(quantile(&mut routes, 1.0)),
        );
        m.insert(
            "peers_per_node_mean".into(),
            num(Some(peers.iter().sum::<f64>() / peers.len().max(1) as f64)),
        );
    }

    // Convergence.
    if sc.measure.convergence {
        m.insert("time_to_converge_s".into(), num(conv.first.map(as_secs)));
        m.insert("converged_at_end".into(), json!(conv.last.converged));
        m.insert("root_agreement_at_end".into(), num(Some(conv.last.root_ok)));
        m.insert("snek_correct_at_end".into(), num(Some(conv.last.snek_ok)));
        if !conv.reconvergence.is_empty() || conv.unfinished() > 0 {
            let mut rc = conv.reconvergence.clone();
            m.insert("disturbances".into(), json!(rc.len() + conv.unfinished()));
            m.insert("reconvergence_s_median".into(), num(median(&mut rc)));
            m.insert("reconvergence_s_p90".into(), num(quantile(&mut rc, 0.9)));
            m.insert("reconvergence_s_max".into(), num(quantile(&mut rc, 1.0)));
            m.insert(
                "disturbances_never_reconverged".into(),
                json!(conv.unfinished()),
            );
        }
    }
    let tree_changes: u64 = engine.nodes.iter().map(|n| n.tree_changes).sum();
    m.insert(
        "tree_changes_per_node".into(),
        num(Some(tree_changes as f64 / engine.len().max(1) as f64)),
    );
    // Router drop counters, summed over routers online at the end (a
    // restart resets a router's counters).
    let mut drops = [0u64; 6];
    for n in 0..engine.len() {
        if let Some(r) = engine.router(n) {
            let st = r.stats();
            for (d, v) in drops.iter_mut().zip([
                st.traffic_dropped_no_route,
                st.traffic_dropped_watermark,
                st.traffic_dropped_misrouted,
                st.traffic_dropped_queue,
                st.traffic_dropped_hop_limit,
                st.bootstraps_dropped,
            ]) {
                *d += v;
            }
        }
    }
    for (name, v) in [
        "router_traffic_dropped_no_route",
        "router_traffic_dropped_watermark",
        "router_traffic_dropped_misrouted",
        "router_traffic_dropped_queue",
        "router_traffic_dropped_hop_limit",
        "router_bootstraps_dropped",
    ]
    .into_iter()
    .zip(drops)
    {
        m.insert(name.into(), json!(v));
    }
    let c = &engine.counters;
    m.insert("frames_lost".into(), json!(c.frames_lost));
    m.insert("links_refused".into(), json!(c.links_refused));
    m.insert(
        "peers_closed_by_router".into(),
        json!(c.peers_closed_by_router),
    );
    m.insert("engine_events".into(), json!(c.events));
    if let Some((connected, degree)) = mobility {
        m.insert("steps_connected_fraction".into(), num(Some(connected)));
        m.insert("mean_degree".into(), num(Some(degree)));
    }
    m
}
