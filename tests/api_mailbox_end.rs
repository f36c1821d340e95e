//! A per-test mailbox that ends (deleted, or its time to live runs out) while something
//! waits on it: an `await` answers `410` at once (with `deleted_at` / `expired_at`, as the
//! other mailbox routes do), `expect=none` too, and an event stream by mailbox sends one last
//! `mailbox-ended` event and ends. Over real sockets; no assertion about time (an await of
//! 30 s must answer 410, not 408).

mod api_client;

use api_client::{request, request_with_body, serve, until, Events, Response};
use fastsmtpd::api::ApiOptions;
use fastsmtpd::capture::Capture;
use serde_json::Value;
use std::net::SocketAddr;
use std::thread;

/// Creates a mailbox with `body` (JSON); its id.
fn create(api: SocketAddr, body: &str) -> String {
    let made = request_with_body(
        api,
        "POST",
        "/api/v1/mailboxes",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    made.json()["id"].as_str().unwrap().to_owned()
}

/// `GET path` on a thread of its own, started once it can be joined.
fn ask(api: SocketAddr, path: String) -> thread::JoinHandle<Response> {
    thread::spawn(move || request(api, "GET", &path, &[]))
}

/// Waits until `n` waiters are registered in the store (the await is waiting).
fn waiting(capture: &Capture, n: usize) {
    until("the await to wait", || capture.stats().waiters >= n);
}

#[test]
fn an_await_on_a_mailbox_deleted_meanwhile_answers_gone_at_once() {
    let (capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    for expect in ["", "&expect=none"] {
        let id = create(api, "{}");
        let wait = ask(
            api,
            format!("/api/v1/await?mailbox={id}&timeout=30s{expect}"),
        );
        waiting(&capture, 1);
        let deleted = request(api, "DELETE", &format!("/api/v1/mailboxes/{id}"), &[]);
        assert_eq!(deleted.status, 200);
        let answer = wait.join().unwrap();
        assert_eq!(answer.status, 410, "{expect}: {}", answer.json());
        let body = answer.json();
        assert_eq!(body["mailbox"], id.as_str());
        assert!(body["deleted_at"].is_string(), "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deleted"));
        until("the waiter to go", || capture.stats().waiters == 0);
    }
}

#[test]
fn an_await_never_waits_past_its_mailboxs_expiry() {
    let (capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    for expect in ["", "&expect=none"] {
        let id = create(api, r#"{"ttl": "1s"}"#);
        // Nothing else asks the store: the await itself must notice the expiry.
        let answer = request(
            api,
            "GET",
            &format!("/api/v1/await?mailbox={id}&timeout=30s{expect}"),
            &[],
        );
        assert_eq!(answer.status, 410, "{expect}: {}", answer.json());
        assert!(answer.json()["expired_at"].is_string());
    }
    assert_eq!(capture.stats().waiters, 0);
}

#[test]
fn an_event_stream_by_mailbox_ends_with_its_mailbox() {
    let (capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    let id = create(api, "{}");
    let mut events = Events::open(api, &format!("/api/v1/events?mailbox={id}"), &[]);
    assert_eq!(events.status, 200);
    waiting(&capture, 1);
    assert_eq!(
        request(api, "DELETE", &format!("/api/v1/mailboxes/{id}"), &[]).status,
        200
    );
    let last = events.next();
    assert_eq!(last.event, "mailbox-ended");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(
        (&data["id"], &data["reason"]),
        (&id.as_str().into(), &"deleted".into())
    );
    assert!(data["at"].is_string());
    assert_eq!(events.next_or_end(), None, "the stream goes on");

    // Expiry, with nothing else asking the store.
    let id = create(api, r#"{"ttl": 1}"#);
    let mut events = Events::open(api, &format!("/api/v1/events?mailbox={id}"), &[]);
    let last = events.next();
    assert_eq!(last.event, "mailbox-ended");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["reason"], "expired");
    assert_eq!(events.next_or_end(), None);
    // Reconnecting to it is refused.
    assert_eq!(
        request(api, "GET", &format!("/api/v1/events?mailbox={id}"), &[]).status,
        410
    );
}
