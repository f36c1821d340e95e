//! The index terms: the address-list reader, and every term through the store against a
//! naive model of what it means.

use super::*;
use crate::capture::{same_address, Arrival, Capture, Direction, EnvelopeParts, Limits, OnFull};
use crate::proto::sink::QueueId;
use bytes::Bytes;
use proptest::prelude::*;
use std::time::Duration;

#[test]
fn header_addresses_reads_names_groups_comments_and_quotes() {
    let list = |v: &str| -> Vec<String> {
        header_addresses(v.as_bytes())
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect()
    };
    assert_eq!(list("a@x"), ["a@x"]);
    assert_eq!(
        list("\"Doe, Ann\" <ann@x>, bob@y (Bob, the builder), <c@z>"),
        ["ann@x", "bob@y", "c@z"]
    );
    assert_eq!(
        list("Team: d@x, \"e\\\"q\" <e@x>; f@x"),
        ["d@x", "e@x", "f@x"]
    );
    assert_eq!(list("undisclosed-recipients:;"), Vec::<String>::new());
    assert_eq!(list("\"a,b\"@x, <\"q:r\"@y>"), ["\"a,b\"@x", "\"q:r\"@y"]);
    assert_eq!(list(" , ,"), Vec::<String>::new());
    assert_eq!(list("<unclosed@x"), ["unclosed@x"]);
}

/// Envelope recipients and `To:` addresses with the traps of issue 18: a prefix, case in
/// each part, a quoted twin.
const POOL: [&str; 6] = ["a@x", "A@x", "a@X", "ba@x", "\"a\"@x", "b@y"];

/// One generated message.
#[derive(Debug, Clone)]
struct Spec {
    sender: usize,
    recipients: Vec<usize>,
    to: Vec<usize>,
    body: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..POOL.len(),
        prop::collection::vec(0..POOL.len(), 1..3),
        prop::collection::vec(0..POOL.len(), 0..3),
        0usize..200,
    )
        .prop_map(|(sender, recipients, to, body)| Spec {
            sender,
            recipients,
            to,
            body,
        })
}

fn term() -> impl Strategy<Value = Term> {
    let pool = || (0..POOL.len()).prop_map(|i| POOL[i].as_bytes().to_vec());
    prop_oneof![
        pool().prop_map(Term::Recipient),
        pool().prop_map(Term::Sender),
        pool().prop_map(|address| Term::HeaderAddress {
            field: Field::To,
            address
        }),
        prop::sample::select(vec!["a@", "@X", "b", "\"", "ba"])
            .prop_map(|t| Term::RecipientContains(t.as_bytes().to_vec())),
        prop::sample::select(vec!["a@", "@X", "b"])
            .prop_map(|t| Term::SenderContains(t.as_bytes().to_vec())),
        (1u64..12).prop_map(|n| Term::MessageId(format!("<{n}@test>").into_bytes())),
        (1u64..12).prop_map(|n| Term::MessageId(format!("{n}@test").into_bytes())),
        (60u64..300).prop_map(Term::SizeAbove),
        (60u64..300).prop_map(Term::SizeBelow),
        (0u64..14).prop_map(|s| Term::ReceivedBefore(at(s))),
        (0u64..14).prop_map(|s| Term::ReceivedAfter(at(s))),
    ]
}

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// The raw message of `spec` numbered `n`.
fn raw(n: u64, spec: &Spec) -> Vec<u8> {
    let to: Vec<String> = spec
        .to
        .iter()
        .map(|&i| format!("N{i} <{}>", POOL[i]))
        .collect();
    let mut raw = format!(
        "To: {}\r\nMessage-ID: <{n}@test>\r\n\r\n",
        to.join(",\r\n ")
    )
    .into_bytes();
    raw.resize(raw.len() + spec.body, b'x');
    raw
}

/// What `term` means, written plainly over the generated message.
fn model(term: &Term, n: u64, spec: &Spec, size: u64) -> bool {
    let addr = |i: usize| POOL[i].as_bytes();
    let lower_contains = |hay: &[u8], needle: &[u8]| {
        String::from_utf8_lossy(hay)
            .to_lowercase()
            .contains(&String::from_utf8_lossy(needle).to_lowercase())
    };
    match term {
        Term::Recipient(a) => spec.recipients.iter().any(|&i| same_address(addr(i), a)),
        Term::Sender(a) => same_address(addr(spec.sender), a),
        Term::HeaderAddress { address, .. } => {
            spec.to.iter().any(|&i| same_address(addr(i), address))
        }
        Term::RecipientContains(t) => spec.recipients.iter().any(|&i| lower_contains(addr(i), t)),
        Term::SenderContains(t) => lower_contains(addr(spec.sender), t),
        Term::MessageId(id) => {
            let id = String::from_utf8_lossy(id);
            id == format!("<{n}@test>") || id == format!("{n}@test")
        }
        Term::SizeAbove(s) => size > *s,
        Term::SizeBelow(s) => size < *s,
        Term::ReceivedBefore(t) => at(n) < *t,
        Term::ReceivedAfter(t) => at(n) >= *t,
        Term::SubjectContains(_) | Term::Header { .. } | Term::Mailbox(_) => {
            unreachable!("not generated")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every page and count through the store (the recipient index included) equals the
    /// model's answer, for conjunctions of one to three terms, both directions.
    #[test]
    fn the_index_terms_agree_with_a_naive_model(
        specs in prop::collection::vec(spec(), 1..12),
        filters in prop::collection::vec(prop::collection::vec(term(), 1..4), 1..8),
    ) {
        let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
        let mut sizes = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let n = i as u64 + 1;
            let raw = raw(n, spec);
            sizes.push(raw.len() as u64);
            let arrival = Arrival::new(
                QueueId::new(format!("f{n}").as_bytes()).unwrap(),
                at(n),
                Bytes::from(raw),
                &EnvelopeParts { sender: POOL[spec.sender].as_bytes(), ..EnvelopeParts::default() },
                spec.recipients.iter().map(|&r| POOL[r].as_bytes()),
            );
            capture.insert(arrival).unwrap();
        }
        for terms in filters {
            let filter = terms.iter().cloned().fold(Filter::all(), Filter::and);
            let want: Vec<u64> = specs
                .iter()
                .enumerate()
                .filter(|(i, spec)| terms.iter().all(|t| model(t, *i as u64 + 1, spec, sizes[*i])))
                .map(|(i, _)| i as u64 + 1)
                .collect();
            let newer: Vec<u64> = capture
                .page(None, Direction::Newer, 100, &filter)
                .items
                .iter()
                .map(|s| s.seq)
                .collect();
            prop_assert_eq!(&newer, &want, "{:?}", terms);
            let older: Vec<u64> = capture
                .page(None, Direction::Older, 100, &filter)
                .items
                .iter()
                .map(|s| s.seq)
                .collect();
            prop_assert_eq!(older, want.iter().rev().copied().collect::<Vec<_>>());
            prop_assert_eq!(capture.count(&filter), want.len());
        }
    }
}
