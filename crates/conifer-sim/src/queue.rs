//! The event queue: a min-heap keyed by `(time, insertion sequence)`.
//!
//! The sequence number breaks ties between events at the same instant in the
//! order they were scheduled, which is what makes a run reproducible: the heap
//! never compares payloads and never depends on memory addresses.
//!
//! [`TwoLaneQueue`] is the same order split over two heaps, so that a few
//! thousand far-off timers do not deepen the heap every frame passes through.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

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

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Two min-heaps sharing one sequence counter; `pop` takes the smaller
/// `(time, sequence)` of the two heads, so events come out in exactly the
/// order one heap would give. Which lane an event goes in only affects speed:
/// the engine puts per-node timers (one pending per node, each up to a second
/// ahead) in one lane and frames in flight (a few hundred, a millisecond or
/// two ahead) in the other, so the frame lane stays shallow.
pub struct TwoLaneQueue<E> {
    lanes: [BinaryHeap<Reverse<Entry<E>>>; 2],
    seq: u64,
}

impl<E> Default for TwoLaneQueue<E> {
    fn default() -> Self {
        TwoLaneQueue {
            lanes: [BinaryHeap::new(), BinaryHeap::new()],
            seq: 0,
        }
    }
}

impl<E> TwoLaneQueue<E> {
    pub fn push(&mut self, lane: usize, at: SimTime, event: E) {
        self.seq += 1;
        self.lanes[lane].push(Reverse(Entry {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// The lane whose head comes first, if any.
    fn first(&self) -> Option<usize> {
        match (self.lanes[0].peek(), self.lanes[1].peek()) {
            (None, None) => None,
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (Some(Reverse(a)), Some(Reverse(b))) => Some(if a <= b { 0 } else { 1 }),
        }
    }

    pub fn peek_time(&self) -> Option<SimTime> {
        let lane = self.first()?;
        self.lanes[lane].peek().map(|Reverse(e)| e.at)
    }

    /// The event `pop` would return next.
    pub fn peek(&self) -> Option<&E> {
        let lane = self.first()?;
        self.lanes[lane].peek().map(|Reverse(e)| &e.event)
    }

    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let lane = self.first()?;
        self.lanes[lane].pop().map(|Reverse(e)| (e.at, e.event))
    }

    pub fn len(&self) -> usize {
        self.lanes[0].len() + self.lanes[1].len()
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
                two.push((x >> 20) as usize & 1, at, i);
            }
            assert_eq!(one.peek_time(), two.peek_time());
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
