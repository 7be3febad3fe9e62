//! The only place the overlay's notion of time meets the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conifer_overlay::router::Time;

/// Now, as the router wants it: Unix milliseconds.
pub fn now() -> Time {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    Time::from_unix_millis(ms)
}

/// How long until `deadline`, zero if it has passed.
pub fn until(deadline: Time) -> Duration {
    deadline.since(now())
}
