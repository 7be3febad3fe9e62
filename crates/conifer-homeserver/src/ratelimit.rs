//! Token-bucket rate limits per key (a user ID, or a client address).

use crate::config::{Bucket, RateLimitConfig};
use crate::error::MatrixError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub enum Action {
    Message,
    Registration,
    Login,
}

pub struct Limits {
    enabled: bool,
    buckets: [Bucket; 3],
    state: Mutex<Table>,
    /// Most keys tracked at once.
    capacity: usize,
}

/// `(action, key) → (tokens, last refill)`.
type Table = HashMap<(u8, String), (f64, Instant)>;

/// Keys tracked at once by default.
const CAPACITY: usize = 100_000;

impl Limits {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            enabled: c.enabled,
            buckets: [c.messages, c.registration, c.login],
            state: Mutex::new(HashMap::new()),
            capacity: CAPACITY,
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, action: Action, key: &str) -> Result<(), MatrixError> {
        if !self.enabled {
            return Ok(());
        }
        let bucket = self.buckets[action as usize];
        let now = Instant::now();
        let mut state = self.state.lock();
        let id = (action as u8, key.to_owned());
        if state.len() >= self.capacity && !state.contains_key(&id) {
            self.shrink(&mut state, now);
        }
        let (tokens, last) = state.entry(id).or_insert((bucket.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * bucket.per_second)
            .min(bucket.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / bucket.per_second.max(1e-9) * 1000.0).ceil() as u64;
            Err(MatrixError::limit_exceeded(wait))
        }
    }

    /// Makes room for new keys without giving anyone a fresh bucket they
    /// should not have: a key's entry only records its deficit (how far it
    /// is below a full bucket, which is what an absent key gets), so the
    /// entries with the smallest deficit go first, refilled ones (deficit 0)
    /// before any other. Keys are chosen by clients (user names), so a flood
    /// of fresh keys only evicts other fresh keys, never the nearly empty
    /// bucket of a user under attack. Frees a tenth of the table at once so
    /// the scan is paid rarely.
    fn shrink(&self, state: &mut Table, now: Instant) {
        let mut deficits: Vec<(f64, (u8, String))> = state
            .iter()
            .map(|(k, (tokens, last))| {
                let b = self.buckets[k.0 as usize];
                let refilled =
                    (tokens + now.duration_since(*last).as_secs_f64() * b.per_second).min(b.burst);
                ((b.burst - refilled) / b.burst.max(1e-9), k.clone())
            })
            .collect();
        let keep = self.capacity - self.capacity / 10 - 1;
        if deficits.len() <= keep {
            return;
        }
        let cut = deficits.len() - keep;
        deficits.select_nth_unstable_by(cut - 1, |a, b| a.0.total_cmp(&b.0));
        for (_, k) in deficits.drain(..cut) {
            state.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(capacity: usize) -> Limits {
        let c = RateLimitConfig {
            enabled: true,
            login: Bucket {
                per_second: 0.01,
                burst: 3.0,
            },
            ..RateLimitConfig::default()
        };
        let mut l = Limits::new(&c);
        l.capacity = capacity;
        l
    }

    /// The audit's attack: exhaust a victim's login bucket, then flood the
    /// table with attacker-chosen user names to reset it. The victim stays
    /// limited and the table stays bounded.
    #[test]
    fn a_flood_of_fresh_keys_does_not_reset_an_exhausted_bucket() {
        let l = limits(1_000);
        for _ in 0..3 {
            l.check(Action::Login, "@victim:x").unwrap();
        }
        assert!(l.check(Action::Login, "@victim:x").is_err());
        for n in 0..20_000 {
            let _ = l.check(Action::Login, &format!("@guess{n}:x"));
            assert!(l.state.lock().len() <= 1_000);
        }
        let err = l.check(Action::Login, "@victim:x").unwrap_err();
        assert_eq!(err.errcode, "M_LIMIT_EXCEEDED");
    }
}
