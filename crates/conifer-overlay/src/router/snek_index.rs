//! A precomputed index that answers SNEK next-hop queries in O(log n).
//!
//! [`super::snek_next_hop`] is the reference: it walks every peer's ancestry
//! for every frame, which costs hundreds of key comparisons on a well-connected
//! node. The candidates it considers only change when an announcement, a peer
//! or the parent changes, so the router keeps them sorted by key here and
//! rebuilds the index lazily after such a change. [`snek_next_hop_indexed`]
//! returns exactly what the reference returns (checked by a property test).
//!
//! Why a sorted index is enough: a "checked" candidate replaces the best one
//! only if it is an exact hit, or strictly between the target and the best so
//! far. So among all ancestor keys the winner is the first exact hit, or else
//! the lowest key above the target; ties on one key go to the first link in
//! the reference's scan order (the parent, then ports in ascending order).

use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included};

use super::key_search::{self, prefix};
use super::peers::PeerView;
use super::snek::RouteView;
use super::{NextHop, PeerType};
use crate::key::PublicKey;
use crate::wire::{Port, Root, Watermark};

#[derive(Clone, Copy, Debug)]
struct LinkInfo {
    peer_type: PeerType,
    receive_order: u64,
    root: Option<Root>,
}

/// One key the SNEK decision may pick: an ancestor in some started peer's
/// announcement, a started peer's own key, or both.
#[derive(Clone, Copy, Debug)]
struct KeyEntry {
    key: PublicKey,
    /// The first link in scan order that announces this key (`None`: only a
    /// direct peer's key, not in any announcement).
    ancestor: Option<Port>,
    /// `direct_ports[direct_start..][..direct_len]`: the started peers with an
    /// announcement whose own key this is, ports ascending.
    direct_start: u16,
    direct_len: u16,
}

#[derive(Debug, Default)]
pub struct SnekIndex {
    our_key: PublicKey,
    root_key: PublicKey,
    /// Our parent, if it is a started peer.
    parent: Option<Port>,
    /// The first eight bytes (big-endian) of `keys[i].key`: a search scans
    /// these, a few contiguous cache lines, rather than walking B-tree nodes
    /// (two or three dependent cache misses per level at simulation scale).
    prefixes: Vec<u64>,
    /// Every candidate key, ascending.
    keys: Vec<KeyEntry>,
    direct_ports: Vec<Port>,
    /// Per-port facts for link refinement, indexed by port.
    links: Vec<Option<LinkInfo>>,
    /// Bit `p` set: port `p` is one of the peers the index was built from.
    /// Inline (the index lives in the router), so checking that a route's
    /// source is still up touches no per-peer memory.
    ports: [u64; 4],
}

impl SnekIndex {
    /// `peers` must be in ascending port order (as the router lists them).
    pub fn build(
        our_key: PublicKey,
        root_key: PublicKey,
        parent: Option<Port>,
        peers: &[PeerView<'_>],
    ) -> Self {
        let mut idx = SnekIndex {
            our_key,
            root_key,
            parent: parent.filter(|p| peers.iter().any(|v| v.port == *p)),
            ..SnekIndex::default()
        };
        let scan = idx
            .parent
            .and_then(|p| peers.iter().find(|v| v.port == p))
            .into_iter()
            .chain(peers.iter());
        // key → (first announcing link, direct ports).
        let mut all: BTreeMap<PublicKey, (Option<Port>, Vec<Port>)> = BTreeMap::new();
        for v in scan {
            for hop in v.announcement.iter().flat_map(|a| &a.hops) {
                let e = all.entry(hop.key).or_default();
                e.0.get_or_insert(v.port);
            }
        }
        let max_port = peers.iter().map(|v| v.port as usize).max().unwrap_or(0);
        idx.links = vec![None; max_port + 1];
        for v in peers {
            idx.ports[v.port as usize / 64] |= 1 << (v.port % 64);
            idx.links[v.port as usize] = Some(LinkInfo {
                peer_type: v.peer_type,
                receive_order: v.receive_order,
                root: v.announcement.map(|a| a.root),
            });
            if v.announcement.is_some() {
                all.entry(v.key).or_default().1.push(v.port);
            }
        }
        for (key, (ancestor, direct)) in all {
            idx.prefixes.push(prefix(&key));
            idx.keys.push(KeyEntry {
                key,
                ancestor,
                direct_start: idx.direct_ports.len() as u16,
                direct_len: direct.len() as u16,
            });
            idx.direct_ports.extend(direct);
        }
        idx
    }

    /// Whether `port` was among the peers the index was built from (for the
    /// router: a started peer, since any change to that drops the index).
    pub fn has_port(&self, port: Port) -> bool {
        self.ports[port as usize / 64] & (1 << (port % 64)) != 0
    }

    fn link(&self, port: Port) -> Option<&LinkInfo> {
        self.links.get(port as usize)?.as_ref()
    }

    #[cfg(feature = "prefetch")]
    /// Asks the CPU to start loading the search arrays (see
    /// [`super::Router::prefetch_for_port`]).
    pub fn prefetch(&self) {
        let n = self.prefixes.len().min(64);
        super::prefetch::prefetch_slice(&self.prefixes[..n]);
        super::prefetch::prefetch_slice(&self.links);
    }

    #[cfg(feature = "prefetch")]
    /// The first of two hints for a frame to `key` (see
    /// [`super::Router::prefetch_route_search`]): where the search starts.
    pub fn prefetch_search(&self, key: &PublicKey) {
        let around = key_search::probed(&self.prefixes, prefix(key));
        super::prefetch::prefetch_slice(&self.prefixes[around]);
    }

    #[cfg(feature = "prefetch")]
    /// The second: the entries the search ends on (reading the lines the
    /// first asked for).
    pub fn prefetch_entries(&self, key: &PublicKey) {
        let i = key_search::prefix_bound(&self.prefixes, prefix(key));
        if let Some(entries) = self.keys.get(i..(i + 2).min(self.keys.len())) {
            super::prefetch::prefetch_slice(entries);
        }
    }

    /// The index of the first key not below `key`.
    fn lower_bound(&self, key: &PublicKey) -> usize {
        key_search::lower_bound(&self.prefixes, key, |i| &self.keys[i].key)
    }

    /// The entry for exactly `key`.
    fn find(&self, key: &PublicKey) -> Option<&KeyEntry> {
        self.keys
            .get(self.lower_bound(key))
            .filter(|e| e.key == *key)
    }

    /// The started peers with an announcement whose own key is `key`.
    fn direct(&self, key: &PublicKey) -> &[Port] {
        self.find(key).map_or(&[], |e| {
            &self.direct_ports[e.direct_start as usize..][..e.direct_len as usize]
        })
    }

    /// The lowest ancestor key strictly between `lo` and `hi`, with its link.
    fn ancestor_between(&self, lo: &PublicKey, hi: &PublicKey) -> Option<(PublicKey, Port)> {
        self.keys[self.lower_bound(lo)..]
            .iter()
            .skip_while(|e| e.key == *lo)
            .take_while(|e| e.key < *hi)
            .find_map(|e| Some((e.key, e.ancestor?)))
    }
}

/// Same contract as [`super::snek_next_hop`]; `routes` in ascending key order.
pub fn snek_next_hop_indexed(
    idx: &SnekIndex,
    destination: PublicKey,
    bootstrap: bool,
    watermark: Watermark,
    routes: impl IntoIterator<Item = RouteView>,
) -> (Option<NextHop>, Watermark) {
    snek_next_hop_windowed(idx, destination, bootstrap, watermark, |_| routes)
}

/// The only route keys that can change a SNEK decision, given the best
/// candidate before the routes are consulted (see [`snek_next_hop_windowed`]).
pub type RouteWindow = (Bound<PublicKey>, Bound<PublicKey>);

/// [`snek_next_hop_indexed`], asking for the routes only once the best
/// candidate from the tree is known: the scan of step 5 skips keys below the
/// destination and stops at the first key above it that is not below the best
/// so far (which only falls), so routes outside `[destination, best)` (just
/// the destination itself when `best <= destination`) are never looked at.
/// `routes` gets that window and may return only the routes inside it; for
/// a `BTreeMap` that saves locating the far end of an open range, one more
/// descent through a table that at scale is usually out of cache.
pub fn snek_next_hop_windowed<I: IntoIterator<Item = RouteView>>(
    idx: &SnekIndex,
    destination: PublicKey,
    bootstrap: bool,
    watermark: Watermark,
    routes: impl FnOnce(RouteWindow) -> I,
) -> (Option<NextHop>, Watermark) {
    let dest = destination;
    if !bootstrap && dest == idx.our_key {
        return (Some(NextHop::Local), watermark);
    }
    let mut best_key = idx.our_key;
    let mut best_seq = 0u64;
    let mut best_port: Option<Port> = None;

    // Step 2, the root via the parent.
    if let Some(parent) = idx.parent {
        if (bootstrap && best_key == dest) || (best_key < dest && dest < idx.root_key) {
            best_key = idx.root_key;
            best_port = Some(parent);
        }
    }
    // Steps 2–3, every ancestry at once.
    let exact = (!bootstrap && best_key != dest)
        .then(|| idx.find(&dest).and_then(|e| e.ancestor))
        .flatten();
    if let Some(port) = exact {
        best_key = dest;
        best_port = Some(port);
    } else if dest < best_key {
        if let Some((k, port)) = idx.ancestor_between(&dest, &best_key) {
            best_key = k;
            best_port = Some(port);
        }
    }
    // Step 4, a direct link to the best key (the last one in port order).
    if let Some(&port) = idx.direct(&best_key).last() {
        best_seq = 0;
        best_port = Some(port);
    }
    // Step 5, soft routes.
    let window = if best_key > dest {
        (Included(dest), Excluded(best_key))
    } else {
        (Included(dest), Included(dest))
    };
    for r in routes(window) {
        if r.key < dest {
            continue;
        }
        if r.key > dest && r.key >= best_key {
            break;
        }
        let wm = Watermark {
            key: r.key,
            seq: r.seq,
        };
        let checked =
            (!bootstrap && r.key == dest && best_key != dest) || (dest < r.key && r.key < best_key);
        if !wm.worse_than(&watermark) && checked {
            best_key = r.key;
            best_seq = r.seq;
            best_port = Some(r.source);
        }
    }
    // Step 6, link refinement among links to the best key.
    if let Some(mut cur) = best_port.filter(|p| idx.link(*p).is_some_and(|l| l.root.is_some())) {
        for &p in idx.direct(&best_key) {
            let (Some(l), Some(b)) = (idx.link(p), idx.link(cur)) else {
                continue;
            };
            if l.peer_type < b.peer_type
                || (l.peer_type == b.peer_type
                    && l.root == b.root
                    && l.receive_order < b.receive_order)
            {
                cur = p;
                best_port = Some(p);
            }
        }
    }
    let hop = match best_port {
        Some(p) => Some(NextHop::Peer(p)),
        None => (!bootstrap).then_some(NextHop::Local),
    };
    (
        hop,
        Watermark {
            key: best_key,
            seq: best_seq,
        },
    )
}
