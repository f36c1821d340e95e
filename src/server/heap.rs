//! The process heap's shape when the capture store keeps mail in memory.
//!
//! What it does: with glibc, ask `malloc` for one arena (`mallopt(M_ARENA_MAX, 1)`) before
//! the server's threads start, when the capture store is on. glibc gives threads that meet
//! on a lock arenas of their own (up to 8 per core) and keeps each arena's freed memory for
//! that arena: a message received on one worker, evicted by an insert on another and its
//! room taken by a third, leaves free memory in every arena at once. Measured with
//! `benches/capture_rss.py` (256 MiB budget, 8 KiB messages closed loop, the store evicting
//! all along, 2 workers): the resident set's maximum was 1.25 × the budget with glibc's
//! default arenas, 1.21 × with two, 1.07 × with one, and the ingest rate did not drop
//! (docs/benchmarks/2026-12-06-capture-rss.md). Each thread's small-object cache (tcache)
//! still serves most allocations without the arena's lock.
//!
//! What it does not do: anything with another allocator or libc, or without the capture
//! store (the discard and file paths allocate nothing per message, and the file stores
//! return their buffers with `malloc_trim`).

/// Makes `malloc` use one arena from now on (glibc only; elsewhere nothing). Call before
/// spawning threads: arenas made already stay.
#[allow(unsafe_code)]
pub(super) fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a tunable of the allocator under its own lock; M_ARENA_MAX takes
    // any positive count and never invalidates memory already handed out.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
