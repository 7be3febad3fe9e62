//! A cap on incoming connections that have not finished the Pinecone handshake.
//!
//! Until the handshake is done a connection is anonymous: it costs us a task,
//! socket buffers and (for WebSocket) an HTTP parser and frame decoder, and it
//! proves nothing. Each listener therefore admits a connection only while its
//! source holds fewer than [`PendingLimits::per_ip`] such connections and the
//! node fewer than [`PendingLimits::total`]; any other is closed at once. A
//! slot is released when the handshake ends either way (it has a timeout), so
//! a peer that authenticated no longer counts, and a flood costs at most
//! `total` bounded connections however many the attacker opens.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default cap on unauthenticated connections from one source (an IPv4
/// address or an IPv6 /64).
pub const MAX_PENDING_PER_IP: usize = 8;
/// Default cap on unauthenticated connections to the whole node.
pub const MAX_PENDING_TOTAL: usize = 64;

/// Caps on connections that have not finished the Pinecone handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// Per source: an IPv4 address, or an IPv6 /64 (one host usually owns a
    /// whole /64, so counting single v6 addresses would cap nothing).
    pub per_ip: usize,
    /// For the node, over all listeners.
    pub total: usize,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            per_ip: MAX_PENDING_PER_IP,
            total: MAX_PENDING_TOTAL,
        }
    }
}

/// Why an incoming connection was closed before its handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingRefused {
    #[error("{source_ip} already has {limit} connections that have not finished the handshake")]
    PerSource { source_ip: IpAddr, limit: usize },
    #[error("the node already has {limit} connections that have not finished the handshake")]
    Total { limit: usize },
}

/// The source a connection is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of the address.
    V6Prefix(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            // A v4 client reaching a dual-stack socket is still one v4 address.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Prefix(prefix64(v6)),
            },
        }
    }
}

fn prefix64(v6: Ipv6Addr) -> u64 {
    (u128::from(v6) >> 64) as u64
}

#[derive(Debug)]
struct Counts {
    limits: PendingLimits,
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// The node's table of unauthenticated connections. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    counts: Arc<Mutex<Counts>>,
}

impl Pending {
    pub fn new(limits: PendingLimits) -> Self {
        Pending {
            counts: Arc::new(Mutex::new(Counts {
                limits,
                total: 0,
                by_source: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Counting cannot leave the table inconsistent mid-way, so a panic
        // elsewhere while holding the lock is no reason to stop admitting.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the limits; connections already admitted keep their slots.
    pub fn set_limits(&self, limits: PendingLimits) {
        self.lock().limits = limits;
    }

    pub fn limits(&self) -> PendingLimits {
        self.lock().limits
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<PendingSlot, PendingRefused> {
        let source = Source::of(ip);
        let mut c = self.lock();
        if c.total >= c.limits.total {
            return Err(PendingRefused::Total {
                limit: c.limits.total,
            });
        }
        let limit = c.limits.per_ip;
        let held = c.by_source.entry(source).or_insert(0);
        if *held >= limit {
            return Err(PendingRefused::PerSource {
                source_ip: ip,
                limit,
            });
        }
        *held += 1;
        c.total += 1;
        Ok(PendingSlot {
            pending: self.clone(),
            source,
        })
    }

    /// Connections currently holding a slot.
    pub fn count(&self) -> usize {
        self.lock().total
    }
}

/// One admitted connection's place in [`Pending`]; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    pending: Pending,
    source: Source,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut c = self.pending.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(held) = c.by_source.get_mut(&self.source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                // Keep the map as small as the set of sources now pending.
                c.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_source_and_total_caps_and_release_on_drop() {
        let p = Pending::new(PendingLimits {
            per_ip: 2,
            total: 3,
        });
        let a1 = p.admit(ip("10.0.0.1")).unwrap();
        let _a2 = p.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            p.admit(ip("10.0.0.1")).unwrap_err(),
            PendingRefused::PerSource {
                source_ip: ip("10.0.0.1"),
                limit: 2
            }
        );
        let _b1 = p.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            p.admit(ip("10.0.0.3")).unwrap_err(),
            PendingRefused::Total { limit: 3 }
        );
        drop(a1);
        assert_eq!(p.count(), 2);
        let _a3 = p.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(p.count(), 3);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let p = Pending::new(PendingLimits {
            per_ip: 1,
            total: 10,
        });
        let _x = p.admit(ip("2001:db8::1")).unwrap();
        assert!(p.admit(ip("2001:db8::2")).is_err());
        let _y = p.admit(ip("2001:db8:0:1::1")).unwrap();
        let _z = p.admit(ip("192.0.2.7")).unwrap();
        assert!(p.admit(ip("::ffff:192.0.2.7")).is_err());
    }

    #[test]
    fn emptied_sources_leave_the_map() {
        let p = Pending::new(PendingLimits::default());
        let slots: Vec<_> = (0..5)
            .map(|i| p.admit(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        drop(slots);
        assert_eq!(p.count(), 0);
        assert!(p.lock().by_source.is_empty());
    }
}
