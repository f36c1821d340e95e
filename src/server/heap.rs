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
//! It also fixes `malloc`'s mmap threshold at [`MMAP_THRESHOLD`] (`M_MMAP_THRESHOLD`, which
//! also turns off glibc's sliding of it): a buffer of a large message (1 MiB and more) is
//! then its own mapping, given back to the system the moment the message is evicted or
//! refused, and grown in place by `mremap`. With the sliding threshold (glibc's default),
//! once a 16 MiB buffer had been freed, every later one came from the arena, whose freed
//! memory stays resident: a fresh review measured a 64 MiB budget at 3.45 × its size in
//! resident memory (16 connections of 16 MiB messages), against the documented bound of
//! twice the budget.
//!
//! What it does not do: anything with another allocator or libc, or without the capture
//! store (the discard and file paths allocate nothing per message, and the file stores
//! return their buffers with `malloc_trim`).

/// Allocations from this size up are mappings of their own (see the module doc).
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Makes `malloc` use one arena from now on and map large buffers on their own (glibc
/// only; elsewhere nothing). Call before spawning threads: arenas made already stay.
#[allow(unsafe_code)]
pub(super) fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets tunables of the allocator under its own lock; M_ARENA_MAX takes
    // any positive count and M_MMAP_THRESHOLD any size up to 32 MiB (1 MiB here), and
    // neither invalidates memory already handed out.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}
