//! The SNEK route table: routes by bootstrapper key, in key order.
//!
//! A `BTreeMap` of compact entries: a [`Route`]'s watermark key is always
//! the route's own key, so it is not stored again, which makes each entry
//! 64 bytes instead of 104. With 10 000 simulated routers the tables are
//! mostly out of cache, and smaller B-tree nodes mean fewer misses.
//!
//! Plus one fact that makes the once-a-second expiry cheap: a
//! lower bound on every route's `last_seen`. Routes are refreshed every 5 s
//! and expire after 10 s, so most seconds nothing can have expired; the bound
//! proves it without walking the table (a walk reads every route, which for
//! thousands of routers per simulated second was a large share of the run).

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
}

impl RouteTable {
    pub fn clear(&mut self) {
        self.routes.clear();
        self.oldest = None;
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
        self.routes.insert(
            key,
            StoredRoute {
                seq: route.watermark.seq,
                last_seen: route.last_seen,
                root: route.root,
                source: route.source,
                destination: route.destination,
            },
        );
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
        self.routes.retain(|k, r| keep(k, r));
    }

    /// Drops every route not refreshed within [`SNEK_EXPIRY`] of `now`:
    /// exactly what `retain(|_, r| now.since(r.last_seen) < SNEK_EXPIRY)`
    /// does, but only walks the table when the bound says one may have expired.
    pub fn expire(&mut self, now: Time) {
        let Some(oldest) = self.oldest else {
            return;
        };
        // `since` never increases as its argument grows, so no route is
        // older than the bound says.
        if now.since(oldest) < SNEK_EXPIRY {
            return;
        }
        let mut min: Option<Time> = None;
        self.routes.retain(|_, r| {
            let keep = now.since(r.last_seen) < SNEK_EXPIRY;
            if keep {
                min = Some(min.map_or(r.last_seen, |t| t.min(r.last_seen)));
            }
            keep
        });
        self.oldest = min;
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
                    let seen = now.saturating_sub(if x >> 58 & 7 == 0 { 3_000 } else { 0 });
                    fast.insert(k, route(k, seen));
                    slow.insert(k, route(k, seen));
                }
                _ => {
                    now += (x >> 30) % 1_500;
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
        }
        assert!(SNEK_EXPIRY > Duration::from_millis(1_500));
    }
}
