//! Allocations per accepted message with the capture store (`--store memory`), counted by a
//! global allocator over a real server on loopback, in the steady state of a full store
//! (every insert evicts): the same pipelined workload as `zero_alloc.rs` (DATA and BDAT,
//! 1 KiB, one recipient).
//!
//! The discard path allocates nothing (`zero_alloc.rs`); keeping a message must allocate
//! (its bytes and its packed envelope are kept), and this test bounds how much: 4.00 per
//! message in round 7c (the content buffer 2 on average, the packed envelope 1, the SMTP
//! transcript's hand-over 1; transcripts are recorded whenever the capture store is on).
//! It prints the count per message (docs/benchmarks round 7c; `FASTSMTPD_ALLOC_TRACE=1`
//! prints where they come from).
//!
//! A single test on purpose: the counter sees every thread of the process.

mod alloc_counter;
mod util;

use alloc_counter::{batch, run_batch, CountingAllocator, Tracing, ALLOCATIONS, BATCH};
use alloc_counter::{MEASURED_BATCHES, WARMUP_BATCHES};
use fastsmtpd::config::{CaptureSettings, Config, Stores};
use fastsmtpd::store::StoreSpec;
use std::sync::atomic::Ordering;
use util::*;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The most allocations per kept message this test lets pass (see the module doc).
const MAX_PER_MESSAGE: f64 = 4.5;

#[test]
fn allocations_per_kept_message_in_a_full_store() {
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Memory],
            ..Stores::default()
        },
        // Room for ~100 of these messages with their transcripts: the warm-up fills it, so
        // every measured insert evicts.
        capture: CaptureSettings {
            memory: Some(256 << 10),
            ..CaptureSettings::default()
        },
        ..test_config()
    };
    let server = TestServer::start(config);
    let capture = server.handle().capture().expect("a capture store");
    let mut client = server.client();
    // A budget below --max-message-size is what EHLO advertises.
    client.ehlo_size(256 << 10);
    let (requests, replies) = batch();
    let mut buf = vec![0u8; 1 << 16];
    let mut stream = client.stream.try_clone().unwrap();

    for _ in 0..WARMUP_BATCHES {
        run_batch(&mut stream, &requests, &replies, &mut buf);
    }
    let evicted_before = capture.stats().evicted_bytes;
    assert!(evicted_before > 0, "the warm-up fills the store");
    let tracing = Tracing::start();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..MEASURED_BATCHES {
        run_batch(&mut stream, &requests, &replies, &mut buf);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    tracing.finish();
    let measured = (MEASURED_BATCHES * BATCH * 2) as u64;
    let stats = capture.stats();
    assert!(
        stats.evicted_bytes - evicted_before >= measured,
        "every measured insert evicted"
    );
    let per_message = allocations as f64 / measured as f64;
    println!("{allocations} allocations over {measured} kept messages: {per_message:.2} each");
    assert!(
        per_message <= MAX_PER_MESSAGE,
        "{per_message:.2} allocations per kept message (at most {MAX_PER_MESSAGE})"
    );
}
