//! Overlay ping: a tiny echo protocol over traffic frames, for `conifer overlay ping`.
//!
//! Payload: magic ‖ u32 sequence ‖ u64 send time (µs, sender's clock, echoed back).

use std::time::{Duration, Instant};

use conifer_overlay::PublicKey;
use tokio::sync::mpsc;

use crate::{Delivery, Node};

pub const PING_MAGIC: &[u8] = b"conifer-ping\0";
pub const PONG_MAGIC: &[u8] = b"conifer-pong\0";

#[derive(Debug, Clone)]
pub struct PingOutcome {
    pub seq: u32,
    /// Round-trip time, or `None` on timeout.
    pub rtt: Option<Duration>,
    /// Whether the ping left tree-routed (we held the destination's
    /// coordinates) rather than SNEK-routed.
    pub via_tree: bool,
}

impl Node {
    /// Answers a ping delivery with a pong; returns whether it was one.
    pub fn answer_ping(&self, d: &Delivery) -> bool {
        let Some(rest) = d.payload.strip_prefix(PING_MAGIC) else {
            return false;
        };
        let mut pong = PONG_MAGIC.to_vec();
        pong.extend_from_slice(rest);
        let _ = self.send(d.source, pong);
        true
    }

    /// Sends one ping and waits up to `timeout` for its pong, answering any
    /// pings that arrive meanwhile. Other deliveries are discarded.
    pub async fn ping(
        &self,
        deliveries: &mut mpsc::Receiver<Delivery>,
        destination: PublicKey,
        seq: u32,
        timeout: Duration,
    ) -> PingOutcome {
        let via_tree = self.has_coords_for(&destination);
        let start = Instant::now();
        let mut payload = PING_MAGIC.to_vec();
        payload.extend_from_slice(&seq.to_be_bytes());
        let _ = self.send(destination, payload);
        let wait = async {
            while let Some(d) = deliveries.recv().await {
                if self.answer_ping(&d) {
                    continue;
                }
                let Some(rest) = d.payload.strip_prefix(PONG_MAGIC) else {
                    continue;
                };
                if d.source == destination && rest.get(..4) == Some(&seq.to_be_bytes()[..]) {
                    return Some(start.elapsed());
                }
            }
            None
        };
        let rtt = tokio::time::timeout(timeout, wait).await.ok().flatten();
        PingOutcome { seq, rtt, via_tree }
    }
}
