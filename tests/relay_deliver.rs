//! The relay's delivery loop against a real next hop: a fastsmtpd sink started as a child
//! process (`--store eml:DIR`, `--fault` rules for its refusals), over loopback sockets. Each
//! test opens a spool in a scratch directory, commits messages through the `RelayQueue` as
//! the accepting side will, starts the `Deliverer` toward the sink and waits (bounded, by
//! polling the sink's directory and the loop's counters) for every message to be delivered
//! or notified about. No timed assertion: the only time bound checked is the queue
//! lifetime's lower one (a recipient is never given up before its lifetime is over).

mod util;

use fastsmtpd::proto::dsn::Notify;
use fastsmtpd::relay::deliver::{Deliverer, DeliveryConfig, DeliveryHandle, DeliveryStats};
use fastsmtpd::relay::queue::RelayQueue;
use fastsmtpd::relay::schedule::RetryPolicy;
use fastsmtpd::relay::spool::{
    Envelope, Recipient, RecipientState, Recovered, SpoolId, SpoolLimits,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use util::process::ChildGuard;

/// The most any test waits for the mail to settle (a bound, not a measurement).
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// A sink next hop keeping every message as `DIR/<id>.eml` and its `DIR/<id>.json`.
struct Sink {
    _child: ChildGuard,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Sink {
    fn start(name: &str, faults: &[&str]) -> Sink {
        let dir = util::scratch_dir(name).join("mail");
        let store = format!("eml:{}", dir.display());
        let mut args = vec!["--store", store.as_str()];
        for fault in faults {
            args.extend(["--fault", fault]);
        }
        let (child, addr) = util::start_binary(1, &args);
        Sink {
            _child: child,
            addr,
            dir,
        }
    }

    /// Every complete message: its sidecar record and its bytes.
    fn messages(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "eml")
                && !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
            {
                let bytes = std::fs::read(&path).unwrap();
                let record = std::fs::read(path.with_extension("json")).unwrap();
                found.push((serde_json::from_slice(&record).unwrap(), bytes));
            }
        }
        found
    }
}

fn mail_from(record: &serde_json::Value) -> String {
    record["mail_from"].as_str().unwrap_or_default().to_owned()
}

fn rcpt_to(record: &serde_json::Value) -> Vec<String> {
    record["rcpt_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap().to_owned())
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn open_spool(dir: &Path) -> (Arc<RelayQueue>, Vec<Recovered>) {
    RelayQueue::open(dir, SpoolLimits::default()).unwrap()
}

/// Commits one message as the accepting side does.
fn put(queue: &RelayQueue, from: &str, to: &[&str], body: &[u8]) -> SpoolId {
    let envelope = Envelope {
        arrival_unix_ms: unix_ms(),
        reverse_path: from.as_bytes().to_vec(),
        recipients: to
            .iter()
            .map(|address| Recipient {
                address: address.as_bytes().to_vec(),
                notify: Notify::default(),
                orcpt: None,
            })
            .collect(),
        ..Envelope::default()
    };
    let id = {
        let mut spool = queue.spool();
        let id = spool.append(&envelope, body).unwrap();
        spool.commit().unwrap();
        id
    };
    queue.committed(&[id]);
    id
}

fn config(hops: Vec<SocketAddr>, retry: &str, lifetime: Duration) -> DeliveryConfig {
    let mut config = DeliveryConfig::new(hops, "relay.test");
    config.retry = RetryPolicy::new(RetryPolicy::parse_list(retry).unwrap(), lifetime).unwrap();
    config.session_timeout = Some(Duration::from_secs(10));
    config.connect_timeout = Duration::from_secs(5);
    config
}

/// Waits (bounded) until `done` holds; panics with `what` and the counters otherwise.
#[track_caller]
fn wait_until(what: &str, handle: &DeliveryHandle, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > SETTLE_WAIT {
            panic!("{what}: not after {SETTLE_WAIT:?}; {:?}", handle.stats());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stat(counter: &std::sync::atomic::AtomicU64) -> u64 {
    DeliveryStats::get(counter)
}

fn live(queue: &RelayQueue) -> usize {
    queue.spool().live().count()
}

/// A body with a dot-led line (dot-stuffing on the way) and a sequence header.
fn body(seq: usize) -> Vec<u8> {
    format!(
        "X-Seq: {seq}\r\nSubject: message {seq}\r\n\r\nline one\r\n.leading dot\r\n{}\r\nend\r\n",
        "x".repeat(seq * 7)
    )
    .into_bytes()
}

fn seq_of(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap();
    line.strip_prefix("X-Seq: ").unwrap().parse().unwrap()
}

/// A loopback address nobody listens on (a closed port: connections are refused).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A next hop written here, lock-step SMTP without extensions (so the relay sends with `DATA`
/// and dot-stuffs, where the sink offers CHUNKING): keeps each message's content as it came
/// on the wire (still dot-stuffed). With `silent_first_eod` it says nothing to the first end
/// of data it gets (a next hop that hangs after taking the message).
struct PlainHop {
    addr: SocketAddr,
    kept: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl PlainHop {
    fn start(silent_first_eod: bool) -> PlainHop {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = Arc::clone(&kept);
        std::thread::spawn(move || {
            let mut silent = silent_first_eod;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                stream.set_read_timeout(Some(SETTLE_WAIT)).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let _ = writer.write_all(b"220 plain.test ready\r\n");
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with(b"DATA") {
                        let _ = writer.write_all(b"354 go on\r\n");
                        let mut content = Vec::new();
                        loop {
                            let mut data_line = Vec::new();
                            if reader.read_until(b'\n', &mut data_line).unwrap_or(0) == 0 {
                                return;
                            }
                            if data_line == b".\r\n" {
                                break;
                            }
                            content.extend_from_slice(&data_line);
                        }
                        keep.lock().unwrap().push(content);
                        if silent {
                            silent = false;
                            // Hang: read on (the relay gives up and closes), never answer.
                            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {}
                            break;
                        }
                        b"250 kept\r\n"
                    } else if upper.starts_with(b"QUIT") {
                        let _ = writer.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    if writer.write_all(reply).is_err() {
                        break;
                    }
                }
            }
        });
        PlainHop { addr, kept }
    }

    fn kept(&self) -> Vec<Vec<u8>> {
        self.kept.lock().unwrap().clone()
    }
}

#[test]
fn a_next_hop_without_extensions_gets_data_dot_stuffed() {
    let hop = PlainHop::start(false);
    let spool_dir = util::scratch_dir("relay-deliver-plain-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![hop.addr], "200ms", Duration::from_secs(60)),
    )
    .unwrap();
    for seq in 0..3 {
        put(&queue, "s@x.test", &["r@y.test", "q@y.test"], &body(seq));
    }
    wait_until("three messages done", &handle, || {
        stat(&handle.stats().messages_done) == 3
    });
    let kept = hop.kept();
    assert_eq!(kept.len(), 3);
    for (seq, content) in kept.iter().enumerate() {
        // On the wire: the dot-led line doubled (RFC 5321 §4.5.2), the rest as spooled.
        let text = String::from_utf8_lossy(content);
        assert!(text.contains("\r\n..leading dot\r\n"), "{text}");
        assert_eq!(
            text.replace("\r\n..", "\r\n."),
            String::from_utf8(body(seq)).unwrap()
        );
    }
    assert_eq!(stat(&handle.stats().delivered), 6);
    handle.stop();
}

#[test]
fn a_next_hop_silent_after_the_message_is_timed_out_and_the_message_sent_again() {
    let hop = PlainHop::start(true);
    let spool_dir = util::scratch_dir("relay-deliver-silent-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let mut config = config(vec![hop.addr], "200ms", Duration::from_secs(60));
    config.session_timeout = Some(Duration::from_secs(1));
    let handle = Deliverer::start(Arc::clone(&queue), recovered, config).unwrap();
    put(&queue, "s@x.test", &["r@y.test"], &body(8));
    wait_until("the message done", &handle, || {
        stat(&handle.stats().messages_done) == 1
    });
    // The classic duplicate: the next hop had the message when it went silent. (At least:
    // on a crowded machine a slow reply may time out too, each one more copy.)
    assert!(hop.kept().len() >= 2, "{}", hop.kept().len());
    assert!(stat(&handle.stats().deferred) >= 1);
    assert_eq!(stat(&handle.stats().delivered), 1);
    assert_eq!(stat(&handle.stats().notifications), 0);
    handle.stop();
}

#[test]
fn a_hundred_messages_arrive_byte_exact_and_leave_the_spool() {
    let sink = Sink::start("relay-deliver-100", &[]);
    let spool_dir = util::scratch_dir("relay-deliver-100-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![sink.addr], "200ms", Duration::from_secs(60)),
    )
    .unwrap();
    for seq in 0..100 {
        put(&queue, "s@x.test", &["r@y.test"], &body(seq));
    }
    wait_until("100 messages done", &handle, || {
        stat(&handle.stats().messages_done) == 100
    });
    let messages = sink.messages();
    let mut by_seq = BTreeMap::new();
    for (record, bytes) in &messages {
        assert_eq!(mail_from(record), "s@x.test");
        assert_eq!(rcpt_to(record), ["r@y.test"]);
        by_seq.insert(seq_of(bytes), bytes.clone());
    }
    assert_eq!(messages.len(), 100, "duplicates or losses");
    for seq in 0..100 {
        assert_eq!(by_seq[&seq], body(seq), "message {seq}");
    }
    assert_eq!(stat(&handle.stats().delivered), 100);
    assert_eq!(stat(&handle.stats().failed), 0);
    assert_eq!(live(&queue), 0);
    // Every segment but the one being appended to is deleted once its messages are done.
    assert!(queue.spool().segment_count() <= 1);
    handle.stop();
}

/// Messages that become ready one at a time, each after the one before was delivered, go
/// over the one connection kept open between them (the connection cache), not a connection
/// each.
#[test]
fn messages_arriving_one_by_one_reuse_the_open_connection() {
    let sink = Sink::start("relay-deliver-reuse", &[]);
    let spool_dir = util::scratch_dir("relay-deliver-reuse-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![sink.addr], "200ms", Duration::from_secs(60)),
    )
    .unwrap();
    for seq in 0..5u64 {
        put(&queue, "s@x.test", &["r@y.test"], &body(seq as usize));
        wait_until("the message delivered", &handle, || {
            stat(&handle.stats().messages_done) == seq + 1
        });
    }
    assert_eq!(sink.messages().len(), 5);
    // A connection stays open 2 s with nothing to carry; the messages came within that.
    assert_eq!(
        stat(&handle.stats().connections),
        1,
        "one connection for all five"
    );
    handle.stop();
}

#[test]
fn a_refused_recipient_gets_its_sender_one_notification_and_the_others_their_mail() {
    let sink = Sink::start(
        "relay-deliver-550",
        &["rcpt to=bad@* reply=550 5.1.1 No such user"],
    );
    let spool_dir = util::scratch_dir("relay-deliver-550-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![sink.addr], "200ms", Duration::from_secs(60)),
    )
    .unwrap();
    put(
        &queue,
        "s@x.test",
        &["good@y.test", "bad@y.test", "other@y.test"],
        &body(1),
    );
    // The original and its notification, both done.
    wait_until("original and notification done", &handle, || {
        stat(&handle.stats().messages_done) == 2 && sink.messages().len() == 2
    });
    let messages = sink.messages();
    let (original, bytes) = messages
        .iter()
        .find(|(record, _)| mail_from(record) == "s@x.test")
        .expect("the original");
    assert_eq!(rcpt_to(original), ["good@y.test", "other@y.test"]);
    assert_eq!(bytes, &body(1));
    let (notification, report) = messages
        .iter()
        .find(|(record, _)| mail_from(record).is_empty())
        .expect("a notification from <>");
    assert_eq!(rcpt_to(notification), ["s@x.test"]);
    let report = String::from_utf8_lossy(report);
    assert!(report.contains("multipart/report"), "{report}");
    assert!(report.contains("report-type=delivery-status"), "{report}");
    assert!(
        report.contains("Final-Recipient: rfc822; bad@y.test"),
        "{report}"
    );
    assert!(report.contains("Action: failed"), "{report}");
    assert!(report.contains("Status: 5.1.1"), "{report}");
    assert!(report.contains("550 5.1.1 No such user"), "{report}");
    assert!(
        report.contains("Remote-MTA: dns; 127.0.0.1\r\n"),
        "{report}"
    );
    assert!(
        report.contains("Reporting-MTA: dns; relay.test"),
        "{report}"
    );
    assert!(
        !report.contains("Final-Recipient: rfc822; good@y.test"),
        "{report}"
    );
    assert_eq!(stat(&handle.stats().notifications), 1);
    assert_eq!(stat(&handle.stats().delivered), 3); // two, then the notification
    assert_eq!(stat(&handle.stats().failed), 1);
    assert_eq!(live(&queue), 0);
    handle.stop();
}

#[test]
fn an_always_451_next_hop_is_retried_until_the_lifetime_then_the_sender_is_told() {
    let sink = Sink::start(
        "relay-deliver-451",
        &["eod from=s@x.test reply=451 4.3.0 Try again later"],
    );
    let spool_dir = util::scratch_dir("relay-deliver-451-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let lifetime = Duration::from_secs(2);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![sink.addr], "200ms", lifetime),
    )
    .unwrap();
    let started = Instant::now();
    put(&queue, "s@x.test", &["r@y.test"], &body(3));
    wait_until("the notification delivered", &handle, || {
        stat(&handle.stats().messages_done) == 2 && sink.messages().len() == 1
    });
    // Never given up before the lifetime is over (a lower bound: always true when right).
    assert!(started.elapsed() >= lifetime);
    // Retried on the 200 ms schedule: several attempts in 2 s, each one deferral, and the
    // last one's failure final.
    let deferred = stat(&handle.stats().deferred);
    assert!(deferred >= 3, "only {deferred} attempts deferred");
    assert_eq!(stat(&handle.stats().failed), 1);
    assert_eq!(stat(&handle.stats().notifications), 1);
    let messages = sink.messages();
    let (notification, report) = &messages[0];
    assert_eq!(mail_from(notification), "");
    assert_eq!(rcpt_to(notification), ["s@x.test"]);
    let report = String::from_utf8_lossy(report);
    assert!(report.contains("Action: failed"), "{report}");
    assert!(
        report.contains("Final-Recipient: rfc822; r@y.test"),
        "{report}"
    );
    assert!(report.contains("451 4.3.0 Try again later"), "{report}");
    assert_eq!(live(&queue), 0);
    handle.stop();
}

#[test]
fn a_first_hop_that_refuses_connections_leaves_the_mail_to_the_second() {
    let sink = Sink::start("relay-deliver-fallback", &[]);
    let spool_dir = util::scratch_dir("relay-deliver-fallback-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(
            vec![closed_port(), sink.addr],
            "30s",
            Duration::from_secs(600),
        ),
    )
    .unwrap();
    for seq in 0..5 {
        put(&queue, "s@x.test", &["r@y.test"], &body(seq));
    }
    wait_until("five messages delivered", &handle, || {
        stat(&handle.stats().messages_done) == 5
    });
    assert!(stat(&handle.stats().connect_failures) >= 1);
    // The refused connection used no attempt: nothing was deferred (the retry delay is 30 s,
    // so a deferral would have shown as a wait far beyond this test).
    assert_eq!(stat(&handle.stats().deferred), 0);
    assert_eq!(sink.messages().len(), 5);
    handle.stop();
}

#[test]
fn a_first_hop_that_greets_with_554_leaves_the_mail_to_the_second() {
    let refusing = Sink::start("relay-deliver-554", &["connect reply=554 5.7.1 No service"]);
    let sink = Sink::start("relay-deliver-554-second", &[]);
    let spool_dir = util::scratch_dir("relay-deliver-554-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(
            vec![refusing.addr, sink.addr],
            "30s",
            Duration::from_secs(600),
        ),
    )
    .unwrap();
    put(&queue, "s@x.test", &["r@y.test"], &body(4));
    wait_until("the message delivered", &handle, || {
        stat(&handle.stats().messages_done) == 1
    });
    assert!(stat(&handle.stats().connect_failures) >= 1);
    assert_eq!(stat(&handle.stats().deferred), 0);
    assert!(refusing.messages().is_empty());
    assert_eq!(sink.messages().len(), 1);
    handle.stop();
}

#[test]
fn a_small_active_set_still_delivers_everything() {
    let sink = Sink::start("relay-deliver-active", &[]);
    let spool_dir = util::scratch_dir("relay-deliver-active-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let mut config = config(vec![sink.addr], "200ms", Duration::from_secs(60));
    config.active_max = 3;
    config.messages_per_connection = 2;
    config.connections_per_hop = 1;
    let handle = Deliverer::start(Arc::clone(&queue), recovered, config).unwrap();
    for seq in 0..30 {
        put(&queue, "s@x.test", &["r@y.test"], &body(seq));
    }
    wait_until("30 messages done", &handle, || {
        stat(&handle.stats().messages_done) == 30
    });
    let seqs: Vec<usize> = sink
        .messages()
        .iter()
        .map(|(_, bytes)| seq_of(bytes))
        .collect();
    assert_eq!(seqs.len(), 30);
    assert_eq!(
        seqs.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        (0..30).collect()
    );
    assert!(stat(&handle.stats().connections) >= 15);
    handle.stop();
}

/// The active set's bound on recipients: messages of 4 recipients under a bound of 5 go one
/// at a time (the other messages wait as ids), one of 12 (more than the bound) is still let
/// in alone, and everything is delivered, each recipient once.
#[test]
fn an_active_set_bounded_by_recipients_still_delivers_everything() {
    let sink = Sink::start("relay-deliver-active-rcpts", &[]);
    let spool_dir = util::scratch_dir("relay-deliver-active-rcpts-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let mut config = config(vec![sink.addr], "200ms", Duration::from_secs(60));
    config.active_recipients_max = 5;
    let four = ["a@y.test", "b@y.test", "c@y.test", "d@y.test"];
    let twelve: Vec<String> = (0..12).map(|n| format!("m{n}@y.test")).collect();
    let twelve: Vec<&str> = twelve.iter().map(String::as_str).collect();
    for seq in 0..6 {
        put(&queue, "s@x.test", &four, &body(seq));
    }
    put(&queue, "s@x.test", &twelve, &body(6));
    let handle = Deliverer::start(Arc::clone(&queue), recovered, config).unwrap();
    for seq in 7..10 {
        put(&queue, "s@x.test", &four, &body(seq));
    }
    wait_until("10 messages done", &handle, || {
        stat(&handle.stats().messages_done) == 10
    });
    let mut recipients = 0;
    let mut seqs = std::collections::BTreeSet::new();
    for (record, bytes) in sink.messages() {
        recipients += record["rcpt_to"].as_array().map_or(0, Vec::len);
        seqs.insert(seq_of(&bytes));
    }
    assert_eq!(seqs, (0..10).collect());
    assert_eq!(recipients, 9 * 4 + 12, "each recipient once");
    handle.stop();
}

#[test]
fn deferred_messages_survive_a_restart_and_are_delivered_after_it() {
    let spool_dir = util::scratch_dir("relay-deliver-restart-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![closed_port()], "200ms", Duration::from_secs(600)),
    )
    .unwrap();
    for seq in 0..10 {
        put(&queue, "s@x.test", &["r@y.test"], &body(seq));
    }
    wait_until("every message deferred", &handle, || {
        stat(&handle.stats().deferred) >= 10
    });
    handle.stop();
    let deferred = queue
        .spool()
        .live()
        .filter(|listed| matches!(listed.recipients[0], RecipientState::Deferred { .. }))
        .count();
    assert_eq!(live(&queue), 10);
    assert!(deferred >= 1, "no deferral recorded");
    // No next hop was ever reached: none is named with the reason (no `Remote-MTA`).
    for listed in queue.spool().live() {
        if let RecipientState::Deferred {
            last_reply,
            remote_mta,
            ..
        } = &listed.recipients[0]
        {
            assert_eq!(last_reply, b"4.4.1 no next hop answered");
            assert!(remote_mta.is_empty(), "{remote_mta:?}");
        }
    }
    drop(queue); // the only owner left: the spool closes and unlocks

    let sink = Sink::start("relay-deliver-restart", &[]);
    let (queue, recovered) = open_spool(&spool_dir);
    assert_eq!(recovered.len(), 10);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![sink.addr], "200ms", Duration::from_secs(600)),
    )
    .unwrap();
    wait_until("the recovered messages delivered", &handle, || {
        stat(&handle.stats().messages_done) == 10
    });
    let seqs: std::collections::BTreeSet<usize> = sink
        .messages()
        .iter()
        .map(|(_, bytes)| seq_of(bytes))
        .collect();
    assert_eq!(seqs, (0..10).collect());
    assert_eq!(live(&queue), 0);
    handle.stop();
}

#[test]
fn a_null_sender_gets_no_notification() {
    let sink = Sink::start(
        "relay-deliver-null",
        &["rcpt to=bad@* reply=550 5.1.1 No such user"],
    );
    let spool_dir = util::scratch_dir("relay-deliver-null-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        config(vec![sink.addr], "200ms", Duration::from_secs(60)),
    )
    .unwrap();
    put(&queue, "", &["bad@y.test"], &body(6));
    wait_until("the message done", &handle, || {
        stat(&handle.stats().messages_done) == 1
    });
    // The notification would have been spooled before the message was done.
    assert_eq!(stat(&handle.stats().failed), 1);
    assert_eq!(stat(&handle.stats().notifications), 0);
    assert_eq!(live(&queue), 0);
    assert!(sink.messages().is_empty());
    handle.stop();
}

#[test]
fn the_start_is_refused_without_a_next_hop_or_a_second_time_on_one_queue() {
    let spool_dir = util::scratch_dir("relay-deliver-refusals-spool");
    let (queue, recovered) = open_spool(&spool_dir);
    let error = Deliverer::start(
        Arc::clone(&queue),
        Vec::new(),
        DeliveryConfig::new(Vec::new(), "relay.test"),
    )
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let error = Deliverer::start(
        Arc::clone(&queue),
        Vec::new(),
        DeliveryConfig::new(vec![closed_port()], "bad name"),
    )
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let handle = Deliverer::start(
        Arc::clone(&queue),
        recovered,
        DeliveryConfig::new(vec![closed_port()], "relay.test"),
    )
    .unwrap();
    let error = Deliverer::start(
        Arc::clone(&queue),
        Vec::new(),
        DeliveryConfig::new(vec![closed_port()], "relay.test"),
    )
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
    handle.stop();
}
