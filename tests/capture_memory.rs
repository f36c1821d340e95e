//! What the capture store really allocates per kept message, measured with a counting global
//! allocator, against what its budget charges ([`Arrival::charge`]). Requested sizes are
//! counted (the allocator's own headers are not: the charge adds 16 octets for the one
//! envelope block). The run is one test so no other test's allocations mix in.

mod live_bytes;

use bytes::Bytes;
use fastsmtpd::capture::{
    Arrival, Capture, EnvelopeParts, Limits, OnFull, Route, ENTRY_OVERHEAD, MAILBOX_OVERHEAD,
    MAILBOX_RECORD_OVERHEAD, RECIPIENT_OVERHEAD,
};
use fastsmtpd::proto::sink::QueueId;
use std::time::{Duration, SystemTime};

#[global_allocator]
static ALLOCATOR: live_bytes::Counting = live_bytes::Counting;

const MESSAGES: u64 = 100_000;
const RAW: usize = 1024;

/// Keeps `MESSAGES` messages of `RAW` octets, each to `recipient(n, TAG)` (TAG: the id of a
/// plus-tag mailbox made first when `mailbox`, else empty); returns (octets allocated per
/// message beyond the raw bytes, octets charged per message beyond them).
fn measure(mailbox: bool, recipient: impl Fn(u64, &str) -> String) -> (f64, f64) {
    let before = live_bytes::live();
    let capture = Capture::new(
        Limits {
            max_bytes: u64::MAX,
            ..Limits::default()
        },
        OnFull::EvictOldest,
    );
    let tag = match mailbox {
        true => capture
            .create_mailbox(None, Duration::from_secs(3600), String::new())
            .unwrap()
            .id
            .to_string(),
        false => String::new(),
    };
    for n in 0..MESSAGES {
        let id = QueueId::new(format!("1764393906.M{n:06}P1234Q{n}").as_bytes()).unwrap();
        let to = recipient(n, &tag);
        // An exact-capacity buffer: `Bytes::from` takes it without copying or allocating.
        let raw = Bytes::from(vec![b'x'; RAW]);
        let arrival = Arrival::new(
            id,
            SystemTime::UNIX_EPOCH + Duration::from_secs(n),
            raw,
            &EnvelopeParts {
                sender: b"sender@example.com",
                helo: b"client.example",
                client: Some("127.0.0.1:54321".parse().unwrap()),
                ..EnvelopeParts::default()
            },
            [to.as_bytes()],
        );
        capture.insert(arrival).unwrap();
    }
    // What the budget holds now: every charge, memberships included.
    let charged = capture.stats().bytes;
    let used = (live_bytes::live() - before) as f64;
    let per_message = used / MESSAGES as f64 - RAW as f64;
    let charged = charged as f64 / MESSAGES as f64 - RAW as f64;
    drop(capture);
    (per_message, charged)
}

/// Makes `MAILBOXES` live mailboxes, each with a 10-octet label and the route `route(n)`
/// (`None`: plus-tag); returns (octets allocated per mailbox, octets charged per mailbox).
fn measure_mailboxes(route: impl Fn(usize) -> Option<Route>) -> (f64, f64) {
    const MAILBOXES: usize = 10_000;
    let before = live_bytes::live();
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    for n in 0..MAILBOXES {
        let label = format!("label {n:04}");
        capture
            .create_mailbox(route(n), Duration::from_secs(3600), label)
            .unwrap();
    }
    let charged = capture.stats().mailbox_bytes as f64 / MAILBOXES as f64;
    let used = (live_bytes::live() - before) as f64 / MAILBOXES as f64;
    drop(capture);
    (used, charged)
}

#[test]
fn allocated_overhead_per_message_against_the_charge() {
    // Mailbox records first (10 000, the default bound): what one costs against its charge.
    let (plus, plus_charged) = measure_mailboxes(|_| None);
    let (rcpt, rcpt_charged) = measure_mailboxes(|n| {
        Some(Route::Recipient(
            format!("u{n:05}@example.com").into_bytes(),
        ))
    });
    println!(
        "a mailbox record (10 000 live, label of 10): plus-tag {plus:.0} allocated / \
         {plus_charged:.0} charged; rcpt route {rcpt:.0} allocated / {rcpt_charged:.0} charged \
         (MAILBOX_RECORD_OVERHEAD {MAILBOX_RECORD_OVERHEAD})"
    );
    assert!(plus <= 1.5 * plus_charged, "{plus} vs {plus_charged}");
    assert!(rcpt <= 1.5 * rcpt_charged, "{rcpt} vs {rcpt_charged}");

    let (distinct, distinct_charged) = measure(false, |n, _| format!("user{n:06}@example.com"));
    let (shared, shared_charged) = measure(false, |_, _| "user@example.com".to_string());
    // Each message in one per-test mailbox (a distinct recipient `userN+TAG@`, so the
    // recipient index costs what it does above).
    let (boxed, boxed_charged) = measure(true, |n, tag| format!("u{n:06}+{tag}@example.com"));
    println!(
        "per message beyond {RAW} raw octets, {MESSAGES} messages: distinct recipients \
         {distinct:.0} allocated / {distinct_charged:.0} charged; one shared recipient \
         {shared:.0} allocated / {shared_charged:.0} charged"
    );
    // Issue 18's bound: beyond the raw bytes and the envelope's own text, at most 256
    // octets per one-recipient message, measured (table slack included).
    let envelope = distinct_charged - (ENTRY_OVERHEAD + RECIPIENT_OVERHEAD) as f64;
    println!("of which the packed envelope: {envelope:.0}");
    // A membership: what a message in one mailbox costs beyond the same message in none
    // (its recipient, `u000001+TAG@` against `user000001@`, is 10 octets longer, in the
    // packed envelope: charged there).
    let membership = boxed - distinct - 10.0;
    let membership_charged = boxed_charged - distinct_charged - 10.0;
    println!(
        "in one mailbox: {boxed:.0} allocated / {boxed_charged:.0} charged: a membership \
         {membership:.0} allocated / {membership_charged:.0} charged (MAILBOX_OVERHEAD {MAILBOX_OVERHEAD})"
    );
    assert_eq!(membership_charged.round() as usize, MAILBOX_OVERHEAD);
    assert!(membership <= 2.0 * MAILBOX_OVERHEAD as f64, "{membership}");
    assert!(distinct - envelope <= 256.0, "{distinct} - {envelope}");
    assert!(shared - envelope <= 256.0, "{shared} - {envelope}");
    // The charge is what the budget counts; the tables grow by doubling, so what is
    // allocated may exceed it by their slack, never by more than the charge again.
    assert!(
        distinct < 2.0 * distinct_charged,
        "{distinct} vs {distinct_charged}"
    );
    assert!(
        shared < 2.0 * shared_charged,
        "{shared} vs {shared_charged}"
    );
}
