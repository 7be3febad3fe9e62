//! Per-peer send queues: protocol frames first, then fairly shared traffic.
//!
//! Traffic goes into one of N sub-queues chosen by hashing the flow (its keys
//! and coordinates) plus a per-queue random offset, so one busy flow cannot
//! starve the others. Sub-queues are served round-robin.
//!
//! A sub-queue holds [`SUBQUEUE_DEPTH`] frames, enough for a burst of 64
//! frames of one flow (a QUIC congestion window's worth) to wait whole while
//! the writer catches up; a full sub-queue drops its *oldest* frame (head
//! drop), which keeps latency bounded for whoever is still sending. The
//! whole traffic queue of a peer is also capped, at [`PEER_QUEUE_FRAMES`]
//! frames and [`PEER_QUEUE_BYTES`] bytes; past either, the oldest frame of the
//! *longest* sub-queue goes, so under saturation the flows sending most lose
//! first and a flow's burst below its fair share survives. Memory per peer is
//! therefore bounded whatever peers send.

use std::collections::{HashMap, VecDeque};

/// Frames each traffic sub-queue holds before it starts dropping its oldest.
pub const SUBQUEUE_DEPTH: usize = 64;
/// Traffic frames queued for one peer, over all its sub-queues.
pub const PEER_QUEUE_FRAMES: usize = 4096;
/// Traffic bytes queued for one peer, over all its sub-queues.
pub const PEER_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Sub-queues for ordinary links and for Bluetooth links.
pub const SUBQUEUES: usize = 254;
pub const SUBQUEUES_BLUETOOTH: usize = 16;
/// Protocol frames are few and vital; the cap only stops a pathological peer
/// from growing memory without bound.
pub const PROTO_QUEUE_CAP: usize = 1024;

#[derive(Debug)]
pub(crate) struct FairQueue {
    offset: u64,
    subqueues: usize,
    /// Only non-empty sub-queues exist: an idle peer costs nothing here.
    queues: HashMap<usize, VecDeque<Vec<u8>>>,
    /// Indices of non-empty sub-queues, in round-robin service order.
    active: VecDeque<usize>,
    len: usize,
    bytes: usize,
}

impl FairQueue {
    pub fn new(subqueues: usize, offset: u64) -> Self {
        FairQueue {
            offset,
            subqueues,
            queues: HashMap::new(),
            active: VecDeque::new(),
            len: 0,
            bytes: 0,
        }
    }

    /// Queues a frame of flow `flow_hash`; returns how many older frames
    /// were dropped to make room.
    pub fn push(&mut self, flow_hash: u64, frame: Vec<u8>) -> usize {
        let i = (flow_hash.wrapping_add(self.offset) % self.subqueues as u64) as usize;
        let mut dropped = 0;
        if self
            .queues
            .get(&i)
            .is_some_and(|q| q.len() >= SUBQUEUE_DEPTH)
        {
            self.drop_oldest(i);
            dropped += 1;
        }
        while self.len > 0
            && (self.len >= PEER_QUEUE_FRAMES || self.bytes + frame.len() > PEER_QUEUE_BYTES)
        {
            let longest = self.longest();
            self.drop_oldest(longest);
            dropped += 1;
        }
        let q = self.queues.entry(i).or_default();
        if q.is_empty() {
            self.active.push_back(i);
        }
        self.len += 1;
        self.bytes += frame.len();
        q.push_back(frame);
        dropped
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let i = self.active.pop_front()?;
        let q = self.queues.get_mut(&i)?;
        let frame = q.pop_front()?;
        if q.is_empty() {
            self.queues.remove(&i);
        } else {
            self.active.push_back(i);
        }
        self.len -= 1;
        self.bytes -= frame.len();
        Some(frame)
    }

    /// The non-empty sub-queue holding most frames (the first in service
    /// order among equals). Only called when the peer's cap is reached.
    fn longest(&self) -> usize {
        let mut best = (0, 0);
        for &i in &self.active {
            let n = self.queues.get(&i).map_or(0, VecDeque::len);
            if n > best.1 {
                best = (i, n);
            }
        }
        best.0
    }

    /// Drops sub-queue `i`'s oldest frame (head drop).
    fn drop_oldest(&mut self, i: usize) {
        let Some(q) = self.queues.get_mut(&i) else {
            return;
        };
        if let Some(f) = q.pop_front() {
            self.len -= 1;
            self.bytes -= f.len();
        }
        if q.is_empty() {
            self.queues.remove(&i);
            self.active.retain(|&j| j != i);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn clear(&mut self) {
        self.queues.clear();
        self.active.clear();
        self.len = 0;
        self.bytes = 0;
    }
}

/// The flow hash Go uses: the sum of the coordinate and key bytes.
pub(crate) fn flow_hash(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0u64, |acc, &b| acc.wrapping_add(u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_drop_keeps_newest() {
        let mut q = FairQueue::new(4, 0);
        let mut dropped = 0;
        for i in 0..SUBQUEUE_DEPTH as u32 + 4 {
            dropped += q.push(1, i.to_be_bytes().to_vec());
        }
        assert_eq!(dropped, 4);
        assert_eq!(q.len(), SUBQUEUE_DEPTH);
        assert_eq!(
            q.pop(),
            Some(4u32.to_be_bytes().to_vec()),
            "the four oldest were dropped"
        );
    }

    #[test]
    fn a_burst_of_64_frames_of_one_flow_is_kept_whole() {
        let mut q = FairQueue::new(SUBQUEUES, 7);
        for i in 0..64u32 {
            assert_eq!(q.push(42, i.to_be_bytes().to_vec()), 0);
        }
        let out: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        let want: Vec<_> = (0..64u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn the_peer_cap_drops_from_the_longest_flow() {
        let mut q = FairQueue::new(SUBQUEUES, 0);
        // Flows 0..64 fill the peer's queue to its frame cap exactly.
        for flow in 0..64u64 {
            for _ in 0..PEER_QUEUE_FRAMES / 64 {
                assert_eq!(q.push(flow, vec![flow as u8]), 0);
            }
        }
        assert_eq!(q.len(), PEER_QUEUE_FRAMES);
        // A new flow still gets in; the frame that goes is the oldest of the
        // first of the longest (all equal) sub-queues.
        assert_eq!(q.push(100, vec![100]), 1);
        assert_eq!(q.len(), PEER_QUEUE_FRAMES);
        let mut per_flow = [0usize; 256];
        while let Some(f) = q.pop() {
            per_flow[f[0] as usize] += 1;
        }
        assert_eq!(per_flow[100], 1);
        assert_eq!(per_flow[0], PEER_QUEUE_FRAMES / 64 - 1);
        assert_eq!(per_flow[1], PEER_QUEUE_FRAMES / 64);
    }

    #[test]
    fn the_peer_byte_cap_holds() {
        let mut q = FairQueue::new(SUBQUEUES, 0);
        let big = 60_000;
        let mut dropped = 0;
        for flow in 0..200u64 {
            dropped += q.push(flow, vec![0; big]);
        }
        assert!(q.bytes <= PEER_QUEUE_BYTES);
        assert_eq!(q.len(), PEER_QUEUE_BYTES / big);
        assert_eq!(dropped, 200 - PEER_QUEUE_BYTES / big);
    }

    #[test]
    fn flows_are_served_round_robin() {
        let mut q = FairQueue::new(4, 0);
        for i in 0..3u8 {
            q.push(0, vec![0, i]);
        }
        q.push(1, vec![1, 0]);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![vec![0, 0], vec![1, 0], vec![0, 1], vec![0, 2]]);
        assert_eq!(q.len(), 0);
    }
}
