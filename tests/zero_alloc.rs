//! Steady state allocates nothing: thousands of pipelined messages (DATA and BDAT) through a
//! real server over loopback, counted by a global allocator, after a warm-up.
//!
//! This file holds a single test on purpose: the counter sees every thread of the process, so
//! no other test may run beside it. The client side allocates nothing either (its buffers
//! are built before counting starts).

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use util::*;

/// Counts calls to `alloc` and `realloc` (frees are not interesting: a free without an
/// allocation cannot happen).
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every operation to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Messages per pipelined batch (one write of requests, then all replies are read).
const BATCH: usize = 50;
/// Batches during warm-up and during measurement (each batch: DATA and BDAT messages).
const WARMUP_BATCHES: usize = 10;
const MEASURED_BATCHES: usize = 40;

/// One batch: BATCH DATA transactions and BATCH BDAT transactions, pipelined, and the exact
/// replies expected.
fn batch() -> (Vec<u8>, Vec<u8>) {
    let body_line = "x".repeat(70) + "\r\n";
    let body = body_line.repeat(14) + ".dot-stuffed line\r\n";
    let stuffed = body.replace("\r\n.", "\r\n..");
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..BATCH {
        requests.extend_from_slice(
            format!("MAIL FROM:<sender{i}@example.org>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n{stuffed}.\r\n").as_bytes(),
        );
        replies.extend_from_slice(
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n",
        );
        requests.extend_from_slice(
            format!("MAIL FROM:<sender{i}@example.org> BODY=BINARYMIME\r\nRCPT TO:<rcpt@example.net>\r\nBDAT {} LAST\r\n{body}", body.len()).as_bytes(),
        );
        replies.extend_from_slice(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n");
    }
    (requests, replies)
}

/// Sends one batch and reads exactly its replies into `buf`, comparing without allocating.
fn run_batch(stream: &mut std::net::TcpStream, requests: &[u8], replies: &[u8], buf: &mut [u8]) {
    stream.write_all(requests).unwrap();
    let mut matched = 0;
    while matched < replies.len() {
        let n = stream.read(buf).unwrap();
        assert!(n > 0, "server closed the connection");
        assert!(
            buf[..n] == replies[matched..matched + n],
            "unexpected reply bytes"
        );
        matched += n;
    }
}

#[test]
fn no_allocation_per_message_after_warmup() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let (requests, replies) = batch();
    let mut buf = vec![0u8; 1 << 16];
    let mut stream = client.stream.try_clone().unwrap();

    for _ in 0..WARMUP_BATCHES {
        run_batch(&mut stream, &requests, &replies, &mut buf);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    // Self-check: the counter does see allocations (server start-up made plenty).
    assert!(before > 0, "the counting allocator is not installed");
    for _ in 0..MEASURED_BATCHES {
        run_batch(&mut stream, &requests, &replies, &mut buf);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let measured_messages = (MEASURED_BATCHES * BATCH * 2) as u64;

    let total_messages = ((WARMUP_BATCHES + MEASURED_BATCHES) * BATCH * 2) as u64;
    server.wait_for_stats(|s| s.messages == total_messages);
    println!("{allocations} allocations over {measured_messages} messages after warm-up");
    assert_eq!(
        allocations, 0,
        "heap allocations during {measured_messages} messages"
    );
}
