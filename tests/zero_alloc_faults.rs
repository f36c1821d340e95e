//! Steady state allocates nothing with fault plans in place: startup rules, a runtime set
//! and a scoped plan, none of which fires on this traffic, each asked at every `RCPT`,
//! `DATA`/`BDAT` and end of data (issue 18: the gate reads a swappable set, and reading it
//! costs no allocation per command once a connection holds the current snapshot).
//!
//! A single test on purpose: the counter sees every thread of the process (see
//! `zero_alloc.rs`).

mod alloc_counter;
mod util;

use alloc_counter::{batch, run_batch, CountingAllocator, Tracing, ALLOCATIONS, BATCH};
use alloc_counter::{MEASURED_BATCHES, WARMUP_BATCHES};
use fastsmtpd::fault::Scope;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use util::*;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Mail to one domain (none of this traffic's).
#[derive(Debug)]
struct Never;

impl Scope for Never {
    fn covers(&self, recipient: &[u8], _auth_user: Option<&[u8]>) -> bool {
        recipient.ends_with(b"@never.test")
    }
}

#[test]
fn no_allocation_per_message_with_runtime_and_scoped_fault_rules() {
    let mut config = test_config();
    config.faults.rules = vec![
        "rcpt to=*@never.test reply=550 5.1.1 No".into(),
        "eod to=*@never.test disconnect".into(),
    ];
    let server = TestServer::start(config);
    let plans = server.handle.as_ref().unwrap().faults().unwrap();
    let rules = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    plans
        .set_runtime(&rules(&[
            "rcpt to=*@never.test reply=451 4.3.0 Later",
            "data to=*@never.test disconnect",
            "bdat to=*@never.test disconnect",
        ]))
        .unwrap();
    plans
        .set_scoped(
            "box",
            Arc::new(Never),
            &rules(&["rcpt reply=550 5.1.1 No", "eod disconnect"]),
        )
        .unwrap();
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
    assert!(before > 0, "the counting allocator is not installed");
    for _ in 0..MEASURED_BATCHES {
        run_batch(&mut stream, &requests, &replies, &mut buf);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    tracing.finish();
    let measured_messages = (MEASURED_BATCHES * BATCH * 2) as u64;
    let total_messages = ((WARMUP_BATCHES + MEASURED_BATCHES) * BATCH * 2) as u64;
    server.wait_for_stats(|s| s.messages == total_messages);
    assert_eq!(
        allocations, 0,
        "heap allocations during {measured_messages} messages"
    );
    // The rules were asked all along and never fired.
    assert!(plans.fired().iter().all(|(_, n)| *n == 0));
}
