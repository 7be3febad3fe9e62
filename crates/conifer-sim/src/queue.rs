//! The event queue: a min-heap keyed by `(time, insertion sequence)`.
//!
//! The sequence number breaks ties between events at the same instant in the
//! order they were scheduled, which is what makes a run reproducible: the heap
//! never compares payloads and never depends on memory addresses.
//!
//! [`TwoLaneQueue`] is the same order split over a heap for frames and an
//! ordered map for timers, so that thousands of far-off timers do not deepen
//! the heap every frame passes through.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use crate::time::SimTime;

struct Entry<E> {
    at: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn push(&mut self, at: SimTime, event: E) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Time of the earliest event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        self.heap.pop().map(|Reverse(e)| (e.at, e.event))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    fn nth(&self, n: usize) -> Option<E>
    where
        E: Copy,
    {
        let mut v: Vec<_> = self
            .heap
            .iter()
            .map(|Reverse(e)| (e.at, e.seq, e.event))
            .collect();
        v.sort_by_key(|&(at, seq, _)| (at, seq));
        v.get(n).map(|&(_, _, e)| e)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The order key of an engine event: its time, then a tie-breaker the caller
/// computes from the event itself (the engine uses the scheduling node and
/// that node's own event count), never from a global insertion counter. Two
/// engines that schedule the same events, in whatever interleaving, pop them
/// in the same order; that is what lets the parallel engine replay exactly
/// what one thread does.
pub type Key = (SimTime, u64);

/// One event order over two structures: `pop` takes the smaller key of the
/// two heads, so events come out in exactly the order one heap would give.
/// Where an event goes only affects speed. Frames in flight (a few hundred, a
/// millisecond or two ahead) go in a small heap that stays in cache.
/// Per-node timers (one or two pending per node, up to a second ahead: tens
/// of thousands at scale) go in an ordered map instead of a heap: a heap of
/// that size moves an entry through every level on each pop, a cache miss
/// per level, while the map is only ever touched at its two ends (the
/// earliest timer, and "a second from now"), which stay in cache.
pub struct TwoLaneQueue<E> {
    near: BinaryHeap<Reverse<Entry<E>>>,
    far: BTreeMap<Key, E>,
}

impl<E> Default for TwoLaneQueue<E> {
    fn default() -> Self {
        TwoLaneQueue {
            near: BinaryHeap::new(),
            far: BTreeMap::new(),
        }
    }
}

impl<E> TwoLaneQueue<E> {
    /// Queues an event due soon (a frame in flight). Keys must be unique.
    pub fn push_near(&mut self, (at, seq): Key, event: E) {
        self.near.push(Reverse(Entry { at, seq, event }));
    }

    /// Queues an event due later (a timer). Keys must be unique.
    pub fn push_far(&mut self, key: Key, event: E) {
        self.far.insert(key, event);
    }

    /// Whether the next event comes from `near`, if there is one.
    fn near_first(&self) -> Option<bool> {
        match (self.near.peek(), self.far.first_key_value()) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(Reverse(a)), Some((&b, _))) => Some((a.at, a.seq) < b),
        }
    }

    pub fn peek_time(&self) -> Option<SimTime> {
        if self.near_first()? {
            self.near.peek().map(|Reverse(e)| e.at)
        } else {
            self.far.first_key_value().map(|(&(at, _), _)| at)
        }
    }

    /// The event `pop` would return next.
    pub fn peek(&self) -> Option<&E> {
        if self.near_first()? {
            self.near.peek().map(|Reverse(e)| &e.event)
        } else {
            self.far.first_key_value().map(|(_, e)| e)
        }
    }

    /// The three events `pop` would return next, in order. The k smallest
    /// entries of a binary heap lie in its first 2^k − 1 slots (each has
    /// fewer than k smaller ancestors), so the heap's three are among its
    /// first seven; the map's are its first three.
    pub fn peek3(&self) -> [Option<&E>; 3] {
        /// Insertion into a sorted array of three.
        fn offer<'a, E>(best: &mut [Option<(Key, &'a E)>; 3], mut item: (Key, &'a E)) {
            for slot in best.iter_mut() {
                match slot {
                    None => {
                        *slot = Some(item);
                        return;
                    }
                    Some(held) if item.0 < held.0 => std::mem::swap(held, &mut item),
                    Some(_) => {}
                }
            }
        }
        let mut best: [Option<(Key, &E)>; 3] = [None; 3];
        for Reverse(e) in self.near.as_slice().iter().take(7) {
            offer(&mut best, ((e.at, e.seq), &e.event));
        }
        for (&k, e) in self.far.iter().take(3) {
            offer(&mut best, (k, e));
        }
        best.map(|b| b.map(|(_, e)| e))
    }

    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        if self.near_first()? {
            self.near.pop().map(|Reverse(e)| (e.at, e.event))
        } else {
            self.far.pop_first().map(|((at, _), e)| (at, e))
        }
    }

    /// Every queued event with its key, in no particular order (to move
    /// events between queues).
    pub fn drain(&mut self) -> impl Iterator<Item = (Key, bool, E)> + '_ {
        let near = self
            .near
            .drain()
            .map(|Reverse(e)| ((e.at, e.seq), true, e.event));
        let far = std::mem::take(&mut self.far)
            .into_iter()
            .map(|(k, e)| (k, false, e));
        near.chain(far)
    }

    pub fn len(&self) -> usize {
        self.near.len() + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lanes_pop_in_single_heap_order() {
        // Pseudo-random pushes interleaved with pops, as the engine does.
        let mut one = EventQueue::default();
        let mut two = TwoLaneQueue::default();
        let mut x = 12345u64;
        let mut now = 0;
        for i in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if x >> 62 == 0 {
                let a = one.pop();
                assert_eq!(a, two.pop());
                if let Some((t, _)) = a {
                    now = t;
                }
            } else {
                let at = now + (x >> 40) % 7;
                one.push(at, i);
                // The insertion order as the tie-breaker, as `one` does.
                let key = (at, i as u64);
                if (x >> 20) & 1 == 0 {
                    two.push_near(key, i);
                } else {
                    two.push_far(key, i);
                }
            }
            assert_eq!(one.peek_time(), two.peek_time());
            let [a, b, c] = two.peek3();
            assert_eq!(a, two.peek());
            if i % 16 == 0 {
                assert_eq!(b.copied(), one.nth(1));
                assert_eq!(c.copied(), one.nth(2));
            }
        }
        while let Some(a) = one.pop() {
            assert_eq!(Some(a), two.pop());
        }
        assert!(two.is_empty());
    }

    #[test]
    fn orders_by_time_then_insertion() {
        let mut q = EventQueue::default();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }
}
