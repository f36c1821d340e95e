//! The capture API's routes over real sockets: health, cursor, list and paging, a message's
//! record and raw bytes, deletes, `404`/`405`/`410`, path tricks, the bearer token, CORS, and
//! the request bounds (an oversized head, a slowloris sender).

mod api_client;

use api_client::*;
use fastsmtpd::api::ApiOptions;
use fastsmtpd::capture::Limits;
use std::io::{Read, Write};
use std::net::TcpStream;

#[test]
fn health_cursor_unknown_routes_and_wrong_methods() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    for path in ["/healthz", "/readyz"] {
        let r = get(addr, path);
        assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]), "{path}");
    }
    assert_eq!(get(addr, "/api/v1/cursor").json()["cursor"], "0");
    insert(&capture, "m1", "s@test", &["r@test"], &mail("one"));
    assert_eq!(get(addr, "/api/v1/cursor").json()["cursor"], "1");

    for path in [
        "/api",
        "/api/v1",
        "/api/v2/cursor",
        "/api/v1/cursor/",
        "/nope",
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["error"]["status"], 404);
    }
    let r = request(addr, "POST", "/api/v1/cursor", &["Content-Length: 0"]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = request(addr, "PUT", "/api/v1/messages", &["Content-Length: 0"]);
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, POST, DELETE"))
    );
    let r = request(addr, "DELETE", "/api/v1/messages/m1/raw", &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // No CORS header unless asked for.
    assert_eq!(
        get(addr, "/api/v1/cursor").header("access-control-allow-origin"),
        None
    );
}

#[test]
fn list_is_newest_first_paged_by_cursor_and_pages_never_shift() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    for n in 1..=7 {
        let rcpt = if n % 2 == 0 { "even@test" } else { "odd@test" };
        insert(
            &capture,
            &format!("m{n}"),
            "s@test",
            &[rcpt],
            &mail(&format!("s{n}")),
        );
    }
    let page = get(addr, "/api/v1/messages?limit=3").json();
    let seqs = |page: &serde_json::Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&page), [7, 6, 5]);
    assert_eq!(page["total"], 7);
    let next = page["next"].as_str().unwrap().to_owned();
    assert_eq!(page["messages"][0]["subject"], "s7");
    assert_eq!(page["messages"][0]["rcpt_to"][0], "odd@test");
    assert!(page["messages"][0].get("raw").is_none());
    // New mail arrives: the next page is still the next older messages.
    for n in 8..=10 {
        insert(
            &capture,
            &format!("m{n}"),
            "s@test",
            &["odd@test"],
            &mail("new"),
        );
    }
    let page2 = get(addr, &format!("/api/v1/messages?limit=3&before={next}")).json();
    assert_eq!(seqs(&page2), [4, 3, 2]);
    let page3 = get(
        addr,
        &format!(
            "/api/v1/messages?limit=3&before={}",
            page2["next"].as_str().unwrap()
        ),
    )
    .json();
    assert_eq!(seqs(&page3), [1]);
    assert_eq!(page3["next"], serde_json::Value::Null);
    // Filters and both cursors.
    let even = get(addr, "/api/v1/messages?rcpt=even@TEST").json();
    assert_eq!(seqs(&even), [6, 4, 2]);
    assert_eq!(even["total"], 3);
    assert_eq!(
        seqs(&get(addr, "/api/v1/messages?after=7").json()),
        [10, 9, 8]
    );
    assert_eq!(
        seqs(&get(addr, "/api/v1/messages?after=2&before=6").json()),
        [5, 4, 3]
    );
    assert_eq!(seqs(&get(addr, "/api/v1/messages?subject=s3").json()), [3]);
    assert_eq!(
        seqs(&get(addr, "/api/v1/messages?subject~=S&limit=2").json()),
        [7, 6]
    );
    for bad in [
        "limit=0",
        "limit=501",
        "before=x",
        "before=99999",
        "rcpt=a@x&bogus=1",
        "header.X-Y=1",
    ] {
        let r = get(addr, &format!("/api/v1/messages?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"]["message"].as_str().unwrap().len() > 5);
    }
}

#[test]
fn a_message_record_its_raw_bytes_and_404_vs_410() {
    let limits = Limits {
        max_messages: 2,
        ..Limits::default()
    };
    let (capture, server) = serve_with(limits, ApiOptions::default());
    let addr = server.local_addr();
    let mut raw = b"From: =?UTF-8?B?w4lsaXNl?= <e@test>\r\nTo: b@test\r\nCc: c@test\r\nSubject: =?UTF-8?Q?caf=C3=A9?= ok\r\n\
Message-ID: <x@test>\r\nDate: Sun, 6 Dec 2026 18:00:00 +0000\r\n\r\n8-bit \xe9\xff\x01 and a lone LF\n here\r\n"
        .to_vec();
    raw.extend((1u8..=255).collect::<Vec<_>>());
    insert(
        &capture,
        "1795925106.M42P9Q1",
        "s@test",
        &["r1@test", "R2@Test"],
        &raw,
    );
    let m = get(addr, "/api/v1/messages/1795925106.M42P9Q1").json();
    assert_eq!(m["id"], "1795925106.M42P9Q1");
    assert_eq!(m["seq"], 1);
    assert_eq!(m["size"], raw.len());
    assert!(m["received_at"].as_str().unwrap().ends_with('Z'));
    let e = &m["envelope"];
    assert_eq!(e["mail_from"], "s@test");
    assert_eq!(e["mail_params"], "SIZE=100");
    assert_eq!(e["rcpt_to"], serde_json::json!(["r1@test", "R2@Test"]));
    assert_eq!(e["helo"], "client.test");
    assert_eq!(e["client"], "127.0.0.1:2525");
    assert_eq!(e["tls"], serde_json::Value::Null);
    assert_eq!(e["auth_user"], serde_json::Value::Null);
    let h = &m["headers"];
    assert_eq!(h["subject"], "café ok");
    assert_eq!(h["subject_raw"], "=?UTF-8?Q?caf=C3=A9?= ok");
    assert_eq!(h["to"], "b@test");
    assert_eq!(h["cc"], "c@test");
    assert_eq!(h["message_id"], "<x@test>");
    assert_eq!(h["date"], "Sun, 6 Dec 2026 18:00:00 +0000");

    let r = get(addr, "/api/v1/messages/1795925106.M42P9Q1/raw");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("message/rfc822"));
    assert_eq!(r.body, raw, "byte-exact");
    let head = request(addr, "HEAD", "/api/v1/messages/1795925106.M42P9Q1/raw", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(raw.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    assert_eq!(get(addr, "/api/v1/messages/never").status, 404);
    // Evicted by the message count: 410 with the reason.
    insert(&capture, "m2", "s@test", &["r@test"], &mail("2"));
    insert(&capture, "m3", "s@test", &["r@test"], &mail("3"));
    let r = get(addr, "/api/v1/messages/1795925106.M42P9Q1");
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["gone"]["reason"], "evicted");
    assert_eq!(r.json()["gone"]["seq"], 1);
    // The issue's `evicted_at`: the removal's time under the reason's name, and only it.
    assert_eq!(r.json()["evicted_at"], r.json()["gone"]["at"]);
    assert!(r.json().get("deleted_at").is_none() && r.json().get("expired_at").is_none());
    assert_eq!(
        get(addr, "/api/v1/messages/1795925106.M42P9Q1/raw").status,
        410
    );
    // Deleted: 410 deleted; a second delete is 410 too.
    let r = request(addr, "DELETE", "/api/v1/messages/m2", &[]);
    assert_eq!((r.status, r.json()["deleted"].as_u64()), (200, Some(1)));
    let r = get(addr, "/api/v1/messages/m2");
    assert_eq!(
        (r.status, r.json()["gone"]["reason"].as_str()),
        (410, Some("deleted"))
    );
    assert_eq!(r.json()["deleted_at"], r.json()["gone"]["at"]);
    assert_eq!(
        request(addr, "DELETE", "/api/v1/messages/m2", &[]).status,
        410
    );
    assert_eq!(get(addr, "/api/v1/messages/m3?x=1").status, 400);
}

#[test]
fn deletes_all_or_by_filter() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    for n in 1..=6 {
        let rcpt = if n <= 2 { "a@test" } else { "b@test" };
        insert(
            &capture,
            &format!("m{n}"),
            "s@test",
            &[rcpt],
            &mail(&format!("s{n}")),
        );
    }
    let r = request(addr, "DELETE", "/api/v1/messages?rcpt=a@test", &[]);
    assert_eq!(r.json()["deleted"], 2);
    let r = request(addr, "DELETE", "/api/v1/messages?subject=s3", &[]);
    assert_eq!(r.json()["deleted"], 1);
    assert_eq!(
        request(addr, "DELETE", "/api/v1/messages?limit=3", &[]).status,
        400
    );
    let r = request(addr, "DELETE", "/api/v1/messages", &[]);
    assert_eq!(r.json()["deleted"], 3);
    assert_eq!(get(addr, "/api/v1/messages").json()["total"], 0);
}

#[test]
fn path_tricks_are_404_and_never_reach_outside() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "m1", "s@test", &["r@test"], &mail("1"));
    let long = "a".repeat(64);
    let tricks = [
        "/api/v1/messages/..",
        "/api/v1/messages/../cursor",
        "/api/v1/messages/..%2f..%2fetc%2fpasswd",
        "/api/v1/messages/m1%2fraw",
        "/api/v1/messages/%00",
        "/api/v1/messages/m1/raw/",
        "/api/v1/messages//raw",
        "/api/v1/messages/%6d1",
        "//api/v1/messages/m1",
    ];
    for path in tricks
        .iter()
        .copied()
        .chain([format!("/api/v1/messages/{long}").as_str()])
    {
        let r = get(addr, path);
        assert_eq!(r.status, 404, "{path}");
    }
    // Still serving.
    assert_eq!(get(addr, "/api/v1/messages/m1").status, 200);
}

#[test]
fn the_token_guards_the_api_and_not_health() {
    let (_capture, server) = serve(ApiOptions {
        token: Some("s3cret".into()),
        cors_origin: None,
        ..ApiOptions::default()
    });
    let addr = server.local_addr();
    for headers in [
        &[][..],
        &["Authorization: Bearer wrong"],
        &["Authorization: Bearer s3cre"],
        &["Authorization: s3cret"],
    ] {
        let r = request(addr, "GET", "/api/v1/cursor", headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let r = request(
        addr,
        "GET",
        "/api/v1/cursor",
        &["Authorization: Bearer s3cret"],
    );
    assert_eq!(r.status, 200);
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/readyz").status, 200);
}

#[test]
fn cors_names_exactly_the_origin_given_and_answers_preflight() {
    let (_capture, server) = serve(ApiOptions {
        token: Some("t".into()),
        cors_origin: Some("http://localhost:3000".into()),
        ..ApiOptions::default()
    });
    let addr = server.local_addr();
    let r = request(
        addr,
        "GET",
        "/api/v1/cursor",
        &["Authorization: Bearer t", "Origin: http://localhost:3000"],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let r = request(
        addr,
        "OPTIONS",
        "/api/v1/messages",
        &[
            "Origin: http://localhost:3000",
            "Access-Control-Request-Method: DELETE",
        ],
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("DELETE"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
}

#[test]
fn an_oversized_head_and_a_slowloris_sender_are_refused_and_the_api_goes_on() {
    let (_capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    // A request head past the bound: refused with 431 or the connection closed.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let big = format!(
        "GET /api/v1/cursor HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    let _ = stream.write_all(big.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    // A head that never ends: closed by the server's header deadline (the read ends).
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(WAIT)).unwrap();
    slow.write_all(b"GET /api/v1/cursor HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(get(addr, "/api/v1/cursor").status, 200);
}

/// Every change from another origin is refused (`403`), not only a POST: a DELETE of mail
/// too (a browser would preflight it, but the server does not rely on that). Reads pass,
/// the API's own origin passes, and a client that sends no Origin passes.
#[test]
fn changes_from_another_origin_are_refused_on_every_route() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "m1", "s@test", &["csrf@test"], &mail("x"));
    let evil = "Origin: http://evil.example";
    for (method, path) in [
        ("DELETE", "/api/v1/messages?rcpt=csrf@test"),
        ("DELETE", "/api/v1/messages"),
        ("DELETE", "/api/v1/messages/m1"),
        ("POST", "/api/v1/mailboxes"),
        ("PUT", "/api/v1/faults"),
    ] {
        let r = request(addr, method, path, &[evil]);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    assert_eq!(capture.count(&fastsmtpd::capture::Filter::all()), 1);
    assert_eq!(
        request(addr, "GET", "/api/v1/messages", &[evil]).status,
        200
    );
    // The test client asks for `Host: localhost`: its own origin is http://localhost.
    let r = request(
        addr,
        "DELETE",
        "/api/v1/messages/m1",
        &["Origin: http://localhost"],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(capture.count(&fastsmtpd::capture::Filter::all()), 0);
}
