//! Hands memory back to the OS once the node goes quiet.
//!
//! First the homeserver drops what it keeps only for speed (SQLite's page
//! caches and parsed statements, as mobile apps do on a low-memory warning),
//! then the allocator returns the free pages.
//!
//! glibc keeps freed memory inside its arenas (one per thread that ever
//! allocated, so each tokio worker has its own) for reuse, and only trims
//! the top of the main heap by itself. After a burst of work (a sync storm,
//! a batch of federation transactions) an idle node on a phone would keep
//! megabytes it no longer uses. `malloc_trim(0)` releases the free pages
//! of every arena; it walks the free lists, so it is run only when the
//! process has been idle for a whole tick after having done some work, never
//! on a busy node.
//!
//! "Idle" is read from the process's own CPU time, so nothing in the
//! homeserver or the overlay needs to report activity.

use std::time::Duration;

/// How often the CPU clock is read.
const TICK: Duration = Duration::from_secs(2);
/// A tick with less CPU than this counts as idle.
const IDLE_CPU: Duration = Duration::from_millis(20);
/// Work since the last trim worth a trim.
const WORK_CPU: Duration = Duration::from_millis(50);

/// Whether to trim now: the last tick was idle and there was work since the
/// last trim (times are process CPU times).
fn should_trim(last_tick_cpu: Duration, cpu_since_trim: Duration) -> bool {
    last_tick_cpu < IDLE_CPU && cpu_since_trim >= WORK_CPU
}

/// Spawns the trimming task on the current tokio runtime (a no-op where the
/// allocator is not glibc's).
pub fn spawn(hs: std::sync::Arc<conifer_homeserver::Homeserver>) {
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = hs;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous = process_cpu_time();
        let mut at_last_trim = previous;
        loop {
            interval.tick().await;
            let now = process_cpu_time();
            if should_trim(
                now.saturating_sub(previous),
                now.saturating_sub(at_last_trim),
            ) {
                let hs = hs.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    hs.release_memory();
                    // SAFETY: malloc_trim only returns free pages to the
                    // kernel; it takes each arena's lock like any
                    // allocation does.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                })
                .await;
                at_last_trim = process_cpu_time();
                tracing::trace!("idle: returned free heap memory to the OS");
            }
            previous = process_cpu_time();
        }
    });
}

/// CPU time (user + system) used by the whole process so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_an_idle_process_that_worked_since_the_last_trim() {
        let ms = Duration::from_millis;
        assert!(should_trim(ms(0), ms(500)));
        assert!(!should_trim(ms(300), ms(500)), "busy: never trim");
        assert!(!should_trim(ms(0), ms(10)), "nothing new to trim");
        assert!(!should_trim(IDLE_CPU, ms(500)));
        assert!(should_trim(ms(19), WORK_CPU));
    }
}
