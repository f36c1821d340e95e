//! `GET /api/v1/events` over real sockets: live inserts in order, resuming from
//! `Last-Event-ID` or `?after=`, `lagged` when evictions pass the cursor, the subscriber cap.

mod api_client;

use api_client::*;
use fastsmtpd::api::{ApiOptions, MAX_SUBSCRIBERS};
use fastsmtpd::capture::Limits;

#[test]
fn live_inserts_arrive_in_order_and_a_reconnect_resumes() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "before", "s@test", &["r@test"], &mail("before"));
    let mut events = Events::open(addr, "/api/v1/events", &[]);
    assert_eq!(events.status, 200);
    until("the subscriber", || capture.stats().waiters == 1);
    let writer = {
        let capture = capture.clone();
        std::thread::spawn(move || {
            for n in 1..=20 {
                insert(
                    &capture,
                    &format!("m{n}"),
                    "s@test",
                    &["r@test"],
                    &mail(&format!("s{n}")),
                );
            }
        })
    };
    for n in 1..=20u64 {
        let event = events.next();
        assert_eq!(event.event, "message");
        assert_eq!(event.id, (n + 1).to_string());
        let summary: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(summary["id"], format!("m{n}"));
        assert_eq!(summary["subject"], format!("s{n}"));
    }
    writer.join().unwrap();
    drop(events);
    until("the subscriber gone", || {
        server.counters().subscribers.get() == 0
    });
    // Resume after seq 15: 16..=21 again, in order.
    let mut events = Events::open(addr, "/api/v1/events", &["Last-Event-ID: 15"]);
    for seq in 16..=21 {
        assert_eq!(events.next().id, seq.to_string());
    }
    let mut events = Events::open(addr, "/api/v1/events?after=20", &[]);
    assert_eq!(events.next().id, "21");
    assert_eq!(
        Events::open(addr, "/api/v1/events?after=x", &[]).status,
        400
    );
}

#[test]
fn a_subscriber_passed_by_evictions_gets_lagged_then_goes_on() {
    let limits = Limits {
        max_messages: 3,
        ..Limits::default()
    };
    let (capture, server) = serve_with(limits, ApiOptions::default());
    let addr = server.local_addr();
    for n in 1..=10 {
        insert(
            &capture,
            &format!("m{n}"),
            "s@test",
            &["r@test"],
            &mail("x"),
        );
    }
    // Kept: 8, 9, 10. A subscriber from 2 missed 3..=7.
    let mut events = Events::open(addr, "/api/v1/events?after=2", &[]);
    let lagged = events.next();
    assert_eq!((lagged.event.as_str(), lagged.id.as_str()), ("lagged", "7"));
    let data: serde_json::Value = serde_json::from_str(&lagged.data).unwrap();
    assert_eq!(
        (data["from"].as_u64(), data["to"].as_u64()),
        (Some(3), Some(7))
    );
    for seq in 8..=10 {
        assert_eq!(events.next().id, seq.to_string());
    }
    assert_eq!(server.counters().lagged.get(), 1);
    // Nothing kept after the cursor at all: lagged up to the head.
    capture.delete_all();
    insert(&capture, "m11", "s@test", &["r@test"], &mail("x"));
    let mut late = Events::open(addr, "/api/v1/events?after=1", &[]);
    let lagged = late.next();
    assert_eq!(
        (lagged.event.as_str(), lagged.id.as_str()),
        ("lagged", "10")
    );
    assert_eq!(late.next().id, "11");
}

#[test]
fn subscribers_are_capped() {
    let (_capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    let open: Vec<Events> = (0..MAX_SUBSCRIBERS)
        .map(|_| Events::open(addr, "/api/v1/events", &[]))
        .collect();
    until("every subscriber", || {
        server.counters().subscribers.get() == MAX_SUBSCRIBERS as i64
    });
    let r = get(addr, "/api/v1/events");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    drop(open);
}

#[test]
fn a_message_the_subscriber_saw_and_the_store_removed_is_a_gone_event() {
    let limits = Limits {
        max_messages: 3,
        ..Limits::default()
    };
    let (capture, server) = serve_with(limits, ApiOptions::default());
    let addr = server.local_addr();
    let mut events = Events::open(addr, "/api/v1/events", &[]);
    until("the subscriber", || capture.stats().waiters == 1);
    for n in 1..=3 {
        insert(
            &capture,
            &format!("m{n}"),
            "s@test",
            &["r@test"],
            &mail("x"),
        );
    }
    for seq in 1..=3 {
        assert_eq!(events.next().id, seq.to_string());
    }
    assert_eq!(
        request(addr, "DELETE", "/api/v1/messages/m2", &[]).status,
        200
    );
    let gone = events.next();
    assert_eq!((gone.event.as_str(), gone.id.as_str()), ("gone", ""));
    let data: serde_json::Value = serde_json::from_str(&gone.data).unwrap();
    assert_eq!(
        (data["seq"].as_u64(), data["reason"].as_str()),
        (Some(2), Some("deleted"))
    );
    // Kept: m1, m3; m4 fills the count (3), m5 evicts m1.
    insert(&capture, "m4", "s@test", &["r@test"], &mail("x"));
    insert(&capture, "m5", "s@test", &["r@test"], &mail("x"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = events.next();
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        seen.push(match event.event.as_str() {
            "gone" => format!("gone {} {}", data["seq"], data["reason"].as_str().unwrap()),
            other => format!("{other} {}", event.id),
        });
    }
    // The removal may be read before or after the messages; the messages keep their order.
    let messages: Vec<&String> = seen.iter().filter(|e| e.starts_with("message")).collect();
    assert_eq!(messages, ["message 4", "message 5"]);
    assert!(seen.contains(&"gone 1 evicted".to_owned()), "{seen:?}");
}

/// An idle stream outlives the connection's request deadline (10 s): the stream holds its
/// connection, and a message after 12 s idle still arrives.
#[test]
fn an_idle_stream_outlives_the_request_deadline() {
    let (capture, server) = serve(ApiOptions::default());
    let mut events = Events::open(server.local_addr(), "/api/v1/events", &[]);
    until("the subscriber", || capture.stats().waiters == 1);
    std::thread::sleep(std::time::Duration::from_secs(12));
    insert(&capture, "late", "s@test", &["r@test"], &mail("late"));
    assert_eq!(events.next().id, "1");
}
