//! Time as the router sees it: whatever the driver says it is.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in milliseconds since the Unix epoch.
///
/// The router never reads a clock: every input carries a `Time`. The network
/// driver passes the wall clock; the simulator passes virtual time. Unix
/// milliseconds are also what Pinecone puts in bootstrap and broadcast
/// sequence numbers, so one clock serves both purposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    pub const fn from_unix_millis(ms: u64) -> Self {
        Time(ms)
    }

    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_millis() as u64))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(d.as_millis() as u64))
    }
}
