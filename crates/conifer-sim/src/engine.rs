//! The discrete-event engine: routers, links and the event queue.
//!
//! Every input a router gets (a frame arriving, a peering coming up or going
//! down, a timer, a local send) is followed by [`Part::settle`], which drains
//! the router's actions — transmitting frames onto links, recording
//! deliveries, closing peerings it asks to close — and re-arms its timer at
//! [`Router::poll_timeout`]. Nothing here reads a clock or iterates a hash
//! map, so one seed always replays the same run.
//!
//! **Event order.** An event's key is `(time, scheduling node, that node's
//! count of events scheduled so far)`, which any engine that replays the
//! same inputs computes alike, whatever else it interleaves. During a run a
//! node's events come only from itself or, across a link, from at least one
//! link latency earlier; so the events of one node form the same sequence
//! whether all nodes share one queue or not.
//!
//! **Parallel runs** (conservative, in windows): the nodes are dealt to
//! parts, one per thread, each with its own queue. With `L` the smallest
//! link latency ever configured, nothing a node does in `[t, t+L)` can reach
//! another node before `t + L`; so each thread runs its nodes' events of that
//! window on its own, hands what is for another part's nodes to that part's
//! inbox, and the threads meet at a barrier before the next window (which
//! starts at the earliest event anywhere). Everything global — the runner's
//! pings, churn, moves and checks, the link tables — happens between
//! `run_until` calls, on one thread. A run's results are identical with any
//! number of threads (tested); zero-latency links (Sybil identities) leave
//! no lookahead, and then one thread runs everything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use smallvec::{smallvec, SmallVec};

use conifer_overlay::router::{Action, Event, PeerType, Router, RouterConfig};
use conifer_overlay::wire::Port;
use conifer_overlay::{Identity, PublicKey};

use crate::filter::DropFilter;
use crate::link::{sample, LinkParams};
use crate::part_nodes::PartNodes;
use crate::ping::PingTracker;
#[cfg(feature = "prefetch")]
use crate::prefetch::prefetch;
use crate::queue::{Key, TwoLaneQueue};
use crate::time::{router_time, sim_time, SimTime, MICROS_PER_MILLI};

pub type NodeId = usize;
pub type LinkId = u64;

/// Per-node traffic counters kept by the engine (they survive router restarts).
#[derive(Clone, Debug, Default)]
pub struct NodeCounters {
    pub control_bytes_sent: u64,
    pub control_frames_sent: u64,
    pub traffic_bytes_sent: u64,
    pub frames_received: u64,
    pub frames_filtered: u64,
}

/// One end of a link, as its node sees it: everything sending and receiving
/// on the link needs, so a frame never looks at shared link tables (which
/// lets two threads run the two ends).
#[derive(Clone, Copy, Debug, Default)]
struct PortSlot {
    /// 0: no link on this port (link ids start at 1).
    link: u32,
    /// The node at the other end, and its port.
    to: u32,
    to_port: u8,
    /// The direction this end sends on (it seeds the link model's samples).
    dir: u8,
    /// A frame is being serialised; the next pull waits for `TxDone`.
    busy: bool,
    /// Index into the engine's distinct link parameters.
    params: u8,
    /// The latest arrival scheduled so far in our direction (FIFO pipes).
    last_arrival: SimTime,
}

pub struct Node {
    pub identity: Identity,
    pub key: PublicKey,
    /// `None` while the node is offline.
    pub router: Option<Router>,
    /// Our ends of links, indexed by port. Looked up for every frame a
    /// router sends or receives; routers fill the lowest free port first, so
    /// most nodes' ports fit inline, in the cache lines the engine prefetches
    /// with the node.
    ports: SmallVec<[PortSlot; 4]>,
    /// The earliest timer event queued for this node.
    timer_at: Option<SimTime>,
    /// Router millisecond at which `handle_timeout` last ran.
    fired_ms: Option<u64>,
    /// Events this node has scheduled: with the node's id, the tie-breaker
    /// of their keys.
    scheduled: u64,
    /// Events run at this node (to balance the parts of a parallel run).
    events: u64,
    /// Adversaries filter what they receive before their router sees it.
    pub filter: Option<DropFilter>,
    pub honest: bool,
    pub counters: NodeCounters,
    /// Times this node's router changed root or parent.
    pub tree_changes: u64,
}

impl Node {
    fn port(&self, port: Port) -> Option<PortSlot> {
        self.ports
            .get(port as usize)
            .copied()
            .filter(|s| s.link != 0)
    }

    fn port_mut(&mut self, port: Port) -> Option<&mut PortSlot> {
        self.ports.get_mut(port as usize).filter(|s| s.link != 0)
    }

    fn set_port(&mut self, port: Port, slot: PortSlot) {
        let i = port as usize;
        if self.ports.len() <= i {
            self.ports.resize(i + 1, PortSlot::default());
        }
        self.ports[i] = slot;
    }

    /// The key of the next event this node schedules.
    fn next_key(&mut self, id: NodeId, at: SimTime) -> Key {
        self.scheduled += 1;
        debug_assert!(self.scheduled < 1 << 40 && id < 1 << 24);
        (at, (id as u64) << 40 | self.scheduled)
    }
}

struct Link {
    /// `ends[d]` sends on direction `d`; `ends[d ^ 1]` receives.
    ends: [(NodeId, Port); 2],
}

/// Frames that travel together. Almost every batch is one frame (links are
/// drained as soon as a router queues something), so keep that one inline
/// rather than allocating a vector per link traversal.
type Frames = SmallVec<[Vec<u8>; 1]>;

enum Ev {
    Timer(u32),
    /// A batch of frames (in order) reaches `to`'s `port`, if that port is
    /// still on `link`.
    Arrive {
        link: u32,
        to: u32,
        port: u8,
        frames: Frames,
    },
    /// `node`'s end of `link` (on `port`) finished serialising a frame and
    /// can take the next.
    TxDone {
        link: u32,
        node: u32,
        port: u8,
    },
    /// The other end closed `link`: `to` learns of it one latency later.
    Closed {
        link: u32,
        to: u32,
        port: u8,
    },
}

impl Ev {
    /// The node the event happens at.
    fn node(&self) -> NodeId {
        match *self {
            Ev::Timer(n) => n as NodeId,
            Ev::Arrive { to, .. } | Ev::Closed { to, .. } => to as NodeId,
            Ev::TxDone { node, .. } => node as NodeId,
        }
    }
}

/// An event for a node another [`Part`] runs.
struct Outgoing {
    key: Key,
    near: bool,
    ev: Ev,
}

/// Global counters for the performance report.
#[derive(Clone, Debug, Default)]
pub struct EngineCounters {
    pub events: u64,
    pub frames_delivered: u64,
    pub frames_lost: u64,
    pub timers_fired: u64,
    pub links_refused: u64,
    pub peers_closed_by_router: u64,
    /// Last virtual time any router changed root or parent.
    pub last_tree_change: SimTime,
}

impl EngineCounters {
    fn add(&mut self, o: &EngineCounters) {
        self.events += o.events;
        self.frames_delivered += o.frames_delivered;
        self.frames_lost += o.frames_lost;
        self.timers_fired += o.timers_fired;
        self.links_refused += o.links_refused;
        self.peers_closed_by_router += o.peers_closed_by_router;
        self.last_tree_change = self.last_tree_change.max(o.last_tree_change);
    }
}

pub struct EngineConfig {
    pub router: RouterConfig,
    pub peer_type: PeerType,
    pub seed: u64,
}

/// Networks smaller than this run on one thread unless told otherwise: a
/// window holds too few events to pay for the barrier.
const PARALLEL_MIN_NODES: usize = 2_000;

/// How often (virtual time) a parallel run re-balances its parts.
const REBALANCE_INTERVAL: SimTime = 20 * crate::time::MICROS_PER_SEC;

pub struct Engine {
    now: SimTime,
    /// One queue per part; `owner[n]` is the part that runs node `n`.
    queues: Vec<TwoLaneQueue<Ev>>,
    owner: Vec<u8>,
    pub nodes: Vec<Node>,
    /// Every node's key (a pong's destination may be run by another thread).
    keys: Vec<PublicKey>,
    /// Indexed by [`LinkId`]: ids count up from 1 and are never reused (they
    /// seed the link model's samples), so a slot per id ever issued; a
    /// removed link leaves `None`. Only for taking links down: frames go by
    /// the nodes' port slots.
    links: Vec<Option<Link>>,
    /// The distinct link parameters in use (port slots name them by index).
    params: Vec<LinkParams>,
    /// Each node's event count at the last rebalance, and when the next is due.
    load_mark: Vec<u64>,
    rebalance_at: SimTime,
    /// Time each part's thread spent running events since the last rebalance.
    busy_ns: Vec<u64>,
    /// The smallest propagation delay of any link ever made: the lookahead.
    min_latency: SimTime,
    /// Neighbour → link, per node: the live topology.
    adj: Vec<BTreeMap<NodeId, LinkId>>,
    next_link: LinkId,
    live_links: usize,
    /// Seeds the link model's per-link samples (see [`crate::link::sample`]).
    seed: u64,
    router_config: RouterConfig,
    peer_type: PeerType,
    pub pings: PingTracker,
    pub counters: EngineCounters,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            now: 0,
            queues: vec![TwoLaneQueue::default()],
            owner: Vec::new(),
            nodes: Vec::new(),
            keys: Vec::new(),
            links: vec![None],
            params: Vec::new(),
            load_mark: Vec::new(),
            rebalance_at: 0,
            busy_ns: Vec::new(),
            min_latency: SimTime::MAX,
            adj: Vec::new(),
            next_link: 1,
            live_links: 0,
            seed: config.seed,
            router_config: config.router,
            peer_type: config.peer_type,
            pings: PingTracker::default(),
            counters: EngineCounters::default(),
        }
    }

    pub fn now(&self) -> SimTime {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn queued_events(&self) -> usize {
        self.queues.iter().map(TwoLaneQueue::len).sum()
    }

    /// How many threads the engine runs on.
    pub fn threads(&self) -> usize {
        self.queues.len()
    }

    /// Deals the nodes to `threads` threads (`None`: the machine's
    /// available parallelism, at most 2, and one thread for networks under
    /// 2 000 nodes), in parts of about equal weight (at first one plus the
    /// degree, as most events are frames; every 20 virtual seconds, the
    /// measured work). Results do not depend on
    /// it. Falls back to one thread when some link has no latency (no
    /// lookahead).
    pub fn set_threads(&mut self, threads: Option<usize>) {
        let n = self.nodes.len();
        let mut k = match threads {
            Some(t) => t.max(1),
            None if n < PARALLEL_MIN_NODES => 1,
            None => std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .min(2),
        };
        if self.min_latency == 0 || n < 2 {
            k = 1;
        }
        k = k.min(n.max(1));
        let weights: Vec<u64> = (0..n).map(|i| 1 + self.adj[i].len() as u64).collect();
        self.load_mark = self.nodes.iter().map(|n| n.events).collect();
        self.rebalance_at = self.now + REBALANCE_INTERVAL;
        self.repartition(k, assign(&weights, k));
    }

    /// Re-deals the nodes so that each part ran about as much work since the
    /// last rebalance (hubs and busy regions change as the network
    /// converges).
    fn rebalance(&mut self) {
        // Events at hubs cost more (bigger tables), so each part's events
        // are weighted by the time its thread spent on one (a clock reading
        // that only moves work between threads, never changes a result).
        let k = self.queues.len();
        let events: Vec<u64> = (self.nodes.iter().zip(&self.load_mark))
            .map(|(n, &m)| n.events - m)
            .collect();
        let mut count = vec![0u64; k];
        for (i, e) in events.iter().enumerate() {
            count[self.part_of(i)] += e;
        }
        let cost: Vec<f64> = (0..k)
            .map(|p| self.busy_ns[p] as f64 / count[p].max(1) as f64)
            .collect();
        self.busy_ns.iter_mut().for_each(|b| *b = 0);
        let weights: Vec<u64> = (events.iter().enumerate())
            .map(|(i, &e)| 1 + (e as f64 * cost[self.part_of(i)]) as u64)
            .collect();
        self.load_mark = self.nodes.iter().map(|n| n.events).collect();
        self.rebalance_at = self.now + REBALANCE_INTERVAL;
        let owner = assign(&weights, k);
        if owner != self.owner {
            self.repartition(k, owner);
        }
    }

    fn repartition(&mut self, parts: usize, owner: Vec<u8>) {
        let mut events = Vec::new();
        for q in &mut self.queues {
            events.extend(q.drain());
        }
        self.queues = (0..parts).map(|_| TwoLaneQueue::default()).collect();
        self.busy_ns = vec![0; parts];
        self.owner = owner;
        for (key, near, ev) in events {
            self.enqueue(Outgoing { key, near, ev });
        }
    }

    fn part_of(&self, n: NodeId) -> usize {
        part_of(&self.owner, n)
    }

    fn enqueue(&mut self, o: Outgoing) {
        let p = self.part_of(o.ev.node());
        let q = &mut self.queues[p];
        if o.near {
            q.push_near(o.key, o.ev);
        } else {
            q.push_far(o.key, o.ev);
        }
    }

    /// Runs `f` on a [`Part`] holding every node, between runs (runner
    /// actions: links, nodes, sends), then files what it scheduled.
    fn with_part<R>(&mut self, f: impl FnOnce(&mut Part<'_>) -> R) -> R {
        let single = self.queues.len() == 1;
        let mut part = Part {
            nodes: PartNodes::all(&mut self.nodes),
            owner: &self.owner,
            mine: if single { Mine::All } else { Mine::Nothing },
            queue: &mut self.queues[0],
            out: Vec::new(),
            params: &self.params,
            keys: &self.keys,
            pings: &self.pings,
            counters: EngineCounters::default(),
            closed: Vec::new(),
            seed: self.seed,
            now: self.now,
            dirty: Vec::new(),
        };
        let r = f(&mut part);
        let Part {
            out,
            counters,
            closed,
            ..
        } = part;
        for o in out {
            self.enqueue(o);
        }
        self.counters.add(&counters);
        self.apply_closed(closed);
        r
    }

    /// Links closed by a router leave the topology at the end of a run (the
    /// runner only looks at it between runs).
    fn apply_closed(&mut self, mut closed: Vec<LinkId>) {
        closed.sort_unstable();
        for id in closed {
            let Some(link) = self.links.get_mut(id as usize).and_then(Option::take) else {
                continue;
            };
            let [(a, _), (b, _)] = link.ends;
            self.adj[a].remove(&b);
            self.adj[b].remove(&a);
            self.live_links -= 1;
        }
    }

    /// Adds a node, online, with no links.
    pub fn add_node(&mut self, identity: Identity) -> NodeId {
        let id = self.nodes.len();
        let key = identity.public_key();
        self.nodes.push(Node {
            identity,
            key,
            router: None,
            ports: SmallVec::new(),
            timer_at: None,
            fired_ms: None,
            scheduled: 0,
            events: 0,
            filter: None,
            honest: true,
            counters: NodeCounters::default(),
            tree_changes: 0,
        });
        self.keys.push(key);
        self.owner.push(0);
        self.adj.push(BTreeMap::new());
        self.node_up(id);
        id
    }

    pub fn is_up(&self, n: NodeId) -> bool {
        self.nodes[n].router.is_some()
    }

    pub fn router(&self, n: NodeId) -> Option<&Router> {
        self.nodes[n].router.as_ref()
    }

    pub fn key(&self, n: NodeId) -> PublicKey {
        self.nodes[n].key
    }

    /// Starts (or restarts, with fresh state) a node's router.
    pub fn node_up(&mut self, n: NodeId) {
        if self.nodes[n].router.is_some() {
            return;
        }
        let config = RouterConfig {
            seed: self.router_config.seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ..self.router_config.clone()
        };
        let node = &mut self.nodes[n];
        node.router = Some(Router::new(
            node.identity.clone(),
            config,
            router_time(self.now),
        ));
        node.fired_ms = None;
        self.with_part(|p| p.settle(n));
    }

    /// Takes a node offline: its links go down, its state is lost.
    pub fn node_down(&mut self, n: NodeId) {
        let neighbours: Vec<NodeId> = self.adj[n].keys().copied().collect();
        for m in neighbours {
            self.disconnect(n, m);
        }
        let node = &mut self.nodes[n];
        node.router = None;
        node.timer_at = None;
        // Ends of links the other side closed that we had not heard of yet.
        node.ports.clear();
    }

    pub fn neighbours(&self, n: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.adj[n].keys().copied()
    }

    pub fn degree(&self, n: NodeId) -> usize {
        self.adj[n].len()
    }

    pub fn linked(&self, a: NodeId, b: NodeId) -> bool {
        self.adj[a].contains_key(&b)
    }

    pub fn link_count(&self) -> usize {
        self.live_links
    }

    /// Brings a link up between two online nodes (at most one per pair).
    /// Returns false if either is offline, they are already linked, or a
    /// router has no free port.
    pub fn connect(&mut self, a: NodeId, b: NodeId, params: LinkParams) -> bool {
        if a == b || !self.is_up(a) || !self.is_up(b) || self.linked(a, b) {
            return false;
        }
        let latency = params.delay(0.0);
        let pi = match self.params.iter().position(|p| *p == params) {
            Some(i) => i,
            None => {
                assert!(self.params.len() < 256, "too many distinct link parameters");
                self.params.push(params);
                self.params.len() - 1
            }
        };
        self.min_latency = self.min_latency.min(latency);
        if self.min_latency == 0 && self.queues.len() > 1 {
            self.repartition(1, vec![0; self.nodes.len()]);
        }
        let id = self.next_link;
        assert!(id < u32::MAX as LinkId, "too many links");
        let peer_type = self.peer_type;
        let ends = self.with_part(|p| p.connect(a, b, id as u32, pi as u8, peer_type));
        let Some((pa, pb)) = ends else {
            return false;
        };
        self.next_link += 1;
        debug_assert_eq!(self.links.len() as LinkId, id);
        self.links.push(Some(Link {
            ends: [(a, pa), (b, pb)],
        }));
        self.live_links += 1;
        self.adj[a].insert(b, id);
        self.adj[b].insert(a, id);
        true
    }

    /// Takes the link between `a` and `b` down; both routers are told.
    pub fn disconnect(&mut self, a: NodeId, b: NodeId) {
        let Some(&id) = self.adj[a].get(&b) else {
            return;
        };
        let link = self.links[id as usize]
            .take()
            .expect("adjacent links exist");
        self.live_links -= 1;
        self.adj[a].remove(&b);
        self.adj[b].remove(&a);
        // Frames in flight on it are discarded when they "arrive".
        self.with_part(|p| {
            for (n, port) in link.ends {
                p.unplug(n, port, id as u32);
            }
            p.settle(a);
            p.settle(b);
        });
    }

    /// An application send from `from` to `to`'s key.
    pub fn send(&mut self, from: NodeId, to: PublicKey, payload: Vec<u8>) -> bool {
        let now = router_time(self.now);
        let Some(r) = self.nodes[from].router.as_mut() else {
            return false;
        };
        let ok = r.send(now, to, payload).is_ok();
        self.with_part(|p| p.settle(from));
        ok
    }

    /// Processes every event up to and including `until`, then sets the
    /// clock to `until`.
    pub fn run_until(&mut self, until: SimTime) {
        if self.queues.len() == 1 {
            self.now = self.with_part(|part| {
                part.run(until.saturating_add(1));
                debug_assert!(part.out.is_empty());
                part.now
            });
        } else {
            self.run_parallel(until);
            if self.now >= self.rebalance_at {
                self.rebalance();
            }
        }
        self.now = self.now.max(until);
        self.pings.sync();
    }

    fn run_parallel(&mut self, until: SimTime) {
        let parts = self.queues.len();
        let shared = Shared {
            inbox: (0..parts).map(|_| Mutex::new(Vec::new())).collect(),
            next: (0..parts).map(|_| AtomicU64::new(0)).collect(),
            barrier: SpinBarrier::new(parts),
        };
        let lookahead = self.min_latency;
        let (owner, params, keys, pings, seed, now) = (
            &self.owner,
            &self.params,
            &self.keys,
            &self.pings,
            self.seed,
            self.now,
        );
        let nodes = PartNodes::split(&mut self.nodes, owner, parts);
        let mut work = Vec::new();
        for ((p, queue), nodes) in self.queues.iter_mut().enumerate().zip(nodes) {
            work.push(Part {
                nodes,
                owner,
                mine: Mine::Part(p as u8),
                queue,
                out: Vec::new(),
                params,
                keys,
                pings,
                counters: EngineCounters::default(),
                closed: Vec::new(),
                seed,
                now,
                dirty: Vec::new(),
            });
        }
        let done: Vec<Done> = std::thread::scope(|s| {
            let shared = &shared;
            let mut work = work.into_iter().enumerate();
            let (_, first) = work.next().expect("parts >= 1");
            let handles: Vec<_> = work
                .map(|(p, part)| {
                    s.spawn(move || window_loop(p, part, shared, owner, until, lookahead))
                })
                .collect();
            let mut done = vec![window_loop(0, first, shared, owner, until, lookahead)];
            done.extend(handles.into_iter().map(|h| h.join().expect("worker")));
            done
        });
        // Whatever arrived after a part finished (due after `until`).
        let late: Vec<Outgoing> = (shared.inbox.iter())
            .flat_map(|i| std::mem::take(&mut *i.lock().expect("inbox")))
            .collect();
        for o in late {
            self.enqueue(o);
        }
        let mut all_closed = Vec::new();
        for (p, (counters, closed, now, busy)) in done.into_iter().enumerate() {
            self.busy_ns[p] += busy;
            self.counters.add(&counters);
            all_closed.extend(closed);
            self.now = self.now.max(now);
        }
        self.apply_closed(all_closed);
    }

    /// Hop distances from `src` over live links (`u32::MAX`: unreachable).
    pub fn bfs(&self, src: NodeId) -> Vec<u32> {
        let mut dist = vec![u32::MAX; self.nodes.len()];
        let mut frontier = std::collections::VecDeque::new();
        dist[src] = 0;
        frontier.push_back(src);
        while let Some(n) = frontier.pop_front() {
            for &m in self.adj[n].keys() {
                if dist[m] == u32::MAX {
                    dist[m] = dist[n] + 1;
                    frontier.push_back(m);
                }
            }
        }
        dist
    }

    /// Connected components of online nodes, as lists of node ids.
    pub fn components(&self) -> Vec<Vec<NodeId>> {
        let mut seen = vec![false; self.nodes.len()];
        let mut out = Vec::new();
        for s in 0..self.nodes.len() {
            if seen[s] || !self.is_up(s) {
                continue;
            }
            let mut comp = vec![s];
            seen[s] = true;
            let mut i = 0;
            while i < comp.len() {
                let n = comp[i];
                i += 1;
                for &m in self.adj[n].keys() {
                    if !seen[m] {
                        seen[m] = true;
                        comp.push(m);
                    }
                }
            }
            out.push(comp);
        }
        out
    }
}

/// Deals nodes to `k` parts of about equal total weight, heaviest first,
/// each to the lightest part so far: hubs spread over the parts, and so does
/// every wave of work through the network, which keeps the parts in step.
fn assign(weights: &[u64], k: usize) -> Vec<u8> {
    let mut order: Vec<NodeId> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(weights[i]), i));
    let mut load = vec![0u64; k];
    let mut owner = vec![0u8; weights.len()];
    for i in order {
        let p = (0..k).min_by_key(|&p| (load[p], p)).expect("k >= 1");
        load[p] += weights[i];
        owner[i] = p as u8;
    }
    owner
}

fn part_of(owner: &[u8], n: NodeId) -> usize {
    owner.get(n).copied().unwrap_or(0) as usize
}

/// What the threads of a parallel run share.
struct Shared {
    /// Events for each part from the others, handed over between windows.
    inbox: Vec<Mutex<Vec<Outgoing>>>,
    /// Each part's earliest queued event, published before each window.
    next: Vec<AtomicU64>,
    barrier: SpinBarrier,
}

/// One thread's side of a parallel run: windows starting at the earliest
/// event anywhere and ending a lookahead after the earliest the other parts
/// can still run, until no event is left at or before `until`.
fn window_loop(
    me: usize,
    mut part: Part<'_>,
    shared: &Shared,
    owner: &[u8],
    until: SimTime,
    lookahead: SimTime,
) -> Done {
    let parts = shared.next.len();
    let mut outs: Vec<Vec<Outgoing>> = (0..parts).map(|_| Vec::new()).collect();
    let mut busy = std::time::Duration::ZERO;
    loop {
        for o in shared.inbox[me].lock().expect("inbox").drain(..) {
            if o.near {
                part.queue.push_near(o.key, o.ev);
            } else {
                part.queue.push_far(o.key, o.ev);
            }
        }
        let mine = part.queue.peek_time().unwrap_or(SimTime::MAX);
        shared.next[me].store(mine, Ordering::Relaxed);
        shared.barrier.wait();
        let start = shared
            .next
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .min()
            .expect("parts >= 1");
        if start > until {
            break;
        }
        // Every event from now on, anywhere, is at or after `start`, so
        // whatever a part receives from another is at or after `start + L`:
        // no part runs an event before the smaller of its head and that
        // again, nor sends one earlier than a lookahead later. Up to there
        // our window may run (past `start + L` when we are the one behind).
        let reach = start.saturating_add(lookahead);
        let others = (shared.next.iter().enumerate())
            .filter(|&(p, _)| p != me)
            .map(|(_, t)| t.load(Ordering::Relaxed).min(reach))
            .min()
            .unwrap_or(reach);
        let tb = std::time::Instant::now();
        part.run(
            others
                .saturating_add(lookahead)
                .min(until.saturating_add(1)),
        );
        busy += tb.elapsed();
        for o in part.out.drain(..) {
            outs[part_of(owner, o.ev.node())].push(o);
        }
        for (p, out) in outs.iter_mut().enumerate() {
            if !out.is_empty() {
                shared.inbox[p].lock().expect("inbox").append(out);
            }
        }
        shared.barrier.wait();
    }
    (part.counters, part.closed, part.now, busy.as_nanos() as u64)
}

/// What a thread hands back: its counters, the links its routers closed,
/// its clock, and the nanoseconds it spent running events.
type Done = (EngineCounters, Vec<LinkId>, SimTime, u64);

/// A barrier that spins (then yields) instead of sleeping: waits at a
/// window's end are tens of microseconds, about a futex wake-up.
struct SpinBarrier {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(parties: usize) -> Self {
        SpinBarrier {
            parties,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            // Spin briefly, then yield: on a machine shared with other
            // work the thread we wait for may be waiting for our core, and
            // with nothing else to run a yield costs well under a microsecond.
            if spins < 256 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Which nodes' events a [`Part`] queues itself (the rest go to `out`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mine {
    All,
    Nothing,
    Part(u8),
}

/// The nodes one thread runs (all of them outside parallel windows), with
/// their queue; events for other nodes go to `out`.
struct Part<'a> {
    /// The nodes of this part (see [`PartNodes`]): events are queued at
    /// their node's owner, and handling one touches no other node (a link's
    /// far end hears of anything through an event). Outside parallel runs
    /// one `Part` holds every node.
    nodes: PartNodes<'a, Node>,
    owner: &'a [u8],
    /// Nodes whose events go straight into `queue`.
    mine: Mine,
    queue: &'a mut TwoLaneQueue<Ev>,
    out: Vec<Outgoing>,
    params: &'a [LinkParams],
    keys: &'a [PublicKey],
    pings: &'a PingTracker,
    counters: EngineCounters,
    /// Links a router closed: they leave the topology after the run.
    closed: Vec<LinkId>,
    seed: u64,
    now: SimTime,
    /// Nodes with router output to drain (a work list instead of recursion,
    /// since closing a peering touches the other end).
    dirty: Vec<NodeId>,
}

impl Part<'_> {
    fn node(&mut self, n: NodeId) -> &mut Node {
        debug_assert!(self.mine(n) || self.mine == Mine::Nothing);
        self.nodes.get(n)
    }

    fn mine(&self, n: NodeId) -> bool {
        match self.mine {
            Mine::All => true,
            Mine::Nothing => false,
            Mine::Part(p) => part_of(self.owner, n) == p as usize,
        }
    }

    fn push(&mut self, key: Key, near: bool, ev: Ev) {
        if self.mine(ev.node()) {
            if near {
                self.queue.push_near(key, ev);
            } else {
                self.queue.push_far(key, ev);
            }
        } else {
            self.out.push(Outgoing { key, near, ev });
        }
    }

    /// Processes every queued event before `end`.
    fn run(&mut self, end: SimTime) {
        while let Some(at) = self.queue.peek_time() {
            if at >= end {
                break;
            }
            let (at, ev) = self.queue.pop().expect("peeked");
            #[cfg(feature = "prefetch")]
            self.prefetch_next();
            self.now = at;
            self.counters.events += 1;
            self.node(ev.node()).events += 1;
            match ev {
                Ev::Timer(n) => self.fire_timer(n as NodeId, at),
                Ev::Arrive {
                    link,
                    to,
                    port,
                    frames,
                } => self.arrive(link, to as NodeId, port as Port, frames),
                Ev::TxDone { link, node, port } => {
                    let n = node as NodeId;
                    if let Some(s) = self.node(n).port_mut(port as Port) {
                        if s.link == link {
                            s.busy = false;
                            self.transmit(n, port as Port);
                            self.settle(n);
                        }
                    }
                }
                Ev::Closed { link, to, port } => {
                    let n = to as NodeId;
                    if self.unplug(n, port as Port, link) {
                        self.settle(n);
                    }
                }
            }
        }
    }

    #[cfg(feature = "prefetch")]
    /// Prefetching as a three-stage pipeline (see [`crate::prefetch`]), so
    /// that each load has had two events' time to arrive before anything
    /// reads it:
    /// 1. the event after next but one: start loading its node (router and
    ///    port slots included) and its first frame's head;
    /// 2. the event after next: ask its router (loaded by stage 1) to start
    ///    loading the route-table and SNEK-index lines a bootstrap's
    ///    searches will read;
    /// 3. the next event: ask its router to start loading what it reaches
    ///    through pointers (the receiving peer's entry, the SNEK index, a
    ///    bootstrap's route and index entries, found in the lines of
    ///    stage 2).
    ///
    /// If handling this event queues an earlier one, the hints are merely
    /// wasted.
    fn prefetch_next(&self) {
        let [next, after, third] = self.queue.peek3();
        for ev in [after, third].into_iter().flatten() {
            if let Some(node) = self.nodes.peek(ev.node()) {
                prefetch(node);
            }
        }
        if let Some(Ev::Arrive { frames, .. }) = third {
            if let Some(f) = frames.first() {
                prefetch(&f[..f.len().min(64)]);
            }
        }
        if let Some(Ev::Arrive { to, frames, .. }) = after {
            if let (Some(node), Some(f)) = (self.nodes.peek(*to as NodeId), frames.first()) {
                if let Some(r) = &node.router {
                    r.prefetch_route_search(f);
                }
            }
        }
        if let Some(Ev::Arrive {
            to, port, frames, ..
        }) = next
        {
            if let Some(node) = self.nodes.peek(*to as NodeId) {
                if let Some(r) = &node.router {
                    match frames.first() {
                        Some(f) => r.prefetch_for_frame(*port as Port, f),
                        None => r.prefetch_for_port(*port as Port),
                    }
                }
            }
        }
    }

    fn fire_timer(&mut self, n: NodeId, at: SimTime) {
        let now = router_time(self.now);
        let node = self.node(n);
        if node.timer_at != Some(at) {
            return; // superseded by an earlier timer, or the node went down
        }
        node.timer_at = None;
        let Some(r) = node.router.as_mut() else {
            return;
        };
        if r.poll_timeout() <= now {
            r.handle_timeout(now);
            node.fired_ms = Some(now.as_unix_millis());
            self.counters.timers_fired += 1;
        }
        self.settle(n);
    }

    fn arrive(&mut self, link: u32, to: NodeId, port: Port, frames: Frames) {
        let now = router_time(self.now);
        for frame in frames {
            let node = self.nodes.get(to);
            if node.port(port).is_none_or(|s| s.link != link) {
                return; // the link went down while these were in flight
            }
            self.pings.on_traverse(&frame);
            node.counters.frames_received += 1;
            self.counters.frames_delivered += 1;
            if let Some(f) = node.filter.as_mut() {
                if f.drop_frame(&frame) {
                    node.counters.frames_filtered += 1;
                    continue;
                }
            }
            let Some(r) = node.router.as_mut() else {
                return;
            };
            r.receive_frame_owned(now, port, frame);
            // A frame can make the router close this very link; later frames
            // of the batch then have nowhere to go (checked above).
            self.settle(to);
        }
    }

    /// Brings up a link's two ends (between runs). Returns the ports.
    fn connect(
        &mut self,
        a: NodeId,
        b: NodeId,
        link: u32,
        params: u8,
        peer_type: PeerType,
    ) -> Option<(Port, Port)> {
        let now = router_time(self.now);
        let (ka, kb) = (self.nodes.get(a).key, self.nodes.get(b).key);
        let Ok(pa) = self
            .nodes
            .get(a)
            .router
            .as_mut()
            .expect("up")
            .peer_connected(now, kb, peer_type, "sim")
        else {
            self.counters.links_refused += 1;
            return None;
        };
        let Ok(pb) = self
            .nodes
            .get(b)
            .router
            .as_mut()
            .expect("up")
            .peer_connected(now, ka, peer_type, "sim")
        else {
            self.counters.links_refused += 1;
            self.nodes
                .get(a)
                .router
                .as_mut()
                .expect("up")
                .peer_disconnected(now, pa);
            self.settle(a);
            return None;
        };
        let slot = |to: NodeId, to_port: Port, dir: u8| PortSlot {
            link,
            to: to as u32,
            to_port: to_port as u8,
            dir,
            busy: false,
            params,
            last_arrival: 0,
        };
        self.nodes.get(a).set_port(pa, slot(b, pb, 0));
        self.nodes.get(b).set_port(pb, slot(a, pa, 1));
        self.settle(a);
        self.settle(b);
        Some((pa, pb))
    }

    /// Takes `n`'s end of `link` (on `port`) down, if it is still there, and
    /// tells its router.
    fn unplug(&mut self, n: NodeId, port: Port, link: u32) -> bool {
        let now = router_time(self.now);
        let node = self.node(n);
        if node.port(port).is_none_or(|s| s.link != link) {
            return false;
        }
        node.set_port(port, PortSlot::default());
        if let Some(r) = node.router.as_mut() {
            r.peer_disconnected(now, port);
        }
        self.dirty.push(n);
        true
    }

    /// Pulls frames for `n`'s end of the link on `port` from its router.
    fn transmit(&mut self, n: NodeId, port: Port) {
        let node = self.nodes.get(n);
        let Some(slot) = node
            .ports
            .get_mut(port as usize)
            .filter(|s| s.link != 0 && !s.busy)
        else {
            return;
        };
        let Some(router) = node.router.as_mut() else {
            return;
        };
        let l = &self.params[slot.params as usize];
        let (link, dir) = (slot.link, slot.dir);
        let (to, to_port) = (slot.to, slot.to_port);
        let now = router_time(self.now);
        let counters = &mut node.counters;
        let mut count = |f: &[u8]| {
            if f.get(5) == Some(&3) {
                counters.traffic_bytes_sent += f.len() as u64;
            } else {
                counters.control_bytes_sent += f.len() as u64;
                counters.control_frames_sent += 1;
            }
        };
        let seed = self.seed;
        let u = |t: SimTime, salt: u64| sample(seed, link as LinkId, dir, t, salt);
        let mut fifo = |ready: SimTime, delay: SimTime| {
            let at = (ready + delay).max(slot.last_arrival);
            slot.last_arrival = at;
            at
        };
        let mut tx_done = None;
        let arrival = if l.unlimited() {
            // No serialisation delay: everything queued leaves now, as one batch.
            let mut frames = Frames::new();
            let mut i = 0;
            while let Some(f) = router.poll_transmit(now, port) {
                count(&f);
                i += 1;
                if l.lost(u(self.now, i)) {
                    self.counters.frames_lost += 1;
                } else {
                    frames.push(f);
                }
            }
            if frames.is_empty() {
                None
            } else {
                let at = fifo(self.now, l.delay(u(self.now, 0)));
                Some((at, frames))
            }
        } else {
            let Some(f) = router.poll_transmit(now, port) else {
                return;
            };
            count(&f);
            let ser = l.serialisation(f.len());
            tx_done = Some(self.now + ser);
            if l.lost(u(self.now, 1)) {
                self.counters.frames_lost += 1;
                None
            } else {
                let at = fifo(self.now + ser, l.delay(u(self.now, 0)));
                Some((at, smallvec![f]))
            }
        };
        if let Some(at) = tx_done {
            slot.busy = true;
            let key = node.next_key(n, at);
            self.push(
                key,
                true,
                Ev::TxDone {
                    link,
                    node: n as u32,
                    port: port as u8,
                },
            );
        }
        if let Some((at, frames)) = arrival {
            let key = self.nodes.get(n).next_key(n, at);
            self.push(
                key,
                true,
                Ev::Arrive {
                    link,
                    to,
                    port: to_port,
                    frames,
                },
            );
        }
    }

    /// Drains a router's actions (and those of any node they touch) and
    /// re-arms timers.
    fn settle(&mut self, n: NodeId) {
        self.dirty.push(n);
        while let Some(n) = self.dirty.pop() {
            self.drain(n);
        }
    }

    fn drain(&mut self, n: NodeId) {
        while let Some(action) = self.node(n).router.as_mut().and_then(Router::poll_action) {
            match action {
                Action::Wake { port } => self.transmit(n, port),
                Action::Deliver { payload, .. } => {
                    if let Some((to, pong)) = self.pings.on_deliver(n, &payload, self.now) {
                        let key = self.keys[to];
                        let now = router_time(self.now);
                        if let Some(r) = self.node(n).router.as_mut() {
                            let _ = r.send(now, key, pong);
                        }
                    }
                }
                Action::ClosePeer { port, .. } => {
                    self.counters.peers_closed_by_router += 1;
                    let now = router_time(self.now);
                    let node = self.node(n);
                    let slot = node.port(port);
                    if slot.is_some() {
                        node.set_port(port, PortSlot::default());
                    }
                    if let Some(r) = node.router.as_mut() {
                        r.peer_disconnected(now, port);
                    }
                    if let Some(s) = slot {
                        // The other end hears of it one link latency later,
                        // as a closed stream would tell it; what it sends in
                        // the meantime is discarded on arrival.
                        let at = self.now + self.params[s.params as usize].delay(0.0);
                        let key = self.node(n).next_key(n, at);
                        let ev = Ev::Closed {
                            link: s.link,
                            to: s.to,
                            port: s.to_port,
                        };
                        self.push(key, true, ev);
                        self.closed.push(s.link as LinkId);
                    }
                }
                Action::Event(Event::RootChanged { .. } | Event::ParentChanged { .. }) => {
                    self.node(n).tree_changes += 1;
                    let c = &mut self.counters.last_tree_change;
                    *c = (*c).max(self.now);
                }
                Action::Event(_) => {}
            }
        }
        self.arm_timer(n);
    }

    fn arm_timer(&mut self, n: NodeId) {
        let now = self.now;
        let node = self.node(n);
        let Some(r) = node.router.as_ref() else {
            return;
        };
        let deadline = r.poll_timeout();
        let mut at = sim_time(deadline).max(now);
        // Still due in the millisecond we just handled (e.g. a keepalive
        // waiting behind a busy link): look again next millisecond rather
        // than spinning at this instant.
        if node
            .fired_ms
            .is_some_and(|ms| deadline.as_unix_millis() <= ms)
        {
            at = at.max((now / MICROS_PER_MILLI + 1) * MICROS_PER_MILLI);
        }
        if node.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        node.timer_at = Some(at);
        let key = node.next_key(n, at);
        self.push(key, false, Ev::Timer(n as u32));
    }
}
