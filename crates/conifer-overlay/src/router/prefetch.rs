//! Cache prefetch hints, for drivers that know which router's next input
//! is coming (the simulator, with 10 000 routers mostly out of cache).
//! A hint reads nothing, changes nothing and cannot fault.
//!
//! Compiled only with the `prefetch` feature; the crate's one `unsafe`
//! (the `_mm_prefetch` intrinsic) is here.

#![allow(unsafe_code)]

/// Asks the CPU to pull every cache line of `*value` towards L1.
#[inline]
pub fn prefetch<T: ?Sized>(value: &T) {
    let start = value as *const T as *const u8;
    prefetch_bytes(start, std::mem::size_of_val(value));
}

/// Every cache line of a slice.
#[inline]
pub fn prefetch_slice<T>(items: &[T]) {
    prefetch_bytes(items.as_ptr() as *const u8, std::mem::size_of_val(items));
}

/// The cache line where `items` starts, even if it is empty (the start of
/// an empty queue's buffer is where its next item goes; a dangling pointer
/// is harmless, as a prefetch never faults).
#[inline]
pub fn prefetch_start<T>(items: &[T]) {
    prefetch_bytes(items.as_ptr() as *const u8, 1);
}

#[inline]
fn prefetch_bytes(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut offset = 0;
        while offset < len {
            // SAFETY: `_mm_prefetch` is a hint: it never faults and has no
            // effect visible to the program, whatever the address (which
            // `wrapping_add` computes without dereferencing). SSE, which it needs, is part of
            // the x86-64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset) as *const i8) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}
