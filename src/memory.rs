//! How the process gets memory from the OS, set once at startup — the binary's only `unsafe` calls.
//!
//! - **No transparent huge pages.** With huge pages the kernel backs every touched 2 MiB range of
//!   the heap with a whole huge page. The head's memory is a few hundred thousand small allocations
//!   spread over those ranges: with an allocator that asks for huge pages on its arenas
//!   (`madvise(MADV_HUGEPAGE)`, as mimalloc does), ~90 MiB of RSS becomes ~138 MiB at 100k series
//!   with one sample each (measured with `strata-bench load`, see docs/BENCHMARKS.md), with no
//!   measurable gain in ingest CPU. glibc's malloc does not ask for them, but a machine with
//!   transparent huge pages set to `always` gives them anyway. `PR_SET_THP_DISABLE` applies to the
//!   whole process, including mappings made before the call and `MADV_HUGEPAGE` regions.
//! - **A fixed mmap threshold for glibc's malloc.** glibc serves blocks of 128 KiB and more with
//!   their own `mmap`, but raises that threshold to the size of each such block freed (up to
//!   32 MiB). Left to adjust, once range queries over a thousand series free ~2 MiB output
//!   buffers, later ones come from a thread's heap arena and stay there: RSS grows ~12 MB over the
//!   first few queries and never comes back (docs/BENCHMARKS.md). A threshold fixed at
//!   [`MMAP_THRESHOLD`] turns that adjustment off: a block that large that the heap's free space
//!   cannot serve is mapped on its own and unmapped when freed, instead of growing the heap; ingest
//!   CPU is the same either way in alternated loads. (It also fixes glibc's trim threshold at its
//!   128 KiB default; raising that saves page faults but not CPU, and costs ~1 MB of peak.)

/// Blocks of this size and more that the heap's free space cannot serve are mapped on their own.
/// Above a decompressed remote-write request of 2,000 samples (~370 KiB; its buffer is reused
/// anyway).
pub const MMAP_THRESHOLD: usize = 512 * 1024;

/// Disables transparent huge pages for this process. Returns the OS error if the kernel refuses
/// (old kernels, seccomp); the server runs either way.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) takes only integer arguments, reads and writes
    // no memory of ours, and only changes how the kernel backs future page faults of this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Transparent huge pages are a Linux feature; elsewhere there is nothing to do.
#[cfg(not(target_os = "linux"))]
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    Ok(())
}

/// Fixes glibc malloc's mmap threshold at [`MMAP_THRESHOLD`]. Returns false if glibc refuses the
/// value; the server runs either way.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn fix_mmap_threshold() -> bool {
    let Ok(bytes) = libc::c_int::try_from(MMAP_THRESHOLD) else {
        return false;
    };
    // SAFETY: mallopt(M_MMAP_THRESHOLD, n) takes only integers and changes a malloc parameter under
    // malloc's own lock; blocks already allocated keep their kind (heap or mapped) and are freed by
    // it correctly either way. It is called before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}

/// Other C libraries have no such adjustment (or no `mallopt`): nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_threshold() {
        assert!(super::fix_mmap_threshold());
    }
}
