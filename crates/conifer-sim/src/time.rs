//! Virtual time.
//!
//! The engine counts microseconds from the start of a run, so link latencies
//! and serialisation delays below a millisecond still order events correctly;
//! routers see whole milliseconds since a fixed virtual epoch (their
//! resolution, and what Pinecone puts in bootstrap sequence numbers).

use std::time::Duration;

use conifer_overlay::router::Time;

/// Microseconds since the start of the run.
pub type SimTime = u64;

/// Unix milliseconds of virtual time zero: a fixed date (2027-01-15) so every
/// run, on every machine, hands routers the same clock.
pub const EPOCH_MS: u64 = 1_800_000_000_000;

pub const MICROS_PER_MILLI: u64 = 1_000;
pub const MICROS_PER_SEC: u64 = 1_000_000;

/// What a router is told the time is at `t`.
pub fn router_time(t: SimTime) -> Time {
    Time::from_unix_millis(EPOCH_MS + t / MICROS_PER_MILLI)
}

/// A router deadline back on the engine's clock.
pub fn sim_time(t: Time) -> SimTime {
    t.as_unix_millis().saturating_sub(EPOCH_MS) * MICROS_PER_MILLI
}

/// Seconds (as scenarios write them) to engine time.
pub fn secs(s: f64) -> SimTime {
    (s.max(0.0) * MICROS_PER_SEC as f64).round() as SimTime
}

/// Milliseconds (as link parameters are written) to engine time.
pub fn millis(ms: f64) -> SimTime {
    (ms.max(0.0) * MICROS_PER_MILLI as f64).round() as SimTime
}

pub fn as_secs(t: SimTime) -> f64 {
    t as f64 / MICROS_PER_SEC as f64
}

pub fn from_duration(d: Duration) -> SimTime {
    d.as_micros() as SimTime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_whole_millis() {
        let t = 1_234_000;
        assert_eq!(sim_time(router_time(t)), t);
        // Sub-millisecond parts are truncated for the router.
        assert_eq!(router_time(1_999), router_time(1_000));
    }
}
