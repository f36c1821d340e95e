//! Time limits over loopback (with a 1 s idle timeout so each test takes about a second): the
//! idle timeout, the per-command deadline against a client trickling a command line, and the
//! minimum data rate during DATA and BDAT. No test asserts on elapsed time; each is bounded.

mod util;
use fastsmtpd::config::{Config, Limits};
use std::time::Duration;
use util::*;

fn short_timeouts(min_data_rate: u64) -> Config {
    Config {
        limits: Limits {
            idle_timeout: Duration::from_secs(1),
            min_data_rate,
            ..Limits::default()
        },
        ..test_config()
    }
}

#[test]
fn idle_client_is_disconnected() {
    let server = TestServer::start(short_timeouts(0));
    let mut silent = server.client();
    let mut greeted = server.client();
    greeted.ehlo();
    silent.expect(TIMEOUT);
    silent.expect_closed();
    greeted.expect(TIMEOUT);
    greeted.expect_closed();
    let stats = server.stop();
    assert_eq!(stats.timeouts, 2);
}

#[test]
fn idle_mid_transaction_is_disconnected_and_nothing_counted() {
    let server = TestServer::start(short_timeouts(0));
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.send("half a message\r\n");
    client.expect(TIMEOUT);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.timeouts), (0, 1));
}

#[test]
fn trickled_command_line_is_cut() {
    // One byte every 300 ms never completes the line; bytes of an unfinished command earn no
    // time, so the per-command deadline cuts the client.
    let server = TestServer::start(short_timeouts(0));
    let mut client = server.client();
    client.ehlo();
    let said = client.trickle_until_reply(
        "MAIL FROM:<slowloris@example.org> BODY=8BITMIME",
        Duration::from_millis(300),
    );
    assert_eq!(String::from_utf8_lossy(&said), TIMEOUT);
    assert_eq!(server.stop().timeouts, 1);
}

#[test]
fn trickled_data_is_cut_for_low_rate() {
    let server = TestServer::start(short_timeouts(100_000));
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    let said = client.trickle_until_reply("x".repeat(200), Duration::from_millis(50));
    assert_eq!(String::from_utf8_lossy(&said), TOO_SLOW);
    let stats = server.stop();
    assert_eq!((stats.messages, stats.timeouts), (0, 1));
}

#[test]
fn trickled_bdat_is_cut_for_low_rate() {
    let server = TestServer::start(short_timeouts(100_000));
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.send("BDAT 1000 LAST\r\n");
    let said = client.trickle_until_reply("y".repeat(200), Duration::from_millis(50));
    assert_eq!(String::from_utf8_lossy(&said), TOO_SLOW);
    assert_eq!(server.stop().messages, 0);
}

#[test]
fn fast_data_passes_a_high_minimum_rate() {
    let server = TestServer::start(short_timeouts(100_000));
    let mut client = server.client();
    client.ehlo();
    let content = format!("{}\r\n", "z".repeat(998)).repeat(1000);
    client.deliver(&content);
    client.begin_transaction();
    client.roundtrip(format!("BDAT {} LAST\r\n{content}", content.len()), QUEUED);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    assert_eq!(server.stop().messages, 2);
}

#[test]
fn each_command_restarts_the_idle_timer() {
    // Commands at a steady pace, for longer than the idle timeout in total, are never cut.
    let server = TestServer::start(Config {
        limits: Limits {
            idle_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        client.roundtrip("NOOP\r\n", OK);
    }
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    assert_eq!(server.stop().timeouts, 0);
}
