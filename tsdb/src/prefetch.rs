//! Cache prefetch hints: the crate's second and last `unsafe`, fenced here.
//!
//! Appending touches, per series, memory that was last read thousands of series ago (the series' lock,
//! its labels, its open chunk's tail, a late sample's out-of-order buffer), so each touch would wait
//! for main memory in turn. Hinting ahead of use lets those waits overlap.
//!
//! Invariant that makes [`read`] sound for any address: a prefetch is only a hint to the CPU. It never
//! dereferences in the language's sense, never faults (an unmapped or stale address is ignored by the
//! hardware), and changes no memory or program state. Callers may therefore pass addresses of memory that
//! has since been freed or moved; the worst outcome is a wasted hint.
#![allow(unsafe_code)]

/// Hints that the cache line holding `addr` will be read soon. Does nothing on other architectures.
#[inline(always)]
pub(crate) fn read(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: see the module doc: PREFETCHT0 has no architectural effect besides filling a cache line and
    // does not fault; SSE is part of the x86_64 baseline, so the target feature is always present.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`read`] for every cache line that overlaps `[start, end)`, all requested at once.
#[inline(always)]
pub(crate) fn read_range(start: usize, end: usize) {
    let mut line = start & !63;
    while line < end {
        read(line);
        line += 64;
    }
}
