//! The link model: per-direction latency, jitter, loss and bandwidth.
//!
//! A link is a pair of FIFO pipes. Jitter never reorders frames on one
//! direction (an arrival is never scheduled before the previous one), because
//! the real transports (TCP, QUIC streams) are ordered and Pinecone relies on
//! it. Bandwidth adds a serialisation delay per frame; a direction with finite
//! bandwidth takes one frame from the router at a time, so the router's own
//! queues (and their fairness and drops) do the buffering, as on a real link.

use serde::{Deserialize, Serialize};

use crate::time::{millis, SimTime, MICROS_PER_SEC};

/// How a link behaves (both directions alike).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkParams {
    /// One-way propagation delay, milliseconds.
    pub latency_ms: f64,
    /// Extra delay drawn uniformly from `[0, jitter_ms]` per batch of frames.
    pub jitter_ms: f64,
    /// Probability that a frame is lost, 0–1.
    pub loss: f64,
    /// Bits per second; 0 means unlimited (no serialisation delay).
    pub bandwidth_bps: u64,
}

impl Default for LinkParams {
    fn default() -> Self {
        // Go's simulator: in-process pipes with up to 1 ms of read jitter.
        LinkParams {
            latency_ms: 1.0,
            jitter_ms: 1.0,
            loss: 0.0,
            bandwidth_bps: 0,
        }
    }
}

impl LinkParams {
    /// Zero delay and no loss: a Sybil attacker's identities "behind" it.
    pub fn instant() -> Self {
        LinkParams {
            latency_ms: 0.0,
            jitter_ms: 0.0,
            loss: 0.0,
            bandwidth_bps: 0,
        }
    }

    pub fn unlimited(&self) -> bool {
        self.bandwidth_bps == 0
    }

    /// Time to put `bytes` on the wire.
    pub fn serialisation(&self, bytes: usize) -> SimTime {
        if self.unlimited() {
            0
        } else {
            (bytes as u64 * 8 * MICROS_PER_SEC).div_ceil(self.bandwidth_bps)
        }
    }

    /// Propagation delay plus jitter, `u` being a uniform sample in [0, 1).
    pub fn delay(&self, u: f64) -> SimTime {
        base_plus(millis(self.latency_ms), millis(self.jitter_ms), u)
    }

    /// Is a frame lost, `u` being a uniform sample in [0, 1)?
    pub fn lost(&self, u: f64) -> bool {
        u < self.loss
    }
}

fn base_plus(base: SimTime, jitter: SimTime, u: f64) -> SimTime {
    base + ((jitter + 1) as f64 * u) as SimTime
}

/// A uniform sample in [0, 1) that depends only on its inputs.
///
/// Link randomness is a hash of (seed, link, direction, send time, salt)
/// rather than draws from one shared generator: then extra frames on one
/// link (say, traffic an adversary forwards instead of dropping) cannot
/// shift the jitter every other link sees, and two variants of a scenario
/// stay comparable.
pub fn sample(seed: u64, link: u64, dir: u8, at: SimTime, salt: u64) -> f64 {
    let mut z = seed;
    for v in [link, dir as u64, at, salt] {
        z = splitmix(z ^ v);
    }
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Transmit state of one direction of a link.
#[derive(Clone, Debug, Default)]
pub struct Direction {
    /// A frame is being serialised; the next pull waits for `TxDone`.
    pub busy: bool,
    /// The latest arrival scheduled so far, to keep the pipe FIFO.
    pub last_arrival: SimTime,
}

impl Direction {
    /// The arrival time for something sent at `ready` with `delay`, never
    /// before an earlier frame on the same direction.
    pub fn schedule(&mut self, ready: SimTime, delay: SimTime) -> SimTime {
        let at = (ready + delay).max(self.last_arrival);
        self.last_arrival = at;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialisation_delay() {
        let p = LinkParams {
            bandwidth_bps: 8_000,
            ..LinkParams::default()
        };
        // 100 bytes at 1 kB/s: 100 ms.
        assert_eq!(p.serialisation(100), 100_000);
        assert_eq!(LinkParams::default().serialisation(100), 0);
    }

    #[test]
    fn samples_are_uniform_and_stable() {
        let xs: Vec<f64> = (0..1000).map(|i| sample(1, 2, 0, i, 0)).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "{mean}");
        assert_eq!(sample(1, 2, 0, 5, 0), sample(1, 2, 0, 5, 0));
        assert_ne!(sample(1, 2, 0, 5, 0), sample(1, 2, 1, 5, 0));
        let p = LinkParams::default();
        assert_eq!(p.delay(0.0), 1_000);
        assert!(p.delay(0.999_999) <= 2_000);
    }

    #[test]
    fn fifo_despite_jitter() {
        let mut d = Direction::default();
        assert_eq!(d.schedule(0, 900), 900);
        assert_eq!(d.schedule(100, 10), 900);
        assert_eq!(d.schedule(2_000, 10), 2_010);
    }
}
