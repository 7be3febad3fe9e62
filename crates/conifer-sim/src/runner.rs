//! Plays a scenario on the engine: builds the topology and adversaries, then
//! interleaves scenario events (mobility steps, pings, churn, scripted
//! events, attacker joins and leaves, convergence checks) with the engine's
//! own events, all in virtual time.
//!
//! Scenario events live in their own queue; before handling one at time `t`
//! the engine runs every event up to and including `t`. Scenario decisions
//! draw from their own RNG stream, so the link model's randomness never
//! shifts which pairs are pinged.

use std::collections::BTreeSet;

use conifer_overlay::router::RouterConfig;
use conifer_overlay::Identity;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adversary::{self, Attach, Extra, Plan};
use crate::engine::{Engine, EngineConfig, NodeId};
use crate::filter::DropFilter;
use crate::link::LinkParams;
use crate::metrics::{self, RunSeries};
use crate::ping::{payload, PingRecord};
use crate::queue::EventQueue;
use crate::scenario::{Connectivity, EventAction, Scenario, ScenarioError, TopologySpec};
use crate::time::{as_secs, secs, SimTime};
use crate::topology::{self, Graph, Pos};

/// One run of a scenario at one adversary fraction.
pub struct RunOutcome {
    pub fraction: f64,
    pub metrics: metrics::Metrics,
    pub series: RunSeries,
    pub events: u64,
}

enum RunEv {
    Step(u32),
    Ping(u32),
    Check,
    Churn(ChurnKind),
    Timed(usize),
    /// Extra attacker `i` joins (`true`) or leaves.
    Flap(usize, bool),
    Progress,
}

#[derive(Clone, Copy)]
enum ChurnKind {
    NodeLeave,
    NodeJoin,
    LinkDown,
    LinkUp,
}

/// How links follow node positions after a move.
enum LinkRule {
    Range(f64),
    Nearest(usize),
}

/// Builds the scenario's topology from the scenario RNG.
pub fn build_topology(sc: &Scenario, rng: &mut ChaCha8Rng) -> Result<Graph, ScenarioError> {
    let invalid = |m: String| ScenarioError::Invalid(sc.name.clone(), m);
    Ok(match &sc.topology {
        TopologySpec::Line { nodes } => topology::line(*nodes),
        TopologySpec::Ring { nodes } => topology::ring(*nodes),
        TopologySpec::Grid { width, height } => topology::grid(*width, *height),
        TopologySpec::BarabasiAlbert { nodes, m } => topology::barabasi_albert(*nodes, *m, rng),
        TopologySpec::EdgeList { edges, path } => {
            let text = edges.as_deref().ok_or_else(|| {
                invalid(format!(
                    "edge list {} was not loaded (use Scenario::from_file)",
                    path.as_deref().unwrap_or("?")
                ))
            })?;
            topology::parse_edge_list(text).map_err(invalid)?
        }
        TopologySpec::RandomGeometric {
            nodes,
            width,
            height,
            connectivity,
            ..
        } => {
            let rule = link_rule(sc).expect("geometric");
            let mut tries = 0;
            loop {
                let pos = topology::random_positions(*nodes, *width, *height, rng);
                let mut g = Graph::from_edges(*nodes, links_for(&rule, &pos));
                g.positions = Some(pos);
                tries += 1;
                match connectivity {
                    Connectivity::None => break g,
                    Connectivity::Patch => {
                        g.patch_connected();
                        break g;
                    }
                    Connectivity::Resample if g.is_connected() => break g,
                    Connectivity::Resample if tries >= 1000 => {
                        return Err(invalid(
                            "no connected placement in 1000 draws: raise the range".into(),
                        ))
                    }
                    Connectivity::Resample => {}
                }
            }
        }
    })
}

fn link_rule(sc: &Scenario) -> Option<LinkRule> {
    let TopologySpec::RandomGeometric {
        nodes,
        width,
        height,
        range,
        mean_degree,
        nearest_links,
        ..
    } = &sc.topology
    else {
        return None;
    };
    Some(match (nearest_links, range, mean_degree) {
        (Some(k), _, _) => LinkRule::Nearest(*k),
        (_, Some(r), _) => LinkRule::Range(*r),
        (_, _, Some(d)) => LinkRule::Range(topology::range_for_degree(*nodes, *width, *height, *d)),
        _ => LinkRule::Range(topology::range_for_degree(*nodes, *width, *height, 8.0)),
    })
}

fn links_for(rule: &LinkRule, pos: &[Pos]) -> Vec<(usize, usize)> {
    match rule {
        LinkRule::Range(r) => topology::within_range(pos, *r),
        LinkRule::Nearest(k) => topology::nearest_links(pos, *k),
    }
}

struct Runner<'a> {
    sc: &'a Scenario,
    engine: Engine,
    rng: ChaCha8Rng,
    events: EventQueue<RunEv>,
    end: SimTime,
    /// Nodes `0..n` come from the topology; extras follow.
    n: usize,
    graph: Graph,
    rule: Option<LinkRule>,
    /// Links held down by churn, scripted events or a partition.
    suppressed: BTreeSet<(usize, usize)>,
    churned_links: Vec<(usize, usize)>,
    partition_cut: Vec<(usize, usize)>,
    offline: BTreeSet<NodeId>,
    extras: Vec<(NodeId, Extra)>,
    victims: Vec<NodeId>,
    series: RunSeries,
    conv: metrics::ConvergenceLog,
    connected_steps: u32,
    degree_sum: f64,
}

/// Runs one scenario at one adversary fraction.
pub fn run_once(
    sc: &Scenario,
    seed: u64,
    fraction: f64,
    threads: Option<usize>,
    progress: &mut dyn FnMut(f64),
) -> Result<RunOutcome, ScenarioError> {
    // Independent streams of one seed: topology and scenario decisions,
    // identities, and (inside the engine) the link model.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2);
    let mut id_rng = ChaCha8Rng::seed_from_u64(seed);
    id_rng.set_stream(3);

    let graph = build_topology(sc, &mut rng)?;
    let n = graph.n;
    let mut identities: Vec<Identity> = (0..n).map(|_| adversary::identity(&mut id_rng)).collect();
    let keys: Vec<_> = identities.iter().map(Identity::public_key).collect();
    let plan = match &sc.adversary {
        Some(spec) => adversary::plan(spec, fraction, &graph, &keys, &mut id_rng),
        None => Plan::default(),
    };
    for (host, id) in &plan.identities {
        identities[*host] = id.clone();
    }

    let rs = &sc.router;
    let engine = Engine::new(EngineConfig {
        router: RouterConfig {
            signatures: rs.signatures,
            keepalives: rs.keepalives,
            hop_limiting: rs.hop_limiting,
            wakeup_broadcasts: rs.wakeup_broadcasts,
            deliver_misrouted: false,
            seed,
        },
        peer_type: rs.peer_type().expect("validated"),
        seed,
    });
    let end = secs(sc.run_length());
    let mut r = Runner {
        sc,
        engine,
        rng,
        events: EventQueue::default(),
        end,
        n,
        rule: link_rule(sc),
        graph,
        suppressed: BTreeSet::new(),
        churned_links: Vec::new(),
        partition_cut: Vec::new(),
        offline: BTreeSet::new(),
        extras: Vec::new(),
        victims: plan.victims.clone(),
        series: RunSeries::default(),
        conv: metrics::ConvergenceLog::default(),
        connected_steps: 0,
        degree_sum: 0.0,
    };
    r.engine.pings.pong = sc.traffic.pong;
    for id in identities {
        r.engine.add_node(id);
    }
    for (node, rates) in &plan.droppers {
        r.engine.nodes[*node].filter = Some(DropFilter::new(rates.clone()));
        r.engine.nodes[*node].honest = false;
    }
    for (i, extra) in plan.extras.iter().enumerate() {
        let id = r.engine.add_node(extra.identity.clone());
        r.engine.nodes[id].honest = false;
        if let Some(d) = &extra.drop {
            r.engine.nodes[id].filter = Some(DropFilter::new(d.clone()));
        }
        match extra.attach {
            Attach::Behind(host) => {
                r.engine.connect(id, host, LinkParams::instant());
            }
            Attach::Random(_) => {
                // Starts offline; first joins at a random point of its
                // off period, so attackers do not move in lockstep.
                r.engine.node_down(id);
                let down = extra.flap.map_or(0.0, |f| f.1);
                let phase = r.rng.gen::<f64>() * down;
                r.events.push(secs(phase), RunEv::Flap(i, true));
            }
        }
        r.extras.push((id, extra.clone()));
    }
    r.sync_links();
    r.engine.set_threads(threads);
    r.schedule_initial();
    r.run(progress);
    let mobility = r.mobility_stats();
    let metrics = metrics::summarise(
        sc,
        &r.engine,
        &mut r.series,
        &r.conv,
        r.n,
        &r.victims,
        plan.malicious,
        mobility,
    );
    Ok(RunOutcome {
        fraction,
        metrics,
        series: r.series,
        events: r.engine.counters.events,
    })
}

impl Runner<'_> {
    fn schedule_initial(&mut self) {
        let sc = self.sc;
        if let Some(m) = &sc.mobility {
            for k in 0..m.steps {
                self.events
                    .push(secs(k as f64 * m.interval), RunEv::Step(k));
            }
        } else if sc.traffic.rate > 0.0 {
            self.events.push(secs(sc.traffic.start), RunEv::Ping(0));
        }
        if sc.measure.convergence {
            self.events.push(0, RunEv::Check);
        }
        if let Some(c) = &sc.churn {
            for kind in [
                ChurnKind::NodeLeave,
                ChurnKind::NodeJoin,
                ChurnKind::LinkDown,
                ChurnKind::LinkUp,
            ] {
                self.schedule_churn(kind, secs(c.start));
            }
        }
        for (i, e) in sc.events.iter().enumerate() {
            self.events.push(secs(e.at), RunEv::Timed(i));
        }
        self.events.push(0, RunEv::Progress);
    }

    fn ping_stop(&self) -> SimTime {
        let t = &self.sc.traffic;
        if t.stop > 0.0 {
            secs(t.stop)
        } else {
            self.end.saturating_sub(secs(t.timeout))
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut(f64)) {
        while let Some((at, ev)) = self.events.pop() {
            if at > self.end {
                break;
            }
            self.engine.run_until(at);
            match ev {
                RunEv::Step(k) => self.step(k),
                RunEv::Ping(bucket) => self.ping(bucket),
                RunEv::Check => {
                    self.conv.check(&self.engine, &mut self.series);
                    let next = at + secs(self.sc.measure.check_interval.max(0.01));
                    self.events.push(next, RunEv::Check);
                }
                RunEv::Churn(kind) => self.churn(kind),
                RunEv::Timed(i) => self.timed(i),
                RunEv::Flap(i, up) => self.flap(i, up),
                RunEv::Progress => {
                    progress(at as f64 / self.end.max(1) as f64);
                    self.events.push(at + secs(1.0), RunEv::Progress);
                }
            }
        }
        self.engine.run_until(self.end);
        progress(1.0);
    }

    /// Live edges the topology wants: positions or the base graph, minus
    /// suppressed links and offline nodes.
    fn sync_links(&mut self) {
        let mut want: Vec<(usize, usize)> = self
            .graph
            .edges
            .iter()
            .copied()
            .filter(|e| {
                !self.suppressed.contains(e)
                    && !self.offline.contains(&e.0)
                    && !self.offline.contains(&e.1)
            })
            .collect();
        want.sort_unstable();
        let mut have = Vec::new();
        for a in 0..self.n {
            for b in self.engine.neighbours(a) {
                if a < b && b < self.n {
                    have.push((a, b));
                }
            }
        }
        let want_set: BTreeSet<_> = want.iter().copied().collect();
        let have_set: BTreeSet<_> = have.iter().copied().collect();
        for &(a, b) in have.iter().filter(|e| !want_set.contains(e)) {
            self.engine.disconnect(a, b);
        }
        let params = self.sc.link.clone();
        for &(a, b) in want.iter().filter(|e| !have_set.contains(e)) {
            self.engine.connect(a, b, params.clone());
        }
    }

    /// A mobility step: move everyone, relink, schedule this step's pings.
    fn step(&mut self, k: u32) {
        let m = self.sc.mobility.clone().expect("mobility scenario");
        if k > 0 {
            let TopologySpec::RandomGeometric { width, height, .. } = self.sc.topology else {
                unreachable!("validated")
            };
            let pos = self.graph.positions.as_mut().expect("geometric");
            for p in pos.iter_mut() {
                let d = self.rng.gen::<f64>() * m.max_move;
                let angle = self.rng.gen::<f64>() * std::f64::consts::TAU;
                p.0 = (p.0 + d * angle.cos()).clamp(0.0, width);
                p.1 = (p.1 + d * angle.sin()).clamp(0.0, height);
            }
            let rule = self.rule.as_ref().expect("geometric");
            let edges = links_for(rule, pos);
            self.graph.edges = edges;
            self.sync_links();
        }
        self.connected_steps += self.graph.is_connected() as u32;
        self.degree_sum += self.graph.mean_degree();
        let start = secs(k as f64 * m.interval);
        if start < secs(self.sc.traffic.start) {
            return;
        }
        let stop = self.ping_stop();
        let mut times: Vec<SimTime> = (0..self.sc.traffic.per_step)
            .map(|_| start + self.rng.gen_range(0..secs(m.interval).max(1)))
            .filter(|&t| t <= stop)
            .collect();
        times.sort_unstable();
        for t in times {
            self.events.push(t, RunEv::Ping(k));
        }
    }

    fn ping(&mut self, bucket: u32) {
        let now = self.engine.now();
        let bucket = if self.sc.mobility.is_some() {
            bucket
        } else {
            // Rate-driven pings re-arm themselves and bucket by window.
            let gap = secs(1.0 / self.sc.traffic.rate);
            if now + gap <= self.ping_stop() {
                self.events.push(now + gap, RunEv::Ping(0));
            }
            (as_secs(now) / self.sc.traffic.window.max(0.001)) as u32
        };
        self.send_ping(bucket);
    }

    fn send_ping(&mut self, bucket: u32) {
        let t = &self.sc.traffic;
        let eligible: Vec<NodeId> = (0..self.engine.len())
            .filter(|&i| self.engine.is_up(i) && (!t.honest_only || self.engine.nodes[i].honest))
            .collect();
        if eligible.len() < 2 {
            return;
        }
        // Half the probes target a victim when there are victims, so their
        // fate is measured and not left to chance.
        let live_victims: Vec<NodeId> = self
            .victims
            .iter()
            .copied()
            .filter(|&v| self.engine.is_up(v))
            .collect();
        let to_victim = !live_victims.is_empty() && self.rng.gen_bool(0.5);
        let max = if t.max_hops == 0 {
            u32::MAX - 1
        } else {
            t.max_hops
        };
        for _ in 0..16 {
            let (from, to, dist) = if to_victim {
                let to = *live_victims.choose(&mut self.rng).expect("non-empty");
                let dist = self.engine.bfs(to);
                let ok: Vec<NodeId> = eligible
                    .iter()
                    .copied()
                    .filter(|&i| dist[i] >= t.min_hops.max(1) && dist[i] <= max)
                    .collect();
                let Some(&from) = ok.choose(&mut self.rng) else {
                    continue;
                };
                (from, to, dist[from])
            } else {
                let from = *eligible.choose(&mut self.rng).expect("non-empty");
                let dist = self.engine.bfs(from);
                let ok: Vec<NodeId> = eligible
                    .iter()
                    .copied()
                    .filter(|&i| dist[i] >= t.min_hops.max(1) && dist[i] <= max)
                    .collect();
                let Some(&to) = ok.choose(&mut self.rng) else {
                    continue;
                };
                (from, to, dist[to])
            };
            let id = self.engine.pings.add(PingRecord {
                from,
                to,
                sent: self.engine.now(),
                shortest: dist,
                hops: 0,
                delivered: None,
                delivered_hops: 0,
                pong_delivered: None,
                bucket,
                class: to_victim as u8,
            });
            let key = self.engine.key(to);
            self.engine.send(from, key, payload(id, false));
            return;
        }
    }

    fn schedule_churn(&mut self, kind: ChurnKind, after: SimTime) {
        let c = self.sc.churn.as_ref().expect("churn");
        let per_min = match kind {
            ChurnKind::NodeLeave => c.node_leave_per_min,
            ChurnKind::NodeJoin => c.node_join_per_min,
            ChurnKind::LinkDown => c.link_down_per_min,
            ChurnKind::LinkUp => c.link_up_per_min,
        };
        if per_min <= 0.0 {
            return;
        }
        // Exponential gaps: a Poisson process at `per_min` events per minute.
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let gap = -u.ln() * 60.0 / per_min;
        let at = after + secs(gap);
        let stop = if c.stop > 0.0 { secs(c.stop) } else { self.end };
        if at <= stop {
            self.events.push(at, RunEv::Churn(kind));
        }
    }

    fn churn(&mut self, kind: ChurnKind) {
        let now = self.engine.now();
        let c = self.sc.churn.clone().expect("churn");
        let changed = match kind {
            ChurnKind::NodeLeave => {
                let online: Vec<NodeId> =
                    (0..self.n).filter(|i| !self.offline.contains(i)).collect();
                let floor = (c.min_online * self.n as f64).ceil() as usize;
                match online.choose(&mut self.rng) {
                    Some(&v) if online.len() > floor => {
                        self.offline.insert(v);
                        self.engine.node_down(v);
                        true
                    }
                    _ => false,
                }
            }
            ChurnKind::NodeJoin => {
                let off: Vec<NodeId> = self.offline.iter().copied().collect();
                match off.choose(&mut self.rng) {
                    Some(&v) => {
                        self.offline.remove(&v);
                        self.engine.node_up(v);
                        self.sync_links();
                        true
                    }
                    None => false,
                }
            }
            ChurnKind::LinkDown => {
                let live: Vec<(usize, usize)> = self
                    .graph
                    .edges
                    .iter()
                    .copied()
                    .filter(|&(a, b)| self.engine.linked(a, b))
                    .collect();
                match live.choose(&mut self.rng) {
                    Some(&e) => {
                        self.suppressed.insert(e);
                        self.churned_links.push(e);
                        self.engine.disconnect(e.0, e.1);
                        true
                    }
                    None => false,
                }
            }
            ChurnKind::LinkUp => {
                if self.churned_links.is_empty() {
                    false
                } else {
                    let i = self.rng.gen_range(0..self.churned_links.len());
                    let e = self.churned_links.swap_remove(i);
                    self.suppressed.remove(&e);
                    self.sync_links();
                    true
                }
            }
        };
        if changed {
            self.conv.disturbed(now);
        }
        self.schedule_churn(kind, now);
    }

    fn node_ref(&self, name: &str) -> NodeId {
        if let Some(names) = &self.graph.names {
            if let Some(i) = names.iter().position(|n| n == name) {
                return i;
            }
        }
        name.parse().unwrap_or(usize::MAX)
    }

    fn timed(&mut self, i: usize) {
        let ev = self.sc.events[i].action.clone();
        let valid = |v: usize| v < self.n;
        match ev {
            EventAction::LinkDown { a, b } | EventAction::LinkUp { a, b } => {
                let (a, b) = (self.node_ref(&a), self.node_ref(&b));
                if valid(a) && valid(b) && a != b {
                    let e = (a.min(b), a.max(b));
                    if matches!(self.sc.events[i].action, EventAction::LinkDown { .. }) {
                        self.suppressed.insert(e);
                    } else {
                        self.suppressed.remove(&e);
                        if let Err(p) = self.graph.edges.binary_search(&e) {
                            self.graph.edges.insert(p, e);
                        }
                    }
                }
            }
            EventAction::NodeDown { node } => {
                let v = self.node_ref(&node);
                if valid(v) {
                    self.offline.insert(v);
                    self.engine.node_down(v);
                }
            }
            EventAction::NodeUp { node } => {
                let v = self.node_ref(&node);
                if valid(v) && self.offline.remove(&v) {
                    self.engine.node_up(v);
                }
            }
            EventAction::Partition { side } => {
                let side: BTreeSet<NodeId> = side.iter().map(|s| self.node_ref(s)).collect();
                for &e in &self.graph.edges {
                    if side.contains(&e.0) != side.contains(&e.1) && self.suppressed.insert(e) {
                        self.partition_cut.push(e);
                    }
                }
            }
            EventAction::Heal => {
                for e in std::mem::take(&mut self.partition_cut) {
                    self.suppressed.remove(&e);
                }
            }
        }
        self.sync_links();
        self.conv.disturbed(self.engine.now());
    }

    fn flap(&mut self, i: usize, up: bool) {
        let (id, extra) = self.extras[i].clone();
        let (t_up, t_down) = extra.flap.unwrap_or((f64::INFINITY, 0.0));
        let now = self.engine.now();
        if up {
            self.engine.node_up(id);
            let Attach::Random(links) = extra.attach else {
                return;
            };
            let mut honest: Vec<NodeId> = (0..self.n)
                .filter(|&v| self.engine.is_up(v) && self.engine.nodes[v].honest)
                .collect();
            honest.shuffle(&mut self.rng);
            for &v in honest.iter().take(links) {
                self.engine.connect(id, v, self.sc.link.clone());
            }
            if t_up.is_finite() {
                self.events.push(now + secs(t_up), RunEv::Flap(i, false));
            }
        } else {
            self.engine.node_down(id);
            self.events.push(now + secs(t_down), RunEv::Flap(i, true));
        }
    }

    fn mobility_stats(&self) -> Option<(f64, f64)> {
        let m = self.sc.mobility.as_ref()?;
        let steps = m.steps.max(1) as f64;
        Some((self.connected_steps as f64 / steps, self.degree_sum / steps))
    }
}
