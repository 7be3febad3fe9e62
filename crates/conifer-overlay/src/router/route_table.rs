//! The SNEK route table: routes by bootstrapper key, in key order.
//!
//! A `BTreeMap` of compact entries: a [`Route`]'s watermark key is always
//! the route's own key, so it is not stored again, which makes each entry
//! 64 bytes instead of 104. With 10 000 simulated routers the tables are
//! mostly out of cache, and smaller B-tree nodes mean fewer misses.
//!
//! Plus what makes the once-a-second expiry cheap: a lower bound on every
//! route's `last_seen`. Routes are refreshed every 5 s and expire after 10 s,
//! so most seconds nothing can have expired; the bound proves it without
//! walking the table (a walk reads every route, which for thousands of
//! routers per simulated second was a large share of the run). A count of
//! routes per second of `last_seen` keeps the bound tight: when the oldest
//! route is refreshed, the bound moves up with it, so the table is walked
//! only in a second in which some route may really expire.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

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
    routes: BTreeMap<PublicKey, StoredRoute>,
    /// At most the `last_seen` of every route (`None`: no routes were added
    /// since the table was last known empty). Refreshing a route only raises
    /// its `last_seen`, so the bound stays valid until routes are added.
    oldest: Option<Time>,
    /// Routes by the second of their `last_seen`, if known.
    seconds: SecondCounts,
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

    /// Counts exactly `times` (sorted here, so the window starts at the oldest).
    fn rebuild(&mut self, mut times: Vec<Time>) {
        *self = SecondCounts::default();
        times.sort_unstable();
        for t in times {
            self.add(t);
        }
    }
}

impl RouteTable {
    pub fn clear(&mut self) {
        self.routes.clear();
        self.oldest = None;
        self.seconds = SecondCounts::default();
    }

    pub fn get(&self, key: &PublicKey) -> Option<&StoredRoute> {
        self.routes.get(key)
    }

    /// `route.watermark.key` must be `key` (a route's watermark is its
    /// bootstrapper's key and sequence).
    pub fn insert(&mut self, key: PublicKey, route: Route) {
        debug_assert_eq!(route.watermark.key, key);
        let seen = route.last_seen;
        self.oldest = Some(self.oldest.map_or(seen, |t| t.min(seen)));
        let old = self.routes.insert(
            key,
            StoredRoute {
                seq: route.watermark.seq,
                last_seen: route.last_seen,
                root: route.root,
                source: route.source,
                destination: route.destination,
            },
        );
        if let Some(old) = old {
            self.seconds.remove(old.last_seen);
        }
        self.seconds.add(seen);
    }

    pub fn range(
        &self,
        keys: impl RangeBounds<PublicKey>,
    ) -> impl Iterator<Item = (&PublicKey, &StoredRoute)> {
        self.routes.range(keys)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &StoredRoute)> {
        self.routes.iter()
    }

    /// Keeps the routes `keep` accepts (removing never invalidates the bound).
    pub fn retain(&mut self, mut keep: impl FnMut(&PublicKey, &StoredRoute) -> bool) {
        let seconds = &mut self.seconds;
        self.routes.retain(|k, r| {
            let kept = keep(k, r);
            if !kept {
                seconds.remove(r.last_seen);
            }
            kept
        });
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
        let mut kept = Vec::new();
        self.routes.retain(|_, r| {
            let keep = now.since(r.last_seen) < SNEK_EXPIRY;
            if keep {
                kept.push(r.last_seen);
            }
            keep
        });
        self.oldest = kept.iter().min().copied();
        self.seconds.rebuild(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
