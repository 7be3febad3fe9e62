//! The discrete-event engine: routers, links and the event queue.
//!
//! Every input a router gets (a frame arriving, a peering coming up or going
//! down, a timer, a local send) is followed by [`Engine::settle`], which drains
//! the router's actions — transmitting frames onto links, recording
//! deliveries, tearing down peerings it asks to close — and re-arms its timer
//! at [`Router::poll_timeout`]. Nothing here reads a clock or iterates a hash
//! map, so one seed always replays the same run.

use std::collections::BTreeMap;

use smallvec::{smallvec, SmallVec};

use conifer_overlay::router::{Action, Event, PeerType, Router, RouterConfig};
use conifer_overlay::wire::Port;
use conifer_overlay::{Identity, PublicKey};

use crate::filter::DropFilter;
use crate::link::{sample, Direction, LinkParams};
use crate::ping::PingTracker;
use crate::prefetch::prefetch;
use crate::queue::TwoLaneQueue;
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

pub struct Node {
    pub identity: Identity,
    pub key: PublicKey,
    /// `None` while the node is offline.
    pub router: Option<Router>,
    /// Our port → link (0: none, as link ids start at 1), indexed by port.
    /// Looked up for every frame a router hands over; routers fill the lowest
    /// free port first, so most nodes' ports fit inline, in the cache lines
    /// the engine prefetches with the node.
    ports: SmallVec<[LinkId; 8]>,
    /// The earliest timer event queued for this node.
    timer_at: Option<SimTime>,
    /// Router millisecond at which `handle_timeout` last ran.
    fired_ms: Option<u64>,
    /// Adversaries filter what they receive before their router sees it.
    pub filter: Option<DropFilter>,
    pub honest: bool,
    pub counters: NodeCounters,
    /// Times this node's router changed root or parent.
    pub tree_changes: u64,
}

impl Node {
    fn port(&self, port: Port) -> Option<LinkId> {
        self.ports.get(port as usize).copied().filter(|&l| l != 0)
    }

    fn set_port(&mut self, port: Port, link: Option<LinkId>) {
        let i = port as usize;
        if self.ports.len() <= i {
            self.ports.resize(i + 1, 0);
        }
        self.ports[i] = link.unwrap_or(0);
    }
}

struct Link {
    /// `ends[d]` sends on direction `d`; `ends[d ^ 1]` receives.
    ends: [(NodeId, Port); 2],
    params: LinkParams,
    dirs: [Direction; 2],
}

/// Frames that travel together. Almost every batch is one frame (links are
/// drained as soon as a router queues something), so keep that one inline
/// rather than allocating a vector per link traversal.
type Frames = SmallVec<[Vec<u8>; 1]>;

enum Ev {
    Timer(NodeId),
    /// A batch of frames (in order) reaches the receiving end of `dir`.
    Arrive {
        link: LinkId,
        dir: u8,
        /// The receiving node (only for prefetching: the link decides).
        to: u32,
        frames: Frames,
    },
    /// Direction `dir` finished serialising a frame and can take the next.
    TxDone {
        link: LinkId,
        dir: u8,
    },
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

pub struct EngineConfig {
    pub router: RouterConfig,
    pub peer_type: PeerType,
    pub seed: u64,
}

pub struct Engine {
    now: SimTime,
    queue: TwoLaneQueue<Ev>,
    pub nodes: Vec<Node>,
    /// Indexed by [`LinkId`]: ids count up from 1 and are never reused (they
    /// seed the link model's samples), so a slot per id ever issued; a
    /// removed link leaves `None`. Looked up for every frame.
    links: Vec<Option<Link>>,
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
    /// Nodes with router output to drain (a work list instead of recursion,
    /// since closing a peering touches the other end).
    dirty: Vec<NodeId>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            now: 0,
            queue: TwoLaneQueue::default(),
            nodes: Vec::new(),
            links: vec![None],
            adj: Vec::new(),
            next_link: 1,
            live_links: 0,
            seed: config.seed,
            router_config: config.router,
            peer_type: config.peer_type,
            pings: PingTracker::default(),
            counters: EngineCounters::default(),
            dirty: Vec::new(),
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
        self.queue.len()
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
            filter: None,
            honest: true,
            counters: NodeCounters::default(),
            tree_changes: 0,
        });
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
        self.settle(n);
    }

    /// Takes a node offline: its links go down, its state is lost.
    pub fn node_down(&mut self, n: NodeId) {
        let neighbours: Vec<NodeId> = self.adj[n].keys().copied().collect();
        for m in neighbours {
            self.disconnect(n, m);
        }
        self.nodes[n].router = None;
        self.nodes[n].timer_at = None;
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
        let now = router_time(self.now);
        let (ka, kb) = (self.key(a), self.key(b));
        let peer_type = self.peer_type;
        let Ok(pa) = self.nodes[a]
            .router
            .as_mut()
            .expect("up")
            .peer_connected(now, kb, peer_type, "sim")
        else {
            self.counters.links_refused += 1;
            return false;
        };
        let Ok(pb) = self.nodes[b]
            .router
            .as_mut()
            .expect("up")
            .peer_connected(now, ka, peer_type, "sim")
        else {
            self.counters.links_refused += 1;
            self.nodes[a]
                .router
                .as_mut()
                .expect("up")
                .peer_disconnected(now, pa);
            self.settle(a);
            return false;
        };
        let id = self.next_link;
        self.next_link += 1;
        debug_assert_eq!(self.links.len() as LinkId, id);
        self.links.push(Some(Link {
            ends: [(a, pa), (b, pb)],
            params,
            dirs: [Direction::default(), Direction::default()],
        }));
        self.live_links += 1;
        self.nodes[a].set_port(pa, Some(id));
        self.nodes[b].set_port(pb, Some(id));
        self.adj[a].insert(b, id);
        self.adj[b].insert(a, id);
        self.settle(a);
        self.settle(b);
        true
    }

    /// Takes the link between `a` and `b` down; both routers are told.
    pub fn disconnect(&mut self, a: NodeId, b: NodeId) {
        if let Some(&id) = self.adj[a].get(&b) {
            self.remove_link(id);
            self.settle(a);
            self.settle(b);
        }
    }

    /// Frames in flight on a removed link are discarded when they "arrive".
    fn remove_link(&mut self, id: LinkId) {
        let Some(link) = self.links.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.live_links -= 1;
        let now = router_time(self.now);
        let [(a, pa), (b, pb)] = link.ends;
        self.adj[a].remove(&b);
        self.adj[b].remove(&a);
        for (n, p) in [(a, pa), (b, pb)] {
            self.nodes[n].set_port(p, None);
            if let Some(r) = self.nodes[n].router.as_mut() {
                r.peer_disconnected(now, p);
            }
            self.dirty.push(n);
        }
    }

    /// An application send from `from` to `to`'s key.
    pub fn send(&mut self, from: NodeId, to: PublicKey, payload: Vec<u8>) -> bool {
        let now = router_time(self.now);
        let Some(r) = self.nodes[from].router.as_mut() else {
            return false;
        };
        let ok = r.send(now, to, payload).is_ok();
        self.settle(from);
        ok
    }

    fn link(&self, id: LinkId) -> Option<&Link> {
        self.links.get(id as usize)?.as_ref()
    }

    fn link_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.links.get_mut(id as usize)?.as_mut()
    }

    /// Processes every event up to and including `until`, then sets the
    /// clock to `until`.
    pub fn run_until(&mut self, until: SimTime) {
        while let Some(at) = self.queue.peek_time() {
            if at > until {
                break;
            }
            let (at, ev) = self.queue.pop().expect("peeked");
            self.prefetch_next();
            self.now = at;
            self.counters.events += 1;
            match ev {
                Ev::Timer(n) => self.fire_timer(n, at),
                Ev::Arrive {
                    link, dir, frames, ..
                } => self.arrive(link, dir, frames),
                Ev::TxDone { link, dir } => {
                    if let Some(l) = self.link_mut(link) {
                        l.dirs[dir as usize].busy = false;
                        let sender = l.ends[dir as usize].0;
                        self.transmit(link, dir);
                        self.settle(sender);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Prefetching as a two-stage pipeline (see [`crate::prefetch`]): start
    /// loading the node (router included) and link of the event after next;
    /// for the next event, whose node was asked for one event ago, ask its
    /// router to start loading what it reaches through pointers (the
    /// receiving peer's entry, the SNEK index). If handling this event queues
    /// an earlier one, the hints are merely wasted.
    fn prefetch_next(&self) {
        let (next, after) = self.queue.peek2();
        for ev in [next, after].into_iter().flatten() {
            match ev {
                Ev::Timer(n) => prefetch(&self.nodes[*n]),
                Ev::Arrive { link, to, .. } => {
                    prefetch(&self.nodes[*to as NodeId]);
                    if let Some(l) = self.links.get(*link as usize) {
                        prefetch(l);
                    }
                }
                Ev::TxDone { .. } => {}
            }
        }
        if let Some(Ev::Arrive { link, dir, .. }) = next {
            if let Some(l) = self.link(*link) {
                let (to, port) = l.ends[*dir as usize ^ 1];
                if let Some(r) = &self.nodes[to].router {
                    r.prefetch_for_port(port);
                }
            }
        }
    }

    fn fire_timer(&mut self, n: NodeId, at: SimTime) {
        let node = &mut self.nodes[n];
        if node.timer_at != Some(at) {
            return; // superseded by an earlier timer, or the node went down
        }
        node.timer_at = None;
        let now = router_time(self.now);
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

    fn arrive(&mut self, link: LinkId, dir: u8, frames: Frames) {
        let Some(l) = self.link(link) else {
            return; // the link went down while these were in flight
        };
        let (to, port) = l.ends[dir as usize ^ 1];
        let now = router_time(self.now);
        for frame in frames {
            self.pings.on_traverse(&frame);
            let node = &mut self.nodes[to];
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
            // of the batch then have nowhere to go.
            self.settle(to);
            if self.link(link).is_none() {
                return;
            }
        }
    }

    /// Pulls frames for one direction of a link from the sender's router.
    fn transmit(&mut self, link: LinkId, dir: u8) {
        let Some(l) = self.links.get_mut(link as usize).and_then(Option::as_mut) else {
            return;
        };
        let d = dir as usize;
        if l.dirs[d].busy {
            return;
        }
        let (from, port) = l.ends[d];
        let to = l.ends[d ^ 1].0 as u32;
        let node = &mut self.nodes[from];
        let Some(router) = node.router.as_mut() else {
            return;
        };
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
        if l.params.unlimited() {
            // No serialisation delay: everything queued leaves now, as one batch.
            let mut frames = Frames::new();
            let mut i = 0;
            while let Some(f) = router.poll_transmit(now, port) {
                count(&f);
                i += 1;
                if l.params.lost(sample(self.seed, link, dir, self.now, i)) {
                    self.counters.frames_lost += 1;
                } else {
                    frames.push(f);
                }
            }
            if frames.is_empty() {
                return;
            }
            let delay = l.params.delay(sample(self.seed, link, dir, self.now, 0));
            let at = l.dirs[d].schedule(self.now, delay);
            self.queue.push_near(
                at,
                Ev::Arrive {
                    link,
                    dir,
                    to,
                    frames,
                },
            );
        } else {
            let Some(f) = router.poll_transmit(now, port) else {
                return;
            };
            count(&f);
            let ser = l.params.serialisation(f.len());
            l.dirs[d].busy = true;
            self.queue
                .push_near(self.now + ser, Ev::TxDone { link, dir });
            if l.params.lost(sample(self.seed, link, dir, self.now, 1)) {
                self.counters.frames_lost += 1;
            } else {
                let delay = l.params.delay(sample(self.seed, link, dir, self.now, 0));
                let at = l.dirs[d].schedule(self.now + ser, delay);
                self.queue.push_near(
                    at,
                    Ev::Arrive {
                        link,
                        dir,
                        to,
                        frames: smallvec![f],
                    },
                );
            }
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
        while let Some(action) = self.nodes[n].router.as_mut().and_then(Router::poll_action) {
            match action {
                Action::Wake { port } => {
                    if let Some(link) = self.nodes[n].port(port) {
                        let l = self.link(link).expect("ports only name live links");
                        let dir = if l.ends[0] == (n, port) { 0 } else { 1 };
                        self.transmit(link, dir);
                    }
                }
                Action::Deliver { payload, .. } => {
                    if let Some((to, pong)) = self.pings.on_deliver(n, &payload, self.now) {
                        let key = self.key(to);
                        let now = router_time(self.now);
                        if let Some(r) = self.nodes[n].router.as_mut() {
                            let _ = r.send(now, key, pong);
                        }
                    }
                }
                Action::ClosePeer { port, .. } => {
                    self.counters.peers_closed_by_router += 1;
                    if let Some(link) = self.nodes[n].port(port) {
                        self.remove_link(link);
                    } else if let Some(r) = self.nodes[n].router.as_mut() {
                        r.peer_disconnected(router_time(self.now), port);
                    }
                }
                Action::Event(Event::RootChanged { .. } | Event::ParentChanged { .. }) => {
                    self.nodes[n].tree_changes += 1;
                    self.counters.last_tree_change = self.now;
                }
                Action::Event(_) => {}
            }
        }
        self.arm_timer(n);
    }

    fn arm_timer(&mut self, n: NodeId) {
        let node = &mut self.nodes[n];
        let Some(r) = node.router.as_ref() else {
            return;
        };
        let deadline = r.poll_timeout();
        let mut at = sim_time(deadline).max(self.now);
        // Still due in the millisecond we just handled (e.g. a keepalive
        // waiting behind a busy link): look again next millisecond rather
        // than spinning at this instant.
        if node
            .fired_ms
            .is_some_and(|ms| deadline.as_unix_millis() <= ms)
        {
            at = at.max((self.now / MICROS_PER_MILLI + 1) * MICROS_PER_MILLI);
        }
        if node.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        node.timer_at = Some(at);
        self.queue.push_far(at, Ev::Timer(n));
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
