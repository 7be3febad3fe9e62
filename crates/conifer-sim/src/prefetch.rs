//! Cache prefetch hints for the engine's next event.
//!
//! With 10 000 routers the state a frame touches on arrival (the receiving
//! node, its router, the link) is almost never in cache, and the engine
//! spends most of its time waiting for memory. The next event is usually
//! known one event ahead, so the engine asks the CPU to start loading its
//! node while it handles the current one. A hint changes no result: it reads
//! nothing and cannot fault.

/// Asks the CPU to pull every cache line of `*value` towards L1.
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = value as *const T as *const i8;
        let mut offset = 0;
        while offset < std::mem::size_of::<T>() {
            // SAFETY: `_mm_prefetch` is a hint: it never faults and has no
            // effect visible to the program, and the address lies inside
            // `*value`, which the reference keeps alive. SSE, which it needs,
            // is part of the x86-64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
