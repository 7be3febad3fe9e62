//! Per-peer send queues: protocol frames first, then fairly shared traffic.
//!
//! Traffic goes into one of N sub-queues of 16 frames chosen by hashing the
//! flow (its keys and coordinates) plus a per-queue random offset, so one busy
//! flow cannot starve the others; a full sub-queue drops its *oldest* frame
//! (head drop), which keeps latency bounded for whoever is still sending.
//! Sub-queues are served round-robin. Memory per peer is therefore bounded.

use std::collections::{HashMap, VecDeque};

/// Frames each traffic sub-queue holds before it starts dropping its oldest.
pub const SUBQUEUE_DEPTH: usize = 16;
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
}

impl FairQueue {
    pub fn new(subqueues: usize, offset: u64) -> Self {
        FairQueue {
            offset,
            subqueues,
            queues: HashMap::new(),
            active: VecDeque::new(),
            len: 0,
        }
    }

    /// Queues a frame of flow `flow_hash`; returns true if an older frame was dropped.
    pub fn push(&mut self, flow_hash: u64, frame: Vec<u8>) -> bool {
        let i = (flow_hash.wrapping_add(self.offset) % self.subqueues as u64) as usize;
        let q = self.queues.entry(i).or_default();
        let mut dropped = false;
        if q.len() >= SUBQUEUE_DEPTH {
            q.pop_front();
            dropped = true;
        } else {
            self.len += 1;
        }
        if q.is_empty() {
            self.active.push_back(i);
        }
        q.push_back(frame);
        dropped
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let i = self.active.pop_front()?;
        let q = self.queues.get_mut(&i)?;
        let frame = q.pop_front();
        if q.is_empty() {
            self.queues.remove(&i);
        } else {
            self.active.push_back(i);
        }
        self.len -= 1;
        frame
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn clear(&mut self) {
        self.queues.clear();
        self.active.clear();
        self.len = 0;
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
        for i in 0..20u8 {
            q.push(1, vec![i]);
        }
        assert_eq!(q.len(), SUBQUEUE_DEPTH);
        assert_eq!(q.pop(), Some(vec![4]), "the four oldest were dropped");
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
