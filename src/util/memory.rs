//! Keeping the idle daemon small (BENCHMARKS.md: idle RSS ≤ 10 MiB).
//!
//! Measured on the daemon holding a full history (120 results of every
//! task), most of its resident memory is not data: about 11 MiB of its RSS
//! were pages of the binary itself, mapped while starting (command line,
//! configuration, loading the results and history, the first sync) and
//! never touched again; the heap was under 3 MiB. Two things help:
//!
//! - [`limit_arenas`], at process start: glibc gives every thread that
//!   meets contention an arena of its own (up to eight per CPU), each
//!   keeping freed memory for itself. The daemon's threads are few and
//!   mostly asleep; two arenas are plenty, and the memory one thread frees
//!   serves the next. Blocks of 32 KiB and more get their own mapping,
//!   returned to the system when freed (glibc's default threshold rises
//!   to 32 MiB as big blocks are freed, leaving them in the heap).
//! - [`settle`], once start-up is over: returns the heap's freed pages to
//!   the system (`malloc_trim`: the history's load parses big records for
//!   a moment).
//!
//! The binary's own code pages that start-up touched stay mapped: they are
//! clean, shared file pages the kernel can reclaim, and BENCHMARKS.md
//! reports them apart from the private (anonymous) memory, which is what
//! the daemon really costs the node. Unmapping them by hand would lower the
//! RSS figure without saving the node anything.
//!
//! Both are no-ops where they do not apply (not glibc, not Linux).

/// Caps glibc's malloc arenas at two and maps big blocks on their own.
/// Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; called before
    // other threads exist.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
        // Blocks of 32 KiB and more (a stored iperf result, a history
        // record being parsed at load) are mapped on their own and given
        // back when freed, rather than left as holes in the heap.
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 32 * 1024);
    }
}

/// After start-up: gives the heap's freed pages back to the system
/// (loading the results and the history parses big records for a moment).
pub fn settle() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
