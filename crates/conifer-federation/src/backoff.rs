//! Retry timing for a destination that does not answer: exponential back-off
//! with jitter, capped, and reset at once when the destination is known to
//! be back (a new peering or a wake-up broadcast on the overlay).

/// First retry after 2 s, doubling, never more than an hour apart.
const BASE_MS: u64 = 2_000;
const MAX_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    retry_at_ms: u64,
}

impl Backoff {
    /// Records a failed attempt at `now_ms`; `jitter` in [0, 1) spreads
    /// retries of many senders (the delay is scaled by 0.8–1.4, as Dendrite does).
    pub fn failed(&mut self, now_ms: u64, jitter: f64) {
        self.failures = self.failures.saturating_add(1);
        let exp = BASE_MS
            .saturating_mul(1u64 << (self.failures - 1).min(31))
            .min(MAX_MS);
        let delay = (exp as f64 * (0.8 + 0.6 * jitter.clamp(0.0, 1.0))) as u64;
        self.retry_at_ms = now_ms.saturating_add(delay.min(MAX_MS));
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// The destination is back: try at once.
    pub fn reset(&mut self) {
        self.retry_at_ms = 0;
    }

    pub fn ready(&self, now_ms: u64) -> bool {
        now_ms >= self.retry_at_ms
    }

    /// When to try next (0 when ready now).
    pub fn retry_at_ms(&self) -> u64 {
        self.retry_at_ms
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_an_hour_and_reset_on_success_or_wake_up() {
        let mut b = Backoff::default();
        assert!(b.ready(0));
        b.failed(1_000, 1.0 / 3.0); // scale exactly 1.0
        assert_eq!(b.retry_at_ms(), 3_000);
        assert!(!b.ready(2_999) && b.ready(3_000));
        b.failed(3_000, 1.0 / 3.0);
        assert_eq!(b.retry_at_ms(), 7_000);
        for _ in 0..40 {
            b.failed(0, 1.0);
        }
        assert_eq!(b.retry_at_ms(), MAX_MS);
        b.reset();
        assert!(b.ready(0));
        assert_eq!(b.failures(), 42, "a wake-up does not forget the failures");
        b.succeeded();
        assert_eq!(b, Backoff::default());
    }
}
