//! Keeping the idle daemon small (BENCHMARKS.md: idle RSS ≤ 10 MiB).
//!
//! Measured on the daemon holding a full history (120 results of every
//! task), most of its resident memory is not data: about 11 MiB of its RSS
//! were pages of the binary itself, mapped while starting (command line,
//! configuration, loading the results and history, the first sync) and
//! never touched again; the heap was under 3 MiB. Two things follow:
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
//!   a moment) and drops the process's mappings of its own code
//!   (`madvise(MADV_DONTNEED)` on the executable's text). The code stays in
//!   the page cache, clean and shared; what the daemon runs afterwards is
//!   mapped again on first use, so only the code it keeps running counts
//!   towards its RSS, and the start-up code is as reclaimable as any other
//!   file page instead of pinned by a mapping. Only the executable's
//!   read-and-execute mapping is touched: it is never written (no text
//!   relocations), so dropping it loses nothing. Data, relocated and
//!   library mappings are left alone.
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

/// After start-up: gives freed heap pages back and unmaps the code only
/// start-up ran. Returns the bytes of code mapping dropped.
pub fn settle() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    drop_code_mappings()
}

/// `madvise(MADV_DONTNEED)` on the executable's code and leading
/// read-only data.
fn drop_code_mappings() -> u64 {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut dropped = 0;
    for (start, end) in code_ranges(&maps, &exe.to_string_lossy()) {
        // SAFETY: the range is a whole private, read-only, executable file
        // mapping of our own binary; its pages equal the file's, so the
        // kernel refaults identical code on the next access.
        let ok = unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end - start,
                nix::libc::MADV_DONTNEED,
            )
        } == 0;
        if ok {
            dropped += (end - start) as u64;
        }
    }
    dropped
}

/// The mappings of `exe` in a `/proc/<pid>/maps` text that hold only the
/// file's bytes: its code (`r-xp`) and the read-only data at its start.
fn code_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let offset = f.next()?;
            let path = f.nth(2)?;
            // The code, and the read-only data the file starts with
            // (constants, unwind tables). Not a later `r--p` mapping: that
            // is the relocated data, written once at load.
            let wanted = perms == "r-xp" || (perms == "r--p" && offset == "00000000");
            if !wanted || path != exe {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let a = usize::from_str_radix(a, 16).ok()?;
            let b = usize::from_str_radix(b, 16).ok()?;
            (b > a).then_some((a, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_code_mapping_is_chosen() {
        let maps = "\
55e0a000-55e0b000 r--p 00000000 08:01 12 /usr/bin/zos-perf
55e0b000-55e0f000 r-xp 00001000 08:01 12 /usr/bin/zos-perf
55e0f000-55e10000 r--p 00005000 08:01 12 /usr/bin/zos-perf
55e10000-55e11000 rw-p 00006000 08:01 12 /usr/bin/zos-perf
7f00a000-7f00b000 r-xp 00000000 08:01 13 /usr/lib/libc.so.6
7f00c000-7f00d000 rw-p 00000000 00:00 0
";
        assert_eq!(
            code_ranges(maps, "/usr/bin/zos-perf"),
            vec![(0x55e0a000, 0x55e0b000), (0x55e0b000, 0x55e0f000)]
        );
    }

    #[test]
    fn settling_keeps_the_code_running() {
        // The code of this very test is in the dropped mapping: it must
        // come back on the next call.
        let dropped = settle();
        assert!(dropped > 0);
        assert_eq!(code_ranges("", "x"), vec![]);
    }
}
