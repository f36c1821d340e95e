//! Per-test mailboxes in the store: routing of each kind, a message kept once in several,
//! deletes and expiry that keep shared mail, eviction, the budget's charge, the bound.

use super::*;

fn plus(capture: &Capture) -> MailboxInfo {
    capture
        .create_mailbox(None, Duration::from_secs(3600), String::new())
        .unwrap()
}

fn routed(capture: &Capture, route: Route) -> MailboxInfo {
    capture
        .create_mailbox(Some(route), Duration::from_secs(3600), "l".into())
        .unwrap()
}

/// Every live mailbox, newest first (one page: the tests make few).
fn listed(capture: &Capture) -> Vec<MailboxInfo> {
    capture
        .mailbox_page(None, 500, &MailboxFilter::default())
        .items
}

/// The budget's charge for a plus-tag mailbox's record with no label.
const PLUS_RECORD: u64 = MAILBOX_RECORD_OVERHEAD as u64;

fn count(capture: &Capture, id: MailboxId) -> usize {
    capture.count(&Filter::all().and(Term::Mailbox(id)))
}

fn in_box(capture: &Capture, id: MailboxId) -> Vec<u64> {
    seqs(&capture.page(
        None,
        Direction::Newer,
        100,
        &Filter::all().and(Term::Mailbox(id)),
    ))
}

/// A message with an AUTH user and an extra header line.
fn authed(n: u64, recipients: &[&str], user: &str, header: &str) -> Arrival {
    let raw = format!("{header}Subject: s\r\nX-Test: first\r\nX-Test: second\r\n\r\nbody\r\n");
    Arrival::new(
        id(n),
        at(n),
        Bytes::from(raw.into_bytes()),
        &EnvelopeParts {
            sender: b"s@x",
            auth_user: (!user.is_empty()).then_some(user.as_bytes()),
            ..EnvelopeParts::default()
        },
        recipients.iter().map(|r| r.as_bytes()),
    )
}

#[test]
fn ids_are_twelve_lower_case_characters_and_never_repeat() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let m = plus(&capture);
        let text = m.id.as_str();
        assert_eq!(text.len(), 12);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_eq!(MailboxId::parse(text.to_uppercase().as_bytes()), Some(m.id));
        assert!(seen.insert(m.id));
        assert!(capture.delete_mailbox(&m.id).is_some());
    }
    assert_eq!(MailboxId::parse(b"short"), None);
    assert_eq!(MailboxId::parse(b"abcdefghijk/"), None);
}

#[test]
fn each_route_kind_routes_what_it_says() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let tag = plus(&capture);
    let rcpt = routed(&capture, Route::Recipient(b"Ann@Example.com".to_vec()));
    let domain = routed(&capture, Route::Domain(b"Tenant.Test".to_vec()));
    let auth = routed(&capture, Route::AuthUser(b"robot".to_vec()));
    let header = routed(
        &capture,
        Route::Header {
            name: b"x-test".to_vec(),
            value: b"first".to_vec(),
        },
    );
    let upper = tag.id.as_str().to_uppercase();
    let cases: Vec<(Vec<String>, &str, &str, Vec<MailboxId>)> = vec![
        // The first +-segment after the base, ASCII case-insensitively, any user, any
        // domain; the sender's own tag may follow it, never precede it.
        (vec![format!("u+{}@any.test", tag.id)], "", "", vec![tag.id]),
        (vec![format!("v+{upper}@other.test")], "", "", vec![tag.id]),
        (
            vec![format!("u+{}+retry@any.test", tag.id)],
            "",
            "",
            vec![tag.id],
        ),
        (
            vec![format!("u+{}+@any.test", tag.id)],
            "",
            "",
            vec![tag.id],
        ),
        (vec![format!("u+x+{}@any.test", tag.id)], "", "", vec![]),
        (vec![format!("u+{}x@any.test", tag.id)], "", "", vec![]),
        (vec![format!("u{}@any.test", tag.id)], "", "", vec![]),
        // The recipient's local part as sent, its domain case-insensitively; never a
        // substring.
        (vec!["Ann@example.COM".into()], "", "", vec![rcpt.id]),
        (vec!["ann@example.com".into()], "", "", vec![]),
        (vec!["bAnn@example.com".into()], "", "", vec![]),
        // The domain exactly (case-insensitively), not a subdomain.
        (vec!["x@tenant.test".into()], "", "", vec![domain.id]),
        (vec!["x@sub.tenant.test".into()], "", "", vec![]),
        // The AUTH user octet for octet.
        (vec!["x@y".into()], "robot", "", vec![auth.id]),
        (vec!["x@y".into()], "Robot", "", vec![]),
        // The first X-Test field, unfolded and trimmed (a header route is never a
        // recipient's).
        (vec!["x@y".into()], "", "X-TEST:   \r\n first \r\n", vec![]),
        (vec!["x@y".into()], "", "X-Test: other\r\n", vec![]),
    ];
    let mut n = 0;
    for (recipients, user, header_line, want) in cases {
        n += 1;
        let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
        let inserted = capture
            .insert(authed(n, &recipients, user, header_line))
            .unwrap();
        let mut got = capture.get_seq(inserted.seq).unwrap().mailboxes;
        // Messages without the header line still carry `X-Test: first` further down.
        got.retain(|id| *id != header.id);
        assert_eq!(got, want, "{recipients:?} {user:?}");
    }
    // Every message above has `X-Test: first` as its first X-Test field (the folded one
    // too) except the one whose first is `other`.
    assert_eq!(count(&capture, header.id), n as usize - 1);
    assert!(tag
        .route
        .covers_recipient(format!("z+{}@q", tag.id).as_bytes()));
    assert!(tag
        .route
        .covers_recipient(format!("z+{}+2@q", tag.id).as_bytes()));
    assert!(!header.route.covers_recipient(b"x@y"));
    assert!(auth.route.covers(b"x@y", Some(b"robot")));
    check(&capture);
}

#[test]
fn a_message_to_two_mailboxes_is_kept_once_and_survives_one_delete() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let (a, b) = (plus(&capture), plus(&capture));
    let to_a = format!("t+{}@x", a.id);
    let to_b = format!("t+{}@x", b.id);
    let one = message(1, "s@x", &[&to_a], "", 10);
    let both = message(2, "s@x", &[&to_a, &to_b, &to_a], "", 10);
    let charges = one.charge() + both.charge() + 3 * MAILBOX_OVERHEAD as u64;
    capture.insert(one).unwrap();
    capture.insert(both).unwrap();
    capture
        .insert(message(3, "s@x", &["other@x"], "", 10))
        .unwrap();
    assert_eq!(capture.stats().messages, 3);
    assert_eq!(
        capture.stats().bytes,
        charges + capture.get_seq(3).unwrap().charge() + 2 * PLUS_RECORD
    );
    assert_eq!(
        (in_box(&capture, a.id), in_box(&capture, b.id)),
        (vec![1, 2], vec![2])
    );
    let mut ids = vec![a.id, b.id];
    ids.sort();
    assert_eq!(capture.get_seq(2).unwrap().mailboxes, ids);
    assert!(capture.get_seq(3).unwrap().mailboxes.is_empty());
    check(&capture);

    // Deleting `a` removes message 1 (only in `a`), keeps 2 (in `b` too) and 3.
    let removed = capture.delete_mailbox(&a.id).unwrap();
    assert_eq!(removed.seqs, [1]);
    assert_eq!(in_box(&capture, b.id), [2]);
    assert_eq!(capture.get_seq(2).unwrap().mailboxes, [b.id]);
    assert!(capture.get_seq(3).is_some());
    assert!(matches!(capture.get(&id(1)), Lookup::Gone(g) if g.reason == GoneReason::Deleted));
    check(&capture);
    assert!(matches!(
        capture.mailbox(&a.id),
        MailboxLookup::Gone(MailboxGone {
            reason: MailboxGoneReason::Deleted,
            ..
        })
    ));
    assert!(capture.delete_mailbox(&a.id).is_none());
    assert_eq!(count(&capture, a.id), 0, "a mailbox not live holds nothing");
    assert_eq!(
        capture.mailbox(&MailboxId::parse(b"000000000000").unwrap()),
        MailboxLookup::Unknown
    );
    // Mail to a deleted mailbox's address is kept as any other mail.
    let late = capture.insert(message(4, "s@x", &[&to_a], "", 0)).unwrap();
    assert!(capture.get_seq(late.seq).unwrap().mailboxes.is_empty());
    check(&capture);
}

#[test]
fn a_mailbox_expires_with_its_own_mail_only() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let short = capture
        .create_mailbox(None, Duration::from_secs(10), String::new())
        .unwrap();
    let long = plus(&capture);
    let to_short = format!("t+{}@x", short.id);
    let to_long = format!("t+{}@x", long.id);
    capture
        .insert(message(1, "s@x", &[&to_short], "", 0))
        .unwrap();
    capture
        .insert(message(2, "s@x", &[&to_short, &to_long], "", 0))
        .unwrap();
    assert_eq!(capture.expire(SystemTime::now()), 0);
    let later = SystemTime::now() + Duration::from_secs(11);
    assert_eq!(capture.expire(later), 1);
    assert!(matches!(
        capture.mailbox(&short.id),
        MailboxLookup::Gone(MailboxGone {
            reason: MailboxGoneReason::Expired,
            ..
        })
    ));
    assert!(
        matches!(capture.get(&id(1)), Lookup::Gone(g) if g.reason == GoneReason::MailboxExpired)
    );
    assert_eq!(in_box(&capture, long.id), [2]);
    assert_eq!(listed(&capture).len(), 1);
    check(&capture);
}

#[test]
fn eviction_unindexes_and_the_budget_counts_memberships() {
    let capture = Capture::new(limits(1 << 20, 2), OnFull::EvictOldest);
    let m = plus(&capture);
    let to = format!("t+{}@x", m.id);
    for n in 1..=3 {
        capture.insert(message(n, "s@x", &[&to], "", 0)).unwrap();
    }
    assert_eq!(in_box(&capture, m.id), [2, 3]);
    assert_eq!(listed(&capture)[0].count, 2);
    let kept: u64 = [2, 3]
        .iter()
        .map(|&s| capture.get_seq(s).unwrap().charge())
        .sum();
    assert_eq!(
        capture.stats().bytes,
        kept + 2 * MAILBOX_OVERHEAD as u64 + PLUS_RECORD
    );
    assert_eq!(
        capture.stats().mailbox_bytes,
        2 * MAILBOX_OVERHEAD as u64 + PLUS_RECORD
    );
    check(&capture);
    capture.delete_all();
    assert_eq!(
        (capture.stats().bytes, count(&capture, m.id)),
        (PLUS_RECORD, 0)
    );
    check(&capture);
}

#[test]
fn pages_counts_and_waiters_by_mailbox() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let (a, b) = (plus(&capture), plus(&capture));
    let woken_a = Arc::new(Counter::default());
    capture.register(WaitKey::Mailbox(a.id), Waker::from(Arc::clone(&woken_a)));
    let to_a = format!("t+{}@x", a.id);
    let to_b = format!("t+{}@x", b.id);
    for n in 1..=6 {
        let to = if n % 2 == 0 { &to_a } else { &to_b };
        capture.insert(message(n, "s@x", &[to], "", 0)).unwrap();
    }
    assert_eq!(woken_a.wakes(), 3);
    let filter = Filter::all().and(Term::Mailbox(a.id));
    let first = capture.page(None, Direction::Older, 2, &filter);
    assert_eq!((seqs(&first), first.next), (vec![6, 4], Some(4)));
    let rest = capture.page(first.next, Direction::Older, 2, &filter);
    assert_eq!((seqs(&rest), rest.next), (vec![2], None));
    assert_eq!(
        seqs(&capture.page(Some(2), Direction::Newer, 10, &filter)),
        [4, 6]
    );
    // With another term and with two mailboxes named.
    let both = filter.clone().and(Term::Mailbox(b.id));
    assert_eq!(capture.count(&both), 0);
    assert_eq!(capture.count(&filter.clone().and(Term::SizeAbove(0))), 3);
    assert_eq!(capture.delete_matching(&filter).seqs, [2, 4, 6]);
    assert_eq!(count(&capture, b.id), 3);
    check(&capture);
}

#[test]
fn live_mailboxes_are_bounded() {
    let capture = Capture::new(
        Limits {
            max_mailboxes: 3,
            ..Limits::default()
        },
        OnFull::EvictOldest,
    );
    let made: Vec<MailboxInfo> = (0..3).map(|_| plus(&capture)).collect();
    let refused = capture.create_mailbox(None, Duration::from_secs(1), String::new());
    assert_eq!(refused, Err(TooManyMailboxes::Live(3)));
    assert_eq!(
        listed(&capture).iter().map(|m| m.id).collect::<Vec<_>>(),
        made.iter().rev().map(|m| m.id).collect::<Vec<_>>(),
        "listed newest first"
    );
    capture.delete_mailbox(&made[0].id).unwrap();
    assert!(capture
        .create_mailbox(None, Duration::from_secs(1), String::new())
        .is_ok());
}

#[test]
fn header_routes_name_a_bounded_set_of_fields() {
    // Each distinct name is looked for in every message: past the bound a new name is
    // refused, while a new value on a name already routed is taken.
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let header = |name: &str, value: &str| Route::Header {
        name: name.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    };
    let max = crate::capture::mailbox::HEADER_NAMES_MAX;
    for i in 0..max {
        let route = header(&format!("X-Test-{i}"), "v");
        assert!(capture
            .create_mailbox(Some(route), Duration::from_secs(60), String::new())
            .is_ok());
    }
    let refused = capture.create_mailbox(
        Some(header("X-Another", "v")),
        Duration::from_secs(60),
        String::new(),
    );
    assert_eq!(refused, Err(TooManyMailboxes::HeaderNames(max)));
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("distinct header fields"));
    // The same name in another case is the same field.
    assert!(capture
        .create_mailbox(
            Some(header("x-test-0", "other")),
            Duration::from_secs(60),
            String::new()
        )
        .is_ok());
}

#[test]
fn a_mailbox_that_ends_wakes_its_waiters_even_when_empty() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let (deleted, expiring, other) = (
        plus(&capture),
        capture
            .create_mailbox(None, Duration::from_secs(10), String::new())
            .unwrap(),
        plus(&capture),
    );
    let counters: Vec<Arc<Counter>> = (0..3).map(|_| Arc::new(Counter::default())).collect();
    for (mailbox, counter) in [&deleted, &expiring, &other].iter().zip(&counters) {
        capture.register(
            WaitKey::Mailbox(mailbox.id),
            Waker::from(Arc::clone(counter)),
        );
    }
    let wakes = || counters.iter().map(|c| c.wakes()).collect::<Vec<_>>();
    // No mail in it: nothing is removed, yet its waiter hears that it ended.
    assert!(capture.delete_mailbox(&deleted.id).is_some());
    assert_eq!(wakes(), [1, 0, 0]);
    assert_eq!(
        capture.expire(SystemTime::now() + Duration::from_secs(11)),
        0
    );
    assert_eq!(wakes(), [1, 1, 0]);
    // Expiry at an insert wakes it too.
    let short = capture
        .create_mailbox(None, Duration::from_secs(1), String::new())
        .unwrap();
    let woken = Arc::new(Counter::default());
    capture.register(WaitKey::Mailbox(short.id), Waker::from(Arc::clone(&woken)));
    let late = Arrival::new(
        id(1),
        SystemTime::now() + Duration::from_secs(2),
        Bytes::from_static(b"Subject: s\r\n\r\nx\r\n"),
        &EnvelopeParts {
            sender: b"s@x",
            ..EnvelopeParts::default()
        },
        [&b"a@x"[..]],
    );
    capture.insert(late).unwrap();
    assert_eq!((woken.wakes(), wakes()), (1, vec![1, 1, 0]));
    check(&capture);
}

#[test]
fn a_mailbox_record_costs_what_the_doc_says() {
    assert_eq!(MAILBOX_RECORD_OVERHEAD, 420);
    assert_eq!(mailbox::record_charge(None, ""), 420);
    assert_eq!(mailbox::record_charge(None, "signup test"), 420 + 11);
    let rcpt = Route::Recipient(b"alice@example.com".to_vec());
    assert_eq!(mailbox::record_charge(Some(&rcpt), "t1"), 420 + 2 + 17);
    let header = Route::Header {
        name: b"X-Run".to_vec(),
        value: b"42".to_vec(),
    };
    // The header route's text is kept twice: in the route and in its routing table.
    assert_eq!(mailbox::record_charge(Some(&header), ""), 420 + 2 * 7);
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let a = routed(&capture, rcpt.clone());
    let b = routed(&capture, header);
    let both = (420 + 1 + 17) + (420 + 1 + 14);
    assert_eq!(
        (capture.stats().bytes, capture.stats().mailbox_bytes),
        (both, both)
    );
    assert_eq!(capture.stats().mailboxes, 2);
    check(&capture);
    capture.delete_mailbox(&a.id).unwrap();
    capture.delete_mailbox(&b.id).unwrap();
    assert_eq!((capture.stats().bytes, capture.stats().mailboxes), (0, 0));
    check(&capture);
}

#[test]
fn a_new_mailbox_evicts_mail_or_is_refused_under_tempfail() {
    // Room for two 10-octet messages and little more.
    let one = message(1, "s@x", &["a@x"], "", 10).charge();
    let budget = 2 * one + 100;
    for policy in [OnFull::EvictOldest, OnFull::Refuse] {
        let capture = Capture::new(limits(budget, 100), policy);
        capture.insert(message(1, "s@x", &["a@x"], "", 10)).unwrap();
        capture.insert(message(2, "s@x", &["a@x"], "", 10)).unwrap();
        let made = capture.create_mailbox(None, Duration::from_secs(60), String::new());
        match policy {
            OnFull::EvictOldest => {
                made.unwrap();
                // Its 420 octets took the place of the oldest message (or both).
                assert!(capture.stats().evicted_bytes >= 1);
                assert!(matches!(capture.get(&id(1)), Lookup::Gone(_)));
            }
            OnFull::Refuse => {
                assert_eq!(made, Err(TooManyMailboxes::Full(PLUS_RECORD)));
                assert_eq!(capture.stats().messages, 2);
            }
        }
        assert!(capture.stats().bytes <= budget);
        check(&capture);
    }
    // Mailboxes alone fill the budget: no more mailboxes, and mail is refused (never
    // over the budget, never a loop with nothing to evict).
    let capture = Capture::new(limits(3 * PLUS_RECORD, 100), OnFull::EvictOldest);
    for _ in 0..3 {
        plus(&capture);
    }
    assert_eq!(
        capture.create_mailbox(None, Duration::from_secs(60), String::new()),
        Err(TooManyMailboxes::Full(PLUS_RECORD))
    );
    assert_eq!(
        capture
            .insert(message(9, "s@x", &["a@x"], "", 10))
            .unwrap_err(),
        Refused::Full
    );
    assert_eq!(capture.stats().bytes, 3 * PLUS_RECORD);
    check(&capture);
}

#[test]
fn mailboxes_page_newest_first_filter_and_delete_in_bulk() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let made: Vec<MailboxInfo> = (0..7)
        .map(|n| {
            let label = if n % 2 == 0 { "even" } else { "Odd one" };
            capture
                .create_mailbox(None, Duration::from_secs(60), label.into())
                .unwrap()
        })
        .collect();
    let all = MailboxFilter::default();
    let first = capture.mailbox_page(None, 3, &all);
    let ids = |p: &MailboxPage| p.items.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(&first), [made[6].id, made[5].id, made[4].id]);
    assert_eq!(first.total, 7);
    // A new mailbox does not shift the next page.
    let newest = plus(&capture);
    let second = capture.mailbox_page(first.next, 3, &all);
    assert_eq!(ids(&second), [made[3].id, made[2].id, made[1].id]);
    let last = capture.mailbox_page(second.next, 3, &all);
    assert_eq!(
        (ids(&last), last.next, last.total),
        (vec![made[0].id], None, 8)
    );
    let odd = MailboxFilter {
        label: Some("Odd one".into()),
        contains: None,
    };
    let page = capture.mailbox_page(None, 2, &odd);
    assert_eq!((ids(&page), page.total), (vec![made[5].id, made[3].id], 3));
    let text = MailboxFilter {
        label: None,
        contains: Some("ODD".into()),
    };
    assert_eq!(capture.mailbox_page(None, 10, &text).total, 3);
    let by_id = MailboxFilter {
        label: None,
        contains: Some(made[2].id.as_str()[3..9].to_uppercase()),
    };
    assert_eq!(ids(&capture.mailbox_page(None, 10, &by_id)), [made[2].id]);
    // Bulk delete by label: their mail goes, shared mail stays with the survivor.
    let to = |m: &MailboxInfo| format!("t+{}@x", m.id);
    capture
        .insert(message(1, "s@x", &[&to(&made[1])], "", 0))
        .unwrap();
    capture
        .insert(message(2, "s@x", &[&to(&made[1]), &to(&made[2])], "", 0))
        .unwrap();
    let (gone, removed) = capture.delete_mailboxes(&odd);
    assert_eq!((gone.len(), removed.seqs.clone()), (3, vec![1]));
    assert!(matches!(
        capture.mailbox(&made[1].id),
        MailboxLookup::Gone(MailboxGone {
            reason: MailboxGoneReason::Deleted,
            ..
        })
    ));
    assert_eq!(in_box(&capture, made[2].id), [2]);
    check(&capture);
    let (gone, removed) = capture.delete_mailboxes(&all);
    assert_eq!((gone.len(), removed.seqs), (5, vec![2]));
    assert!(matches!(
        capture.mailbox(&newest.id),
        MailboxLookup::Gone(_)
    ));
    assert_eq!((capture.stats().bytes, capture.stats().mailboxes), (0, 0));
    check(&capture);
}

#[test]
fn mailbox_tombstones_stay_bounded() {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    let first = plus(&capture);
    capture.delete_mailbox(&first.id).unwrap();
    for _ in 0..mailbox::MAILBOX_TOMBSTONES_MAX {
        let m = plus(&capture);
        capture.delete_mailbox(&m.id).unwrap();
    }
    assert_eq!(
        capture.stats().mailbox_tombstones,
        mailbox::MAILBOX_TOMBSTONES_MAX
    );
    // The oldest tombstone left the ring: that id is now unknown.
    assert_eq!(capture.mailbox(&first.id), MailboxLookup::Unknown);
    check(&capture);
}
