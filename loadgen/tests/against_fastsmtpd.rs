//! smtp-loadgen against a real fastsmtpd started in this process: every load model and
//! transfer mode, with the generator's totals checked against the server's own counters.

mod common;

use common::{loadgen, Run};
use fastsmtpd::config::{Config, Faults};
use fastsmtpd::server::{self, ServerHandle};
use fastsmtpd::stats::Stats;
use std::time::Duration;

fn start_server(threads: usize) -> ServerHandle {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads,
        hostname: "mx.test".into(),
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    };
    server::start(&config).expect("fastsmtpd starts")
}

/// Runs `args` against a fresh server; returns the run and the server's final counters.
fn against_server(threads: usize, args: &[&str]) -> (Run, Stats) {
    let server = start_server(threads);
    let run = loadgen(server.local_addrs()[0], args);
    let stats = server.stop().expect("fastsmtpd stops");
    (run, stats)
}

/// The generator's accepted count and bytes equal the server's, and nothing failed.
#[track_caller]
fn assert_totals_match(run: &Run, stats: &Stats, messages: u64) {
    run.assert_clean();
    assert_eq!(run.total("accepted"), messages, "{}", run.stdout);
    assert_eq!(run.total("failed"), 0);
    assert_eq!(stats.messages, messages, "server: {stats:?}");
    assert_eq!(run.total("bytes"), stats.bytes, "server: {stats:?}");
    assert_eq!(stats.errors, 0, "server: {stats:?}");
}

#[test]
fn closed_loop_data_pipelined() {
    let (run, stats) = against_server(1, &["-c", "4", "-n", "3000", "--pipelining", "on"]);
    assert_totals_match(&run, &stats, 3000);
    assert_eq!(stats.connections, 4);
    assert_eq!(run.code_count("data", 354), 3000);
    assert_eq!(run.code_count("eod", 250), 3000);
    assert_eq!(run.code_count("quit", 221), 4);
}

#[test]
fn closed_loop_data_step_by_step_on_two_threads_and_two_workers() {
    let (run, stats) = against_server(
        2,
        &[
            "-c",
            "6",
            "--threads",
            "2",
            "-n",
            "1000",
            "--pipelining",
            "off",
            "--rcpts",
            "3",
            "--size",
            "1k..64k",
        ],
    );
    assert_totals_match(&run, &stats, 1000);
    assert_eq!(run.code_count("rcpt", 250), 3000);
    assert_eq!(run.code_count("mail", 250), 1000);
}

#[test]
fn closed_loop_bdat_with_several_messages_in_flight() {
    let (run, stats) = against_server(1, &["-c", "3", "-n", "3000", "--bdat", "--inflight", "8"]);
    assert_totals_match(&run, &stats, 3000);
    assert_eq!(run.code_count("bdat", 250), 3000);
    assert_eq!(run.code_count("data", 354), 0);
}

#[test]
fn one_message_per_connection() {
    let (run, stats) = against_server(1, &["-c", "4", "-n", "200", "--msgs-per-conn", "1"]);
    assert_totals_match(&run, &stats, 200);
    assert_eq!(stats.connections, 200, "a new connection per message");
    assert_eq!(run.code_count("greeting", 220), 200);
    assert_eq!(run.code_count("quit", 221), 200);
}

#[test]
fn helo_without_esmtp() {
    let (run, stats) = against_server(1, &["-c", "2", "-n", "100", "--helo"]);
    assert_totals_match(&run, &stats, 100);
    assert_eq!(run.code_count("ehlo", 250), 2);
}

#[test]
fn open_loop_at_a_fixed_rate() {
    let (run, stats) = against_server(
        1,
        &[
            "-c",
            "4",
            "-n",
            "600",
            "--rate",
            "1000",
            "--pipelining",
            "on",
        ],
    );
    assert_totals_match(&run, &stats, 600);
    // Every message has an intended time, so every one has a corrected latency, and a
    // corrected latency is never below the service time of the same message.
    assert_eq!(run.json()["latency"]["message_corrected"]["count"], 600);
    assert!(
        run.latency_ms("message_corrected", "max_ms") >= run.latency_ms("message", "max_ms"),
        "{}",
        run.stdout
    );
    assert!(run.json()["latency"]["send_lateness"]["count"].as_u64() == Some(600));
}

#[test]
fn duration_mode_with_warmup_logs_every_message_once() {
    let (run, stats) = against_server(
        1,
        &[
            "-c",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "1s",
            "--bdat",
            "--inflight",
            "2",
        ],
    );
    run.assert_clean();
    // The summary excludes the warm-up; the per-second series includes it, flagged. Over
    // the series every message the server accepted appears exactly once.
    let series = run.json()["series"].as_array().expect("series");
    let logged: u64 = series.iter().map(|s| s["accepted"].as_u64().unwrap()).sum();
    assert_eq!(logged, stats.messages, "{series:#?}");
    assert!(series.iter().any(|s| s["warmup"] == true));
    assert!(series.iter().any(|s| s["warmup"] == false));
    assert!(run.total("accepted") > 0 && run.total("accepted") < stats.messages);
    let measured = run.json()["totals"]["measured_seconds"].as_f64().unwrap();
    assert!((0.9..1.5).contains(&measured), "measured {measured} s");
}

#[test]
fn injected_faults_are_counted_by_code() {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "mx.test".into(),
        shutdown_grace: Duration::from_secs(5),
        faults: Faults {
            rules: vec![
                "rcpt every=5 reply=450 4.2.1 Mailbox busy".into(),
                "eod nth=7 reply=451 4.3.0 Could not queue".into(),
            ],
            ..Faults::default()
        },
        ..Config::default()
    };
    let server = server::start(&config).expect("fastsmtpd starts");
    // The refusals count as errors on the server, which closes a session after too many
    // (421): a connection is then down until the generator reconnects, which the run
    // accepts here (it is about the codes, not the connections).
    let run = loadgen(
        server.local_addrs()[0],
        &[
            "-c",
            "2",
            "-n",
            "200",
            "--pipelining",
            "on",
            "--allow-fewer-connections",
        ],
    );
    let stats = server.stop().unwrap();
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.code_count("rcpt", 450), 40, "{}", run.stdout);
    assert_eq!(run.code_count("data", 554), 40);
    assert_eq!(run.code_count("eod", 451), 1);
    assert_eq!(run.total("accepted"), 159);
    assert_eq!(stats.messages, 159);
}
