//! Frame filters: how a packet-dropping adversary misbehaves.
//!
//! Modelled on the Go simulator's `drop_packets.go` adversary: a percentage
//! per frame type, applied deterministically — of every `m` frames of a type,
//! the first `k` are dropped, `k/m` being the percentage as a reduced
//! fraction — to frames the node *receives*, before its router sees them.

use serde::{Deserialize, Serialize};

/// Drop percentages (0–100) per frame type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropRates {
    pub keepalive: u8,
    pub tree_announcement: u8,
    pub bootstrap: u8,
    pub traffic: u8,
    pub wakeup_broadcast: u8,
}

impl DropRates {
    /// Everything SNEK needs plus the traffic itself (Go's "Mallory").
    pub fn snek_and_traffic() -> Self {
        DropRates {
            bootstrap: 100,
            traffic: 100,
            wakeup_broadcast: 100,
            ..Default::default()
        }
    }

    fn by_type(&self, frame_type: u8) -> u8 {
        match frame_type {
            0 => self.keepalive,
            1 => self.tree_announcement,
            2 => self.bootstrap,
            3 => self.traffic,
            4 => self.wakeup_broadcast,
            _ => 0,
        }
        .min(100)
    }

    pub fn is_none(&self) -> bool {
        (0..5).all(|t| self.by_type(t) == 0)
    }
}

/// A node's filter with its per-type counters.
#[derive(Clone, Debug)]
pub struct DropFilter {
    rates: DropRates,
    counters: [u64; 5],
    pub dropped: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl DropFilter {
    pub fn new(rates: DropRates) -> Self {
        DropFilter {
            rates,
            counters: [0; 5],
            dropped: 0,
        }
    }

    /// Should the node discard this received frame (raw bytes)?
    pub fn drop_frame(&mut self, frame: &[u8]) -> bool {
        let Some(&ty) = frame.get(5) else {
            return false;
        };
        let pct = self.rates.by_type(ty) as u64;
        if pct == 0 || ty > 4 {
            return false;
        }
        let g = gcd(pct, 100);
        let (k, m) = (pct / g, 100 / g);
        let n = self.counters[ty as usize];
        self.counters[ty as usize] += 1;
        let drop = n % m < k;
        self.dropped += drop as u64;
        drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8) -> Vec<u8> {
        vec![b'p', b'i', b'n', b'e', 0, ty, 0, 0, 0, 10]
    }

    #[test]
    fn deterministic_fraction() {
        let mut f = DropFilter::new(DropRates {
            traffic: 40,
            ..Default::default()
        });
        // 40 % = 2 of every 5: drop, drop, pass, pass, pass.
        let got: Vec<bool> = (0..10).map(|_| f.drop_frame(&frame(3))).collect();
        assert_eq!(
            got,
            [true, true, false, false, false, true, true, false, false, false]
        );
        assert!(!f.drop_frame(&frame(2)));
    }
}
