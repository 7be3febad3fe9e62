//! The one place the simulator uses `unsafe`: the threads of a parallel run
//! share the engine's node slice, each mutating only the nodes it owns.
//!
//! Node ownership is an arbitrary (rebalanced) map from node to part, not a
//! contiguous range, so `split_at_mut`/`chunks_mut` cannot express it; a
//! table of `&mut` per part would cost a pointer chase per access and an
//! O(nodes) rebuild per run. Instead each [`PartNodes`] handle carries the
//! ownership map and its part number, and **checks** ownership on every
//! access, so the soundness argument is local to this file:
//!
//! 1. [`PartNodes::split`] borrows the slice mutably and the map immutably
//!    for `'a`, so neither changes, and nothing else can reach the nodes,
//!    while any handle lives.
//! 2. It makes exactly one handle per part number; a handle only ever hands
//!    out nodes whose map entry is its own part ([`PartNodes::owns`]), so two
//!    handles never reach the same node.
//! 3. Within a handle, [`PartNodes::get`] takes `&mut self` and
//!    [`PartNodes::peek`] `&self`, so the borrow checker keeps its own
//!    references from overlapping, as for a `&mut [T]`.
//! 4. A handle is `Send` when `T` is (it is morally a `&mut` to a subset of
//!    the slice) and not `Sync` (the raw pointer sees to that), so only its
//!    owning thread uses it.
//!
//! The rest of the crate is `#![deny(unsafe_code)]`.

#![allow(unsafe_code)]

use std::marker::PhantomData;

/// Mutable access to the nodes of one part of a slice (or to all of it).
pub(crate) struct PartNodes<'a, T> {
    ptr: *mut T,
    len: usize,
    /// `None`: this handle holds the whole slice. `Some((map, p))`: only the
    /// items `i` with `map[i] == p` (missing entries count as part 0).
    part: Option<(&'a [u8], u8)>,
    _items: PhantomData<&'a mut [T]>,
}

// SAFETY: a handle is an exclusive borrow of a set of items no other handle
// reaches (points 1–2 of the module comment), like a `&mut [T]`, which is
// `Send` when `T` is.
unsafe impl<T: Send> Send for PartNodes<'_, T> {}

impl<'a, T> PartNodes<'a, T> {
    /// One handle on every item (single-threaded runs, and between runs).
    pub fn all(items: &'a mut [T]) -> Self {
        PartNodes {
            ptr: items.as_mut_ptr(),
            len: items.len(),
            part: None,
            _items: PhantomData,
        }
    }

    /// One handle per part `0..parts`, handle `p` reaching the items whose
    /// entry in `map` is `p`.
    pub fn split(items: &'a mut [T], map: &'a [u8], parts: usize) -> Vec<Self> {
        assert!(parts <= 256, "part numbers are bytes");
        let (ptr, len) = (items.as_mut_ptr(), items.len());
        (0..parts)
            .map(|p| PartNodes {
                ptr,
                len,
                part: Some((map, p as u8)),
                _items: PhantomData,
            })
            .collect()
    }

    /// Whether this handle reaches item `n`.
    #[inline]
    pub fn owns(&self, n: usize) -> bool {
        n < self.len
            && match self.part {
                None => true,
                Some((map, p)) => map.get(n).copied().unwrap_or(0) == p,
            }
    }

    /// Item `n`, which this handle must own (else a panic: an engine bug).
    #[inline]
    pub fn get(&mut self, n: usize) -> &mut T {
        assert!(self.owns(n), "node {n} is not this part's");
        // SAFETY: `n` is in bounds and owned by this handle alone (points 1–2
        // of the module comment); `&mut self` keeps this reference exclusive
        // within the handle (point 3).
        unsafe { &mut *self.ptr.add(n) }
    }

    /// Item `n` if this handle owns it.
    #[inline]
    pub fn peek(&self, n: usize) -> Option<&T> {
        // SAFETY: as for `get`; `&self` rules out a live `&mut` from `get`.
        self.owns(n).then(|| unsafe { &*self.ptr.add(n) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_reach_only_their_own_items() {
        let mut items: Vec<u32> = (0..6).collect();
        let map = [0u8, 1, 1, 0, 1];
        let mut parts = PartNodes::split(&mut items, &map, 2);
        std::thread::scope(|s| {
            for (p, mut h) in parts.drain(..).enumerate() {
                s.spawn(move || {
                    for n in 0..7 {
                        let mine = n < 6 && map.get(n).copied().unwrap_or(0) as usize == p;
                        assert_eq!(h.peek(n).is_some(), mine, "part {p} item {n}");
                        if mine {
                            *h.get(n) += 100 * (p as u32 + 1);
                        }
                    }
                });
            }
        });
        assert_eq!(items, vec![100, 201, 202, 103, 204, 105]);
    }

    #[test]
    #[should_panic(expected = "not this part's")]
    fn another_parts_item_panics() {
        let mut items = vec![0u8; 2];
        let map = [0u8, 1];
        let mut parts = PartNodes::split(&mut items, &map, 2);
        parts[0].get(1);
    }
}
