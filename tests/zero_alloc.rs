//! Steady state allocates nothing: thousands of pipelined messages (DATA and BDAT) through a
//! real server over loopback, counted by a global allocator, after a warm-up.
//!
//! This file holds a single test on purpose: the counter sees every thread of the process, so
//! no other test may run beside it. The client side allocates nothing either (its buffers
//! are built before counting starts). The allocator and the workload are shared with the
//! TLS case, `zero_alloc_tls.rs` (see `alloc_counter/`; `FASTSMTPD_ALLOC_TRACE=1` prints
//! where allocations come from).

mod alloc_counter;
mod util;

use alloc_counter::{batch, run_batch, CountingAllocator, Tracing, ALLOCATIONS, BATCH};
use alloc_counter::{MEASURED_BATCHES, WARMUP_BATCHES};
use std::sync::atomic::Ordering;
use util::*;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

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
    let tracing = Tracing::start();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    // Self-check: the counter does see allocations (server start-up made plenty).
    assert!(before > 0, "the counting allocator is not installed");
    for _ in 0..MEASURED_BATCHES {
        run_batch(&mut stream, &requests, &replies, &mut buf);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    tracing.finish();
    let measured_messages = (MEASURED_BATCHES * BATCH * 2) as u64;

    let total_messages = ((WARMUP_BATCHES + MEASURED_BATCHES) * BATCH * 2) as u64;
    server.wait_for_stats(|s| s.messages == total_messages);
    println!("{allocations} allocations over {measured_messages} messages after warm-up");
    assert_eq!(
        allocations, 0,
        "heap allocations during {measured_messages} messages"
    );
}
