//! The spanning tree: root election, announcements, parent selection and
//! greedy tree routing (reference §3.1).

use std::cmp::Ordering;

use super::peers::{PeerView, StoredAnnouncement};
use super::{
    Event, NextHop, Router, Time, ANNOUNCEMENT_INTERVAL, ANNOUNCEMENT_TIMEOUT, REPARENT_WAIT,
};
use crate::key::PublicKey;
use crate::wire::announcement_encode_hop as encode_hop;
use crate::wire::{
    announcement_frame, tree_distance, AnnouncementError, Hop, Port, Root, SwitchAnnouncement,
};

/// Verified announcement prefixes remembered before the cache is reset.
const VERIFIED_PREFIX_CAP: usize = 4096;

/// What to do with a stored announcement (the reference's decision table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnouncementAction {
    Drop,
    /// Re-sign the parent's new announcement and send it to every peer.
    AcceptUpdate,
    /// Adopt the sender as parent at once and tell every peer.
    AcceptNewParent,
    /// Same root: see whether another peer now makes a better parent.
    SelectNewParent,
    /// Bad news from the parent: become root, wait 1 s, then reselect.
    SelectNewParentWithWait,
    /// The sender follows a weaker root: tell it about ours.
    InformPeerOfStrongerRoot,
}

/// The decision table of §3.1.3, rows evaluated in order.
pub fn announcement_action(
    from_parent: bool,
    contains_our_key: bool,
    root_delta: Ordering,
    new_seq: u64,
    last_seq: u64,
) -> AnnouncementAction {
    use AnnouncementAction::*;
    if from_parent {
        match root_delta {
            _ if contains_our_key => SelectNewParentWithWait,
            Ordering::Less => SelectNewParentWithWait,
            // The parent re-signing the same update after changing its own
            // parent counts as bad news.
            Ordering::Equal if new_seq == last_seq => SelectNewParentWithWait,
            Ordering::Greater => AcceptUpdate,
            Ordering::Equal if new_seq > last_seq => AcceptUpdate,
            Ordering::Equal => Drop,
        }
    } else {
        match root_delta {
            _ if contains_our_key => Drop,
            Ordering::Greater => AcceptNewParent,
            Ordering::Less => InformPeerOfStrongerRoot,
            Ordering::Equal => SelectNewParent,
        }
    }
}

/// One peer's stored announcement as a parent candidate.
#[derive(Clone, Copy, Debug)]
pub struct ParentCandidate {
    pub root: Root,
    pub age: std::time::Duration,
    pub receive_order: u64,
    pub contains_our_key: bool,
}

/// §3.1.4: is `c` a better parent than the best so far (`best_root`, `best_order`)?
pub fn is_better_parent_candidate(c: &ParentCandidate, best_root: Root, best_order: u64) -> bool {
    if c.age >= ANNOUNCEMENT_TIMEOUT || c.contains_our_key {
        return false;
    }
    match c.root.key.cmp(&best_root.key) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => match c.root.seq.cmp(&best_root.seq) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => c.receive_order < best_order,
        },
    }
}

/// §3.1.6: greedy tree routing. Returns the next hop for destination
/// coordinates `dest`, or `None` if no peer is strictly closer than we are.
///
/// Go's tie-break between equally close peers never fires (random choice); we
/// apply the documented one: lower peer type, then earlier announcement.
pub fn tree_next_hop(
    our_coords: &[Port],
    dest: &[Port],
    from: NextHop,
    our_root: Root,
    peers: &[PeerView<'_>],
) -> Option<NextHop> {
    if our_coords == dest {
        return Some(NextHop::Local);
    }
    let our_dist = tree_distance(our_coords, dest);
    if our_dist == 0 {
        return Some(NextHop::Local);
    }
    let mut best: Option<&PeerView<'_>> = None;
    let mut best_dist = our_dist;
    for p in peers {
        let Some(ann) = p.announcement else { continue };
        if from == NextHop::Peer(p.port) || ann.root != our_root {
            continue;
        }
        // The peer's coordinates are its announcement's ports minus the last.
        let n = ann.hops.len().saturating_sub(1);
        let common = ann.hops[..n]
            .iter()
            .zip(dest)
            .take_while(|(h, d)| h.port == **d)
            .count();
        let dist = n + dest.len() - 2 * common;
        let better = match best {
            _ if dist < best_dist => true,
            Some(b) if dist == best_dist => {
                (p.peer_type, p.receive_order) < (b.peer_type, b.receive_order)
            }
            _ => false,
        };
        if better {
            best = Some(p);
            best_dist = dist;
        }
    }
    best.map(|p| NextHop::Peer(p.port))
}

impl Router {
    /// The stored announcement of our parent, if we have one.
    pub(super) fn parent_announcement(&self) -> Option<&StoredAnnouncement> {
        self.peer(self.parent?)?.announcement.as_ref()
    }

    /// The root we follow: our parent's, or ourselves with our own sequence.
    pub(super) fn current_root(&self) -> Root {
        match self.parent_announcement() {
            Some(a) => a.ann.root,
            None => Root {
                key: self.key,
                seq: self.sequence,
            },
        }
    }

    /// The announcement we re-sign for each peer.
    fn root_announcement(&self) -> SwitchAnnouncement {
        match self.parent_announcement() {
            Some(a) => a.ann.clone(),
            None => SwitchAnnouncement::new(self.current_root()),
        }
    }

    pub(super) fn set_parent(&mut self, parent: Option<Port>) {
        let old_root = self.current_root().key;
        let changed = self.parent != parent;
        self.parent = parent;
        self.snek_index = None;
        if changed {
            let key = parent.and_then(|p| self.peer(p)).map(|p| p.key);
            self.event(Event::ParentChanged { parent: key });
        }
        self.note_root(old_root);
    }

    /// Flushes the coordinate cache and reports when the root key changed.
    fn note_root(&mut self, old_root: PublicKey) {
        let root = self.current_root().key;
        if root != old_root {
            self.coords_cache.clear();
            self.event(Event::RootChanged { root });
        }
    }

    /// Runs at start and every 30 minutes: a root announces a new sequence.
    pub(super) fn maintain_tree(&mut self, now: Time) {
        self.next_tree_maintenance = now + ANNOUNCEMENT_INTERVAL;
        if self.parent.is_none() {
            self.sequence += 1;
            // Our root changed: the index caches it (see `ensure_snek_index`).
            self.snek_index = None;
            self.send_announcements_to_all();
        }
    }

    fn become_root(&mut self, now: Time) {
        if self.parent.is_none() {
            return;
        }
        self.set_parent(None);
        self.maintain_tree(now);
    }

    pub(super) fn send_announcement_to(&mut self, port: Port) {
        let ann = self.root_announcement();
        self.send_announcement(&ann, port);
    }

    fn send_announcement(&mut self, ann: &SwitchAnnouncement, port: Port) {
        self.send_announcement_to_ports(ann, &[port]);
    }

    fn send_announcements_to_all(&mut self) {
        let ann = self.root_announcement();
        let ports: smallvec::SmallVec<[Port; 8]> = self.started_peers().map(|(p, _)| p).collect();
        self.send_announcement_to_ports(&ann, &ports);
    }

    /// Appends our hop for each port and queues the frames. Our signature
    /// covers only the bytes before our hop, not the port, so one signature
    /// serves every peer (Ed25519 is deterministic: Go's per-peer signatures
    /// are byte-identical).
    fn send_announcement_to_ports(&mut self, ann: &SwitchAnnouncement, ports: &[Port]) {
        let mut prefix = Vec::with_capacity(ann.encoded_len());
        ann.encode_into(&mut prefix);
        let signature = if self.config.signatures {
            self.identity.sign(&prefix)
        } else {
            [0; 64]
        };
        for &port in ports {
            let hop = Hop {
                port,
                key: self.key,
                signature,
            };
            // A path too deep to fit a frame cannot be extended; the peer will
            // time that root out rather than receive a truncated frame.
            if let Ok(bytes) = announcement_frame(&prefix, &hop) {
                self.stats.announcements_sent += 1;
                self.enqueue_proto(port, bytes);
            }
        }
    }

    /// Checks an announcement's hop signatures, skipping the longest prefix
    /// already verified: most announcements repeat a path we have seen, so
    /// only the last hop or two need an Ed25519 verification.
    fn verify_announcement(&mut self, ann: &SwitchAnnouncement) -> Result<(), AnnouncementError> {
        use sha2::{Digest, Sha256};
        let mut buf = Vec::with_capacity(ann.encoded_len());
        buf.extend_from_slice(&ann.root.key.0);
        crate::wire::varint::put_varint(&mut buf, ann.root.seq);
        let mut hasher = Sha256::new();
        hasher.update(&buf);
        let mut digests: smallvec::SmallVec<[[u8; 32]; 8]> = smallvec::SmallVec::new();
        let mut starts: smallvec::SmallVec<[usize; 8]> = smallvec::SmallVec::new();
        for hop in &ann.hops {
            starts.push(buf.len());
            let from = buf.len();
            encode_hop(hop, &mut buf);
            hasher.update(&buf[from..]);
            digests.push(hasher.clone().finalize().into());
        }
        let known = digests
            .iter()
            .rposition(|d| self.verified_prefixes.contains(d))
            .map_or(0, |i| i + 1);
        for i in known..ann.hops.len() {
            let hop = &ann.hops[i];
            if !hop.key.verify(&buf[..starts[i]], &hop.signature) {
                return Err(AnnouncementError::BadSignature(i));
            }
        }
        if self.verified_prefixes.len() > VERIFIED_PREFIX_CAP {
            self.verified_prefixes.clear();
        }
        self.verified_prefixes
            .extend(digests[known..].iter().copied());
        Ok(())
    }

    /// §3.1.3. An `Err` closes the peering.
    pub(super) fn handle_announcement(
        &mut self,
        now: Time,
        port: Port,
        ann: SwitchAnnouncement,
    ) -> Result<(), String> {
        let peer_key = self.peer(port).ok_or("unknown port")?.key;
        // Structure first: it is cheap and rejects most garbage before any crypto.
        ann.sanity_check(peer_key)
            .map_err(|e| format!("bad tree announcement: {e}"))?;
        if self.config.signatures {
            self.verify_announcement(&ann)
                .map_err(|e| format!("bad tree announcement: {e}"))?;
        }

        let peer = self.peer(port).ok_or("unknown port")?;
        let first = match &peer.announcement {
            Some(old) if old.ann.root.key == ann.root.key && ann.root.seq < old.ann.root.seq => {
                return Err("tree announcement replays an old root sequence".into());
            }
            Some(_) => false,
            None => true,
        };
        // A wake-up broadcast tells a brand-new neighbour we exist, unless
        // another link to the same node already did.
        let send_broadcast = first
            && !self.started_peers().any(|(p, other)| {
                p != port && other.key == peer_key && other.announcement.is_some()
            });

        let last = self.current_root();
        let old_root = last.key;
        let root_delta = ann.root.key.cmp(&last.key);
        let contains_our_key = ann.contains(&self.key);
        let new_seq = ann.root.seq;

        self.ordering += 1;
        let stored = StoredAnnouncement {
            ann,
            receive_time: now,
            receive_order: self.ordering,
        };
        self.peer_mut(port).expect("checked").announcement = Some(stored);
        self.snek_index = None;

        if self.reparent_at.is_none() {
            let from_parent = self.parent == Some(port);
            match announcement_action(from_parent, contains_our_key, root_delta, new_seq, last.seq)
            {
                AnnouncementAction::Drop => {}
                AnnouncementAction::AcceptUpdate => {
                    self.send_announcements_to_all();
                    self.note_root(old_root);
                }
                AnnouncementAction::AcceptNewParent => {
                    self.set_parent(Some(port));
                    self.send_announcements_to_all();
                }
                AnnouncementAction::SelectNewParent => {
                    if self.select_new_parent(now) {
                        self.bootstrap_soon(now);
                    }
                }
                AnnouncementAction::SelectNewParentWithWait => {
                    self.reparent_at = Some(now + REPARENT_WAIT);
                    self.become_root(now);
                }
                AnnouncementAction::InformPeerOfStrongerRoot => {
                    if !first {
                        self.send_announcement_to(port);
                    }
                }
            }
        }

        if send_broadcast {
            if let Some(frame) = self.broadcast_frame(now) {
                self.enqueue_proto(port, frame);
            }
        }
        Ok(())
    }

    /// §3.1.4. Returns true if we switched to a different parent.
    pub(super) fn select_new_parent(&mut self, now: Time) -> bool {
        let mut best_root = self.current_root();
        if best_root.key < self.key {
            best_root = Root {
                key: self.key,
                seq: 0,
            };
        }
        let mut best_order = u64::MAX;
        let mut best_port = None;
        for (port, peer) in self.started_peers() {
            let Some(a) = &peer.announcement else {
                continue;
            };
            let c = ParentCandidate {
                root: a.ann.root,
                age: now.since(a.receive_time),
                receive_order: a.receive_order,
                contains_our_key: a.ann.contains(&self.key),
            };
            if is_better_parent_candidate(&c, best_root, best_order) {
                best_root = c.root;
                best_order = c.receive_order;
                best_port = Some(port);
            }
        }
        match best_port {
            Some(port) if Some(port) != self.parent => {
                self.set_parent(Some(port));
                self.send_announcements_to_all();
                true
            }
            Some(_) => false,
            None => {
                self.become_root(now);
                false
            }
        }
    }

    /// Greedy tree next hop for `dest` from the router's current state.
    pub(super) fn tree_next_hop_for(&self, dest: &[Port], from: NextHop) -> Option<NextHop> {
        let coords = self.coords();
        tree_next_hop(
            &coords.0,
            dest,
            from,
            self.current_root(),
            &self.peer_views(),
        )
    }
}
