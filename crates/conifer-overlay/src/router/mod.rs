//! The Pinecone router as a sans-IO state machine.
//!
//! The driver (the tokio node, or the simulator) feeds it inputs — a peer
//! connected or disconnected, a frame received on a port, an application send,
//! a timer firing — each with the current [`Time`], and drains what it wants
//! done with [`Router::poll_action`] and [`Router::poll_transmit`]:
//!
//! * [`Action::Wake`]: a port has frames queued; call `poll_transmit(port)` until
//!   it returns `None` whenever the link can take more.
//! * [`Action::Deliver`]: a payload for the local application.
//! * [`Action::ClosePeer`]: the peer broke the protocol or went silent; close the
//!   stream, then report [`Router::peer_disconnected`].
//! * [`Action::Event`]: something an observer may want to know.
//!
//! Call [`Router::handle_timeout`] at [`Router::poll_timeout`].

mod broadcast;
mod forward;
mod key_search;
mod peers;
#[cfg(feature = "prefetch")]
pub mod prefetch;
mod queue;
mod route_table;
mod snek;
mod snek_index;
mod time;
mod tree;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

pub use peers::{PeerStats, PeerType, PeerView, PORT_COUNT};
pub use snek::{snek_next_hop, RouteView, SnekQuery};
pub use snek_index::{snek_next_hop_indexed, snek_next_hop_windowed, RouteWindow, SnekIndex};
pub use time::Time;
pub use tree::{
    announcement_action, is_better_parent_candidate, tree_next_hop, AnnouncementAction,
    ParentCandidate,
};

use crate::key::{Identity, PublicKey};
use crate::wire::{Coordinates, Frame, Port, Root, Watermark};
use peers::Peer;

/// Keepalive sent after this much write silence.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// A peer silent for this long is disconnected.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// A root re-announces (new sequence) this often.
pub const ANNOUNCEMENT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Stored announcements older than this are ignored when choosing a parent.
pub const ANNOUNCEMENT_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// After bad news from the parent, only store announcements for this long.
pub const REPARENT_WAIT: Duration = Duration::from_secs(1);
pub const SNEK_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
pub const SNEK_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(5);
/// SNEK routes and the descending entry expire this long after their last refresh.
pub const SNEK_EXPIRY: Duration = Duration::from_secs(10);
pub const COORDS_CACHE_LIFETIME: Duration = Duration::from_secs(60);
pub const COORDS_CACHE_CLEAN_INTERVAL: Duration = Duration::from_secs(60);
pub const BROADCAST_INTERVAL: Duration = Duration::from_secs(60);
/// A source's broadcasts are accepted at most once in this window.
pub const BROADCAST_FILTER: Duration = Duration::from_secs(30);
pub const BROADCAST_SEEN_EXPIRY: Duration = Duration::from_secs(180);

/// Tunables. `Default` is what a real network node wants.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Sign and verify announcements, bootstraps and broadcasts. Turning this off
    /// (zero signatures, like Go's `PINECONE_DISABLE_SIGNATURES`) is for
    /// simulations only; such a node cannot peer with a real network.
    pub signatures: bool,
    /// Decrement the traffic hop limit and drop at 1 (Dendrite turns this on;
    /// Go's default and ours is off).
    pub hop_limiting: bool,
    /// Send a wake-up broadcast every minute.
    pub wakeup_broadcasts: bool,
    /// Send keepalives and time out silent peers (off only for lossless
    /// in-process links, as the Go simulator does).
    pub keepalives: bool,
    /// Go delivers SNEK traffic that dead-ends at a node to that node's
    /// application even when the destination key is not its own. We drop such
    /// traffic unless this is set.
    pub deliver_misrouted: bool,
    /// Seeds the per-queue flow-hash offsets, so a simulation is reproducible.
    pub seed: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            signatures: true,
            hop_limiting: false,
            wakeup_broadcasts: true,
            keepalives: true,
            deliver_misrouted: false,
            seed: 0,
        }
    }
}

/// What the router wants its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Frames are waiting on this port: call [`Router::poll_transmit`].
    Wake {
        port: Port,
    },
    /// A traffic payload for the local application.
    Deliver {
        source: PublicKey,
        payload: Vec<u8>,
    },
    /// Close this peering; then call [`Router::peer_disconnected`].
    ClosePeer {
        port: Port,
        reason: String,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PeerAdded {
        port: Port,
        key: PublicKey,
    },
    PeerRemoved {
        port: Port,
        key: PublicKey,
    },
    /// The tree root key changed.
    RootChanged {
        root: PublicKey,
    },
    /// We chose a new parent, or (`None`) became a root.
    ParentChanged {
        parent: Option<PublicKey>,
    },
    /// A wake-up broadcast from `source` arrived: that node is reachable now.
    BroadcastReceived {
        source: PublicKey,
    },
}

/// Most nodes have a handful of peers: keep their views off the heap.
type PeerViews<'a> = smallvec::SmallVec<[PeerView<'a>; 8]>;

/// Where a frame goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// The local router (our application).
    Local,
    Peer(Port),
}

/// Why a local send was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("payload of {0} bytes does not fit in one frame")]
    TooLarge(usize),
}

/// All 253 peer ports are in use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no free switch ports: a router takes at most 253 peerings")]
pub struct NoFreePorts;

/// A SNEK route-table entry: "frames towards `key` go back via `source`".
#[derive(Clone, Debug, serde::Serialize)]
pub struct Route {
    pub source: Port,
    #[serde(skip)]
    pub destination: Option<NextHop>,
    pub watermark: Watermark,
    pub root: Root,
    #[serde(skip)]
    pub last_seen: Time,
}

/// Our keyspace predecessor as learned from its bootstraps.
#[derive(Clone, Debug)]
pub(crate) struct Descending {
    pub key: PublicKey,
    pub source: Port,
    pub root: Root,
    pub last_seen: Time,
}

/// Counters for benchmarks and the simulator.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct RouterStats {
    pub frames_received: u64,
    pub frames_sent: u64,
    pub bytes_sent_protocol: u64,
    pub bytes_sent_traffic: u64,
    pub traffic_delivered: u64,
    pub traffic_forwarded: u64,
    pub traffic_dropped_no_route: u64,
    pub traffic_dropped_watermark: u64,
    pub traffic_dropped_hop_limit: u64,
    pub traffic_dropped_queue: u64,
    pub traffic_dropped_misrouted: u64,
    pub bootstraps_sent: u64,
    pub bootstraps_dropped: u64,
    pub announcements_sent: u64,
    pub broadcasts_received: u64,
    pub peers_closed: u64,
}

/// A peer as reported by [`Router::peers`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    pub port: Port,
    pub key: PublicKey,
    pub peer_type: PeerType,
    pub zone: String,
    pub root: Option<Root>,
    pub coords: Option<Coordinates>,
    pub is_parent: bool,
    pub queued: usize,
    pub stats: PeerStats,
}

pub struct Router {
    identity: Identity,
    key: PublicKey,
    config: RouterConfig,
    /// Indexed by port, up to the highest port used so far; slot 0 (the
    /// local router) is always `None`. Ports are given lowest first, so most
    /// routers' slots fit inline, in the router's own cache lines: a frame's
    /// peer is found without first loading a separate array.
    peers: smallvec::SmallVec<[Option<Box<Peer>>; 8]>,
    parent: Option<Port>,
    /// Our own root sequence; survives resets.
    sequence: u64,
    /// Global announcement arrival counter.
    ordering: u64,
    /// Set while waiting to reparent after bad news.
    reparent_at: Option<Time>,
    next_tree_maintenance: Time,
    next_snek_maintenance: Time,
    last_bootstrap: Option<Time>,
    last_bootstrap_seq: u64,
    descending: Option<Descending>,
    routes: route_table::RouteTable,
    coords_cache: HashMap<PublicKey, (Coordinates, Time)>,
    next_coords_clean: Time,
    seen_broadcasts: HashMap<PublicKey, (u64, Time)>,
    next_broadcast: Option<Time>,
    actions: VecDeque<Action>,
    /// SNEK candidates sorted by key; `None` after any change to peers,
    /// announcements or the parent, rebuilt on the next SNEK decision.
    snek_index: Option<SnekIndex>,
    /// `current_root()` when `snek_index` was built; valid while it is `Some`.
    snek_root: Root,
    /// SHA-256 of announcement prefixes whose signatures we already checked.
    verified_prefixes: std::collections::HashSet<[u8; 32]>,
    rng: u64,
    stats: RouterStats,
    /// See [`Router::receive_frame_owned`].
    spare_buffer: Vec<u8>,
}

impl Router {
    pub fn new(identity: Identity, config: RouterConfig, now: Time) -> Self {
        let key = identity.public_key();
        let mut r = Router {
            identity,
            key,
            rng: config.seed ^ 0x9e37_79b9_7f4a_7c15,
            next_broadcast: config.wakeup_broadcasts.then(|| now + BROADCAST_INTERVAL),
            config,
            peers: smallvec::SmallVec::new(),
            parent: None,
            sequence: 0,
            ordering: 0,
            reparent_at: None,
            next_tree_maintenance: now,
            next_snek_maintenance: now,
            last_bootstrap: None,
            last_bootstrap_seq: 0,
            descending: None,
            routes: route_table::RouteTable::default(),
            coords_cache: HashMap::new(),
            next_coords_clean: now + COORDS_CACHE_CLEAN_INTERVAL,
            seen_broadcasts: HashMap::new(),
            actions: VecDeque::new(),
            verified_prefixes: std::collections::HashSet::new(),
            snek_index: None,
            snek_root: Root { key, seq: 0 },
            stats: RouterStats::default(),
            spare_buffer: Vec::new(),
        };
        r.start(now);
        r
    }

    /// Resets tree and SNEK state (at start, and when the last peer leaves);
    /// the root sequence counter is kept so our next announcement is fresh.
    fn start(&mut self, now: Time) {
        self.set_parent(None);
        self.set_descending(None, now);
        self.ordering = 0;
        self.reparent_at = None;
        self.routes.clear();
        self.coords_cache.clear();
        self.seen_broadcasts.clear();
        self.maintain_tree(now);
        self.next_snek_maintenance = now;
    }

    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// A new peering finished its handshake: give it a port and greet it with
    /// our current root announcement.
    pub fn peer_connected(
        &mut self,
        now: Time,
        key: PublicKey,
        peer_type: PeerType,
        zone: impl Into<String>,
    ) -> Result<Port, NoFreePorts> {
        let slot = (1..PORT_COUNT)
            .find(|&i| self.peers.get(i).is_none_or(Option::is_none))
            .ok_or(NoFreePorts)?;
        let port = slot as Port;
        let offset = self.next_random();
        self.snek_index = None;
        if self.peers.len() <= slot {
            self.peers.resize_with(slot + 1, || None);
        }
        self.peers[slot] = Some(Box::new(Peer::new(
            key,
            peer_type,
            zone.into(),
            now,
            offset,
        )));
        self.send_announcement_to(port);
        // A new link may offer a better SNEK path: refresh ours at the next tick.
        self.bootstrap_soon(now);
        self.event(Event::PeerAdded { port, key });
        Ok(port)
    }

    /// The driver's stream for `port` is gone (whoever closed it).
    pub fn peer_disconnected(&mut self, now: Time, port: Port) {
        let Some(peer) = self.peers.get_mut(port as usize).and_then(Option::take) else {
            return;
        };
        let key = peer.key;
        self.snek_index = None;
        if !peer.closing {
            self.port_disconnected(now, port);
        }
        self.event(Event::PeerRemoved { port, key });
    }

    /// Routing clean-up for a peering that went away.
    fn port_disconnected(&mut self, now: Time, port: Port) {
        let remaining = self.started_peers().count();
        if remaining == 0 {
            self.start(now);
            return;
        }
        if let Some(p) = self.peer_mut(port) {
            p.announcement = None;
        }
        self.snek_index = None;
        self.routes
            .retain(|_, r| r.source != port && r.destination != Some(NextHop::Peer(port)));
        if self.descending.as_ref().is_some_and(|d| d.source == port) {
            self.set_descending(None, now);
        }
        if self.parent == Some(port) && self.select_new_parent(now) {
            self.bootstrap_soon(now);
        }
        // Paths through the lost link are gone; re-announce ours at the next
        // tick rather than up to 5 s later (median mobility delivery 94 → 96 %).
        self.bootstrap_soon(now);
    }

    /// Asks the driver to close a misbehaving or silent peer, and forgets it for routing now.
    fn close_peer(&mut self, now: Time, port: Port, reason: String) {
        let Some(peer) = self.peer_mut(port) else {
            return;
        };
        if peer.closing {
            return;
        }
        peer.closing = true;
        self.snek_index = None;
        let peer = self.peer_mut(port).expect("just seen");
        peer.proto.clear();
        peer.traffic.clear();
        self.stats.peers_closed += 1;
        self.actions.push_back(Action::ClosePeer { port, reason });
        self.port_disconnected(now, port);
    }

    /// One whole frame (as split by [`crate::wire::Deframer`]) arrived on `port`.
    pub fn receive_frame(&mut self, now: Time, port: Port, bytes: &[u8]) {
        if self.peer(port).is_some_and(|p| p.started()) {
            self.receive_decoded(now, port, bytes.len(), Frame::decode(bytes));
        }
    }

    /// [`Router::receive_frame`] for a driver that is done with the buffer:
    /// the router keeps it to build its next relayed bootstrap in, saving an
    /// allocation and a free per hop, and writing into memory that is still
    /// in cache.
    pub fn receive_frame_owned(&mut self, now: Time, port: Port, bytes: Vec<u8>) {
        if self.peer(port).is_some_and(|p| p.started()) {
            let frame = Frame::decode(&bytes);
            let len = bytes.len();
            // Keep small buffers only: a bootstrap is about 200 bytes.
            if bytes.capacity() <= 1024 {
                self.spare_buffer = bytes;
            }
            self.receive_decoded(now, port, len, frame);
        }
    }

    /// A buffer for an outgoing frame: the last received one, if it was
    /// handed over, else a new one.
    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.spare_buffer);
        buf.clear();
        buf
    }

    fn receive_decoded(
        &mut self,
        now: Time,
        port: Port,
        len: usize,
        frame: Result<Frame, crate::wire::DecodeError>,
    ) {
        let Some(peer) = self.peer_mut(port).filter(|p| p.started()) else {
            return;
        };
        peer.last_received = now;
        peer.stats.rx_frames += 1;
        self.stats.frames_received += 1;
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return self.close_peer(now, port, format!("malformed frame: {e}")),
        };
        let peer = self.peer_mut(port).expect("checked above");
        if matches!(frame, Frame::Traffic(_)) {
            peer.stats.rx_bytes_traffic += len as u64;
        } else {
            peer.stats.rx_bytes_protocol += len as u64;
        }
        let result = match frame {
            Frame::Keepalive | Frame::Unknown { .. } => Ok(()),
            Frame::TreeAnnouncement(ann) => self.handle_announcement(now, port, ann),
            Frame::Bootstrap(b) => {
                self.handle_bootstrap(now, port, b);
                Ok(())
            }
            Frame::Traffic(t) => {
                self.forward_traffic(now, NextHop::Peer(port), t);
                Ok(())
            }
            Frame::WakeupBroadcast(b) => self.handle_broadcast(now, port, b),
        };
        if let Err(reason) = result {
            self.close_peer(now, port, reason);
        }
    }

    /// Next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next frame to write on `port`: protocol frames first, then traffic.
    /// `None` means the queue is empty; a new [`Action::Wake`] will follow when
    /// something is queued.
    pub fn poll_transmit(&mut self, now: Time, port: Port) -> Option<Vec<u8>> {
        let peer = self.peer_mut(port)?;
        let (frame, is_traffic) = match peer.proto.pop_front() {
            Some(f) => (f, false),
            None => match peer.traffic.pop() {
                Some(f) => (f, true),
                None => {
                    peer.wake_pending = false;
                    return None;
                }
            },
        };
        peer.last_sent = now;
        peer.stats.tx_frames += 1;
        if is_traffic {
            peer.stats.tx_bytes_traffic += frame.len() as u64;
            self.stats.bytes_sent_traffic += frame.len() as u64;
        } else {
            peer.stats.tx_bytes_protocol += frame.len() as u64;
            self.stats.bytes_sent_protocol += frame.len() as u64;
        }
        self.stats.frames_sent += 1;
        Some(frame)
    }

    /// When [`Router::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self.next_snek_maintenance.min(self.next_tree_maintenance);
        t = t.min(self.next_coords_clean);
        if let Some(r) = self.reparent_at {
            t = t.min(r);
        }
        if let Some(b) = self.next_broadcast {
            t = t.min(b);
        }
        if self.config.keepalives {
            for peer in self.started_peers_ref() {
                t = t.min(peer.last_sent + KEEPALIVE_INTERVAL);
                t = t.min(peer.last_received + PEER_TIMEOUT);
            }
        }
        t
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.config.keepalives {
            self.maintain_links(now);
        }
        if self.reparent_at.is_some_and(|t| t <= now) {
            self.reparent_at = None;
            if self.select_new_parent(now) {
                self.bootstrap_soon(now);
            }
        }
        if self.next_tree_maintenance <= now {
            self.maintain_tree(now);
        }
        if self.next_snek_maintenance <= now {
            self.next_snek_maintenance = now + SNEK_MAINTENANCE_INTERVAL;
            self.maintain_snek(now);
        }
        if self.next_coords_clean <= now {
            self.next_coords_clean = now + COORDS_CACHE_CLEAN_INTERVAL;
            self.coords_cache
                .retain(|_, (_, seen)| now.since(*seen) < COORDS_CACHE_LIFETIME);
        }
        if self.next_broadcast.is_some_and(|t| t <= now) {
            self.next_broadcast = Some(now + BROADCAST_INTERVAL);
            self.seen_broadcasts
                .retain(|_, (_, seen)| now.since(*seen) < BROADCAST_SEEN_EXPIRY);
            self.send_broadcast_to_all(now);
        }
    }

    /// Keepalives after write silence; close peers that went quiet.
    fn maintain_links(&mut self, now: Time) {
        let mut silent = Vec::new();
        for port in 1..PORT_COUNT as Port {
            let Some(peer) = self.peer_mut(port).filter(|p| p.started()) else {
                continue;
            };
            if now.since(peer.last_received) >= PEER_TIMEOUT {
                silent.push(port);
            } else if now.since(peer.last_sent) >= KEEPALIVE_INTERVAL
                && peer.proto.is_empty()
                && peer.traffic.len() == 0
            {
                // Counts as sent now, so one keepalive is queued per interval
                // even if the driver is slow to drain it.
                peer.last_sent = now;
                let keepalive = Frame::Keepalive.encode().expect("fits");
                self.enqueue_proto(port, keepalive);
            }
        }
        for port in silent {
            self.close_peer(now, port, "no frames for 5 seconds".into());
        }
    }

    /// Turns wake-up broadcasts on (sending one now) or off.
    pub fn set_wakeup_broadcasts(&mut self, now: Time, enabled: bool) {
        self.config.wakeup_broadcasts = enabled;
        if enabled {
            self.send_broadcast_to_all(now);
            self.next_broadcast = Some(now + BROADCAST_INTERVAL);
        } else {
            self.next_broadcast = None;
        }
    }

    pub fn set_hop_limiting(&mut self, enabled: bool) {
        self.config.hop_limiting = enabled;
    }

    // ---- introspection (the manhole) ----

    /// Our current tree root and its sequence.
    pub fn root(&self) -> Root {
        self.current_root()
    }

    /// Our parent's port and key, or `None` if we consider ourselves root.
    pub fn parent(&self) -> Option<(Port, PublicKey)> {
        let port = self.parent?;
        self.peer(port).map(|p| (port, p.key))
    }

    /// Our tree coordinates (empty at the root).
    pub fn coords(&self) -> Coordinates {
        self.parent_announcement()
            .map(|a| a.ann.coords())
            .unwrap_or_default()
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        (1..PORT_COUNT as Port)
            .filter_map(|port| {
                let p = self.peer(port).filter(|p| p.started())?;
                Some(PeerInfo {
                    port,
                    key: p.key,
                    peer_type: p.peer_type,
                    zone: p.zone.clone(),
                    root: p.announcement.as_ref().map(|a| a.ann.root),
                    coords: p.coords(),
                    is_parent: self.parent == Some(port),
                    queued: p.proto.len() + p.traffic.len(),
                    stats: p.stats,
                })
            })
            .collect()
    }

    /// SNEK routes currently valid, by bootstrapper key.
    pub fn routes(&self) -> impl Iterator<Item = (&PublicKey, Route)> {
        self.routes.iter().map(|(k, r)| (k, r.to_route(*k)))
    }

    /// Our keyspace predecessor, if a valid one has bootstrapped to us.
    pub fn descending(&self) -> Option<PublicKey> {
        self.descending.as_ref().map(|d| d.key)
    }

    /// Total frames queued across all peers (for the simulator's memory figures).
    pub fn queued_frames(&self) -> usize {
        self.started_peers_ref()
            .map(|p| p.proto.len() + p.traffic.len())
            .sum()
    }

    #[cfg(feature = "prefetch")]
    /// The first of two hints for drivers that know `frame` arrives soon,
    /// two steps before [`Router::prefetch_for_frame`]: for a bootstrap
    /// (which every hop looks up in its route table and SNEK index), asks
    /// the CPU to start loading where the searches for its key start.
    /// `frame` is the encoded frame, or at least its first 44 bytes, which
    /// the caller should have asked to be loaded a step earlier still.
    pub fn prefetch_route_search(&self, frame: &[u8]) {
        if let Some(key) = bootstrap_destination(frame) {
            self.routes.prefetch_search(&key);
            if let Some(index) = &self.snek_index {
                index.prefetch_search(&key);
            }
        }
    }

    #[cfg(feature = "prefetch")]
    /// [`Router::prefetch_for_port`], and for a bootstrap the route and
    /// index entries the searches for its key end on (reading the lines
    /// [`Router::prefetch_route_search`] asked for).
    pub fn prefetch_for_frame(&self, port: Port, frame: &[u8]) {
        self.prefetch_for_port(port);
        if let Some(key) = bootstrap_destination(frame) {
            self.routes.prefetch_entries(&key);
            if let Some(index) = &self.snek_index {
                index.prefetch_entries(&key);
            }
        }
    }

    #[cfg(feature = "prefetch")]
    /// A hint for drivers that know a frame for `port` comes next: asks the
    /// CPU to start loading the state receiving it will read first (the
    /// peer's entry and the SNEK index), so those loads overlap with other
    /// work. Changes nothing.
    pub fn prefetch_for_port(&self, port: Port) {
        if let Some(Some(peer)) = self.peers.get(port as usize) {
            prefetch::prefetch(&**peer);
        }
        if let Some(index) = &self.snek_index {
            index.prefetch();
        }
        // Most relayed bootstraps head for the root: the parent's entry and
        // send queue are the likeliest to be written next.
        if let Some(Some(parent)) = self.parent.and_then(|p| self.peers.get(p as usize)) {
            prefetch::prefetch(&**parent);
            prefetch::prefetch_start(parent.proto.as_slices().0);
        }
        prefetch::prefetch_start(self.actions.as_slices().0);
    }

    // ---- internals shared by the submodules ----

    fn peer(&self, port: Port) -> Option<&Peer> {
        self.peers.get(port as usize)?.as_deref()
    }

    fn peer_mut(&mut self, port: Port) -> Option<&mut Peer> {
        self.peers.get_mut(port as usize)?.as_deref_mut()
    }

    fn started_peers(&self) -> impl Iterator<Item = (Port, &Peer)> {
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_deref().filter(|p| p.started()).map(|p| (i as Port, p)))
    }

    fn started_peers_ref(&self) -> impl Iterator<Item = &Peer> {
        self.started_peers().map(|(_, p)| p)
    }

    /// Views of every started peer, for the pure next-hop functions.
    fn peer_views(&self) -> PeerViews<'_> {
        self.started_peers()
            .map(|(port, p)| PeerView {
                port,
                key: p.key,
                peer_type: p.peer_type,
                announcement: p.announcement.as_ref().map(|a| &a.ann),
                receive_order: p
                    .announcement
                    .as_ref()
                    .map_or(u64::MAX, |a| a.receive_order),
            })
            .collect()
    }

    fn event(&mut self, e: Event) {
        self.actions.push_back(Action::Event(e));
    }

    fn wake(&mut self, port: Port) {
        if let Some(peer) = self.peer_mut(port) {
            if !peer.wake_pending {
                peer.wake_pending = true;
                self.actions.push_back(Action::Wake { port });
            }
        }
    }

    fn enqueue_proto(&mut self, port: Port, frame: Vec<u8>) {
        let Some(peer) = self.peer_mut(port).filter(|p| p.started()) else {
            return;
        };
        if peer.proto.len() >= queue::PROTO_QUEUE_CAP {
            peer.proto.pop_front();
        }
        peer.proto.push_back(frame);
        self.wake(port);
    }

    fn enqueue_traffic(&mut self, port: Port, flow: u64, frame: Vec<u8>) {
        let Some(peer) = self.peer_mut(port).filter(|p| p.started()) else {
            return;
        };
        let dropped = peer.traffic.push(flow, frame) as u64;
        if dropped > 0 {
            peer.stats.traffic_dropped += dropped;
            self.stats.traffic_dropped_queue += dropped;
        }
        self.wake(port);
    }

    /// splitmix64: only for queue hash offsets, so no need for a real RNG crate.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(feature = "prefetch")]
/// The destination key of an encoded bootstrap frame, read without decoding
/// it (for prefetch hints: a wrong guess costs nothing).
fn bootstrap_destination(frame: &[u8]) -> Option<PublicKey> {
    use crate::wire::{FrameType, HEADER_LEN};
    const DESTINATION: std::ops::Range<usize> = HEADER_LEN + 2..HEADER_LEN + 34;
    if frame.get(5) != Some(&(FrameType::Bootstrap as u8)) {
        return None;
    }
    Some(PublicKey(frame.get(DESTINATION)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
