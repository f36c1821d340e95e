//! Per-test mailboxes over real sockets, against the real binary: create one, send to its
//! address over SMTP, `await mailbox=`, list, search, delete (`410` after), expiry (`410`),
//! two mailboxes that never see each other's mail, bad input, eight workers each with its
//! own mailbox doing send-and-await round trips in parallel without cross-talk, 10 000
//! mailboxes listed a page at a time and deleted in one request, and mailboxes charged to
//! the capture budget (`507` under `--on-full tempfail`).

mod api_client;
mod util;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use util::Client;

/// A response: status and JSON body (`Value::Null` if not JSON).
struct Answer {
    status: u16,
    body: Value,
}

/// Sends `method path` with `body` (JSON if not empty) over a fresh connection.
fn call(api: &str, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A refused body may be answered before it is all sent.
    let _ = stream.write_all(body);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut rest = bytes[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut body = Vec::new();
        let mut at = &rest[..];
        loop {
            let line = at.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&at[..line]).unwrap(), 16).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&at[line + 2..line + 2 + size]);
            at = &at[line + 2 + size + 2..];
        }
        rest = body;
    }
    Answer {
        status,
        body: serde_json::from_slice(&rest).unwrap_or(Value::Null),
    }
}

fn get(api: &str, path: &str) -> Answer {
    call(api, "GET", path, b"")
}

fn create(api: &str, body: Value) -> Value {
    let answer = call(
        api,
        "POST",
        "/api/v1/mailboxes",
        body.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body
}

/// Sends one message to `to` with `subject` over an open session.
fn send(client: &mut Client, to: &str, subject: &str) {
    say(client, "MAIL FROM:<sender@test>\r\n", "250");
    say(client, &format!("RCPT TO:<{to}>\r\n"), "250");
    say(client, "DATA\r\n", "354");
    say(
        client,
        &format!("From: sender@test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n.\r\n"),
        "250",
    );
}

/// Sends `command` and expects a reply with `code`.
#[track_caller]
fn say(client: &mut Client, command: &str, code: &str) {
    client.send(command);
    let reply = client.read_reply();
    assert!(reply.starts_with(code), "{command:?}: {reply}");
}

fn session(smtp: SocketAddr) -> Client {
    let mut client = Client::connect(smtp);
    assert!(client.read_reply().starts_with("220"));
    say(&mut client, "EHLO client.test\r\n", "250");
    client
}

fn subjects(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn create_send_await_read_and_delete_a_mailbox() {
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let mailbox = create(&api, json!({"ttl": "10m", "label": "signup test"}));
    let id = mailbox["id"].as_str().unwrap().to_owned();
    let address = mailbox["address"].as_str().unwrap().to_owned();
    assert_eq!(address, format!("test+{id}@mx.test"));
    assert_eq!(mailbox["route"], json!({"type": "plus_tag"}));
    assert_eq!(
        (mailbox["count"].as_u64(), mailbox["label"].as_str()),
        (Some(0), Some("signup test"))
    );
    assert_eq!(
        mailbox["links"]["await"],
        format!("/api/v1/await?mailbox={id}")
    );

    let cursor = get(&api, "/api/v1/cursor").body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut client = session(smtp);
    send(&mut client, "someone@elsewhere.test", "not mine");
    // The tag matches ASCII case-insensitively, any user, any domain.
    send(
        &mut client,
        &format!("alice+{}@Other.Test", id.to_uppercase()),
        "welcome",
    );
    let found = get(
        &api,
        &format!("/api/v1/await?mailbox={id}&after={cursor}&timeout=60s"),
    );
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(subjects(&found.body), ["welcome"]);
    assert_eq!(found.body["messages"][0]["mailboxes"], json!([id]));

    let one = get(&api, &format!("/api/v1/mailboxes/{id}"));
    assert_eq!((one.status, one.body["count"].as_u64()), (200, Some(1)));
    let all = get(&api, "/api/v1/mailboxes").body;
    assert_eq!(all["mailboxes"].as_array().unwrap().len(), 1);
    let list = get(&api, &format!("/api/v1/messages?mailbox={id}")).body;
    assert_eq!(
        (subjects(&list), list["total"].as_u64()),
        (vec!["welcome".to_owned()], Some(1))
    );
    let search = get(&api, &format!("/api/v1/search?q=mailbox:{id}")).body;
    assert_eq!(subjects(&search), ["welcome"]);
    let message_id = list["messages"][0]["id"].as_str().unwrap();
    let whole = get(&api, &format!("/api/v1/messages/{message_id}")).body;
    assert_eq!(whole["mailboxes"], json!([id]));

    let deleted = call(&api, "DELETE", &format!("/api/v1/mailboxes/{id}"), b"");
    assert_eq!((deleted.status, deleted.body), (200, json!({"deleted": 1})));
    assert_eq!(
        get(&api, &format!("/api/v1/messages/{message_id}")).status,
        410
    );
    assert_eq!(
        get(&api, "/api/v1/messages").body["total"],
        1,
        "the other mail stays"
    );
    for path in [
        format!("/api/v1/mailboxes/{id}"),
        format!("/api/v1/await?mailbox={id}&timeout=1s"),
        format!("/api/v1/messages?mailbox={id}"),
        format!("/api/v1/search?q=mailbox:{id}"),
    ] {
        let gone = get(&api, &path);
        assert_eq!(gone.status, 410, "{path}: {}", gone.body);
        assert_eq!(gone.body["mailbox"], id.as_str());
        assert!(gone.body["deleted_at"].is_string(), "{}", gone.body);
    }
    assert_eq!(
        call(
            &api,
            "DELETE",
            &format!("/api/v1/messages?mailbox={id}"),
            b""
        )
        .status,
        410
    );
    for path in [
        "/api/v1/mailboxes/000000000000".to_owned(),
        "/api/v1/mailboxes/not-an-id".to_owned(),
        "/api/v1/messages?mailbox=000000000000".to_owned(),
        "/api/v1/await?mailbox=zz&timeout=1s".to_owned(),
    ] {
        assert_eq!(get(&api, &path).status, 404, "{path}");
    }
}

#[test]
fn two_mailboxes_never_see_each_others_mail_and_shared_mail_is_kept_once() {
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let a = create(&api, json!({}));
    let b = create(
        &api,
        json!({"route": {"type": "rcpt", "address": "Bob@Team.test"}}),
    );
    let c = create(
        &api,
        json!({"route": {"type": "domain", "domain": "tenant.test"}}),
    );
    assert_eq!(b["address"], "Bob@Team.test");
    assert_eq!(c["address"], "test@tenant.test");
    let (a_id, b_id, c_id) = (
        a["id"].as_str().unwrap(),
        b["id"].as_str().unwrap(),
        c["id"].as_str().unwrap(),
    );
    let mut client = session(smtp);
    send(&mut client, a["address"].as_str().unwrap(), "for a");
    send(&mut client, "Bob@team.TEST", "for b");
    send(&mut client, "bob@team.test", "for nobody");
    send(&mut client, "anyone@tenant.test", "for c");
    // One message to a and b: kept once, in both.
    say(&mut client, "MAIL FROM:<sender@test>\r\n", "250");
    let to_a = format!("RCPT TO:<{}>\r\n", a["address"].as_str().unwrap());
    say(&mut client, &to_a, "250");
    say(&mut client, "RCPT TO:<Bob@Team.test>\r\n", "250");
    say(&mut client, "DATA\r\n", "354");
    say(&mut client, "Subject: for both\r\n\r\nx\r\n.\r\n", "250");
    let of = |id: &str| {
        let mut s = subjects(&get(&api, &format!("/api/v1/messages?mailbox={id}")).body);
        s.sort();
        s
    };
    assert_eq!(of(a_id), ["for a", "for both"]);
    assert_eq!(of(b_id), ["for b", "for both"]);
    assert_eq!(of(c_id), ["for c"]);
    assert_eq!(get(&api, "/api/v1/messages").body["total"], 5);
    // Deleting a keeps the shared message (it is b's too).
    let deleted = call(&api, "DELETE", &format!("/api/v1/mailboxes/{a_id}"), b"");
    assert_eq!(deleted.body, json!({"deleted": 1}));
    assert_eq!(of(b_id), ["for b", "for both"]);
    let counts: Vec<u64> = get(&api, "/api/v1/mailboxes").body["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["count"].as_u64().unwrap())
        .collect();
    // Newest first: c, then b.
    assert_eq!(counts, [1, 2]);
    // Deleting by mailbox through /messages deletes what the mailbox holds.
    let by_filter = call(
        &api,
        "DELETE",
        &format!("/api/v1/messages?mailbox={c_id}"),
        b"",
    );
    assert_eq!(by_filter.body, json!({"deleted": 1}));
}

#[test]
fn an_event_stream_by_mailbox_carries_only_its_mail() {
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let m = create(&api, json!({}));
    let id = m["id"].as_str().unwrap();
    let addr: SocketAddr = api.parse().unwrap();
    let mut events = api_client::Events::open(addr, &format!("/api/v1/events?mailbox={id}"), &[]);
    assert_eq!(events.status, 200);
    let mut client = session(smtp);
    send(&mut client, "other@test", "not for the stream");
    send(
        &mut client,
        m["address"].as_str().unwrap(),
        "for the stream",
    );
    let event = events.next();
    assert_eq!(event.event, "message");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["subject"], "for the stream");
    assert_eq!(get(&api, "/api/v1/events?mailbox=000000000000").status, 404);
}

#[test]
fn an_expired_mailbox_answers_gone() {
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let m = create(&api, json!({"ttl": 5}));
    let id = m["id"].as_str().unwrap();
    let address = m["address"].as_str().unwrap();
    let mut client = session(smtp);
    send(&mut client, address, "short-lived");
    // Found by recipient, not through the mailbox (which may end first on a slow machine).
    let found = get(
        &api,
        &format!(
            "/api/v1/await?rcpt={}&timeout=60s",
            address.replace('+', "%2B")
        ),
    );
    assert_eq!(found.status, 200, "{}", found.body);
    let message = found.body["messages"][0].clone();
    // Wait until it has expired (no assertion on how long that takes).
    let start = Instant::now();
    let gone = loop {
        let answer = get(&api, &format!("/api/v1/mailboxes/{id}"));
        if answer.status != 200 {
            break answer;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "never expired");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert!(gone.body["expired_at"].is_string(), "{}", gone.body);
    assert_eq!(
        get(&api, &format!("/api/v1/await?mailbox={id}&timeout=1s")).status,
        410
    );
    assert_eq!(
        get(&api, "/api/v1/mailboxes").body,
        json!({"mailboxes": [], "next": null, "total": 0})
    );
    // Its mail went with it, named by why: `mailbox_expired`, at `expired_at`.
    if message["mailboxes"] == json!([id]) {
        let path = format!("/api/v1/messages/{}", message["id"].as_str().unwrap());
        let gone = get(&api, &path);
        assert_eq!(gone.status, 410, "{}", gone.body);
        assert_eq!(
            gone.body["gone"]["reason"], "mailbox_expired",
            "{}",
            gone.body
        );
        assert!(gone.body["expired_at"].is_string(), "{}", gone.body);
    }
}

#[test]
fn bad_creations_are_400s_naming_the_field() {
    let (_child, _smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    for (body, field) in [
        ("{", "JSON"),
        ("[]", "object"),
        (r#"{"ttl": "forever"}"#, "ttl"),
        (r#"{"ttl": "8d"}"#, "ttl"),
        (r#"{"colour": 1}"#, "colour"),
        (r#"{"route": {"type": "smoke"}}"#, "route.type"),
        (
            r#"{"route": {"type": "rcpt", "address": "nobody"}}"#,
            "route.address",
        ),
        (
            r#"{"route": {"type": "header", "name": "X-Run"}}"#,
            "route.value",
        ),
    ] {
        let answer = call(&api, "POST", "/api/v1/mailboxes", body.as_bytes());
        assert_eq!(answer.status, 400, "{body}");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    let big = vec![b' '; 20 << 10];
    assert_eq!(call(&api, "POST", "/api/v1/mailboxes", &big).status, 413);
    assert_eq!(call(&api, "PUT", "/api/v1/mailboxes", b"").status, 405);
    assert_eq!(call(&api, "POST", "/api/v1/mailboxes/abc", b"").status, 405);
    assert_eq!(get(&api, "/api/v1/mailboxes?x=1").status, 400);
    // An empty body is the defaults.
    let made = call(&api, "POST", "/api/v1/mailboxes", b"");
    assert_eq!(
        (made.status, &made.body["route"]["type"]),
        (201, &json!("plus_tag"))
    );
    // A page on another origin (even on this machine) cannot create mailboxes: a form POST
    // needs no preflight, so the Origin is checked. The API's own origin (the web UI) may.
    let post_from = |origin: &str| {
        let mut stream = TcpStream::connect(&api).unwrap();
        let head = format!(
            "POST /api/v1/mailboxes HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\
             Origin: {origin}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes[..12]).into_owned()
    };
    assert_eq!(post_from("http://127.0.0.1:39998"), "HTTP/1.1 403");
    assert_eq!(post_from("null"), "HTTP/1.1 403");
    assert_eq!(post_from(&format!("http://{api}")), "HTTP/1.1 201");
}

#[test]
fn eight_workers_with_their_own_mailboxes_never_see_each_others_mail() {
    let (_child, smtp, api) = util::start_binary_with_api(2, "127.0.0.1", &[]);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let api = api.clone();
            std::thread::spawn(move || {
                let mailbox = create(&api, json!({"label": format!("worker {w}")}));
                let id = mailbox["id"].as_str().unwrap().to_owned();
                let address = mailbox["address"].as_str().unwrap().to_owned();
                let mut client = session(smtp);
                let mut cursor = get(&api, "/api/v1/cursor").body["cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                for round in 0..50 {
                    let subject = format!("w{w} r{round}");
                    send(&mut client, &address, &subject);
                    let found = get(
                        &api,
                        &format!("/api/v1/await?mailbox={id}&after={cursor}&timeout=60s"),
                    );
                    assert_eq!(found.status, 200, "{}", found.body);
                    assert_eq!(subjects(&found.body), [subject]);
                    cursor = found.body["messages"][0]["seq"].to_string();
                }
                let list = get(&api, &format!("/api/v1/messages?mailbox={id}&limit=500")).body;
                assert_eq!(list["total"], 50);
                assert!(subjects(&list)
                    .iter()
                    .all(|s| s.starts_with(&format!("w{w} "))));
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(get(&api, "/api/v1/messages").body["total"], 400);
}

/// The `mailboxes` of a list answer, as ids.
fn ids(answer: &Value) -> Vec<String> {
    answer["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The octets of the JSON body of `GET path`.
fn body_len(api: &str, path: &str) -> usize {
    serde_json::to_vec(&get(api, path).body).unwrap().len()
}

#[test]
fn ten_thousand_mailboxes_are_listed_a_page_at_a_time_and_deleted_in_one_request() {
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    const MAILBOXES: usize = 10_000; // the default bound
    for n in 0..MAILBOXES {
        let label = if n % 100 == 0 {
            format!("nightly {n}")
        } else {
            format!("run {n}")
        };
        create(&api, json!({"label": label, "ttl": "1h"}));
    }
    assert_eq!(create_status(&api, json!({})), 429);
    // The first page: 50, newest first, with the total.
    let first = get(&api, "/api/v1/mailboxes").body;
    assert_eq!(ids(&first).len(), 50);
    assert_eq!(first["total"], MAILBOXES);
    assert_eq!(
        first["mailboxes"][0]["label"],
        format!("run {}", MAILBOXES - 1)
    );
    // Every page of 500: each mailbox once, and no page bigger than one request's worth.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut all_bytes = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/mailboxes?limit=500&before={c}"),
            None => "/api/v1/mailboxes?limit=500".to_owned(),
        };
        let page = get(&api, &path).body;
        all_bytes += serde_json::to_vec(&page["mailboxes"]).unwrap().len();
        pages += 1;
        for id in ids(&page) {
            assert!(seen.insert(id), "a mailbox on two pages");
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (MAILBOXES, 20));
    let first_page = body_len(&api, "/api/v1/mailboxes");
    println!(
        "{MAILBOXES} mailboxes: the default page is {first_page} octets; all of them (the \
         unpaged list before) {all_bytes} octets"
    );
    assert!(first_page * 100 < all_bytes, "{first_page} vs {all_bytes}");
    assert_eq!(get(&api, "/api/v1/mailboxes?limit=501").status, 400);
    // Filters: a label exactly, or text in the label, id or address.
    let nightly = get(&api, "/api/v1/mailboxes?q=NIGHTLY&limit=500").body;
    assert_eq!(nightly["total"], 100);
    let one = get(&api, "/api/v1/mailboxes?label=nightly%20200").body;
    assert_eq!((one["total"].as_u64(), ids(&one).len()), (Some(1), 1));
    // Mail in one mailbox goes with it; the stats show the mailboxes' share of the budget.
    let address = one["mailboxes"][0]["address"].as_str().unwrap().to_owned();
    let mut client = session(smtp);
    send(&mut client, &address, "in a nightly box");
    let stats = get(&api, "/api/v1/stats").body;
    assert_eq!(stats["mailboxes"], MAILBOXES);
    let share = stats["mailbox_bytes"].as_u64().unwrap();
    assert!(share >= 420 * MAILBOXES as u64, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() >= share, "{stats}");
    let deleted = call(&api, "DELETE", "/api/v1/mailboxes?label=nightly%20200", b"");
    assert_eq!(deleted.body, json!({"deleted": 1, "mailboxes": 1}));
    assert_eq!(
        call(&api, "DELETE", "/api/v1/mailboxes?q=x", b"").status,
        400
    );
    let deleted = call(&api, "DELETE", "/api/v1/mailboxes", b"");
    assert_eq!(
        deleted.body,
        json!({"deleted": 0, "mailboxes": MAILBOXES - 1})
    );
    let stats = get(&api, "/api/v1/stats").body;
    assert_eq!(
        (stats["mailboxes"].as_u64(), stats["mailbox_bytes"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(get(&api, "/api/v1/mailboxes").body["total"], 0);
    // A page on another origin cannot delete them (nor can it read the answer).
    create(&api, json!({}));
    let mut stream = TcpStream::connect(&api).unwrap();
    let head = format!(
        "DELETE /api/v1/mailboxes HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\
         Origin: http://127.0.0.1:39998\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    assert_eq!(&bytes[..12], b"HTTP/1.1 403");
    assert_eq!(get(&api, "/api/v1/mailboxes").body["total"], 1);
}

/// The status of a creation.
fn create_status(api: &str, body: Value) -> u16 {
    call(
        api,
        "POST",
        "/api/v1/mailboxes",
        body.to_string().as_bytes(),
    )
    .status
}

#[test]
fn mailboxes_are_charged_to_the_budget_and_refused_with_507_when_mail_is_kept_first() {
    let (_child, smtp, api) = util::start_binary_with_api(
        1,
        "127.0.0.1",
        &["--capture-memory", "64KiB", "--on-full", "tempfail"],
    );
    let mut client = session(smtp);
    send(&mut client, "someone@test", "kept");
    let mut made = 0;
    let refused = loop {
        let answer = call(
            &api,
            "POST",
            "/api/v1/mailboxes",
            json!({"label": "a label"}).to_string().as_bytes(),
        );
        if answer.status != 201 {
            break answer;
        }
        made += 1;
        assert!(made < 1000, "64 KiB never filled");
    };
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("budget"));
    let stats = get(&api, "/api/v1/stats").body;
    let (bytes, budget) = (
        stats["bytes"].as_u64().unwrap(),
        stats["budget_bytes"].as_u64().unwrap(),
    );
    assert!(bytes <= budget, "{stats}");
    assert_eq!(stats["mailboxes"], made);
    assert_eq!(stats["mailbox_bytes"], (420 + 7) * made, "{stats}");
    // The kept message stayed (tempfail keeps mail rather than evicting it).
    assert_eq!(get(&api, "/api/v1/messages").body["total"], 1);
    // Deleting the mailboxes gives their share back: room again.
    call(&api, "DELETE", "/api/v1/mailboxes", b"");
    assert_eq!(create_status(&api, json!({})), 201);
}
