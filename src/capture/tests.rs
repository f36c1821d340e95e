//! The capture store as its users see it: retention, lookups, pages, filters, deletes and
//! waiters, and a property test against a naive model.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::Wake;

mod mailboxes;

/// A message numbered `n` (id `t<n>`, received `n` seconds after the epoch) to `recipients`,
/// with `body` octets of body.
fn message(n: u64, sender: &str, recipients: &[&str], subject: &str, body: usize) -> Arrival {
    let mut raw = format!(
        "From: <{sender}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{n}@test>\r\n\r\n",
        recipients.join(", ")
    )
    .into_bytes();
    raw.resize(raw.len() + body, b'x');
    Arrival::new(
        id(n),
        at(n),
        Bytes::from(raw),
        &EnvelopeParts {
            sender: sender.as_bytes(),
            helo: b"client.test",
            client: Some("127.0.0.1:2525".parse().unwrap()),
            ..EnvelopeParts::default()
        },
        recipients.iter().map(|r| r.as_bytes()),
    )
}

/// The id of message `n`.
fn id(n: u64) -> QueueId {
    QueueId::new(format!("t{n}").as_bytes()).unwrap()
}

/// `n` seconds after the epoch.
fn at(n: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(n)
}

fn limits(max_bytes: u64, max_messages: usize) -> Limits {
    Limits {
        max_bytes,
        max_messages,
        ..Limits::default()
    }
}

fn check(capture: &Capture) {
    lock(&capture.index).check().unwrap();
}

fn seqs(page: &Page) -> Vec<u64> {
    page.items.iter().map(|s| s.seq).collect()
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn a_one_recipient_message_costs_what_the_doc_says() {
    assert_eq!(std::mem::size_of::<index::Entry>(), 112);
    assert_eq!(ENTRY_OVERHEAD, 152);
    assert_eq!(RECIPIENT_OVERHEAD, 48);
    // ENTRY_OVERHEAD + RECIPIENT_OVERHEAD <= 256 is checked at build time (mod.rs).
    // A typical envelope: a 25-octet id, sender, HELO name, client address, one recipient.
    let raw = Bytes::from(vec![b'x'; 1024]);
    let arrival = Arrival::new(
        QueueId::new(b"1764393906.M123456P1234Q1").unwrap(),
        at(1),
        raw,
        &EnvelopeParts {
            sender: b"sender@example.com",
            helo: b"client.example",
            client: Some("127.0.0.1:54321".parse().unwrap()),
            ..EnvelopeParts::default()
        },
        [&b"user@example.com"[..]],
    );
    let overhead = arrival.charge() - 1024;
    assert_eq!(arrival.envelope.len(), 96);
    assert_eq!(overhead, 152 + 48 + 96);
}

#[test]
fn a_message_in_a_file_keeps_and_is_charged_only_its_header_block() {
    assert_eq!(FILE_BODY_OVERHEAD, 112);
    let memory = message(1, "s@test", &["a@test"], "filed", 100_000);
    let in_memory = memory.charge();
    let path = std::path::PathBuf::from("/srv/eml/t1.eml");
    let len = memory.body.len();
    let filed = memory.in_file(path.clone(), len);
    let head_len = filed.body.in_memory().len();
    assert!(
        filed.body.in_memory().ends_with(b"\r\n\r\n"),
        "the header block"
    );
    assert_eq!(
        filed.charge(),
        in_memory - 100_000 - head_len as u64 + (head_len + 15 + FILE_BODY_OVERHEAD) as u64,
        "the body is not charged"
    );
    assert!(filed.charge() < 1024);
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    capture.insert(filed).unwrap();
    let Lookup::Found(kept) = capture.get(&id(1)) else {
        panic!("not kept")
    };
    assert_eq!(kept.header(Field::Subject), Some(&b"filed"[..]));
    assert_eq!(kept.body.len(), len);
    assert_eq!(kept.body.file().unwrap().path(), path);
    assert!(kept.body.memory().is_none());
    let subject = Filter::all().and(Term::SubjectContains("file".into()));
    assert_eq!(capture.count(&subject), 1);
    // A header block without its empty line within the bound keeps the bound; a bare LF
    // ends one too.
    assert_eq!(
        header_block_len(&vec![b'x'; 100_000]),
        headers::HEADER_SCAN_MAX
    );
    assert_eq!(header_block_len(b"A: b\n\nbody"), 6);
    assert_eq!(header_block_len(b"\r\nbody"), 2);
    assert_eq!(header_block_len(b"A: b\r\n"), 6);
}

#[test]
fn seqs_start_at_one_and_ids_find_messages() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    assert_eq!(capture.head(), 0);
    assert!(matches!(capture.get(&id(1)), Lookup::Unknown));
    for n in 1..=3 {
        let inserted = capture
            .insert(message(n, "s@x", &["a@x"], "hi", 10))
            .unwrap();
        assert_eq!((inserted.seq, inserted.id, inserted.evicted), (n, id(n), 0));
    }
    assert_eq!(capture.head(), 3);
    assert_eq!(capture.oldest(), Some(1));
    let Lookup::Found(found) = capture.get(&id(2)) else {
        panic!("message 2 is kept")
    };
    assert_eq!(
        (found.seq, found.id(), found.received_at),
        (2, id(2), at(2))
    );
    assert_eq!(found.header(Field::Subject), Some(&b"hi"[..]));
    assert_eq!(found.header(Field::MessageId), Some(&b"<2@test>"[..]));
    assert_eq!(found.envelope().sender, b"s@x");
    assert_eq!(
        found.envelope().recipients.iter().collect::<Vec<_>>(),
        [b"a@x"]
    );
    assert_eq!(
        found.envelope().client_addr(),
        Some("127.0.0.1:2525".parse().unwrap())
    );
    assert!(found.body.in_memory().ends_with(&[b'x'; 10]));
    assert_eq!(capture.get_seq(3).unwrap().id(), id(3));
    assert!(capture.get_seq(4).is_none());
    check(&capture);
}

#[test]
fn an_id_is_never_used_twice() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    capture.insert(message(1, "s@x", &["a@x"], "", 0)).unwrap();
    assert_eq!(
        capture.insert(message(1, "s@x", &["a@x"], "", 0)),
        Err(Refused::DuplicateId)
    );
    capture.delete(&id(1));
    assert_eq!(
        capture.insert(message(1, "s@x", &["a@x"], "", 0)),
        Err(Refused::DuplicateId)
    );
    assert_eq!(capture.stats().refused_duplicate, 2);
    check(&capture);
}

#[test]
fn the_oldest_are_evicted_first_and_answer_gone() {
    let one = message(1, "s@x", &["a@x"], "", 1000).charge();
    let capture = Capture::new(limits(3 * one, 100), OnFull::EvictOldest);
    for n in 1..=3 {
        assert_eq!(
            capture
                .insert(message(n, "s@x", &["a@x"], "", 1000))
                .unwrap()
                .evicted,
            0
        );
    }
    let inserted = capture
        .insert(message(4, "s@x", &["a@x"], "", 1000))
        .unwrap();
    assert_eq!(inserted.evicted, 1);
    assert_eq!(capture.oldest(), Some(2));
    match capture.get(&id(1)) {
        Lookup::Gone(gone) => {
            assert_eq!(gone.reason, GoneReason::EvictedBytes);
            assert_eq!((gone.seq, gone.at), (1, at(4)));
        }
        other => panic!("{other:?}"),
    }
    // A bigger message evicts as many as it needs, oldest first.
    let inserted = capture
        .insert(message(5, "s@x", &["a@x"], "", 2000))
        .unwrap();
    assert_eq!(inserted.evicted, 2);
    assert_eq!(capture.oldest(), Some(4));
    let stats = capture.stats();
    assert_eq!(
        (stats.messages, stats.evicted_bytes, stats.tombstones),
        (2, 3, 3)
    );
    assert!(stats.bytes <= 3 * one);
    check(&capture);
}

#[test]
fn the_message_count_limit_evicts_too() {
    let capture = Capture::new(limits(1 << 30, 2), OnFull::EvictOldest);
    for n in 1..=5 {
        capture.insert(message(n, "s@x", &["a@x"], "", 0)).unwrap();
    }
    assert_eq!(capture.count(&Filter::all()), 2);
    assert!(matches!(
        capture.get(&id(3)),
        Lookup::Gone(Gone {
            reason: GoneReason::EvictedCount,
            ..
        })
    ));
    assert_eq!(capture.stats().evicted_count, 3);
    check(&capture);
}

#[test]
fn refuse_keeps_what_is_kept_and_too_large_is_refused_either_way() {
    let one = message(1, "s@x", &["a@x"], "", 100).charge();
    let capture = Capture::new(limits(2 * one, 100), OnFull::Refuse);
    capture
        .insert(message(1, "s@x", &["a@x"], "", 100))
        .unwrap();
    capture
        .insert(message(2, "s@x", &["a@x"], "", 100))
        .unwrap();
    assert_eq!(
        capture.insert(message(3, "s@x", &["a@x"], "", 100)),
        Err(Refused::Full)
    );
    assert_eq!(capture.count(&Filter::all()), 2);
    assert!(matches!(capture.get(&id(3)), Lookup::Unknown));
    // The seq was not spent.
    capture.delete(&id(1));
    assert_eq!(
        capture
            .insert(message(3, "s@x", &["a@x"], "", 100))
            .unwrap()
            .seq,
        3
    );

    let evicting = Capture::new(limits(2 * one, 100), OnFull::EvictOldest);
    evicting
        .insert(message(1, "s@x", &["a@x"], "", 100))
        .unwrap();
    let huge = message(2, "s@x", &["a@x"], "", 3 * one as usize);
    assert_eq!(evicting.insert(huge), Err(Refused::TooLarge));
    assert_eq!(
        evicting.count(&Filter::all()),
        1,
        "nothing evicted for a message that cannot fit"
    );
    let stats = capture.stats();
    assert_eq!(stats.refused_full, 1);
    assert_eq!(evicting.stats().refused_too_large, 1);
    check(&capture);
    check(&evicting);
}

#[test]
fn expiry_drops_by_age_at_insert_and_on_demand() {
    let capture = Capture::new(
        Limits {
            max_age: Some(Duration::from_secs(10)),
            ..Limits::default()
        },
        OnFull::EvictOldest,
    );
    for n in [1, 2, 5] {
        capture.insert(message(n, "s@x", &["a@x"], "", 0)).unwrap();
    }
    // At 12 s, message 1 (received at 1 s) is 11 s old.
    let inserted = capture.insert(message(12, "s@x", &["a@x"], "", 0)).unwrap();
    assert_eq!(inserted.evicted, 1);
    assert!(matches!(
        capture.get(&id(1)),
        Lookup::Gone(Gone {
            reason: GoneReason::Expired,
            ..
        })
    ));
    assert_eq!(capture.expire(at(16)), 2);
    assert_eq!(capture.count(&Filter::all()), 1);
    assert_eq!(capture.stats().expired, 3);
    check(&capture);
}

#[test]
fn tombstones_are_bounded_and_the_oldest_is_forgotten() {
    let capture = Capture::new(
        Limits {
            max_messages: 1,
            max_tombstones: 3,
            ..Limits::default()
        },
        OnFull::EvictOldest,
    );
    for n in 1..=10 {
        capture.insert(message(n, "s@x", &["a@x"], "", 0)).unwrap();
        assert!(capture.stats().tombstones <= 3);
        check(&capture);
    }
    // Kept: 10; tombstones: 7, 8, 9; forgotten: 1 to 6.
    assert!(matches!(capture.get(&id(10)), Lookup::Found(_)));
    for n in 7..=9 {
        assert!(matches!(capture.get(&id(n)), Lookup::Gone(Gone { seq, .. }) if seq == n));
    }
    for n in 1..=6 {
        assert!(matches!(capture.get(&id(n)), Lookup::Unknown), "{n}");
    }
    assert!(matches!(capture.get(&id(11)), Lookup::Unknown));
}

#[test]
fn recipients_match_exactly_never_as_substrings() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    capture.insert(message(1, "s@x", &["a@x"], "", 0)).unwrap();
    capture.insert(message(2, "s@x", &["ba@x"], "", 0)).unwrap();
    capture
        .insert(message(3, "s@x", &["a@X.example"], "", 0))
        .unwrap();
    capture
        .insert(message(4, "s@x", &["A@x.example"], "", 0))
        .unwrap();
    capture
        .insert(message(5, "s@x", &["\"a\"@x", "c@x"], "", 0))
        .unwrap();
    let found = |address: &str| {
        seqs(&capture.page(
            None,
            Direction::Newer,
            50,
            &Filter::recipient(address.as_bytes()),
        ))
    };
    assert_eq!(found("a@x"), [1, 5]);
    assert_eq!(found("<a@X>"), [1, 5]);
    assert_eq!(found("ba@x"), [2]);
    assert_eq!(
        found("a@x.example"),
        [3],
        "domain case folds, local part case is kept"
    );
    assert_eq!(found("A@X.EXAMPLE"), [4]);
    assert_eq!(found("c@x"), [5]);
    assert_eq!(found("x"), Vec::<u64>::new());
    assert_eq!(capture.count(&Filter::recipient(b"a@x")), 2);
    check(&capture);
}

#[test]
fn sender_subject_and_header_filters() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    capture
        .insert(message(1, "s@x", &["a@x"], "Your CODE is 1234", 0))
        .unwrap();
    capture
        .insert(message(2, "", &["a@x"], "Welcome", 0))
        .unwrap();
    capture
        .insert(message(3, "S@X", &["b@x"], "code 99", 0))
        .unwrap();
    let found = |filter: Filter| seqs(&capture.page(None, Direction::Newer, 50, &filter));
    let sender = |s: &str| Filter::all().and(Term::Sender(s.as_bytes().to_vec()));
    assert_eq!(found(sender("s@x")), [1]);
    assert_eq!(found(sender("S@x")), [3]);
    assert_eq!(found(sender("<>")), [2]);
    let subject = |s: &str| Filter::all().and(Term::SubjectContains(s.as_bytes().to_vec()));
    assert_eq!(found(subject("code")), [1, 3]);
    assert_eq!(found(subject("")), [1, 2, 3]);
    let header = |field, value: &str, how| {
        Filter::all().and(Term::Header {
            field,
            value: value.as_bytes().to_vec(),
            how,
        })
    };
    assert_eq!(found(header(Field::Subject, "Welcome", Match::Exact)), [2]);
    assert_eq!(
        found(header(Field::Subject, "welcome", Match::Exact)),
        Vec::<u64>::new()
    );
    assert_eq!(
        found(header(Field::MessageId, "<3@test>", Match::Exact)),
        [3]
    );
    assert_eq!(found(header(Field::To, "B@X", Match::Contains)), [3]);
    assert_eq!(
        found(header(Field::Cc, "", Match::Contains)),
        Vec::<u64>::new(),
        "no Cc located"
    );
    // Terms combine.
    assert_eq!(
        found(Filter::recipient(b"a@x").and(Term::SubjectContains(b"code".to_vec()))),
        [1]
    );
    assert_eq!(capture.count(&subject("code")), 2);
}

#[test]
fn pages_run_newest_first_and_do_not_shift_when_mail_arrives() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    for n in 1..=7 {
        let to = if n % 2 == 0 { "even@x" } else { "odd@x" };
        capture.insert(message(n, "s@x", &[to], "", 0)).unwrap();
    }
    let all = Filter::all();
    let first = capture.page(None, Direction::Older, 3, &all);
    assert_eq!((seqs(&first), first.next), (vec![7, 6, 5], Some(5)));
    // New arrivals do not move the next page.
    capture
        .insert(message(8, "s@x", &["even@x"], "", 0))
        .unwrap();
    let second = capture.page(first.next, Direction::Older, 3, &all);
    assert_eq!((seqs(&second), second.next), (vec![4, 3, 2], Some(2)));
    let last = capture.page(second.next, Direction::Older, 3, &all);
    assert_eq!((seqs(&last), last.next), (vec![1], None));
    // Exactly a page's worth left: no next.
    let exact = capture.page(Some(4), Direction::Older, 3, &all);
    assert_eq!((seqs(&exact), exact.next), (vec![3, 2, 1], None));
    // Oldest first, after a cursor (what an await reads).
    let newer = capture.page(Some(5), Direction::Newer, 10, &all);
    assert_eq!((seqs(&newer), newer.next), (vec![6, 7, 8], None));
    // The same through the recipient index.
    let even = Filter::recipient(b"even@x");
    let page = capture.page(None, Direction::Older, 2, &even);
    assert_eq!((seqs(&page), page.next), (vec![8, 6], Some(6)));
    let page = capture.page(page.next, Direction::Older, 2, &even);
    assert_eq!((seqs(&page), page.next), (vec![4, 2], None));
    let page = capture.page(Some(4), Direction::Newer, 1, &even);
    assert_eq!((seqs(&page), page.next), (vec![6], Some(6)));
    let page = capture.page(Some(1), Direction::Newer, 10, &Filter::recipient(b"odd@x"));
    assert_eq!(seqs(&page), [3, 5, 7]);
}

#[test]
fn deletes_by_id_by_filter_and_all() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    for n in 1..=6 {
        let to = if n % 2 == 0 { "even@x" } else { "odd@x" };
        capture
            .insert(message(n, "s@x", &[to, "all@x"], "", 5))
            .unwrap();
    }
    let charge = capture.get_seq(2).unwrap().charge();
    let removed = capture.delete(&id(2));
    assert_eq!(
        removed,
        Removed {
            seqs: vec![2],
            bytes: charge
        }
    );
    assert_eq!(capture.delete(&id(2)), Removed::default());
    assert!(matches!(
        capture.get(&id(2)),
        Lookup::Gone(Gone {
            reason: GoneReason::Deleted,
            ..
        })
    ));
    check(&capture);
    let removed = capture.delete_matching(&Filter::recipient(b"even@x"));
    assert_eq!(removed.seqs, [4, 6]);
    assert_eq!(capture.count(&Filter::recipient(b"all@x")), 3);
    check(&capture);
    let removed = capture.delete_all();
    assert_eq!(removed.seqs, [1, 3, 5]);
    let stats = capture.stats();
    assert_eq!(
        (stats.messages, stats.bytes, stats.deleted, stats.head),
        (0, 0, 6, 6)
    );
    check(&capture);
    // Sequence numbers go on.
    assert_eq!(
        capture
            .insert(message(7, "s@x", &["a@x"], "", 0))
            .unwrap()
            .seq,
        7
    );
}

#[test]
fn waiters_are_woken_exactly_for_matching_inserts() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let idle = Arc::new(Counter::default());
    for n in 0..10_000 {
        capture.register(
            WaitKey::Recipient(format!("idle{n}@x").into_bytes()),
            Waker::from(Arc::clone(&idle)),
        );
    }
    let ann = Arc::new(Counter::default());
    let ann_id = capture.register(
        WaitKey::Recipient(b"<Ann@X>".to_vec()),
        Waker::from(Arc::clone(&ann)),
    );
    let any = Arc::new(Counter::default());
    let any_id = capture.register(WaitKey::Any, Waker::from(Arc::clone(&any)));
    assert_eq!(capture.stats().waiters, 10_002);

    capture
        .insert(message(1, "s@x", &["bob@x"], "", 0))
        .unwrap();
    assert_eq!((idle.wakes(), ann.wakes(), any.wakes()), (0, 0, 1));
    // `ann@x` is not `Ann@x`; `Ann@x` twice in one message is one wake.
    capture
        .insert(message(2, "s@x", &["ann@x"], "", 0))
        .unwrap();
    assert_eq!((ann.wakes(), any.wakes()), (0, 2));
    capture
        .insert(message(3, "s@x", &["Ann@x", "<Ann@x>", "bob@x"], "", 0))
        .unwrap();
    assert_eq!((idle.wakes(), ann.wakes(), any.wakes()), (0, 1, 3));
    // A waker replaced and a waiter cancelled.
    let ann2 = Arc::new(Counter::default());
    assert!(capture.update(ann_id, &Waker::from(Arc::clone(&ann2))));
    capture
        .insert(message(4, "s@x", &["Ann@X"], "", 0))
        .unwrap();
    assert_eq!((ann.wakes(), ann2.wakes()), (1, 1));
    assert!(capture.cancel(ann_id) && capture.cancel(any_id));
    assert!(!capture.cancel(ann_id));
    capture
        .insert(message(5, "s@x", &["Ann@x"], "", 0))
        .unwrap();
    assert_eq!((ann2.wakes(), any.wakes(), idle.wakes()), (1, 4, 0));
    assert_eq!(capture.stats().waiters, 10_000);
    // A refused insert wakes nobody.
    let idle0 = Arc::new(Counter::default());
    capture.register(
        WaitKey::Recipient(b"idle0@x".to_vec()),
        Waker::from(Arc::clone(&idle0)),
    );
    assert!(capture
        .insert(message(5, "s@x", &["idle0@x"], "", 0))
        .is_err());
    assert_eq!(idle0.wakes(), 0);
}

#[test]
fn a_waiter_registered_before_its_check_never_misses_an_insert() {
    // Register, check, then sleep until woken. The writer inserts one message at a time and
    // waits until the reader has seen it, so every insert's wake-up is needed: one lost
    // wake-up parks the reader until the deadline.
    let capture = Arc::new(Capture::new(Limits::default(), OnFull::EvictOldest));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    const ROUNDS: u64 = 500;
    let writer = {
        let (capture, acked) = (Arc::clone(&capture), Arc::clone(&acked));
        std::thread::spawn(move || {
            for n in 1..=ROUNDS {
                capture.insert(message(n, "s@x", &["w@x"], "", 0)).unwrap();
                while acked.load(Ordering::SeqCst) < n {
                    std::thread::yield_now();
                }
            }
        })
    };
    let mut seen = 0;
    let filter = Filter::recipient(b"w@x");
    while seen < ROUNDS {
        let unpark = Arc::new(ThreadUnpark(std::thread::current()));
        let waiter = capture.register(WaitKey::Recipient(b"w@x".to_vec()), Waker::from(unpark));
        let page = capture.page(Some(seen), Direction::Newer, 1000, &filter);
        if let Some(last) = page.items.last() {
            seen = last.seq;
        } else {
            // Parks return early (an unpark left by an earlier waker, or spuriously): check
            // again each time; never poll on a timer, so a lost wake-up parks until the
            // deadline and fails.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                std::thread::park_timeout(
                    deadline.saturating_duration_since(std::time::Instant::now()),
                );
                let again = capture.page(Some(seen), Direction::Newer, 1000, &filter);
                if let Some(last) = again.items.last() {
                    seen = last.seq;
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "not woken after {seen}"
                );
            }
        }
        capture.cancel(waiter);
        acked.store(seen, Ordering::SeqCst);
    }
    writer.join().unwrap();
}

/// A waker that unparks a thread.
struct ThreadUnpark(std::thread::Thread);

impl Wake for ThreadUnpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// Insert a message of this body size to these recipients (indexes into `POOL`).
    Insert(usize, Vec<usize>),
    /// Delete the kept message at this index (modulo the count), by id.
    Delete(usize),
    /// Delete the messages to this recipient.
    DeleteTo(usize),
    /// Advance the clock and expire.
    Expire(u64),
}

/// Addresses with traps: case in local part and domain, a prefix, a quoted twin.
const POOL: [&str; 6] = ["a@x", "A@x", "a@X", "ba@x", "\"a\"@x", "b@y"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3000, prop::collection::vec(0usize..POOL.len(), 1..4)).prop_map(|(s, r)| Op::Insert(s, r)),
        1 => (0usize..100).prop_map(Op::Delete),
        1 => (0usize..POOL.len()).prop_map(Op::DeleteTo),
        1 => (0u64..30).prop_map(Op::Expire),
    ]
}

/// The model's record of a kept message.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    n: u64,
    at: u64,
    charge: u64,
    recipients: Vec<usize>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// After every step: the budget holds, the kept messages are the model's (oldest evicted
    /// first), seqs are monotonic, every recipient query answers as a naive scan, removed ids
    /// answer Gone while their tombstone lasts, and the indexes are consistent.
    #[test]
    fn the_store_agrees_with_a_naive_model(
        ops in prop::collection::vec(op(), 1..80),
        budget in 2_000u64..12_000,
        max_messages in 1usize..12,
        refuse in any::<bool>(),
    ) {
        let on_full = if refuse { OnFull::Refuse } else { OnFull::EvictOldest };
        let max_age = Duration::from_secs(40);
        let capture = Capture::new(
            Limits { max_bytes: budget, max_messages, max_age: Some(max_age), max_tombstones: 16, ..Limits::default() },
            on_full,
        );
        let mut model: VecDeque<Kept> = VecDeque::new();
        let mut removed: Vec<u64> = Vec::new();
        let (mut clock, mut next_n, mut next_seq) = (0u64, 1u64, 1u64);
        let expire = |model: &mut VecDeque<Kept>, removed: &mut Vec<u64>, now: u64| {
            while model.front().is_some_and(|k| k.at + max_age.as_secs() < now) {
                removed.push(model.pop_front().unwrap().n);
            }
        };
        for op in ops {
            match op {
                Op::Insert(size, recipients) => {
                    clock += 1;
                    let n = next_n;
                    next_n += 1;
                    let to: Vec<&str> = recipients.iter().map(|&i| POOL[i]).collect();
                    let arrival = message(n, "s@x", &to, "", size);
                    let mut arrival = arrival;
                    arrival.received_at = at(clock);
                    let charge = arrival.charge();
                    expire(&mut model, &mut removed, clock);
                    let result = capture.insert(arrival);
                    let used: u64 = model.iter().map(|k| k.charge).sum();
                    if charge > budget {
                        prop_assert_eq!(result, Err(Refused::TooLarge));
                    } else if refuse && (used + charge > budget || model.len() >= max_messages) {
                        prop_assert_eq!(result, Err(Refused::Full));
                    } else {
                        let mut used = used;
                        while used + charge > budget || model.len() >= max_messages {
                            let old = model.pop_front().unwrap();
                            used -= old.charge;
                            removed.push(old.n);
                        }
                        let inserted = result.unwrap();
                        prop_assert_eq!(inserted.seq, next_seq);
                        next_seq += 1;
                        model.push_back(Kept { seq: inserted.seq, n, at: clock, charge, recipients });
                    }
                }
                Op::Delete(i) => {
                    if !model.is_empty() {
                        let k = model.remove(i % model.len()).unwrap();
                        prop_assert_eq!(capture.delete(&id(k.n)).seqs, vec![k.seq]);
                        removed.push(k.n);
                    }
                }
                Op::DeleteTo(r) => {
                    let gone = capture.delete_matching(&Filter::recipient(POOL[r].as_bytes()));
                    let mut want = Vec::new();
                    model.retain(|k| {
                        let hit = k.recipients.iter().any(|&i| same_address(POOL[i].as_bytes(), POOL[r].as_bytes()));
                        if hit {
                            want.push(k.seq);
                            removed.push(k.n);
                        }
                        !hit
                    });
                    prop_assert_eq!(gone.seqs, want);
                }
                Op::Expire(dt) => {
                    clock += dt;
                    expire(&mut model, &mut removed, clock);
                    capture.expire(at(clock));
                }
            }
            check(&capture);
            let stats = capture.stats();
            prop_assert!(stats.bytes <= budget);
            prop_assert_eq!(stats.bytes, model.iter().map(|k| k.charge).sum::<u64>());
            let kept = seqs(&capture.page(None, Direction::Newer, 1000, &Filter::all()));
            prop_assert_eq!(kept, model.iter().map(|k| k.seq).collect::<Vec<_>>());
            for (r, address) in POOL.iter().enumerate() {
                let want: Vec<u64> = model
                    .iter()
                    .filter(|k| k.recipients.iter().any(|&i| same_address(POOL[i].as_bytes(), POOL[r].as_bytes())))
                    .map(|k| k.seq)
                    .rev()
                    .collect();
                let page = capture.page(None, Direction::Older, 1000, &Filter::recipient(address.as_bytes()));
                prop_assert_eq!(seqs(&page), want);
            }
            for n in removed.iter().rev().take(16) {
                prop_assert!(matches!(capture.get(&id(*n)), Lookup::Gone(_)), "{} is gone", n);
            }
            prop_assert!(stats.tombstones <= 16);
        }
    }
}

#[test]
fn an_smtp_envelope_is_kept_whole() {
    use crate::proto::command::{Body, MailParams};
    use crate::proto::envelope::{EnvelopeBuf, TlsInfo, Transfer};
    let mut buf = EnvelopeBuf::default();
    buf.set_helo(b"client.example", true);
    let params = MailParams {
        size: Some(1234),
        body: Some(Body::EightBitMime),
        any: true,
        ..MailParams::default()
    };
    buf.set_sender(b"s@x", params, None);
    buf.set_auth_user(b"ann");
    buf.add_recipient(b"a@x", Default::default());
    buf.add_recipient(b"B@y", Default::default());
    let tls = TlsInfo {
        version: "TLSv1.3",
        cipher: "TLS_AES_128_GCM_SHA256",
        sni: None,
        resumed: false,
    };
    let mut envelope = buf.view(Transfer::Data);
    envelope.tls = Some(&tls);
    let client = "192.0.2.1:4567".parse().unwrap();
    let arrival = Arrival::from_envelope(
        id(1),
        at(1),
        Bytes::from_static(b"Subject: s\r\n\r\nbody"),
        &envelope,
        Some(client),
    );
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    capture.insert(arrival).unwrap();
    let Lookup::Found(kept) = capture.get(&id(1)) else {
        panic!("kept")
    };
    let view = kept.envelope();
    assert_eq!(view.helo, b"client.example");
    assert_eq!(view.sender, b"s@x");
    assert_eq!(view.params, b"SIZE=1234 BODY=8BITMIME");
    assert_eq!(view.auth_user, envelope.auth_user);
    assert_eq!(view.tls, Some(("TLSv1.3", "TLS_AES_128_GCM_SHA256")));
    assert_eq!(view.client_addr(), Some(client));
    assert_eq!(
        view.recipients.iter().collect::<Vec<_>>(),
        [&b"a@x"[..], b"B@y"]
    );
    assert_eq!(kept.body.in_memory(), &b"Subject: s\r\n\r\nbody"[..]);
    assert_eq!(capture.count(&Filter::recipient(b"b@Y")), 0);
    assert_eq!(capture.count(&Filter::recipient(b"B@Y")), 1);
}

#[test]
fn a_transcript_is_charged_with_its_message_and_goes_with_it() {
    let overhead = transcript::TRANSCRIPT_OVERHEAD as u64;
    let capture = Capture::new(limits(1 << 20, 100), OnFull::EvictOldest);
    capture
        .insert(message(1, "s@x", &["a@x"], "one", 10))
        .unwrap();
    let before = capture.stats().bytes;
    let kept = Bytes::from_static(b"S 0 220 mx.test\nC 1 EHLO c\n");
    assert!(capture.attach_transcript(&id(1), kept.clone()));
    assert!(
        !capture.attach_transcript(&id(1), kept.clone()),
        "kept once"
    );
    assert!(
        !capture.attach_transcript(&id(9), kept.clone()),
        "no such message"
    );
    assert_eq!(capture.stats().bytes, before + kept.len() as u64 + overhead);
    assert_eq!(capture.transcript(&id(1)), Some(kept.clone()));
    check(&capture);
    let removed = capture.delete(&id(1));
    assert_eq!(removed.bytes, before + kept.len() as u64 + overhead);
    assert_eq!(capture.stats().bytes, 0);
    assert_eq!(capture.transcript(&id(1)), None);
    check(&capture);

    // Room is made by evicting older messages, never the message itself.
    let one = message(2, "s@x", &["a@x"], "two", 100).charge();
    let capture = Capture::new(limits(2 * one + 100, 100), OnFull::EvictOldest);
    capture
        .insert(message(2, "s@x", &["a@x"], "two", 100))
        .unwrap();
    capture
        .insert(message(3, "s@x", &["a@x"], "two", 100))
        .unwrap();
    assert!(capture.attach_transcript(&id(3), Bytes::from(vec![b'x'; 60])));
    assert_eq!(capture.stats().evicted_bytes, 1);
    assert!(matches!(capture.get(&id(2)), Lookup::Gone(_)));
    check(&capture);
    capture
        .insert(message(4, "s@x", &["a@x"], "two", 100))
        .unwrap();
    assert!(!capture.attach_transcript(&id(4), Bytes::from(vec![b'x'; 2 * one as usize])));
    assert!(matches!(capture.get(&id(4)), Lookup::Found(_)));
    check(&capture);

    // Refusing: a transcript without room is not kept, and nothing is evicted for it.
    let capture = Capture::new(limits(2 * one + 100, 100), OnFull::Refuse);
    capture
        .insert(message(5, "s@x", &["a@x"], "two", 100))
        .unwrap();
    capture
        .insert(message(6, "s@x", &["a@x"], "two", 100))
        .unwrap();
    assert!(!capture.attach_transcript(&id(6), Bytes::from(vec![b'x'; 60])));
    assert!(capture.attach_transcript(&id(6), Bytes::from(vec![b'x'; 10])));
    assert_eq!(capture.stats().messages, 2);
    check(&capture);
}

#[test]
fn a_shared_preamble_is_charged_once_and_given_back_with_its_last_message() {
    let overhead = transcript::TRANSCRIPT_OVERHEAD as u64;
    let preamble_overhead = transcript::PREAMBLE_OVERHEAD as u64;
    let capture = Capture::new(limits(1 << 20, 100), OnFull::EvictOldest);
    for n in 1..=3 {
        capture
            .insert(message(n, "s@x", &["a@x"], "one", 10))
            .unwrap();
    }
    let before = capture.stats().bytes;
    let preamble: Arc<[u8]> = Arc::from(&b"S 0 220 mx.test\nC 1 EHLO c\n"[..]);
    let own = |n: u64| Bytes::from(format!("C {n} MAIL FROM:<s@x>\n"));
    for n in 2..=3 {
        let transcript = transcript::Transcript {
            preamble: Some(Arc::clone(&preamble)),
            own: own(n),
        };
        assert!(capture.attach_transcript(&id(n), transcript));
        check(&capture);
    }
    let owns = 2 * (own(2).len() as u64 + overhead);
    let shared = preamble.len() as u64 + preamble_overhead;
    assert_eq!(capture.stats().bytes, before + owns + shared);
    // Read back as one text, the preamble first.
    let mut text = preamble.to_vec();
    text.extend_from_slice(&own(3));
    assert_eq!(capture.transcript(&id(3)), Some(Bytes::from(text)));
    assert_eq!(capture.transcript(&id(1)), None);
    // The preamble stays charged while a message points to it, and goes with the last one.
    let charge = |n: u64| message(n, "s@x", &["a@x"], "one", 10).charge();
    let removed = capture.delete(&id(2));
    assert_eq!(removed.bytes, charge(2) + owns / 2);
    check(&capture);
    let removed = capture.delete(&id(3));
    assert_eq!(removed.bytes, charge(3) + owns / 2 + shared);
    check(&capture);
}

/// Pages, counts and deletes that examine more than [`SCAN_CHUNK`] candidates, so the lock
/// is released and taken again between chunks: the answers are those of one pass.
#[test]
fn long_scans_in_chunks_answer_as_one_pass() {
    let capture = Capture::new(limits(1 << 30, 100_000), OnFull::EvictOldest);
    let total = 3 * SCAN_CHUNK as u64 + 17;
    // Every seventh message is to rare@x (and says "rare"): a filter that matches rarely.
    let rare = |n: u64| n % 7 == 0;
    for n in 1..=total {
        let (to, subject) = if rare(n) {
            ("rare@x", "rare one")
        } else {
            ("common@x", "common one")
        };
        capture
            .insert(message(n, "s@x", &[to], subject, 10))
            .unwrap();
    }
    let expected: Vec<u64> = (1..=total).filter(|&n| rare(n)).collect();
    let filters = [
        Filter::all().and(Term::SubjectContains(b"rare".to_vec())),
        Filter::recipient(b"rare@x"),
        Filter::recipient(b"rare@x").and(Term::SubjectContains(b"one".to_vec())),
    ];
    for filter in &filters {
        assert_eq!(capture.count(filter), expected.len());
        // Newest first, in pages of 100, across chunk boundaries.
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = capture.page(cursor, Direction::Older, 100, filter);
            got.extend(seqs(&page));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let newest_first: Vec<u64> = expected.iter().rev().copied().collect();
        assert_eq!(got, newest_first);
        // Oldest first from a cursor inside the first chunk: one page with everything.
        let page = capture.page(Some(3), Direction::Newer, usize::MAX, filter);
        assert_eq!(seqs(&page), expected);
        assert_eq!(page.next, None);
        // A page that ends exactly on the last match says there is no more.
        let page = capture.page(None, Direction::Newer, expected.len(), filter);
        assert_eq!(page.next, None);
        let page = capture.page(None, Direction::Newer, expected.len() - 1, filter);
        assert_eq!(page.next, Some(expected[expected.len() - 2]));
    }
    // A delete of the rare ones in chunks: exactly them, each once, the rest intact.
    let removed = capture.delete_matching(&filters[0]);
    assert_eq!(removed.seqs, expected);
    check(&capture);
    assert_eq!(capture.count(&filters[1]), 0);
    assert_eq!(
        capture.count(&Filter::all()),
        (total as usize) - expected.len()
    );
    assert!(matches!(capture.get(&id(7)), Lookup::Gone(_)));
    assert!(matches!(capture.get(&id(8)), Lookup::Found(_)));
    // Delete all (more than REMOVE_CHUNK at the front) leaves an empty, consistent store.
    let removed = capture.delete_all();
    assert_eq!(removed.seqs.len(), (total as usize) - expected.len());
    check(&capture);
    assert_eq!(capture.stats().bytes, 0);
    assert_eq!(capture.count(&Filter::all()), 0);
}
