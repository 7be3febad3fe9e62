//! Token-bucket rate limits per key (a user ID, or a client address).

use crate::config::{Bucket, RateLimitConfig};
use crate::error::MatrixError;
use std::collections::HashMap;
use std::sync::Mutex;
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
    state: Mutex<HashMap<(u8, String), (f64, Instant)>>,
}

impl Limits {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            enabled: c.enabled,
            buckets: [c.messages, c.registration, c.login],
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, action: Action, key: &str) -> Result<(), MatrixError> {
        if !self.enabled {
            return Ok(());
        }
        let bucket = self.buckets[action as usize];
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        if state.len() > 100_000 {
            state.clear();
        }
        let (tokens, last) = state
            .entry((action as u8, key.to_owned()))
            .or_insert((bucket.burst, now));
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
}
