//! The end-to-end mode (`--delivered-via`) over real sockets: smtp-loadgen -> fastsmtpd's
//! relay (`--spool`, `--relay-to`, `--dsn off`) -> fastsmtpd sink with the capture API,
//! both servers started in this process on loopback with ephemeral ports. Every message
//! sent is `delivered` (0 never delivered); recipients the sink defers make the relay deliver
//! their messages in two or more transactions, which is no duplicate (arrivals are counted
//! per recipient, checked against what the sink kept); and messages sent to a second target
//! that keeps nothing are counted `never delivered`, exactly. Counts only, no timed
//! assertion; each run is bounded.

mod common;

use common::{loadgen_within, Run};
use fastsmtpd::config::{ApiSettings, Config, Faults, NextHop, Relay};
use fastsmtpd::relay::schedule::RetryPolicy;
use fastsmtpd::server::{self, ServerHandle};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The most one run may take (a hang is the failure; runs take a few seconds).
const LIMIT: Duration = Duration::from_secs(60);

/// A sink keeping what arrives in its capture store, with its API; `faults` as given.
fn start_sink(faults: &[&str]) -> ServerHandle {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "sink.test".into(),
        api: Some(ApiSettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: None,
            cors: None,
        }),
        faults: Faults {
            rules: faults.iter().map(|r| r.to_string()).collect(),
            ..Faults::default()
        },
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    };
    server::start(&config).expect("the sink starts")
}

/// A relay spooling in a fresh directory and delivering to `next_hop`, retrying every
/// 100 ms, without notifications.
fn start_relay(next_hop: SocketAddr, name: &str) -> (ServerHandle, PathBuf) {
    start_relay_retrying(next_hop, name, "100ms")
}

/// [`start_relay`] retrying as `retry` (`--retry`) says.
fn start_relay_retrying(next_hop: SocketAddr, name: &str, retry: &str) -> (ServerHandle, PathBuf) {
    let spool = common::scratch(name);
    let _ = std::fs::remove_dir_all(&spool);
    let backoff = RetryPolicy::parse_list(retry).expect("a retry list");
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "relay.test".into(),
        relay: Relay {
            spool: Some(spool.clone()),
            next_hops: vec![NextHop::from_addr(next_hop)],
            retry: RetryPolicy::new(backoff, Duration::from_secs(60)).expect("a policy"),
            dsn: false,
            ..Relay::default()
        },
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    };
    (server::start(&config).expect("the relay starts"), spool)
}

/// The `--delivered-via` URL of `sink`.
fn via(sink: &ServerHandle) -> String {
    format!(
        "http://{}",
        sink.api_addr().expect("the sink serves its API")
    )
}

/// The run's `delivery` figure `key`.
fn delivery(run: &Run, key: &str) -> u64 {
    run.json()["delivery"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no delivery.{key}: {}", run.stdout))
}

#[test]
fn every_message_through_the_relay_is_delivered_once() {
    let sink = start_sink(&[]);
    let (relay, spool) = start_relay(sink.local_addrs()[0], "delivered-relay-spool");
    let url = via(&sink);
    let run = loadgen_within(
        relay.local_addrs()[0],
        &[
            "-c",
            "4",
            "-n",
            "2000",
            "--delivered-via",
            &url,
            "--delivered-drain",
            "30s",
        ],
        LIMIT,
    );
    run.assert_clean();
    assert_eq!(run.total("accepted"), 2000, "{}", run.stdout);
    assert_eq!(delivery(&run, "arrived"), 2000, "{}", run.stdout);
    assert_eq!(delivery(&run, "never_delivered"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "duplicates"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "foreign"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "rcpts_arrived"), 2000, "{}", run.stdout);
    assert_eq!(delivery(&run, "never_delivered_rcpts"), 0, "{}", run.stdout);
    assert_eq!(run.json()["latency"]["delivered"]["count"], 2000);
    assert!(
        run.stdout.contains("delivered (end to end, run "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("2000 timed of 2000 accepted"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("never delivered 0, duplicates 0"),
        "{}",
        run.stdout
    );
    relay.stop().expect("the relay stops");
    sink.stop().expect("the sink stops");
    let _ = std::fs::remove_dir_all(spool);
}

#[test]
fn a_recipient_deferred_once_is_no_duplicate_and_open_loop_runs_gate_on_delivered() {
    // The sink defers the second recipient of the first message once: the relay delivers
    // the message to the first recipient, then to the second on its retry. The far end
    // sees that message in two transactions, each recipient once: no duplicate.
    let sink = start_sink(&["rcpt to=sink1@* nth=1 reply=451 4.3.0 Try again later"]);
    let (relay, spool) = start_relay(sink.local_addrs()[0], "delivered-dup-spool");
    let url = via(&sink);
    let run = loadgen_within(
        relay.local_addrs()[0],
        &[
            "-c",
            "2",
            "--rate",
            "200",
            "-d",
            "2s",
            "--rcpts",
            "2",
            "--delivered-via",
            &url,
            "--delivered-drain",
            "30s",
            // A bound no relay on loopback misses: the gate is checked, not the machine.
            "--slo",
            "delivered:p50<1h",
        ],
        LIMIT,
    );
    run.assert_clean();
    let accepted = run.total("accepted");
    assert!(accepted > 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "arrived"), accepted, "{}", run.stdout);
    assert_eq!(delivery(&run, "never_delivered"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "partly_delivered"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "duplicates"), 0, "{}", run.stdout);
    assert_eq!(
        delivery(&run, "rcpts_arrived"),
        2 * accepted,
        "{}",
        run.stdout
    );
    assert_eq!(sink.faults_fired().iter().map(|(_, n)| n).sum::<u64>(), 1);
    // The open loop's origin is the intended send time, as message_corrected's.
    assert!(run.json()["latency"]["message_corrected"]["count"].as_u64() == Some(accepted));
    relay.stop().expect("the relay stops");
    sink.stop().expect("the sink stops");
    let _ = std::fs::remove_dir_all(spool);
}

#[test]
fn recipients_arrived_count_the_measured_messages_only_after_a_warm_up() {
    // The reviewer's case (issue 19): `--rcpts 3 --warmup` gave more recipients arrived
    // than 3 x accepted, the warm-up's mail arriving after the warm-up counted on top. The
    // sink defers three recipients in ten, the relay retries them a second later: many of
    // the warm-up's recipients arrive after it, whatever the machine's speed.
    let sink = start_sink(&["rcpt p=0.3 reply=452 4.3.0 later"]);
    let (relay, spool) =
        start_relay_retrying(sink.local_addrs()[0], "delivered-warmup-spool", "1s");
    let url = via(&sink);
    let run = loadgen_within(
        relay.local_addrs()[0],
        &[
            "-c",
            "2",
            "--rate",
            "200",
            "-d",
            "2s",
            "--warmup",
            "1s",
            "--rcpts",
            "3",
            "--delivered-via",
            &url,
            "--delivered-drain",
            "90s",
        ],
        Duration::from_secs(150),
    );
    run.assert_clean();
    let accepted = run.total("accepted");
    assert!(accepted > 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "arrived"), accepted, "{}", run.stdout);
    assert_eq!(delivery(&run, "never_delivered"), 0, "{}", run.stdout);
    assert_eq!(
        delivery(&run, "rcpts_arrived"),
        3 * accepted,
        "{}",
        run.stdout
    );
    relay.stop().expect("the relay stops");
    sink.stop().expect("the sink stops");
    let _ = std::fs::remove_dir_all(spool);
}

/// What the sink kept of run messages: for each tag (the subject), the recipients of each
/// transaction that brought it.
fn kept_by_tag(sink: &ServerHandle) -> HashMap<String, Vec<Vec<String>>> {
    let capture = sink.capture().expect("the sink keeps what arrives");
    let mut kept: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let first = capture.oldest().unwrap_or(1);
    for seq in first..=capture.head() {
        let Some(message) = capture.get_seq(seq) else {
            continue;
        };
        let subject = message
            .header(fastsmtpd::capture::Field::Subject)
            .map(|s| String::from_utf8_lossy(s).trim().to_string())
            .unwrap_or_default();
        let recipients = message
            .envelope()
            .recipients
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect();
        kept.entry(subject).or_default().push(recipients);
    }
    kept
}

#[test]
fn recipients_deferred_at_random_arrive_in_several_transactions_and_none_is_a_duplicate() {
    // The reviewer's case (issue 19): the sink defers three recipients in ten at RCPT, the
    // relay retries each deferred one a second later, alone or with the others deferred in
    // that attempt; three recipients per message.
    let sink = start_sink(&["rcpt p=0.3 reply=452 4.3.0 later"]);
    let (relay, spool) = start_relay_retrying(sink.local_addrs()[0], "delivered-split-spool", "1s");
    let url = via(&sink);
    let run = loadgen_within(
        relay.local_addrs()[0],
        &[
            "-c",
            "2",
            "-n",
            "300",
            "--rcpts",
            "3",
            "--delivered-via",
            &url,
            "--delivered-drain",
            "90s",
        ],
        Duration::from_secs(150),
    );
    run.assert_clean();
    assert_eq!(run.total("accepted"), 300, "{}", run.stdout);
    assert_eq!(delivery(&run, "arrived"), 300, "{}", run.stdout);
    assert_eq!(delivery(&run, "rcpts_arrived"), 900, "{}", run.stdout);
    assert_eq!(delivery(&run, "duplicates"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "never_delivered"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "partly_delivered"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "never_delivered_rcpts"), 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "foreign"), 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("recipients arrived 900, never delivered 0"),
        "{}",
        run.stdout
    );
    // The sink agrees: every recipient of every message once, many messages split.
    let kept = kept_by_tag(&sink);
    assert_eq!(kept.len(), 300, "one tag per message");
    let mut split = 0;
    for (tag, transactions) in &kept {
        assert!(tag.starts_with("smtp-loadgen run "), "{tag}");
        let mut recipients: Vec<&String> = transactions.iter().flatten().collect();
        recipients.sort();
        assert_eq!(
            recipients,
            [
                "sink0@example.net",
                "sink1@example.net",
                "sink2@example.net"
            ],
            "{tag}: {transactions:?}"
        );
        split += usize::from(transactions.len() > 1);
    }
    assert!(split > 0, "some message came in two transactions");
    assert!(sink.faults_fired().iter().map(|(_, n)| n).sum::<u64>() > 0);
    relay.stop().expect("the relay stops");
    sink.stop().expect("the sink stops");
    let _ = std::fs::remove_dir_all(spool);
}

#[test]
fn messages_accepted_by_a_server_that_keeps_nothing_are_never_delivered() {
    // Two targets, one connection each: the relay delivers to the watched sink, the second
    // server (no store: it says 250 and discards) never does.
    let sink = start_sink(&[]);
    let (relay, spool) = start_relay(sink.local_addrs()[0], "delivered-loss-spool");
    let discard = server::start(&Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "discard.test".into(),
        ..Config::default()
    })
    .expect("the discarding server starts");
    let url = via(&sink);
    let second = discard.local_addrs()[0].to_string();
    let run = loadgen_within(
        relay.local_addrs()[0],
        &[
            "--target",
            &second,
            "-c",
            "2",
            "-n",
            "600",
            "--delivered-via",
            &url,
            "--delivered-drain",
            "2s",
        ],
        LIMIT,
    );
    run.assert_clean();
    let targets = run.json()["targets"]
        .as_array()
        .expect("per-target figures");
    let through_relay = targets[0]["accepted"].as_u64().unwrap();
    let discarded = targets[1]["accepted"].as_u64().unwrap();
    assert_eq!(through_relay + discarded, 600);
    assert!(discarded > 0, "{}", run.stdout);
    assert_eq!(delivery(&run, "arrived"), through_relay, "{}", run.stdout);
    assert_eq!(
        delivery(&run, "never_delivered"),
        discarded,
        "{}",
        run.stdout
    );
    assert_eq!(delivery(&run, "duplicates"), 0);
    assert!(
        run.stdout
            .contains(&format!("never delivered {discarded}, duplicates 0")),
        "{}",
        run.stdout
    );
    discard.stop().expect("the discarding server stops");
    relay.stop().expect("the relay stops");
    sink.stop().expect("the sink stops");
    let _ = std::fs::remove_dir_all(spool);
}

#[test]
fn a_wrong_api_address_fails_the_run_before_any_message() {
    let sink = start_sink(&[]);
    // Nobody listens there: the subscription fails, nothing is sent.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let run = loadgen_within(
        sink.local_addrs()[0],
        &["-n", "10", "--delivered-via", &dead],
        LIMIT,
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    assert_eq!(sink.stop().expect("the sink stops").messages, 0);
}

#[test]
fn the_mode_s_flags_are_checked_before_anything_is_sent() {
    let cases: [(&[&str], &str); 5] = [
        (&["--delivered-drain", "5s"], "need --delivered-via"),
        (&["--delivered-token", "t"], "need --delivered-via"),
        (
            &["--delivered-via", "https://127.0.0.1:1"],
            "http://HOST:PORT",
        ),
        (
            &["--delivered-via", "http://127.0.0.1:1", "--size", "100"],
            "at least",
        ),
        (
            &[
                "--delivered-via",
                "http://127.0.0.1:1",
                "--mbox",
                "/dev/null",
            ],
            "--message-dir or --mbox",
        ),
    ];
    for (flags, says) in cases {
        let mut args: Vec<String> = vec!["--target".into(), "127.0.0.1:1".into()];
        args.extend(flags.iter().map(|f| f.to_string()));
        let (code, _, stderr) = common::run_binary(&args);
        assert_eq!(code, 2, "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}
