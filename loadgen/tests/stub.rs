//! smtp-loadgen against a scripted stub server: replies split across reads, refused
//! recipients, and a whole-server stall under an open-loop load (coordinated omission).

mod common;

use common::{loadgen, loadgen_within, Stub, StubScript};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn multi_line_replies_split_across_reads_are_reassembled() {
    let stub = Stub::start(StubScript {
        split_replies: true,
        ..StubScript::default()
    });
    for pipelining in ["on", "off"] {
        let before = stub.messages();
        let run = loadgen(
            stub.addr,
            &["-c", "2", "-n", "30", "--pipelining", pipelining],
        );
        run.assert_clean();
        assert_eq!(run.total("accepted"), 30, "{}", run.stdout);
        assert_eq!(stub.messages() - before, 30);
        // Greeting and EHLO are multi-line here; each arrived in several pieces.
        assert_eq!(run.code_count("greeting", 220), 2);
        assert_eq!(run.code_count("ehlo", 250), 2);
        assert_eq!(run.code_count("eod", 250), 30);
        assert_eq!(run.code_count("quit", 221), 2);
    }
}

#[test]
fn transient_rcpt_refusals_are_counted_and_the_run_goes_on() {
    // Every 5th RCPT gets 450; with one recipient per message that message has no valid
    // recipient, so the pipelined DATA gets 554 and the client resets the transaction.
    let stub = Stub::start(StubScript {
        refuse_rcpt: Some((5, "450 4.2.1 Mailbox busy, try later\r\n")),
        ..StubScript::default()
    });
    let run = loadgen(stub.addr, &["-c", "3", "-n", "200", "--pipelining", "on"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.code_count("rcpt", 450), 40, "{}", run.stdout);
    assert_eq!(run.code_count("rcpt", 250), 160);
    assert_eq!(run.code_count("data", 554), 40);
    assert_eq!(run.code_count("rset", 250), 40);
    assert_eq!(run.total("accepted"), 160);
    assert_eq!(run.total("failed"), 40);
    assert_eq!(run.total("started"), 200);
    assert_eq!(stub.messages(), 160);
    // Refusals are replies, not connection errors.
    assert!(run.json()["totals"]["errors"]
        .as_object()
        .unwrap()
        .is_empty());
    assert!(
        run.stdout.contains("rcpt[250=160 450=40]"),
        "{}",
        run.stdout
    );
}

#[test]
fn permanent_rcpt_refusals_without_pipelining_skip_data() {
    let stub = Stub::start(StubScript {
        refuse_rcpt: Some((4, "550 5.1.1 No such user\r\n")),
        pipelining: false,
        ..StubScript::default()
    });
    let run = loadgen(stub.addr, &["-c", "2", "-n", "100"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.code_count("rcpt", 550), 25, "{}", run.stdout);
    // Step by step, a message with no accepted recipient never sends DATA; RSET ends it.
    assert_eq!(run.code_count("data", 354), 75);
    assert_eq!(run.code_count("data", 554), 0);
    assert_eq!(run.code_count("rset", 250), 25);
    assert_eq!(run.total("accepted"), 75);
    assert_eq!(run.total("failed"), 25);
    assert_eq!(stub.messages(), 75);
}

#[test]
fn partly_refused_recipients_still_deliver_the_message() {
    let stub = Stub::start(StubScript {
        refuse_rcpt: Some((3, "550 5.1.1 No such user\r\n")),
        ..StubScript::default()
    });
    // Three recipients each: exactly one of every three is refused, so every message keeps
    // two and is accepted.
    let run = loadgen(stub.addr, &["-c", "1", "-n", "50", "--rcpts", "3"]);
    run.assert_clean();
    assert_eq!(run.code_count("rcpt", 550), 50);
    assert_eq!(run.code_count("rcpt", 250), 100);
    assert_eq!(run.total("accepted"), 50);
    assert_eq!(stub.messages(), 50);
}

#[test]
fn a_server_stall_shows_in_corrected_latency_not_in_service_time() {
    // Open loop at 1 000 msgs/s for 2 000 messages; after message 600 the whole server holds
    // every reply for 200 ms once. The schedule keeps running meanwhile: the ~200 messages
    // intended during the stall wait for it, so the corrected (intended-time) p99 is of the
    // stall's order. Only the few messages in flight when it began saw it in their service
    // time, so the service-time p99 stays near normal.
    let stall = Duration::from_millis(200);
    let stub = Stub::start(StubScript {
        stall: Some((600, stall)),
        ..StubScript::default()
    });
    let run = loadgen(
        stub.addr,
        &[
            "-c",
            "4",
            "-n",
            "2000",
            "--rate",
            "1000",
            "--pipelining",
            "on",
        ],
    );
    run.assert_clean();
    assert_eq!(run.total("accepted"), 2000);
    let corrected_p99 = run.latency_ms("message_corrected", "p99_ms");
    let service_p99 = run.latency_ms("message", "p99_ms");
    let service_max = run.latency_ms("message", "max_ms");
    // The 20 largest corrected latencies (1%) belong to messages intended in the stall's
    // first ~20 ms, each of which waited for the rest of it: at least ~180 ms.
    assert!(
        corrected_p99 >= 150.0,
        "corrected p99 {corrected_p99} ms should reflect the 200 ms stall\n{}",
        run.stdout
    );
    // Someone did see the stall in service time ...
    assert!(
        service_max >= 150.0,
        "service max {service_max} ms\n{}",
        run.stdout
    );
    // ... but at most the handful in flight (4 connections, 2 messages each): far below 1%.
    assert!(
        service_p99 * 3.0 < corrected_p99,
        "service p99 {service_p99} ms vs corrected p99 {corrected_p99} ms\n{}",
        run.stdout
    );
}

#[test]
fn a_closed_port_fails_the_run_with_a_clear_message() {
    // A socket bound to the port but not listening: connections to it are refused, and no
    // other test can take the port meanwhile (binding and dropping a listener left a window
    // in which a parallel test's server could get the same port).
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let addr = reserved.local_addr().unwrap().as_socket().unwrap();
    let run = loadgen(addr, &["-c", "2", "-n", "10"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("no message was accepted") && run.stderr.contains("failed"),
        "{}",
        run.stderr
    );
    assert!(run.errors("refused") > 0);
    // The same inside a warm-up (bug, issue 16 review): the run said 'errors: none' and
    // nothing about its connections, since everything in the warm-up was left out. The
    // connections that never got ready are the run's whatever the time.
    let run = loadgen(addr, &["-c", "3", "-d", "1s", "--warmup", "5s"]);
    assert_eq!(run.code, 1, "{run:#?}");
    // At least the 3 first connects (the engine may try again before it gives up).
    let failed = &run.json()["totals"]["connections_never_ready"]["connect failed"];
    assert!(failed.as_u64().is_some_and(|n| n >= 3), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "connections that never got ready: {failed} (connect failed: {failed})"
        )),
        "{}",
        run.stdout
    );
    drop(reserved);
}

/// How long a run that must end by itself may take before the test calls it a hang (the
/// runs below take well under a second when they do not hang).
const HANG: Duration = Duration::from_secs(20);

/// Waits (bounded) until the stub has seen `n` connections closed by the client.
#[track_caller]
fn wait_closed_by_client(stub: &Stub, n: u64) {
    let deadline = std::time::Instant::now() + HANG;
    while stub.counts.closed_by_client.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the client closed {} of {n} connections",
            stub.counts.closed_by_client.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_server_that_keeps_the_connection_open_after_221_does_not_hold_the_run() {
    // RFC 5321 §4.1.1.10: the server closes after its 221, and the client may close once it
    // has it. This one never closes; the generator used to wait for its FIN for ever (no
    // reply awaited, so no --timeout either).
    let stub = Stub::start(StubScript {
        hold_after_quit: true,
        ..StubScript::default()
    });
    let mut sessions = 0;
    for (args, messages, connections) in [
        (&["-c", "1", "-n", "1"][..], 1, 1),
        (&["-c", "1", "-n", "3", "--msgs-per-conn", "1"], 3, 3),
        (&["-c", "2", "-n", "4", "--msgs-per-conn", "2"], 4, 2),
    ] {
        let mut all = args.to_vec();
        all.extend(["--timeout", "60s"]);
        let run = loadgen_within(stub.addr, &all, HANG);
        run.assert_clean();
        assert_eq!(run.total("accepted"), messages, "{}", run.stdout);
        assert_eq!(run.code_count("quit", 221), connections);
        sessions += connections;
        wait_closed_by_client(&stub, sessions);
    }
    // A duration run ends at its end too.
    let run = loadgen_within(
        stub.addr,
        &[
            "-c",
            "2",
            "-d",
            "1s",
            "--rate",
            "50",
            "--msgs-per-conn",
            "5",
        ],
        HANG,
    );
    run.assert_clean();
    assert!(run.code_count("quit", 221) >= 2, "{}", run.stdout);
}

#[test]
fn connections_still_awaiting_the_greeting_do_not_hold_the_end_of_a_run() {
    // A server that accepts but never greets (connections queued past a process limit
    // look like this). Once -d is over no message can go out on them: the run ends at
    // once instead of after --timeout, and says they never got ready.
    let stub = Stub::start(StubScript {
        silent: true,
        ..StubScript::default()
    });
    let run = loadgen_within(
        stub.addr,
        &["-c", "3", "-d", "2s", "--timeout", "60s"],
        HANG,
    );
    // Nothing was accepted (exit 1, which comes before the shortfall's 3).
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("WARNING: fewer connections"),
        "{}",
        run.stdout
    );
    assert_eq!(run.total("accepted"), 0);
    assert_eq!(
        run.json()["totals"]["connections_never_ready"]["awaiting greeting at the run's end"],
        3,
        "{}",
        run.stdout
    );
    assert_eq!(run.errors("timeout"), 0, "{}", run.stdout);
    wait_closed_by_client(&stub, 3);
}

#[test]
fn sends_that_went_out_late_are_not_a_sustained_rate() {
    // The server holds every reply for 300 ms once, early in a 2 s open-loop run; the
    // generator catches up afterwards, so the rate is reached and every send started, but
    // a sixth of them went out up to 300 ms late: the offered load did not run as asked.
    let stub = Stub::start(StubScript {
        stall: Some((200, Duration::from_millis(300))),
        ..StubScript::default()
    });
    let run = loadgen(
        stub.addr,
        &["-c", "4", "-d", "2s", "--rate", "500", "--pipelining", "on"],
    );
    run.assert_clean();
    assert!(
        run.latency_ms("send_lateness", "p99_ms") >= 100.0,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("msgs/s sustained"), "{}", run.stdout);
    // On time (the rate caught up) or, on a loaded machine, not even reached in time: either
    // way NOT sustained, never the catch-up passed off as the load asked for.
    assert!(run.stdout.contains("NOT sustained"), "{}", run.stdout);
    // The limit is the user's: past a 1 h limit the same stall reads as on time (the run is
    // then "sustained", or, if the loaded machine also missed the rate, NOT sustained for
    // that reason: either way not "on time").
    let stub = Stub::start(StubScript {
        stall: Some((200, Duration::from_millis(300))),
        ..StubScript::default()
    });
    let lenient = loadgen(
        stub.addr,
        &[
            "-c",
            "4",
            "-d",
            "2s",
            "--rate",
            "500",
            "--pipelining",
            "on",
            "--late-send-limit",
            "1h",
        ],
    );
    assert!(
        !lenient.stdout.contains("NOT sustained on time"),
        "{}",
        lenient.stdout
    );
}

#[test]
fn a_run_that_ends_inside_its_warm_up_says_so() {
    // 20 messages take a few milliseconds: all of them inside the 1 s warm-up. The run
    // measured nothing (exit 1), but mail was accepted: it must not say otherwise.
    let stub = Stub::start(StubScript::default());
    let run = loadgen(stub.addr, &["-c", "2", "-n", "20", "--warmup", "1s"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(stub.messages(), 20);
    assert!(
        !run.stderr.contains("no message was accepted"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "nothing was measured: all 20 accepted message(s) went out inside the 1 s warm-up"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_summary_that_cannot_be_written_is_not_a_silent_success() {
    // stdout on a full device: the write fails (ENOSPC), unlike a reader that left (a
    // closed pipe stays quiet, see logs_and_cli). The summary is lost: say so, exit 1.
    let stub = Stub::start(StubScript::default());
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "exec \"$0\" --target \"$1\" -q -c 1 -n 5 >/dev/full",
        env!("CARGO_BIN_EXE_smtp-loadgen"),
        &stub.addr.to_string(),
    ]);
    let (status, _, stderr) = common::run_bounded(command, HANG);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: writing standard output: No space left on device"),
        "{stderr}"
    );
    assert_eq!(stub.messages(), 5);
    // A reader that left (| true) is not an error: quiet, exit 0.
    let mut command = std::process::Command::new("bash");
    command.args([
        "-c",
        "\"$0\" --target \"$1\" -q -c 1 -n 5 | true; echo \"status ${PIPESTATUS[0]}\" >&2",
        env!("CARGO_BIN_EXE_smtp-loadgen"),
        &stub.addr.to_string(),
    ]);
    let (_, _, stderr) = common::run_bounded(command, HANG);
    assert!(stderr.ends_with("status 0\n"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// Bug (issue 16 review): `smtp-loadgen ... 2>&1 | head -1` ended with a panic, exit status
/// 101: the progress line went to a standard error whose reader had left, and `eprintln!`
/// panics on the failed write. Lines on standard error are a courtesy too now: the run goes
/// on to its end and exit status.
#[test]
fn a_closed_standard_error_is_not_a_crash() {
    let stub = Stub::start(StubScript::default());
    let mut command = std::process::Command::new("bash");
    command.args([
        "-c",
        // Not -q: a progress line every second goes to the closed stderr.
        "\"$0\" --target \"$1\" -c 1 -d 2s 2>&1 | true; echo \"status ${PIPESTATUS[0]}\" >&2",
        env!("CARGO_BIN_EXE_smtp-loadgen"),
        &stub.addr.to_string(),
    ]);
    let (_, _, stderr) = common::run_bounded(command, HANG);
    assert!(stderr.ends_with("status 0\n"), "{stderr}");
    assert!(stub.messages() > 0);
}

#[test]
fn each_connect_is_timed_from_its_own_start() {
    // 100 connects due at once. They used to share one start (the loop turn's clock) and be
    // seen complete only after the thread had issued all of them: every connect then
    // measured the same span, the generator's batch (p50 = max). Each is now timed from its
    // own start, and completions are polled for between small batches.
    let stub = Stub::start(StubScript::default());
    let run = loadgen(stub.addr, &["-c", "100", "-n", "200"]);
    run.assert_clean();
    let latency = &run.json()["latency"]["connect"];
    assert_eq!(latency["count"], 100, "{latency:#}");
    let (p50, max) = (
        run.latency_ms("connect", "p50_ms"),
        run.latency_ms("connect", "max_ms"),
    );
    assert!(
        p50 < max,
        "connect p50 {p50} ms, max {max} ms\n{}",
        run.stdout
    );
}
