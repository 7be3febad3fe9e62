//! Static peers: dialled at start and redialled with exponential back-off.

use std::time::Duration;

use crate::Node;

/// Back-off before attempt `n + 1` after `n` failures: 2^n seconds, capped at an hour.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(12)).min(Duration::from_secs(3600))
}

impl Node {
    /// Keeps a peering to `uri` up: `ws://…`/`wss://…` dial WebSocket,
    /// anything else (`host:port`, optionally `tcp://host:port`) dials TCP.
    pub fn add_static_peer(&self, uri: String) {
        let node = self.clone();
        self.spawn_until_stopped(async move {
            let mut failures = 0u32;
            loop {
                let result = if uri.starts_with("ws://") || uri.starts_with("wss://") {
                    node.connect_ws(&uri).await
                } else {
                    node.connect_tcp(&uri, "static").await
                };
                match result {
                    Ok(key) => {
                        failures = 0;
                        tracing::info!(%uri, peer = %key, "static peer connected");
                        node.wait_until_disconnected(key).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        let wait = backoff(failures);
                        failures = failures.saturating_add(1);
                        tracing::warn!(%uri, error = %e, retry_in = ?wait, "static peer unreachable");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
    }

    /// Resolves when no peering to `key` is left.
    async fn wait_until_disconnected(&self, key: conifer_overlay::PublicKey) {
        let mut events = self.subscribe();
        loop {
            let connected = self.status().peers.iter().any(|p| p.key == key);
            if !connected {
                return;
            }
            // Any event may be the removal; re-check on each, and now and then.
            let _ = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(11), Duration::from_secs(2048));
        assert_eq!(backoff(12), Duration::from_secs(3600));
        assert_eq!(backoff(400), Duration::from_secs(3600));
    }
}
