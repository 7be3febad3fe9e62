//! The SNEK route table: routes by bootstrapper key, in key order.
//!
//! Every relayed bootstrap looks up its bootstrapper's route, scans the few
//! routes just above it, and refreshes or adds the route, in the table of a
//! router that at simulation scale is usually out of cache; and in a large
//! network routes come and go all the time (at 10 000 nodes nearly a third of the
//! updates add a key). So the layout is chosen for cache misses:
//!
//! * The order is two small parallel arrays, the keys' first eight bytes
//!   and a slot number, sorted by key. Adding a key moves 12 bytes per later
//!   route, not the whole entry.
//!   The worst case is a peer flooding bootstraps for fresh keys: at
//!   100 000 routes each added key moves 600 kB on average, about 5 µs
//!   when the arrays are in cache (measured), a fraction of the Ed25519
//!   check every bootstrap has already paid by then; a `BTreeMap` was
//!   O(log n) there.
//! * The entries (key and route) sit in a slab by slot and never move.
//! * A search starts where a uniformly distributed key would sit and
//!   gallops out ([`key_search`]): a few neighbouring cache lines instead
//!   of a B-tree descent's dozen scattered ones, and lines a driver can ask
//!   for ahead ([`RouteTable::prefetch_search`]). A `BTreeMap` here was a
//!   third of a 10 000-node run.
//!
//! A [`Route`]'s watermark key is always the route's own key, so it is not
//! stored again.
//!
//! Plus what makes the once-a-second expiry cheap: a lower bound on every
//! route's `last_seen`. Routes are refreshed every 5 s and expire after 10 s,
//! so most seconds nothing can have expired; the bound proves it without
//! walking the table (a walk reads every route, which for thousands of
//! routers per simulated second was a large share of the run). A count of
//! routes per second of `last_seen` keeps the bound tight: when the oldest
//! route is refreshed, the bound moves up with it, so the table is walked
//! only in a second in which some route may really expire.

use std::ops::{Bound, RangeBounds};

use super::key_search::{self, prefix};
use super::{NextHop, Route, Time, SNEK_EXPIRY};
use crate::key::PublicKey;
use crate::wire::{Port, Root, Watermark};

/// A [`Route`] as stored: everything but the watermark key.
#[derive(Clone, Debug)]
pub(crate) struct StoredRoute {
    /// The watermark sequence (the bootstrap's sequence number).
    pub seq: u64,
    pub last_seen: Time,
    pub root: Root,
    pub source: Port,
    pub destination: Option<NextHop>,
}

impl StoredRoute {
    pub fn to_route(&self, key: PublicKey) -> Route {
        Route {
            source: self.source,
            destination: self.destination,
            watermark: Watermark { key, seq: self.seq },
            root: self.root,
            last_seen: self.last_seen,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// The first eight bytes (big-endian) of each key, in key order: what
    /// searches read.
    prefixes: Vec<u64>,
    /// `slots[i]` holds the route whose key has `prefixes[i]`.
    slots: Vec<u32>,
    /// The routes by slot; a slot in `free` holds nothing live.
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// At most the `last_seen` of every route (`None`: no routes were added
    /// since the table was last known empty). Refreshing a route only raises
    /// its `last_seen`, so the bound stays valid until routes are added.
    oldest: Option<Time>,
    /// Routes by the second of their `last_seen`, if known.
    seconds: SecondCounts,
}

#[derive(Clone, Debug)]
struct Entry {
    key: PublicKey,
    route: StoredRoute,
    /// False once the slot is in `free`.
    live: bool,
}

/// How many routes were last seen in each of 16 consecutive seconds from
/// `base`, at `counts[second % 16]`. `valid` is false once a route fell
/// outside the window (a driver's clock going backwards, or a stall of more
/// than 16 s between expiry checks); only a walk of the table makes it exact
/// again, and meanwhile the coarser `oldest` bound serves alone.
#[derive(Debug, Default)]
struct SecondCounts {
    counts: [u32; 16],
    base: u64,
    total: u32,
    valid: bool,
}

impl SecondCounts {
    fn add(&mut self, t: Time) {
        let s = t.as_unix_millis() / 1000;
        if self.total == 0 {
            self.base = s;
            self.valid = true;
        }
        if !self.valid {
            return;
        }
        if s < self.base {
            self.valid = false;
            return;
        }
        if s >= self.base + 16 {
            // Slide the window up to end at `s`, if the seconds it drops are empty.
            let new_base = s - 15;
            let drop = (new_base - self.base).min(16);
            if (0..drop).any(|d| self.counts[((self.base + d) % 16) as usize] != 0) {
                self.valid = false;
                return;
            }
            self.base = new_base;
        }
        self.counts[(s % 16) as usize] += 1;
        self.total += 1;
    }

    fn remove(&mut self, t: Time) {
        if self.valid {
            let s = t.as_unix_millis() / 1000;
            self.counts[(s % 16) as usize] -= 1;
            self.total -= 1;
        }
    }

    /// The start of the earliest second with a route, if known.
    fn oldest(&self) -> Option<Time> {
        if !self.valid {
            return None;
        }
        (0..16)
            .map(|d| self.base + d)
            .find(|s| self.counts[(s % 16) as usize] != 0)
            .map(|s| Time::from_unix_millis(s * 1000))
    }

    /// Counts exactly `times`, in a window starting at the oldest (what
    /// adding them oldest first gives, without sorting them).
    fn rebuild(&mut self, times: &[Time]) {
        *self = SecondCounts::default();
        let second = |t: &Time| t.as_unix_millis() / 1000;
        let (Some(min), Some(max)) = (
            times.iter().map(second).min(),
            times.iter().map(second).max(),
        ) else {
            return;
        };
        self.base = min;
        self.total = times.len() as u32;
        // Otherwise the counts stay unknown until a walk finds the table
        // empty or narrower.
        self.valid = max < min + 16;
        if self.valid {
            for t in times {
                self.counts[(second(t) % 16) as usize] += 1;
            }
        }
    }
}

impl RouteTable {
    pub fn clear(&mut self) {
        self.prefixes.clear();
        self.slots.clear();
        self.entries.clear();
        self.free.clear();
        self.oldest = None;
        self.seconds = SecondCounts::default();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn entry(&self, i: usize) -> &Entry {
        &self.entries[self.slots[i] as usize]
    }

    /// The position of the first key not below `key`.
    fn lower_bound(&self, key: &PublicKey) -> usize {
        key_search::lower_bound(&self.prefixes, key, |i| &self.entry(i).key)
    }

    /// The position of `key`, if it has a route.
    fn position(&self, key: &PublicKey) -> Result<usize, usize> {
        let i = self.lower_bound(key);
        match self.slots.get(i) {
            Some(&slot) if self.entries[slot as usize].key == *key => Ok(i),
            _ => Err(i),
        }
    }

    pub fn get(&self, key: &PublicKey) -> Option<&StoredRoute> {
        self.position(key).ok().map(|i| &self.entry(i).route)
    }

    /// `route.watermark.key` must be `key` (a route's watermark is its
    /// bootstrapper's key and sequence).
    pub fn insert(&mut self, key: PublicKey, route: Route) {
        debug_assert_eq!(route.watermark.key, key);
        let seen = route.last_seen;
        self.oldest = Some(self.oldest.map_or(seen, |t| t.min(seen)));
        let stored = StoredRoute {
            seq: route.watermark.seq,
            last_seen: route.last_seen,
            root: route.root,
            source: route.source,
            destination: route.destination,
        };
        match self.position(&key) {
            Ok(i) => {
                let slot = self.slots[i] as usize;
                let old = std::mem::replace(&mut self.entries[slot].route, stored);
                self.seconds.remove(old.last_seen);
            }
            Err(i) => {
                let entry = Entry {
                    key,
                    route: stored,
                    live: true,
                };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.entries[slot as usize] = entry;
                        slot
                    }
                    None => {
                        self.entries.push(entry);
                        (self.entries.len() - 1) as u32
                    }
                };
                self.prefixes.insert(i, prefix(&key));
                self.slots.insert(i, slot);
            }
        }
        self.seconds.add(seen);
    }

    /// The routes with keys in `keys`, ascending. Only the start is searched
    /// for: the end is found by comparing keys on the way, since callers
    /// mostly read a few routes and stop.
    pub fn range(
        &self,
        keys: impl RangeBounds<PublicKey>,
    ) -> impl Iterator<Item = (&PublicKey, &StoredRoute)> {
        let start = match keys.start_bound() {
            Bound::Included(k) => self.lower_bound(k),
            Bound::Excluded(k) => self.position(k).map_or_else(|i| i, |i| i + 1),
            Bound::Unbounded => 0,
        };
        let end = keys.end_bound().cloned();
        // The prefixes alone end most scans, without loading the entry past
        // the end (at scale, a cache miss).
        let end_prefix = match &end {
            Bound::Included(e) | Bound::Excluded(e) => prefix(e),
            Bound::Unbounded => u64::MAX,
        };
        (start..self.slots.len())
            .take_while(move |&i| self.prefixes[i] <= end_prefix)
            .map(|i| {
                let e = self.entry(i);
                (&e.key, &e.route)
            })
            .take_while(move |(k, _)| match &end {
                Bound::Included(e) => *k <= e,
                Bound::Excluded(e) => *k < e,
                Bound::Unbounded => true,
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &StoredRoute)> {
        self.range(..)
    }

    #[cfg(feature = "prefetch")]
    /// Asks the CPU to start loading where a search for `key` will look
    /// first (see [`super::Router::prefetch_for_frame`]).
    pub fn prefetch_search(&self, key: &PublicKey) {
        let around = key_search::probed(&self.prefixes, prefix(key));
        super::prefetch::prefetch_slice(&self.prefixes[around.clone()]);
        super::prefetch::prefetch_slice(&self.slots[around]);
    }

    #[cfg(feature = "prefetch")]
    /// Asks the CPU to start loading the entries a search for `key` ends
    /// on: the route for `key` (or the one after where it would go) and the
    /// next, which a SNEK decision for a bootstrap to `key` reads. Best
    /// issued once [`RouteTable::prefetch_search`]'s lines have arrived,
    /// since it reads them.
    pub fn prefetch_entries(&self, key: &PublicKey) {
        let i = key_search::prefix_bound(&self.prefixes, prefix(key));
        for &slot in self.slots.iter().skip(i).take(2) {
            super::prefetch::prefetch(&self.entries[slot as usize]);
        }
    }

    /// Keeps the routes `keep` accepts (removing never invalidates the bound).
    pub fn retain(&mut self, mut keep: impl FnMut(&PublicKey, &StoredRoute) -> bool) {
        for &slot in &self.slots {
            let e = &mut self.entries[slot as usize];
            if !keep(&e.key, &e.route) {
                e.live = false;
                self.seconds.remove(e.route.last_seen);
                self.free.push(slot);
            }
        }
        let entries = &self.entries;
        keep_slots(&mut self.prefixes, &mut self.slots, |slot| {
            entries[slot as usize].live
        });
        self.release_unused();
    }

    /// Gives memory back after removals: all of it when the table is empty
    /// (a router restarting); when over half the slab is free (tables are
    /// largest while a network converges, and a slab never shrinks by
    /// itself), the live entries are packed in key order into a slab of
    /// their size, and the order arrays lose their spare room.
    fn release_unused(&mut self) {
        if self.slots.is_empty() {
            *self = RouteTable {
                oldest: self.oldest,
                seconds: std::mem::take(&mut self.seconds),
                ..RouteTable::default()
            };
            return;
        }
        if self.free.len() * 2 <= self.entries.len() {
            return;
        }
        let mut packed = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter_mut().enumerate() {
            packed.push(self.entries[*slot as usize].clone());
            *slot = i as u32;
        }
        self.entries = packed;
        self.free = Vec::new();
        self.prefixes.shrink_to_fit();
        self.slots.shrink_to_fit();
    }

    /// Drops every route not refreshed within [`SNEK_EXPIRY`] of `now`:
    /// exactly what `retain(|_, r| now.since(r.last_seen) < SNEK_EXPIRY)`
    /// does, but only walks the table when the bound says one may have expired.
    pub fn expire(&mut self, now: Time) {
        let Some(mut oldest) = self.oldest else {
            return;
        };
        if let Some(t) = self.seconds.oldest() {
            oldest = oldest.max(t);
        }
        // `since` never increases as its argument grows, so no route is
        // older than the bound says.
        if now.since(oldest) < SNEK_EXPIRY {
            return;
        }
        // The entries in slot order (memory order), marking the expired in a
        // bitmap; then the order arrays, reading only the bitmap.
        let mut expired = vec![0u64; self.entries.len().div_ceil(64)];
        let mut kept = Vec::with_capacity(self.slots.len());
        for (slot, e) in self.entries.iter_mut().enumerate() {
            if !e.live {
                continue;
            }
            if now.since(e.route.last_seen) < SNEK_EXPIRY {
                kept.push(e.route.last_seen);
            } else {
                e.live = false;
                expired[slot / 64] |= 1 << (slot % 64);
                self.free.push(slot as u32);
            }
        }
        keep_slots(&mut self.prefixes, &mut self.slots, |slot| {
            expired[slot as usize / 64] & (1 << (slot % 64)) == 0
        });
        self.release_unused();
        self.oldest = kept.iter().min().copied();
        self.seconds.rebuild(&kept);
    }
}

/// Keeps, in order, the positions of the order arrays whose slot `keep`
/// accepts.
fn keep_slots(prefixes: &mut Vec<u64>, slots: &mut Vec<u32>, keep: impl Fn(u32) -> bool) {
    let mut kept = 0;
    for i in 0..slots.len() {
        if keep(slots[i]) {
            prefixes[kept] = prefixes[i];
            slots[kept] = slots[i];
            kept += 1;
        }
    }
    prefixes.truncate(kept);
    slots.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn route(key: PublicKey, ms: u64) -> Route {
        Route {
            source: 1,
            destination: None,
            watermark: Watermark { key, seq: ms },
            root: Root {
                key: PublicKey([0; 32]),
                seq: 0,
            },
            last_seen: Time::from_unix_millis(ms),
        }
    }

    fn key(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    /// `expire` removes exactly what the full scan would, at every step of a
    /// pseudo-random schedule of refreshes and clock ticks.
    #[test]
    fn expire_matches_full_scan() {
        let mut fast = RouteTable::default();
        let mut slow: BTreeMap<PublicKey, Route> = BTreeMap::new();
        let mut x = 7u64;
        let mut now = 1_000_000u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match x >> 61 {
                0..=4 => {
                    let k = key((x >> 20) as u8 % 16);
                    // Occasionally a timestamp from the past, as a driver may give.
                    let back = match x >> 56 & 31 {
                        0..=3 => 3_000,
                        4 => 20_000,
                        _ => 0,
                    };
                    let seen = now.saturating_sub(back);
                    fast.insert(k, route(k, seen));
                    slow.insert(k, route(k, seen));
                }
                _ => {
                    now += if x >> 50 & 63 == 0 {
                        30_000
                    } else {
                        (x >> 30) % 1_500
                    };
                    let t = Time::from_unix_millis(now);
                    fast.expire(t);
                    slow.retain(|_, r| t.since(r.last_seen) < SNEK_EXPIRY);
                }
            }
            let a: Vec<_> = fast
                .iter()
                .map(|(k, r)| (*k, r.to_route(*k).last_seen))
                .collect();
            let b: Vec<_> = slow.iter().map(|(k, r)| (*k, r.last_seen)).collect();
            assert_eq!(a, b);
            if x >> 52 & 255 == 0 {
                let gone = (x >> 16) as u8 % 4;
                fast.retain(|k, _| k.0[0] % 4 != gone);
                slow.retain(|k, _| k.0[0] % 4 != gone);
            }
        }
        assert!(SNEK_EXPIRY > Duration::from_millis(1_500));
    }

    /// Lookups, windows, inserts and removals agree with a `BTreeMap`, with
    /// uniformly spread keys (the interpolated search) mixed with keys that
    /// share their first eight bytes (as a keyspace attacker's do).
    #[test]
    fn sorted_arrays_match_a_btree_map() {
        let mut table = RouteTable::default();
        let mut model: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let mut largest = 0;
        let mut x = 11u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 16
        };
        let key_of = |n: u64| {
            let mut k = [0u8; 32];
            if n.is_multiple_of(4) {
                k[0] = (n >> 4) as u8 % 3; // few distinct prefixes
                k[31] = (n >> 8) as u8 % 40;
            } else {
                // One of 3 000 spread keys.
                let i = (n >> 8) % 3_000;
                let spread = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7);
                k[..8].copy_from_slice(&spread.to_be_bytes());
                k[8] = i as u8;
            }
            PublicKey(k)
        };
        for step in 0..40_000u64 {
            let n = next();
            let k = key_of(n);
            match n % 8 {
                _ if n >> 20 & 255 == 0 => {
                    let gone = |k: &PublicKey| (k.0[8] ^ k.0[31]) % 8 == (n >> 4 & 7) as u8;
                    table.retain(|k, _| !gone(k));
                    model.retain(|k, _| !gone(k));
                }
                0..=5 => {
                    table.insert(k, route(k, step));
                    model.insert(k, step);
                }
                _ => {
                    let lo = key_of(next());
                    let hi = key_of(next());
                    let got: Vec<_> = table
                        .range((Bound::Excluded(lo), Bound::Included(hi)))
                        .map(|(k, r)| (*k, r.seq))
                        .take(20)
                        .collect();
                    let want: Vec<_> = if lo < hi {
                        model
                            .range((Bound::Excluded(lo), Bound::Included(hi)))
                            .map(|(k, s)| (*k, *s))
                            .take(20)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    assert_eq!(got, want);
                }
            }
            assert_eq!(table.get(&k).map(|r| r.seq), model.get(&k).copied());
            assert_eq!(table.len(), model.len());
            largest = largest.max(table.len());
        }
        assert!(largest > 1_000, "the interpolated search was exercised");
        let all: Vec<_> = table.iter().map(|(k, r)| (*k, r.seq)).collect();
        let want: Vec<_> = model.iter().map(|(k, s)| (*k, *s)).collect();
        assert_eq!(all, want);
        // Most routes gone: the slab is packed, and everything still answers.
        let slab = table.entries.len();
        table.retain(|k, _| k.0[8] % 10 == 0);
        model.retain(|k, _| k.0[8] % 10 == 0);
        assert!(table.entries.len() < slab / 2 && table.free.is_empty());
        for (k, seq) in &model {
            assert_eq!(table.get(k).map(|r| r.seq), Some(*seq));
        }
        let all: Vec<_> = table.iter().map(|(k, r)| (*k, r.seq)).collect();
        let want: Vec<_> = model.iter().map(|(k, s)| (*k, *s)).collect();
        assert_eq!(all, want);
        let k = key_of(1 << 8);
        table.insert(k, route(k, 1));
        assert_eq!(table.get(&k).map(|r| r.seq), Some(1));
    }
}
