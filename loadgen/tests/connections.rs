//! A run never reports a number it did not measure: when fewer connections than `-c` are
//! alive (refused past the server's per-address limit, or dropped mid-run), the run says so
//! first, in the text, the JSON, the interval log and the HTML report, and exits 3 unless
//! `--allow-fewer-connections`. Against a real fastsmtpd started in this process with
//! `--max-connections-per-ip 5`, over loopback.

mod common;

use common::{loadgen, scratch, Run, Stub, StubScript};
use fastsmtpd::config::{Config, Faults, Limits};
use fastsmtpd::server::{self, ServerHandle};
use std::time::Duration;

/// fastsmtpd allowing 5 connections per client address, with `faults`.
fn start_server(faults: &[&str]) -> ServerHandle {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "mx.test".into(),
        shutdown_grace: Duration::from_secs(5),
        limits: Limits {
            max_connections_per_ip: 5,
            ..Limits::default()
        },
        faults: Faults {
            rules: faults.iter().map(|f| f.to_string()).collect(),
            ..Faults::default()
        },
        ..Config::default()
    };
    server::start(&config).expect("fastsmtpd starts")
}

/// `totals.<key>` of the run's JSON.
#[track_caller]
fn total<'a>(run: &'a Run, key: &str) -> &'a serde_json::Value {
    let value = &run.json()["totals"][key];
    assert!(!value.is_null(), "totals.{key} missing: {:#}", run.json());
    value
}

/// Asserts what every report of a run with 8 connections against a limit of 5 says.
#[track_caller]
fn assert_shortfall_reported(run: &Run) {
    let lines: Vec<&str> = run.stdout.lines().collect();
    // The header, then at once the warning and the refused connections, before any figure.
    assert!(lines[0].starts_with("smtp-loadgen -> "), "{}", run.stdout);
    assert!(
        lines[1].starts_with("WARNING: fewer connections than the 8 asked for were alive"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("connections that never got ready: ")
            && lines[2].contains("greeting 421: "),
        "{}",
        run.stdout
    );
    // (then the provenance lines, then the figures)
    let measured = lines.iter().position(|l| l.starts_with("measured "));
    assert!(measured > Some(2), "{}", run.stdout);
    // The rate was reached on 5 connections, which is not the load asked for.
    assert!(
        run.stdout
            .contains("NOT sustained as asked: achieved 100.0 msgs/s over fewer connections"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("msgs/s sustained"), "{}", run.stdout);
    assert_eq!(total(run, "connections_requested"), 8);
    assert_eq!(total(run, "connections_established"), 5);
    assert_eq!(total(run, "connections_fewer"), true);
    let mean = total(run, "connections_alive_mean").as_f64().unwrap();
    assert!((4.5..=5.5).contains(&mean), "alive on average: {mean}");
    let fraction = total(run, "connections_fewer_fraction").as_f64().unwrap();
    assert!(fraction > 0.9, "fewer during {fraction} of the time");
    assert!(total(run, "connections_never_ready")["greeting 421"].as_u64() > Some(0));
}

#[test]
fn fewer_connections_than_asked_for_fail_the_run_and_are_said_first() {
    let server = start_server(&[]);
    let hlog = scratch("fewer.hlog");
    let html = scratch("fewer.html");
    let run = loadgen(
        server.local_addrs()[0],
        &[
            "-c",
            "8",
            "--rate",
            "100",
            // Not about lateness: a loaded machine's late wake-ups must not change the verdict.
            "--late-send-limit",
            "1h",
            "-d",
            "1s",
            "--hdr-log",
            hlog.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    server.stop().expect("fastsmtpd stops");
    assert_eq!(run.code, 3, "{run:#?}");
    assert_shortfall_reported(&run);
    assert_eq!(total(&run, "connections_fewer_allowed"), false);
    // The message names the likely limits and the way out.
    for needle in [
        "fewer connections than asked for: at most 5 of 8 set up at once",
        "--max-connections-per-ip (default 50 per client address)",
        "smtpd_client_connection_count_limit",
        "smtp_accept_max_per_host",
        "--allow-fewer-connections",
        "This run exits with status 3",
    ] {
        assert!(run.stderr.contains(needle), "{needle:?} in {}", run.stderr);
    }
    // The interval log carries the warning as a comment, and the HTML report shows it.
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with("#WARNING: fewer connections than the 8 asked for")),
        "{log}"
    );
    // `report` of that log says it too, under the description.
    let (code, report, stderr) = common::run_binary(&["report".into(), hlog.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[1].starts_with("WARNING: fewer connections than the 8 asked for"),
        "{report}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("WARNING: fewer connections than the 8 asked for"),
        "the HTML report does not show the warning"
    );
}

#[test]
fn allowed_fewer_connections_exit_0_and_are_still_reported() {
    let server = start_server(&[]);
    let run = loadgen(
        server.local_addrs()[0],
        &[
            "-c",
            "8",
            "--rate",
            "100",
            // Not about lateness: a loaded machine's late wake-ups must not change the verdict.
            "--late-send-limit",
            "1h",
            "-d",
            "1s",
            "--allow-fewer-connections",
        ],
    );
    server.stop().expect("fastsmtpd stops");
    assert_eq!(run.code, 0, "{run:#?}");
    assert_shortfall_reported(&run);
    assert_eq!(total(&run, "connections_fewer_allowed"), true);
    assert!(
        run.stderr.contains("allowed by --allow-fewer-connections"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_run_within_the_limit_is_unchanged() {
    let server = start_server(&[]);
    let run = loadgen(
        server.local_addrs()[0],
        &[
            "-c",
            "4",
            "--rate",
            "100",
            "-d",
            "1s",
            "--late-send-limit",
            "1h",
        ],
    );
    let stats = server.stop().expect("fastsmtpd stops");
    run.assert_clean();
    assert!(!run.stdout.contains("WARNING"), "{}", run.stdout);
    assert!(!run.stdout.contains("never got ready"), "{}", run.stdout);
    assert!(
        run.stdout.contains("target rate 100.0 msgs/s sustained"),
        "{}",
        run.stdout
    );
    assert_eq!(total(&run, "connections_requested"), 4);
    assert_eq!(total(&run, "connections_established"), 4);
    assert_eq!(total(&run, "connections_alive_min"), 4);
    assert_eq!(total(&run, "connections_fewer"), false);
    assert_eq!(
        total(&run, "connections_never_ready"),
        &serde_json::json!({})
    );
    assert_eq!(stats.connections, 4);
}

#[test]
fn a_connection_dropped_mid_run_is_not_alive_until_it_is_back() {
    // The 30th MAIL the server sees is answered by closing the connection without a word;
    // the generator reconnects after its 100 ms back-off: 4 connections were not alive for
    // at least a tenth of the 1 s measured.
    let server = start_server(&["mail nth=30 disconnect"]);
    let run = loadgen(
        server.local_addrs()[0],
        &[
            "-c",
            "4",
            "--rate",
            "100",
            "-d",
            "1s",
            "--late-send-limit",
            "1h",
        ],
    );
    let stats = server.stop().expect("fastsmtpd stops");
    assert_eq!(run.code, 3, "{run:#?}");
    assert_eq!(stats.connections, 5, "the dropped connection came back");
    assert_eq!(total(&run, "connections_established"), 4);
    let fewer = total(&run, "connections_fewer_seconds").as_f64().unwrap();
    assert!(fewer >= 0.1, "fewer than 4 alive for {fewer} s");
    // It was set up before it died: not a connection that never got ready.
    assert_eq!(
        total(&run, "connections_never_ready"),
        &serde_json::json!({})
    );
    assert_eq!(run.errors("reset"), 1);
    assert!(
        run.stderr
            .contains("sessions took longer than 1 s to set up, or failed during the run"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stagger_longer_than_the_run_is_a_shortfall_that_names_it() {
    // --stagger 10s over a 2 s run: most connections are never opened. They were asked
    // for and missing, so the run is not "sustained" and exits 3, naming --stagger.
    let stub = Stub::start(StubScript::default());
    let run = loadgen(
        stub.addr,
        &["-c", "10", "-d", "2s", "--rate", "200", "--stagger", "10s"],
    );
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let totals = &run.json()["totals"];
    assert_eq!(totals["connections_fewer"], true, "{totals:#}");
    assert!(totals["connections_established"].as_u64().unwrap() < 10);
    assert!(totals["connections_unopened_seconds"].as_f64().unwrap() > 1.0);
    assert!(!run.stdout.contains("msgs/s sustained"), "{}", run.stdout);
    assert!(run.stdout.contains("NOT sustained"), "{}", run.stdout);
    assert!(run.stderr.contains("--stagger spread"), "{}", run.stderr);
}
