//! Feeds the router's timers: sleep until `poll_timeout`, run `handle_timeout`.

use std::time::Duration;

use crate::clock;
use crate::shared::Shared;

pub(crate) async fn run(shared: Shared) {
    loop {
        let deadline = shared.with_state(|s, _| {
            let d = s.router.poll_timeout();
            s.timer_deadline = d;
            d
        });
        // Cap the sleep so a wall-clock jump cannot stall maintenance for long.
        let wait = clock::until(deadline).min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                shared.with_router(|r, now| {
                    if r.poll_timeout() <= now {
                        r.handle_timeout(now);
                    }
                });
            }
            _ = shared.timer.notified() => {}
        }
    }
}
