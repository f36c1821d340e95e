//! `GET /api/v1/messages/{id}/transcript` over real sockets: the real binary with `--api`
//! and `--auth any`, a client that says EHLO, authenticates, pipelines MAIL/RCPT/DATA and
//! sends two messages on one connection; each message's transcript reads as the dialogue
//! went (content and AUTH secrets never shown), as text and as JSON; a seeded message has
//! none (`404` saying why).

mod api_client;
mod util;

use api_client::*;
use std::net::SocketAddr;

/// The transcript lines of message `id` (text form).
fn transcript(api: SocketAddr, id: &str) -> Vec<String> {
    let r = get(api, &format!("/api/v1/messages/{id}/transcript"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    String::from_utf8(r.body)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_messages_on_one_connection_each_read_their_dialogue() {
    let (_child, smtp, api) =
        util::start_binary_with_api(1, "127.0.0.1", &["--auth", "any", "--auth-plaintext"]);
    let api: SocketAddr = api.parse().unwrap();
    let mut client = util::Client::connect(smtp);
    let greeting = client.read_reply();
    client.send("EHLO client.test\r\n");
    let ehlo = client.read_reply();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    // AUTH PLAIN "\0alice\0s3cret".
    client.send("AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n");
    assert!(client.read_reply().starts_with("235 "));
    // Pipelined: MAIL, RCPT, RCPT, DATA in one write, then the content.
    client.send(
        "MAIL FROM:<app@test> SIZE=40\r\nRCPT TO:<alice@test>\r\nRCPT TO:<bob@test>\r\nDATA\r\n",
    );
    client.expect(util::MAIL_OK);
    client.expect(util::RCPT_OK);
    client.expect(util::RCPT_OK);
    client.expect(util::GO_AHEAD);
    let first = client.roundtrip("Subject: one\r\n\r\nsecret body\r\n.\r\n", util::QUEUED);
    client.roundtrip("NOOP\r\n", "250 2.0.0 Ok\r\n");
    client.send("MAIL FROM:<app@test>\r\nRCPT TO:<carol@test>\r\nDATA\r\n");
    client.expect(util::MAIL_OK);
    client.expect(util::RCPT_OK);
    client.expect(util::GO_AHEAD);
    let second = client.roundtrip("Subject: two\r\n\r\nx\r\n.\r\n", util::QUEUED);

    let greeting = format!("S: {}", greeting.trim_end());
    let ehlo: Vec<String> = ehlo.lines().map(|l| format!("S: {l}")).collect();
    let mut preamble = vec![greeting, "C: EHLO client.test".into()];
    preamble.extend(ehlo);
    preamble.push("C: AUTH PLAIN ***".into());
    preamble.push("S: 235 2.7.0 Authentication successful".into());

    let mut want = preamble.clone();
    want.extend(
        [
            "C: MAIL FROM:<app@test> SIZE=40",
            "S: 250 2.1.0 Ok",
            "C: RCPT TO:<alice@test>",
            "S: 250 2.1.5 Ok",
            "C: RCPT TO:<bob@test>",
            "S: 250 2.1.5 Ok",
            "C: DATA",
            "S: 354 End data with <CR><LF>.<CR><LF>",
            "C: [content: 29 octets]",
        ]
        .map(String::from),
    );
    want.push(format!("S: 250 2.0.0 Ok: queued as {}", first[0]));
    assert_eq!(transcript(api, &first[0]), want);

    let mut want = preamble;
    want.extend(
        [
            "C: MAIL FROM:<app@test>",
            "S: 250 2.1.0 Ok",
            "C: RCPT TO:<carol@test>",
            "S: 250 2.1.5 Ok",
            "C: DATA",
            "S: 354 End data with <CR><LF>.<CR><LF>",
            "C: [content: 19 octets]",
        ]
        .map(String::from),
    );
    want.push(format!("S: 250 2.0.0 Ok: queued as {}", second[0]));
    let text = transcript(api, &second[0]);
    assert_eq!(text, want);
    assert!(
        !text.join("\n").contains("AGFsaWNl"),
        "the AUTH secret shows"
    );
    assert!(!text.join("\n").contains("secret body"), "content shows");

    // JSON: the same lines, each with its direction and time.
    let r = get(
        api,
        &format!("/api/v1/messages/{}/transcript?format=json", second[0]),
    );
    assert_eq!(r.status, 200);
    let lines = r.json();
    let lines = lines.as_array().unwrap();
    assert_eq!(lines.len(), text.len());
    for (json, text) in lines.iter().zip(&text) {
        assert_eq!(
            format!(
                "{}: {}",
                json["dir"].as_str().unwrap(),
                json["line"].as_str().unwrap()
            ),
            *text
        );
        assert!(json["at_ms"].as_u64().is_some());
    }
    assert_eq!(lines[0]["at_ms"], 0);

    // A seeded message has none; a bad format is 400.
    let seeded = request_with_body(
        api,
        "POST",
        "/api/v1/messages?from=a@test&rcpt=b@test",
        &["Content-Type: message/rfc822"],
        &mail("seeded"),
    );
    assert_eq!(seeded.status, 201);
    let id = seeded.json()["id"].as_str().unwrap().to_owned();
    let r = get(api, &format!("/api/v1/messages/{id}/transcript"));
    assert_eq!(r.status, 404);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("seeded over HTTP"), "{message}");
    let r = get(
        api,
        &format!("/api/v1/messages/{}/transcript?format=xml", first[0]),
    );
    assert_eq!(r.status, 400);
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
}
