//! SNEK, the "virtual snake": keyspace routing over soft-state paths built by
//! periodic bootstraps (reference §3.2–§3.4).

use super::peers::PeerView;
use super::snek_index::{snek_next_hop_windowed, RouteWindow, SnekIndex};
use super::{Descending, NextHop, Route, Router, Time, SNEK_BOOTSTRAP_INTERVAL, SNEK_EXPIRY};
use crate::key::PublicKey;
use crate::wire::{Bootstrap, Frame, Port, Root, SignedPayload, Watermark};

/// `a < b < c`, strictly, with no wrap-around.
fn ordered(a: &PublicKey, b: &PublicKey, c: &PublicKey) -> bool {
    a < b && b < c
}

/// A valid route-table entry as the next-hop function sees it.
#[derive(Clone, Copy, Debug)]
pub struct RouteView {
    pub key: PublicKey,
    pub seq: u64,
    pub source: Port,
}

/// Everything the SNEK next-hop decision depends on.
pub struct SnekQuery<'a> {
    pub our_key: PublicKey,
    pub destination: PublicKey,
    pub bootstrap: bool,
    pub watermark: Watermark,
    /// Our parent's port, if we have one.
    pub parent: Option<Port>,
    pub root_key: PublicKey,
    pub peers: &'a [PeerView<'a>],
}

/// The best candidate so far in [`snek_next_hop`].
struct Best {
    key: PublicKey,
    seq: u64,
    hop: Option<NextHop>,
    /// Index into `peers` of the peer behind `hop`, if it has an announcement.
    ann: Option<usize>,
}

impl Best {
    fn set(&mut self, key: PublicKey, seq: u64, port: Port, peers: &[PeerView<'_>]) {
        self.key = key;
        self.seq = seq;
        self.hop = Some(NextHop::Peer(port));
        self.ann = peers
            .iter()
            .position(|p| p.port == port && p.announcement.is_some());
    }
}

/// §3.3, in its exact step order. Returns the next hop (`None`: nowhere, for
/// a bootstrap; `Local`: here) and the watermark the frame should carry on.
///
/// `routes` must come in ascending key order (as a `BTreeMap` yields them):
/// a route can only win if its key lies in `[destination, best)`, and the
/// lowest such key always wins, so the scan stops at the first one that can
/// no longer improve. Go scans its whole table in random order; the result is
/// the same.
pub fn snek_next_hop(
    q: &SnekQuery<'_>,
    routes: impl IntoIterator<Item = RouteView>,
) -> (Option<NextHop>, Watermark) {
    let dest = q.destination;
    // 0. Traffic for us stays here.
    if !q.bootstrap && dest == q.our_key {
        return (Some(NextHop::Local), q.watermark);
    }
    // 1. We are the candidate to beat; a bootstrap never stops at its origin.
    let mut best = Best {
        key: q.our_key,
        seq: 0,
        hop: (!q.bootstrap).then_some(NextHop::Local),
        ann: None,
    };
    // A "checked" candidate: an exact hit (not for bootstraps), or strictly
    // between the destination and the best so far, approaching from above.
    let checked = |c: &PublicKey, best: &Best| {
        (!q.bootstrap && *c == dest && best.key != dest) || ordered(&dest, c, &best.key)
    };

    // 2. Towards the root via the parent, then the parent's ancestors.
    if let Some(parent) = q
        .parent
        .and_then(|port| q.peers.iter().find(|p| p.port == port))
    {
        if (q.bootstrap && best.key == dest) || ordered(&best.key, &dest, &q.root_key) {
            best.set(q.root_key, 0, parent.port, q.peers);
        }
        for hop in parent.announcement.iter().flat_map(|a| &a.hops) {
            if checked(&hop.key, &best) {
                best.set(hop.key, 0, parent.port, q.peers);
            }
        }
    }
    // 3. Every peer's ancestry (its own key is its last signer).
    for p in q.peers {
        for hop in p.announcement.iter().flat_map(|a| &a.hops) {
            if checked(&hop.key, &best) {
                best.set(hop.key, 0, p.port, q.peers);
            }
        }
    }
    // 4. Prefer a direct link to the best key over a path through someone else.
    for p in q.peers {
        if p.announcement.is_some() && p.key == best.key {
            best.set(best.key, 0, p.port, q.peers);
        }
    }
    // 5. Soft routes lead back down towards bootstrappers, if fresh enough.
    for r in routes {
        if r.key < dest {
            continue;
        }
        if r.key > dest && r.key >= best.key {
            break;
        }
        let wm = Watermark {
            key: r.key,
            seq: r.seq,
        };
        if !wm.worse_than(&q.watermark) && checked(&r.key, &best) {
            best.set(r.key, r.seq, r.source, q.peers);
        }
    }
    // 6. Among links to the same node, prefer faster, then closer to the root.
    if let (Some(NextHop::Peer(_)), Some(mut cur)) = (best.hop, best.ann) {
        for (i, p) in q.peers.iter().enumerate() {
            let (Some(ann), Some(cur_ann)) = (p.announcement, q.peers[cur].announcement) else {
                continue;
            };
            let b = &q.peers[cur];
            if p.key == best.key
                && (p.peer_type < b.peer_type
                    || (p.peer_type == b.peer_type
                        && ann.root == cur_ann.root
                        && p.receive_order < b.receive_order))
            {
                cur = i;
                best.hop = Some(NextHop::Peer(p.port));
            }
        }
    }
    // 7. Go replaces the watermark unconditionally (reference §3.12).
    let watermark = Watermark {
        key: best.key,
        seq: best.seq,
    };
    (best.hop, watermark)
}

impl Router {
    /// SNEK next hop for `dest` from the router's current state, through the
    /// lazily rebuilt [`SnekIndex`].
    pub(super) fn snek_next_hop_for(
        &mut self,
        now: Time,
        dest: PublicKey,
        bootstrap: bool,
        watermark: Watermark,
    ) -> (Option<NextHop>, Watermark) {
        self.ensure_snek_index();
        let this: &Router = self;
        let index = this.snek_index.as_ref().expect("built above");
        let routes = |window: RouteWindow| {
            this.routes.range(window).filter_map(move |(key, r)| {
                debug_assert_eq!(
                    index.has_port(r.source),
                    this.peer(r.source).is_some_and(|p| p.started())
                );
                let live = now.since(r.last_seen) < SNEK_EXPIRY && index.has_port(r.source);
                live.then_some(RouteView {
                    key: *key,
                    seq: r.seq,
                    source: r.source,
                })
            })
        };
        snek_next_hop_windowed(index, dest, bootstrap, watermark, routes)
    }

    /// Rebuilds the [`SnekIndex`] if a change dropped it, and returns the
    /// root it was built for. Every change to what `current_root` reads (the
    /// parent, its announcement, our own sequence) drops the index, so while
    /// it exists this is `current_root()` without touching the parent's peer
    /// entry: one cache miss less per relayed bootstrap at simulation scale.
    pub(super) fn ensure_snek_index(&mut self) -> Root {
        if self.snek_index.is_none() {
            let root = self.current_root();
            let index = {
                let peers = self.peer_views();
                SnekIndex::build(self.key, root.key, self.parent, &peers)
            };
            self.snek_index = Some(index);
            self.snek_root = root;
        }
        debug_assert_eq!(self.snek_root, self.current_root());
        self.snek_root
    }

    /// "Bootstrap soon": at the next maintenance tick.
    pub(super) fn bootstrap_soon(&mut self, now: Time) {
        self.last_bootstrap = Some(now - SNEK_BOOTSTRAP_INTERVAL);
    }

    pub(super) fn set_descending(&mut self, d: Option<Descending>, now: Time) {
        let changed = match (&self.descending, &d) {
            (Some(old), Some(new)) => old.key != new.key,
            _ => true,
        };
        if changed {
            self.bootstrap_soon(now);
        }
        self.descending = d;
    }

    /// Every second: expire soft state, bootstrap every 5 s.
    pub(super) fn maintain_snek(&mut self, now: Time) {
        let root = self.current_root();
        if let Some(d) = &self.descending {
            if now.since(d.last_seen) >= SNEK_EXPIRY || d.root != root {
                self.set_descending(None, now);
            }
        }
        self.routes.expire(now);
        let due = self
            .last_bootstrap
            .is_none_or(|t| now.since(t) >= SNEK_BOOTSTRAP_INTERVAL);
        if due {
            self.bootstrap_now(now);
        }
    }

    /// Sends a bootstrap towards our own key to find our keyspace successor.
    fn bootstrap_now(&mut self, now: Time) {
        // The root has the highest key: there is nowhere to bootstrap to.
        if self.parent.is_none() {
            return;
        }
        // Unix milliseconds, kept strictly increasing even within one millisecond.
        let seq = now.as_unix_millis().max(self.last_bootstrap_seq + 1);
        self.last_bootstrap_seq = seq;
        let payload = SignedPayload::new(
            seq,
            self.current_root(),
            &self.identity,
            self.config.signatures,
        );
        let (hop, watermark) = self.snek_next_hop_for(now, self.key, true, Watermark::NONE);
        if let Some(NextHop::Peer(port)) = hop {
            let frame = Frame::Bootstrap(Bootstrap {
                destination: self.key,
                watermark,
                payload,
            });
            let bytes = frame.encode().expect("a bootstrap always fits");
            self.stats.bootstraps_sent += 1;
            self.enqueue_proto(port, bytes);
        }
        self.last_bootstrap = Some(now);
    }

    /// §3.2 "Receiving a bootstrap", then forwarding (§3.5).
    pub(super) fn handle_bootstrap(&mut self, now: Time, from: Port, mut b: Bootstrap) {
        // Building the index early changes nothing: it is a function of
        // state this method only changes after its last SNEK decision.
        let root = self.ensure_snek_index();
        // Cheap checks before the signature: wrong root or a stale sequence
        // means the bootstrap is dropped whatever its signature.
        let valid = b.payload.root == root
            && !self
                .routes
                .get(&b.destination)
                .is_some_and(|e| e.root == b.payload.root && b.payload.sequence <= e.seq)
            && (!self.config.signatures || b.payload.verify(&b.destination));
        if !valid {
            self.stats.bootstraps_dropped += 1;
            return;
        }
        let (hop, watermark) = self.snek_next_hop_for(now, b.destination, true, b.watermark);
        let key = b.destination;
        let entry_wm = Watermark {
            key,
            seq: b.payload.sequence,
        };
        self.routes.insert(
            key,
            Route {
                source: from,
                destination: hop,
                watermark: entry_wm,
                root: b.payload.root,
                last_seen: now,
            },
        );
        if key < self.key {
            let take = match &self.descending {
                Some(d) if now.since(d.last_seen) < SNEK_EXPIRY => {
                    d.key == key || ordered(&d.key, &key, &self.key)
                }
                _ => true,
            };
            if take {
                let d = Descending {
                    key,
                    source: from,
                    root: b.payload.root,
                    last_seen: now,
                };
                self.set_descending(Some(d), now);
            }
        }
        let Some(NextHop::Peer(port)) = hop else {
            return; // dead end: we are the bootstrapper's successor
        };
        if port == from || watermark.worse_than(&b.watermark) {
            self.stats.bootstraps_dropped += 1;
            return;
        }
        b.watermark = watermark;
        let mut bytes = self.take_buffer();
        Frame::Bootstrap(b)
            .encode_into(&mut bytes)
            .expect("re-encoding a decoded bootstrap fits");
        self.enqueue_proto(port, bytes);
    }
}
