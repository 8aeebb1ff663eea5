//! The allocator the `dealreg` binary runs with, and the benches measure (they include
//! this file, so what they time is what the product runs).
//!
//! mimalloc instead of the system allocator. Why: a profile of a projection rebuild showed
//! glibc's allocator in about a sixth of the time (`_int_free`, `malloc_consolidate`:
//! rows made on the fold's thread and freed on the save's), and with mimalloc the same
//! rebuild's read-and-decode floor and its saves got faster (docs/DEPENDENCIES.md;
//! the figures in benches/README.md).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing to do).
///
/// Why: mimalloc asks for huge pages on its arenas and returns freed memory to the system
/// a while later; the next allocation there faults a whole 2 MiB page back in, which the
/// kernel zeroes first. Profiles showed that zeroing (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page`) in 19 % of `serve`'s samples under load, 12–19 % of a
/// rebuild's and 8.5 % of the command bench's. With huge pages off (here, or with
/// `MIMALLOC_ALLOW_THP=0`), runs alternated on one machine gave 8,738 / 7,681 / 8,696
/// durable commands/s with them and 9,507 / 10,008 / 11,576 without; `serve` over NATS at
/// 64 in flight 2,922 / 2,706 / 2,335 with and 3,440 / 4,218 / 3,532 without; a rebuild
/// the same either way. The flag is the kernel's per-process switch
/// (`PR_SET_THP_DISABLE`), checked at each page fault, so it covers memory mapped before
/// it was set, and it is inherited by child processes.
pub fn tune() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory
        // of ours; a kernel without it answers -1 (EINVAL), and the process just keeps
        // the system's setting.
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if done != 0 {
            tracing::debug!(
                "transparent huge pages could not be turned off for this process; the system's setting stays"
            );
        }
    }
}
