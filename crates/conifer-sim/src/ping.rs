//! Pings: probe payloads the engine recognises on the wire and on delivery.
//!
//! A ping's payload is `id (u32 LE) ‖ kind ‖ "CSpg"`. Traffic payloads end
//! their frame, so the engine spots a ping on every link traversal by looking
//! at the frame type byte and the last four bytes, without decoding the frame:
//! that is how hops are counted (Go's simulator increments a counter inside
//! the ping through its filter hook instead).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::engine::NodeId;
use crate::time::SimTime;

pub const PING_MAGIC: [u8; 4] = *b"CSpg";
const KIND_PING: u8 = 0;
const KIND_PONG: u8 = 1;
const PAYLOAD_LEN: usize = 9;
/// Frame header byte holding the frame type; 3 is Traffic.
const TYPE_OFFSET: usize = 5;
const TRAFFIC: u8 = 3;

/// One probe and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct PingRecord {
    pub from: NodeId,
    pub to: NodeId,
    pub sent: SimTime,
    /// True shortest-path hop count when sent (BFS on the live topology).
    pub shortest: u32,
    /// Link traversals so far.
    pub hops: u32,
    pub delivered: Option<SimTime>,
    /// Hops at the moment of delivery.
    pub delivered_hops: u32,
    pub pong_delivered: Option<SimTime>,
    /// Which reporting bucket (mobility step, time window) the ping belongs to.
    pub bucket: u32,
    /// Scenario-defined class (for example "involves an eclipse victim").
    pub class: u8,
}

#[derive(Default)]
pub struct PingTracker {
    /// Up to date whenever the engine is between runs ([`PingTracker::sync`]).
    pub pings: Vec<PingRecord>,
    /// What the engine updates while it runs, through a shared reference
    /// (several threads may be running routers): a ping's frame is in one
    /// place at a time, so the counts are causally ordered and only the
    /// memory needs to be shared. Relaxed atomics suffice, since the
    /// threads meet at a barrier between any two dependent updates.
    live: Vec<Live>,
    /// Destinations answer with a pong (tree-routed, since they just learnt
    /// the source's coordinates from the ping).
    pub pong: bool,
}

const NONE: u64 = u64::MAX;

#[derive(Default)]
struct Live {
    hops: AtomicU32,
    delivered: AtomicU64,
    delivered_hops: AtomicU32,
    pong_delivered: AtomicU64,
}

fn get(a: &AtomicU64) -> Option<SimTime> {
    Some(a.load(Relaxed)).filter(|&t| t != NONE)
}

pub fn payload(id: u32, pong: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAYLOAD_LEN);
    p.extend_from_slice(&id.to_le_bytes());
    p.push(if pong { KIND_PONG } else { KIND_PING });
    p.extend_from_slice(&PING_MAGIC);
    p
}

/// `(id, is_pong)` if `tail` ends with a ping payload.
fn parse_tail(tail: &[u8]) -> Option<(u32, bool)> {
    let n = tail.len();
    if n < PAYLOAD_LEN || tail[n - 4..] != PING_MAGIC {
        return None;
    }
    let p = &tail[n - PAYLOAD_LEN..];
    let id = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    Some((id, p[4] == KIND_PONG))
}

impl PingTracker {
    pub fn add(&mut self, rec: PingRecord) -> u32 {
        self.live.push(Live {
            hops: AtomicU32::new(rec.hops),
            delivered: AtomicU64::new(rec.delivered.unwrap_or(NONE)),
            delivered_hops: AtomicU32::new(rec.delivered_hops),
            pong_delivered: AtomicU64::new(rec.pong_delivered.unwrap_or(NONE)),
        });
        self.pings.push(rec);
        (self.pings.len() - 1) as u32
    }

    /// Brings [`PingTracker::pings`] up to date with what the engine saw.
    pub fn sync(&mut self) {
        for (p, l) in self.pings.iter_mut().zip(&self.live) {
            p.hops = l.hops.load(Relaxed);
            p.delivered = get(&l.delivered);
            p.delivered_hops = l.delivered_hops.load(Relaxed);
            p.pong_delivered = get(&l.pong_delivered);
        }
    }

    /// A frame crossed a link.
    pub fn on_traverse(&self, frame: &[u8]) {
        if frame.get(TYPE_OFFSET) != Some(&TRAFFIC) {
            return;
        }
        if let Some((id, false)) = parse_tail(frame) {
            if let Some(l) = self.live.get(id as usize) {
                l.hops.fetch_add(1, Relaxed);
            }
        }
    }

    /// A payload reached `node`'s application. Returns the pong to send back
    /// (`to`, payload), if pongs are on.
    pub fn on_deliver(
        &self,
        node: NodeId,
        payload: &[u8],
        now: SimTime,
    ) -> Option<(NodeId, Vec<u8>)> {
        let (id, is_pong) = parse_tail(payload)?;
        let p = self.pings.get(id as usize)?;
        let l = &self.live[id as usize];
        // Only `p.from` writes `pong_delivered` and only `p.to` writes
        // `delivered`: each check and its update happen on one node.
        if is_pong {
            if p.from == node && get(&l.pong_delivered).is_none() {
                l.pong_delivered.store(now, Relaxed);
            }
            return None;
        }
        if p.to != node || get(&l.delivered).is_some() {
            return None;
        }
        l.delivered.store(now, Relaxed);
        l.delivered_hops.store(l.hops.load(Relaxed), Relaxed);
        self.pong.then(|| (p.from, payload_for_pong(id)))
    }
}

fn payload_for_pong(id: u32) -> Vec<u8> {
    payload(id, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = payload(77, false);
        assert_eq!(parse_tail(&p), Some((77, false)));
        let mut frame = vec![0u8; 40];
        frame.extend_from_slice(&payload(5, true));
        assert_eq!(parse_tail(&frame), Some((5, true)));
        assert_eq!(parse_tail(b"hello"), None);
    }
}
