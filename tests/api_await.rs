//! `GET /api/v1/await` over real sockets: a message already kept, one inserted while
//! waiting (from another thread), `count`, `408` with partial matches, `expect=none`,
//! exact address matching, the decoded subject, bad parameters, and a waiter cancelled when
//! its client goes away.

mod api_client;

use api_client::*;
use fastsmtpd::api::ApiOptions;
use std::io::Write;
use std::net::TcpStream;

fn ids(answer: &serde_json::Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_message_already_kept_returns_at_once() {
    let (capture, server) = serve(ApiOptions::default());
    insert(&capture, "m1", "s@test", &["r@test"], &mail("hello"));
    let r = get(server.local_addr(), "/api/v1/await?rcpt=r@test&timeout=30s");
    assert_eq!(r.status, 200);
    let answer = r.json();
    assert_eq!(ids(&answer), ["m1"]);
    assert_eq!(answer["cursor"], "1");
    assert_eq!(capture.stats().waiters, 0);
}

#[test]
fn a_message_inserted_while_waiting_wakes_the_await() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "old", "s@test", &["r@test"], &mail("old"));
    let cursor = get(addr, "/api/v1/cursor").json()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = std::thread::spawn(move || {
        get(
            addr,
            &format!("/api/v1/await?rcpt=r@test&after={cursor}&timeout=60s"),
        )
    });
    until("the waiter", || capture.stats().waiters == 1);
    insert(&capture, "other", "s@test", &["x@test"], &mail("x"));
    insert(&capture, "new", "s@test", &["r@test"], &mail("new"));
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.json()), ["new"]);
    assert_eq!(r.json()["cursor"], "3");
    until("no waiter", || capture.stats().waiters == 0);
}

#[test]
fn count_waits_for_that_many_from_another_thread() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "m1", "s@test", &["r@test"], &mail("1"));
    let waiting = std::thread::spawn(move || get(addr, "/api/v1/await?from=s@TEST&count=3"));
    until("the waiter", || capture.stats().waiters == 1);
    let sender = {
        let capture = capture.clone();
        std::thread::spawn(move || {
            insert(&capture, "m2", "t@test", &["r@test"], &mail("2"));
            insert(&capture, "m3", "s@test", &["q@test"], &mail("3"));
            insert(&capture, "m4", "s@test", &["r@test"], &mail("4"));
            insert(&capture, "m5", "s@test", &["r@test"], &mail("5"));
        })
    };
    let r = waiting.join().unwrap();
    sender.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.json()), ["m1", "m3", "m4"]);
    assert_eq!(r.json()["cursor"], "4");
}

#[test]
fn a_timeout_is_408_with_what_matched() {
    let (capture, server) = serve(ApiOptions::default());
    insert(&capture, "m1", "s@test", &["r@test"], &mail("1"));
    let r = get(
        server.local_addr(),
        "/api/v1/await?rcpt=r@test&count=2&timeout=1s",
    );
    assert_eq!(r.status, 408);
    let answer = r.json();
    assert_eq!(ids(&answer), ["m1"]);
    assert_eq!(answer["error"]["status"], 408);
    assert_eq!(capture.stats().waiters, 0);
}

#[test]
fn expect_none_is_200_when_nothing_matches_and_409_at_once_when_something_does() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "m1", "s@test", &["ba@test"], &mail("1"));
    // `a@test` is not `ba@test`.
    let r = get(addr, "/api/v1/await?rcpt=a@test&expect=none&timeout=1s");
    assert_eq!(r.status, 200);
    assert!(ids(&r.json()).is_empty());
    let r = get(addr, "/api/v1/await?rcpt=ba@TEST&expect=none&timeout=300s");
    assert_eq!(r.status, 409);
    assert_eq!(ids(&r.json()), ["m1"]);
    // The local part is compared as sent.
    let r = get(addr, "/api/v1/await?rcpt=BA@test&expect=none&timeout=0");
    assert_eq!(r.status, 200);
}

#[test]
fn subject_is_the_decoded_subject_exact_or_substring() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(
        &capture,
        "m1",
        "s@test",
        &["r@test"],
        b"Subject: =?UTF-8?Q?Your_code_is_caf=C3=A9?=\r\n\r\nx\r\n",
    );
    insert(
        &capture,
        "m2",
        "s@test",
        &["r@test"],
        &mail("Welcome aboard"),
    );
    let r = get(
        addr,
        "/api/v1/await?subject=Your%20code%20is%20caf%C3%A9&timeout=0",
    );
    assert_eq!((r.status, ids(&r.json())), (200, vec!["m1".to_owned()]));
    let r = get(addr, "/api/v1/await?subject~=WELCOME&timeout=0");
    assert_eq!((r.status, ids(&r.json())), (200, vec!["m2".to_owned()]));
    let r = get(addr, "/api/v1/await?subject=Your%20code&timeout=0");
    assert_eq!(r.status, 408);
    let r = get(
        addr,
        "/api/v1/await?header.Message-ID=%3CWelcome%20aboard@test%3E&timeout=0",
    );
    assert_eq!((r.status, ids(&r.json())), (200, vec!["m2".to_owned()]));
}

#[test]
fn bad_parameters_are_400_with_a_message() {
    let (_capture, server) = serve(ApiOptions::default());
    for bad in [
        "timeout=301s",
        "timeout=soon",
        "count=0",
        "after=-1",
        "expect=some-day",
        "nonsense=1",
    ] {
        let r = get(server.local_addr(), &format!("/api/v1/await?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty(), "{bad}");
    }
    // `mailbox=` names a per-test mailbox: one that does not exist is 404.
    let r = get(server.local_addr(), "/api/v1/await?mailbox=x");
    assert_eq!(r.status, 404);
}

#[test]
fn a_waiter_whose_client_goes_away_is_cancelled() {
    let (capture, server) = serve(ApiOptions::default());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .write_all(
            b"GET /api/v1/await?rcpt=r@test&timeout=300s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .unwrap();
    until("the waiter", || capture.stats().waiters == 1);
    assert_eq!(server.counters().waiters.get(), 1);
    drop(stream);
    until("the waiter's cancellation", || capture.stats().waiters == 0);
    assert_eq!(server.counters().waiters.get(), 0);
}

#[test]
fn curl_dash_f_fails_a_step_on_timeout_and_passes_on_arrival() {
    let (capture, server) = serve(ApiOptions::default());
    let base = format!("http://{}/api/v1", server.local_addr());
    let curl = |url: &str| {
        std::process::Command::new("curl")
            .args(["-sf", "--max-time", "60", url])
            .output()
            .expect("curl is installed")
    };
    let missing = curl(&format!("{base}/await?rcpt=r@test&timeout=0"));
    assert_eq!(missing.status.code(), Some(22), "curl -f exits 22 on a 4xx");
    insert(&capture, "m1", "s@test", &["r@test"], &mail("1"));
    let found = curl(&format!("{base}/await?rcpt=r@test&timeout=0"));
    assert!(found.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(ids(&answer), ["m1"]);
}

/// An `await` longer than the connection's request deadline (10 s) holds its connection:
/// the answer is the `408`, not a closed socket.
#[test]
fn an_await_longer_than_the_request_deadline_is_answered() {
    let (_capture, server) = serve(ApiOptions::default());
    let r = get(server.local_addr(), "/api/v1/await?rcpt=r@test&timeout=11s");
    assert_eq!(r.status, 408);
}

/// A message after the cursor that the store's limits evicted before the await examined it:
/// `expect=none` cannot claim that none arrived (`410`, `evicted_unexamined`), and a timed
/// out await says so; a message the await examined before its eviction changes nothing.
#[test]
fn expect_none_after_an_unexamined_eviction_is_410_not_a_false_pass() {
    let (capture, server) = serve_with(
        fastsmtpd::capture::Limits {
            max_messages: 2,
            ..fastsmtpd::capture::Limits::default()
        },
        ApiOptions::default(),
    );
    let addr = server.local_addr();
    insert(&capture, "before", "s@test", &["x@test"], &mail("before"));
    let cursor = capture.head();
    // The wanted message arrives, then two more push it out (at most 2 kept).
    insert(&capture, "wanted", "s@test", &["wanted@test"], &mail("w"));
    insert(&capture, "f1", "s@test", &["x@test"], &mail("f1"));
    insert(&capture, "f2", "s@test", &["x@test"], &mail("f2"));
    let r = get(
        addr,
        &format!("/api/v1/await?rcpt=wanted@test&after={cursor}&expect=none&timeout=0"),
    );
    assert_eq!(r.status, 410, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["evicted_unexamined"], true);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evicted"));
    // Without expect=none: the timeout's 408 says the same.
    let r = get(
        addr,
        &format!("/api/v1/await?rcpt=wanted@test&after={cursor}&timeout=0"),
    );
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["evicted_unexamined"], true);
    // From a cursor past the evicted one: an honest 200.
    let head = capture.head();
    let r = get(
        addr,
        &format!("/api/v1/await?rcpt=wanted@test&after={head}&expect=none&timeout=0"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["evicted_unexamined"], false);
}

/// An empty `rcpt=` (an unset shell variable) or one without a local part is a `400`, never
/// a selection that matches nothing (which would pass `expect=none` falsely).
#[test]
fn an_empty_recipient_is_refused() {
    let (_capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    for path in [
        "/api/v1/await?rcpt=&expect=none&timeout=0",
        "/api/v1/await?rcpt=%40x.test&expect=none&timeout=0",
        "/api/v1/messages?rcpt=",
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains("not an address"), "{path}: {}", r.text());
    }
}
