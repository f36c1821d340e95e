//! The queue tools as an operator runs them: `fastsmtpd queue ...` (the binary) against a
//! running relay (the binary, `--spool --relay-to`) and against its spool once stopped.
//! A next hop that answers every RCPT with `451` (a fastsmtpd sink with `--fault`) fills the
//! queue; `list`, `show` and `shape` (text and `--json`) describe it; `--metrics` is scraped
//! while it is non-empty and passes `promtool check metrics`; `delete` removes a message
//! with no notification; after a stop the same commands on the spool agree with what the
//! running relay said; restarted toward a healthy sink, `retry` delivers a message and
//! `bounce` sends one notification. Also: a queue longer than one of the relay's chunks
//! (listed, retried and deleted whole), a message deleted while a connection carries it
//! (its outcome ignored, no notification), the control socket's refusals and connection
//! bound, a socket left by `kill -9`. Bad ids, a missing spool and a directory that is not a
//! spool give their exit codes and messages. Bounded waits only, no timed assertion.

mod util;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use util::process::{run_bounded, ChildGuard, Output};
use util::Client;

/// The most a test waits for the relay to reach a state (a bound, not a measurement).
const SETTLE_WAIT: Duration = Duration::from_secs(60);
/// The most one `fastsmtpd queue` run may take.
const TOOL_WAIT: Duration = Duration::from_secs(30);

/// Runs `fastsmtpd queue --spool SPOOL ARGS...`.
fn queue(spool: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.arg("queue").arg("--spool").arg(spool).args(args);
    run_bounded(command, None, TOOL_WAIT)
}

/// `queue list --json`, each line parsed.
fn list_json(spool: &Path) -> Vec<Value> {
    let out = queue(spool, &["list", "--json"]);
    out.assert_success("queue list --json");
    out.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Waits (bounded) until `queue list --json` satisfies `done`, and returns it.
fn wait_list(spool: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = list_json(spool);
        if done(&list) {
            return list;
        }
        assert!(start.elapsed() < SETTLE_WAIT, "never {what}: {list:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a next hop keeping mail in `DIR/NAME`, with `faults` (and after `--metrics`, its
/// address: the rest of the list is passed as is).
fn start_sink(dir: &Path, name: &str, faults: &[&str]) -> (ChildGuard, SocketAddr, PathBuf) {
    let mail = dir.join(name);
    let store = format!("eml:{}", mail.display());
    let mut args = vec!["--store", store.as_str()];
    let (faults, rest) = match faults.iter().position(|f| *f == "--metrics") {
        Some(at) => faults.split_at(at),
        None => (faults, &[][..]),
    };
    for fault in faults {
        args.extend(["--fault", fault]);
    }
    args.extend(rest);
    let (child, addr) = util::start_binary(1, &args);
    (child, addr, mail)
}

/// Starts the relay on `spool` toward `next_hop`: retries an hour apart (nothing retries
/// by itself during a test), and `--metrics` on `metrics`.
fn start_relay(spool: &Path, next_hop: SocketAddr, metrics: &str) -> (ChildGuard, SocketAddr) {
    util::start_binary(
        1,
        &[
            "--spool",
            spool.to_str().unwrap(),
            "--relay-to",
            &next_hop.to_string(),
            "--retry",
            "1h",
            "--queue-lifetime",
            "2h",
            "--metrics",
            metrics,
        ],
    )
}

/// Sends one message, expecting `250`.
fn send(addr: SocketAddr, from: &str, to: &[&str], subject: &str) {
    let mut client = Client::connect(addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    assert!(client.read_reply().starts_with("250"));
    client.send(format!("MAIL FROM:<{from}>\r\n"));
    assert!(client.read_reply().starts_with("250 "));
    for rcpt in to {
        client.send(format!("RCPT TO:<{rcpt}>\r\n"));
        assert!(client.read_reply().starts_with("250 "));
    }
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354 "));
    client.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n"));
    let reply = client.read_reply();
    assert!(reply.starts_with("250 "), "{reply:?}");
    client.send("QUIT\r\n");
}

/// The envelopes the sink kept so far: (sender, recipients).
fn arrived(mail: &Path) -> Vec<(String, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir(mail) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if path.extension().is_some_and(|ext| ext == "json") && !hidden {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let rcpts = record["rcpt_to"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| r.as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            found.push((record["mail_from"].as_str().unwrap_or("").to_owned(), rcpts));
        }
    }
    found.sort();
    found
}

/// `GET /metrics` on `addr`, the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TOOL_WAIT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// A sample's value in an exposition (`name` with its labels, as written).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The id of the listed message from `sender`.
fn id_from(list: &[Value], sender: &str) -> String {
    list.iter()
        .find(|m| m["sender"] == sender)
        .unwrap_or_else(|| panic!("no message from {sender}: {list:#?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn queue_tools_on_a_running_relay_and_on_its_stopped_spool() {
    let dir = util::scratch_dir("relay-queue");
    let spool = dir.join("spool");
    let (_dead, dead_addr, dead_mail) =
        start_sink(&dir, "dead", &["rcpt reply=451 4.3.0 try later"]);
    let metrics = util::free_local_addr();
    let (relay, relay_addr) = start_relay(&spool, dead_addr, &metrics);

    send(relay_addr, "a@x.test", &["r1@y.test"], "one");
    send(relay_addr, "b@x.test", &["r2@z.test", "r3@y.test"], "two");
    send(relay_addr, "c@x.test", &["r4@y.test"], "three");
    send(relay_addr, "d@x.test", &["r5@y.test"], "four");
    let all_deferred = |list: &[Value]| {
        list.len() == 4
            && list.iter().all(|m| {
                m["queue"] == "deferred"
                    && m["recipients"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r["state"] == "deferred")
            })
    };
    let list = wait_list(&spool, "four deferred messages", all_deferred);
    let (m1, m2, m3, m4) = (
        id_from(&list, "a@x.test"),
        id_from(&list, "b@x.test"),
        id_from(&list, "c@x.test"),
        id_from(&list, "d@x.test"),
    );
    assert_eq!(m1.len(), 16, "ids as the spool prints them");
    for message in &list {
        for rcpt in message["recipients"].as_array().unwrap() {
            assert_eq!(rcpt["attempts"], 1);
            assert_eq!(rcpt["last_reply"], "451 4.3.0 try later");
            // The next hop that said it (RFC 3464's Remote-MTA), named as `--relay-to` gave it.
            assert_eq!(rcpt["remote_mta"], "127.0.0.1");
            assert!(rcpt["next_attempt_unix_ms"].as_u64().unwrap() > 0);
        }
        assert_eq!(message["client_address"], "127.0.0.1");
    }

    // The text list, like `postqueue -p`.
    let text = queue(&spool, &["list"]);
    text.assert_success("queue list");
    assert!(text.stdout.starts_with("-Queue ID-"), "{}", text.stdout);
    for id in [&m1, &m2, &m3, &m4] {
        assert!(text.stdout.contains(&format!("\n{id} ")), "{}", text.stdout);
    }
    assert!(
        text.stdout.contains("(451 4.3.0 try later)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(" r2@z.test\n"), "{}", text.stdout);
    assert!(text.stdout.ends_with("in 4 Requests.\n"), "{}", text.stdout);

    // One message, text and JSON.
    let show = queue(&spool, &["show", &m2]);
    show.assert_success("queue show");
    assert!(
        show.stdout.contains("sender:       b@x.test"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("recipient:    r3@y.test"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("state:      deferred after 1 attempt, next in "),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("last reply: 451 4.3.0 try later\n  next hop:   127.0.0.1\n"),
        "{}",
        show.stdout
    );
    let show_json = queue(&spool, &["show", &m2.to_lowercase(), "--json"]);
    show_json.assert_success("queue show --json");
    let shown: Value = serde_json::from_str(show_json.stdout.trim()).unwrap();
    assert_eq!(shown["id"], m2.as_str());
    assert_eq!(shown["recipients"].as_array().unwrap().len(), 2);

    // qshape's table: five recipients, all younger than five minutes.
    let shape = queue(&spool, &["shape"]);
    shape.assert_success("queue shape");
    let rows: Vec<Vec<String>> = shape
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows[0][0], "T", "{}", shape.stdout);
    assert_eq!(rows[0].last().unwrap(), "1280+");
    assert_eq!(rows[1][..3], ["TOTAL", "5", "5"], "{}", shape.stdout);
    assert_eq!(rows[2][..3], ["y.test", "4", "4"], "{}", shape.stdout);
    assert_eq!(rows[3][..3], ["z.test", "1", "1"], "{}", shape.stdout);
    let by_hop = queue(&spool, &["shape", "--by", "hop", "--json"]);
    by_hop.assert_success("queue shape --by hop");
    let by_hop: Value = serde_json::from_str(by_hop.stdout.trim()).unwrap();
    assert_eq!(by_hop["rows"][1]["name"], dead_addr.to_string());
    assert_eq!(by_hop["rows"][1]["total"], 5);

    // Metrics while the queue is non-empty: the gauges are published within a second.
    let start = Instant::now();
    let exposition = loop {
        let text = scrape(&metrics);
        if sample(&text, "fastsmtpd_relay_queue_messages{state=\"deferred\"}") == Some(4.0) {
            break text;
        }
        assert!(start.elapsed() < SETTLE_WAIT, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(
            &exposition,
            "fastsmtpd_relay_delivery_attempts_total{outcome=\"deferred\"}"
        ),
        Some(5.0),
        "{exposition}"
    );
    assert!(sample(&exposition, "fastsmtpd_relay_spool_bytes").unwrap() > 0.0);
    assert!(sample(&exposition, "fastsmtpd_relay_queue_oldest_age_seconds").is_some());
    assert!(
        exposition.contains("# TYPE fastsmtpd_relay_delivered_latency_seconds histogram\n"),
        "{exposition}"
    );
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut check = Command::new(&promtool);
    check.args(["check", "metrics"]);
    let checked = run_bounded(check, Some(exposition.as_bytes()), TOOL_WAIT);
    assert!(
        checked.status.success()
            && checked.stdout.trim().is_empty()
            && checked.stderr.trim().is_empty(),
        "promtool: {}\n{exposition}",
        checked.dump()
    );

    // delete on the running relay: gone, at once.
    let deleted = queue(&spool, &["delete", &m3]);
    deleted.assert_success("queue delete");
    assert_eq!(deleted.stdout, "deleted 1 message\n");
    let list = list_json(&spool);
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|m| m["id"] != m3.as_str()));

    // Unknown and malformed ids on the running relay.
    let missing = queue(&spool, &["show", "00000000000000FF"]);
    assert_eq!(missing.status.code(), Some(1), "{}", missing.dump());
    assert!(
        missing.stderr.contains("no message 00000000000000FF"),
        "{}",
        missing.dump()
    );
    let missing = queue(&spool, &["retry", "FF"]);
    assert_eq!(missing.status.code(), Some(1), "{}", missing.dump());
    let bad = queue(&spool, &["show", "not-an-id"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.dump());
    assert!(bad.stderr.contains("is not a spool id"), "{}", bad.dump());

    // Stopped: the same commands read the spool directly and agree (the next hop of each
    // last reply too: it is kept in the journal).
    let running_list = queue(&spool, &["list", "--json"]).stdout;
    let running_show = queue(&spool, &["show", &m2, "--json"]).stdout;
    let running_shape = queue(&spool, &["shape", "--json"]).stdout;
    relay.signal(libc::SIGTERM);
    let stopped = relay.wait(SETTLE_WAIT);
    assert!(stopped.status.success(), "{}", stopped.dump());
    assert!(
        !spool.join("control.sock").exists(),
        "the socket is removed at stop"
    );
    assert_eq!(queue(&spool, &["list", "--json"]).stdout, running_list);
    assert_eq!(queue(&spool, &["show", &m2, "--json"]).stdout, running_show);
    assert_eq!(queue(&spool, &["shape", "--json"]).stdout, running_shape);
    let missing = queue(&spool, &["bounce", "FF"]);
    assert_eq!(missing.status.code(), Some(1), "{}", missing.dump());
    let deleted = queue(&spool, &["delete", &m4]);
    deleted.assert_success("queue delete (stopped)");
    assert_eq!(list_json(&spool).len(), 2);

    // Restarted toward a healthy next hop: nothing moves before its hour, then retry
    // delivers one message and bounce sends one notification; the deleted ones never
    // arrive, and no notification is sent about them.
    let (_good, good_addr, good_mail) = start_sink(&dir, "good", &[]);
    let metrics = util::free_local_addr();
    let (_relay, _) = start_relay(&spool, good_addr, &metrics);
    let retried = queue(&spool, &["retry", &m1]);
    retried.assert_success("queue retry");
    assert_eq!(retried.stdout, "retried 1 message\n");
    let bounced = queue(&spool, &["bounce", &m2]);
    bounced.assert_success("queue bounce");
    wait_list(&spool, "an empty queue", |list| list.is_empty());
    let start = Instant::now();
    let found = loop {
        let found = arrived(&good_mail);
        if found.len() >= 2 {
            break found;
        }
        assert!(start.elapsed() < SETTLE_WAIT, "{found:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        found,
        [
            (String::new(), vec!["b@x.test".to_owned()]),
            ("a@x.test".to_owned(), vec!["r1@y.test".to_owned()]),
        ]
    );
    assert!(arrived(&dead_mail).is_empty());
    let empty = queue(&spool, &["list"]);
    assert_eq!(empty.stdout, "Mail queue is empty\n");
}

#[test]
fn a_missing_spool_or_a_directory_that_is_not_one_is_a_usage_error() {
    let dir = util::scratch_dir("relay-queue-errors");
    let missing = queue(&dir.join("nothing-here"), &["list"]);
    assert_eq!(missing.status.code(), Some(2), "{}", missing.dump());
    assert!(
        missing.stderr.contains("no such directory"),
        "{}",
        missing.dump()
    );
    assert!(missing.stdout.is_empty());
    let not_spool = queue(&dir, &["list"]);
    assert_eq!(not_spool.status.code(), Some(2), "{}", not_spool.dump());
    assert!(
        not_spool.stderr.contains("not a relay spool"),
        "{}",
        not_spool.dump()
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing created in a directory that is not a spool"
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args(["queue", "list"]);
    let no_spool = run_bounded(command, None, TOOL_WAIT);
    assert_eq!(no_spool.status.code(), Some(2), "{}", no_spool.dump());
    assert!(no_spool.stderr.contains("--spool DIR is required"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args(["queue", "--spool"]).arg(&dir).args(["retry"]);
    let usage = run_bounded(command, None, TOOL_WAIT);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.dump());
}

/// Sends `n` messages over one connection, one recipient each, expecting `250` for each.
fn send_many(addr: SocketAddr, n: usize) {
    let mut client = Client::connect(addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    assert!(client.read_reply().starts_with("250"));
    for i in 0..n {
        client.send(format!(
            "MAIL FROM:<s{i}@x.test>\r\nRCPT TO:<r{i}@y.test>\r\nDATA\r\n"
        ));
        assert!(client.read_reply().starts_with("250 "));
        assert!(client.read_reply().starts_with("250 "));
        assert!(client.read_reply().starts_with("354 "));
        client.send(format!("Subject: {i}\r\n\r\nbody\r\n.\r\n"));
        let reply = client.read_reply();
        assert!(reply.starts_with("250 "), "{reply:?}");
    }
    client.send("QUIT\r\n");
}

/// A message whose recipients are all final waits as `finishing` (on a stopped spool, what
/// `bounce` leaves until the next start): the text list says so as the JSON does, with
/// the recipients' final states, and `retry` does not count it (nothing is retried).
#[test]
fn a_finishing_message_is_shown_as_such_and_not_counted_as_retried() {
    let dir = util::scratch_dir("relay-queue-finishing");
    let spool = dir.join("spool");
    let (_dead, dead_addr, _) = start_sink(&dir, "dead", &["rcpt reply=451 4.3.0 try later"]);
    let metrics = util::free_local_addr();
    let (relay, relay_addr) = start_relay(&spool, dead_addr, &metrics);
    send(relay_addr, "a@x.test", &["r1@y.test"], "one");
    send(relay_addr, "b@x.test", &["r2@y.test"], "two");
    let list = wait_list(&spool, "two deferred messages", |list| {
        list.len() == 2 && list.iter().all(|m| m["queue"] == "deferred")
    });
    let (m1, m2) = (id_from(&list, "a@x.test"), id_from(&list, "b@x.test"));
    relay.signal(libc::SIGTERM);
    let stopped = relay.wait(SETTLE_WAIT);
    assert!(stopped.status.success(), "{}", stopped.dump());

    queue(&spool, &["bounce", &m2]).assert_success("queue bounce (stopped)");
    let list = list_json(&spool);
    let finishing: Vec<&Value> = list.iter().filter(|m| m["queue"] == "finishing").collect();
    assert_eq!(finishing.len(), 1, "{list:#?}");
    assert_eq!(finishing[0]["id"], m2.as_str());
    let text = queue(&spool, &["list"]);
    text.assert_success("queue list");
    let entry = text
        .stdout
        .split("\n\n")
        .find(|entry| entry.contains(&format!("{m2} ")))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(
        entry.contains("(finishing: every recipient delivered or failed"),
        "{}",
        text.stdout
    );
    assert!(entry.contains(" r2@y.test: failed"), "{}", text.stdout);
    let retried = queue(&spool, &["retry", "--all"]);
    retried.assert_success("queue retry --all");
    assert_eq!(retried.stdout, "retried 1 message\n", "only {m1}");
    let retried = queue(&spool, &["retry", &m2]);
    retried.assert_success("queue retry (finishing)");
    assert_eq!(retried.stdout, "retried 0 messages\n");
}

#[test]
fn a_queue_longer_than_one_chunk_is_listed_retried_and_deleted_whole() {
    // 300 messages toward a next hop nobody listens on: the relay walks its queue 128
    // messages at a time, so each command below takes several turns of its loop.
    let dir = util::scratch_dir("relay-queue-long");
    let spool = dir.join("spool");
    let nobody: SocketAddr = util::free_local_addr().parse().unwrap();
    let metrics = util::free_local_addr();
    let (_relay, relay_addr) = start_relay(&spool, nobody, &metrics);
    send_many(relay_addr, 300);
    let list = wait_list(&spool, "300 messages", |list| list.len() == 300);
    let mut ids: Vec<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 300, "each message once, in id order");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let text = queue(&spool, &["list"]);
    text.assert_success("queue list");
    assert!(
        text.stdout.ends_with(" in 300 Requests.\n"),
        "{}",
        text.stdout
    );
    let retried = queue(&spool, &["retry", "--all"]);
    retried.assert_success("queue retry --all");
    assert_eq!(retried.stdout, "retried 300 messages\n");
    let deleted = queue(&spool, &["delete", "--all", "--json"]);
    deleted.assert_success("queue delete --all");
    assert_eq!(deleted.stdout, "{\"deleted\":300}\n");
    assert_eq!(queue(&spool, &["list"]).stdout, "Mail queue is empty\n");
}

/// One exchange on the relay's control socket: `request` sent as is, the answer's lines.
fn control(spool: &Path, request: &[u8]) -> Vec<Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(spool.join("control.sock")).unwrap();
    stream.set_read_timeout(Some(TOOL_WAIT)).unwrap();
    stream.write_all(request).unwrap();
    // A refusal closes the socket with the rest of the request unread, which the kernel
    // may report as a reset after the answer: the answer is what came before.
    BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect()
}

#[test]
fn the_control_socket_refuses_garbage_and_bounds_its_connections() {
    use std::os::unix::fs::PermissionsExt;
    let dir = util::scratch_dir("relay-queue-socket");
    let spool = dir.join("spool");
    let nobody: SocketAddr = util::free_local_addr().parse().unwrap();
    let metrics = util::free_local_addr();
    let (_relay, _) = start_relay(&spool, nobody, &metrics);
    let socket = spool.join("control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let answer = control(&spool, b"frobnicate 1\n");
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["type"], "error");
    assert!(answer[0]["error"]
        .as_str()
        .unwrap()
        .contains("unknown request"));
    let answer = control(&spool, &[b'a'; 300]);
    assert_eq!(answer[0]["type"], "error", "{answer:?}");
    assert!(answer[0]["error"].as_str().unwrap().contains("too long"));
    let answer = control(&spool, b"show 7\r\n");
    assert_eq!(answer[0]["type"], "not_found", "{answer:?}");
    let answer = control(&spool, b"list\n");
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["type"], "done");
    assert_eq!(answer[0]["count"], 0);
    assert_eq!(answer[0]["next_hops"][0], nobody.to_string());

    // Eight tools at once; a ninth is told so and closed; once they leave, room again.
    let idle: Vec<_> = (0..8)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    let start = Instant::now();
    loop {
        let answer = control(&spool, b"list\n");
        if answer[0]["type"] == "error" {
            assert!(answer[0]["error"].as_str().unwrap().contains("too many"));
            break;
        }
        // The relay may not have accepted all eight yet.
        assert!(start.elapsed() < SETTLE_WAIT, "{answer:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The tool itself, refused so (its request may meet a closed socket): every command
    // fails with the relay's reason, never exits 0 having done nothing.
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["delete", "1"],
        &["retry", "--all"],
        &["show", "1"],
    ] {
        let out = queue(&spool, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.dump());
        assert!(
            out.stderr.contains("too many queue tools"),
            "{args:?}: {}",
            out.dump()
        );
    }
    drop(idle);
    let start = Instant::now();
    loop {
        let answer = control(&spool, b"list\n");
        if answer[0]["type"] == "done" {
            break;
        }
        assert!(start.elapsed() < SETTLE_WAIT, "{answer:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_message_deleted_in_flight_leaves_at_once_and_its_outcome_is_ignored() {
    // The next hop holds the end of data for 2 s, then refuses it with a 550: had the relay
    // kept the outcome, the sender would get a notification.
    let dir = util::scratch_dir("relay-queue-inflight");
    let spool = dir.join("spool");
    let sink_metrics = util::free_local_addr();
    let (_sink, sink_addr, sink_mail) = start_sink(
        &dir,
        "slow",
        &[
            "eod nth=1 delay=2s reply=550 5.7.1 refused",
            "--metrics",
            &sink_metrics,
        ],
    );
    let metrics = util::free_local_addr();
    let (_relay, relay_addr) = start_relay(&spool, sink_addr, &metrics);
    send(relay_addr, "a@x.test", &["r@y.test"], "in flight");
    let list = wait_list(&spool, "the message in flight", |list| {
        list.len() == 1 && list[0]["queue"] == "active"
    });
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let text = queue(&spool, &["list"]);
    assert!(
        text.stdout.contains(&format!("\n{id}* ")),
        "{}",
        text.stdout
    );
    let deleted = queue(&spool, &["delete", &id]);
    deleted.assert_success("queue delete (in flight)");
    assert!(list_json(&spool).is_empty(), "gone at once");
    // The next hop says 550, then the relay says QUIT once it has acted on that reply.
    let start = Instant::now();
    loop {
        let text = scrape(&sink_metrics);
        let refused = sample(&text, "fastsmtpd_replies_total{code=\"550\"}") == Some(1.0);
        let closed = sample(&text, "fastsmtpd_connections_open") == Some(0.0);
        if refused && closed {
            break;
        }
        assert!(start.elapsed() < SETTLE_WAIT, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = scrape(&metrics);
    assert_eq!(
        sample(&text, "fastsmtpd_relay_notifications_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "fastsmtpd_relay_delivery_attempts_total{outcome=\"failed\"}"
        ),
        Some(0.0),
        "{text}"
    );
    assert!(list_json(&spool).is_empty());
    assert!(arrived(&sink_mail).is_empty());
}

#[test]
fn a_socket_left_by_kill_9_is_read_as_a_stopped_spool_and_replaced_at_the_next_start() {
    let dir = util::scratch_dir("relay-queue-kill9");
    let spool = dir.join("spool");
    let nobody: SocketAddr = util::free_local_addr().parse().unwrap();
    let metrics = util::free_local_addr();
    let (mut relay, relay_addr) = start_relay(&spool, nobody, &metrics);
    send(relay_addr, "a@x.test", &["r@y.test"], "kept");
    let running = wait_list(&spool, "one message", |list| list.len() == 1);
    relay.kill();
    assert!(
        spool.join("control.sock").exists(),
        "kill -9 leaves the socket"
    );
    let stopped = list_json(&spool);
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["id"], running[0]["id"]);
    let metrics = util::free_local_addr();
    let (_relay, _) = start_relay(&spool, nobody, &metrics);
    let answer = control(&spool, b"list\n");
    assert_eq!(answer.len(), 2, "{answer:?}");
    assert_eq!(answer[0]["id"], running[0]["id"]);
    assert_eq!(answer[1]["type"], "done");
}

/// One damaged record in a stopped spool's newest segment (a flipped bit, as a bad sector
/// would leave): `queue list` keeps the messages after it, says on stderr what it found, and
/// leaves the damage in place, so every run (and the next start) says the same.
#[test]
fn a_damaged_record_in_a_stopped_spool_costs_only_itself_and_is_reported() {
    let dir = util::scratch_dir("relay-queue-damage");
    let spool = dir.join("spool");
    let nobody: SocketAddr = util::free_local_addr().parse().unwrap();
    let metrics = util::free_local_addr();
    let (mut relay, relay_addr) = start_relay(&spool, nobody, &metrics);
    for (from, subject) in [
        ("a@x.test", "one"),
        ("b@x.test", "two"),
        ("c@x.test", "three"),
    ] {
        send(relay_addr, from, &["r@y.test"], subject);
    }
    wait_list(&spool, "three messages", |list| list.len() == 3);
    relay.kill();
    let segments: Vec<PathBuf> = std::fs::read_dir(spool.join("seg"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let records: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"FSPS")
        .map(|(at, _)| at)
        .collect();
    assert_eq!(records.len(), 3, "one record per message");
    bytes[records[1] + 40] ^= 0x08; // inside the second message's envelope
    std::fs::write(&segments[0], &bytes).unwrap();

    for _ in 0..2 {
        let out = queue(&spool, &["list", "--json"]);
        out.assert_success("queue list --json on a damaged spool");
        let senders: Vec<String> = out
            .stdout
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|m| m.get("sender").is_some())
            .map(|m| m["sender"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(senders, ["a@x.test", "c@x.test"], "{}", out.dump());
        assert!(out.stderr.contains("DAMAGE"), "{}", out.dump());
        assert!(
            out.stderr
                .contains("1 messages were recovered from after the damage"),
            "{}",
            out.dump()
        );
        assert_eq!(std::fs::read(&segments[0]).unwrap(), bytes, "left in place");
    }
}
