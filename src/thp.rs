//! Opts the process out of transparent huge pages — the one `unsafe` call of the binary.
//!
//! With huge pages the kernel backs every touched 2 MiB range of the heap with a whole huge page. The
//! head's memory is a few hundred thousand small allocations spread over those ranges: when the
//! server used mimalloc, which asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), ~90 MiB
//! of RSS became ~138 MiB at 100k series with one sample each (measured with `strata-bench load`,
//! see docs/BENCHMARKS.md), with no measurable gain in ingest CPU. glibc's malloc, used now, does
//! not ask for them, but a machine with transparent huge pages set to `always` gives them anyway.
//! `PR_SET_THP_DISABLE` applies to the whole process, including mappings made before the call and
//! `MADV_HUGEPAGE` regions.

/// Disables transparent huge pages for this process. Returns the OS error if the kernel refuses
/// (old kernels, seccomp); the server runs either way.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn disable() -> std::io::Result<()> {
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
pub fn disable() -> std::io::Result<()> {
    Ok(())
}
