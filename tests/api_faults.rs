//! Runtime fault rules over real sockets (issue 18): `PUT /api/v1/faults` on the real binary
//! makes an SMTP client get the rule's reply, `DELETE` takes it away, a bad rule is a `400`
//! that changes nothing; and scoped plans (`fastsmtpd::fault::Plans::set_scoped`, with a
//! test scope standing in for a mailbox) fault only the mail they cover.

mod api_client;
mod util;

use api_client::{request, request_with_body};
use fastsmtpd::config::ApiSettings;
use fastsmtpd::fault::Scope;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use util::Client;

const JSON: &str = "Content-Type: application/json";
const TEXT: &str = "Content-Type: text/plain; charset=utf-8";

/// `GET /api/v1/faults` as JSON.
fn rules(api: SocketAddr) -> serde_json::Value {
    let response = request(api, "GET", "/api/v1/faults", &[]);
    assert_eq!(response.status, 200);
    response.json()
}

#[test]
fn a_rule_put_at_run_time_faults_the_next_command_and_delete_takes_it_away() {
    let (_child, smtp, api) = util::start_binary_with_api(
        1,
        "127.0.0.1",
        &[
            "--fault",
            "mail from=blocked@test reply=550 5.7.1 Startup says no",
        ],
    );
    let api: SocketAddr = api.parse().unwrap();
    assert_eq!(
        rules(api),
        json!({"startup": ["mail from=blocked@test reply=550 5.7.1 Startup says no"], "runtime": []})
    );
    assert!(Client::rcpt_reply(smtp, "x@bad.example").starts_with("250 "));
    // A connection open before the change sees it at its next command.
    let mut before = Client::in_transaction(smtp);

    let body = json!({"rules": ["rcpt to=*@bad.example reply=550 5.1.1 No such user"]});
    let response = request_with_body(
        api,
        "PUT",
        "/api/v1/faults",
        &[JSON],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        response.json()["runtime"],
        json!(["rcpt to=*@bad.example reply=550 5.1.1 No such user"])
    );
    assert_eq!(
        Client::rcpt_reply(smtp, "x@bad.example"),
        "550 5.1.1 No such user\r\n"
    );
    assert!(Client::rcpt_reply(smtp, "x@good.example").starts_with("250 "));
    before.send("RCPT TO:<y@bad.example>\r\n");
    assert_eq!(before.read_reply(), "550 5.1.1 No such user\r\n");

    // A bad rule: 400 naming it and why; the set in force is kept.
    let body = json!({"rules": ["rcpt disconnect", "rcpt reply=250 fine"]});
    let response = request_with_body(
        api,
        "PUT",
        "/api/v1/faults",
        &[JSON],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 400);
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with("rules[1] \"rcpt reply=250 fine\": ") && message.contains("4xx or 5xx"),
        "{message}"
    );
    assert_eq!(
        rules(api)["runtime"],
        json!(["rcpt to=*@bad.example reply=550 5.1.1 No such user"])
    );
    assert_eq!(
        Client::rcpt_reply(smtp, "x@bad.example"),
        "550 5.1.1 No such user\r\n"
    );
    for (headers, body, status) in [
        (&[JSON][..], "not json", 400),
        (&[JSON][..], r#"{"rules": "rcpt disconnect"}"#, 400),
        (&[JSON][..], r#"{"rules": [], "extra": 1}"#, 400),
        (&[JSON][..], r#"{"rules": [1]}"#, 400),
        (&[][..], "rcpt disconnect", 415),
        (&[TEXT][..], "rcpt p=2 disconnect", 400),
    ] {
        let response = request_with_body(api, "PUT", "/api/v1/faults", headers, body.as_bytes());
        assert_eq!(response.status, status, "{body}: {:?}", response.json());
    }
    let large = "# a comment line making the body larger than its bound\n".repeat(2000);
    let response = request_with_body(api, "PUT", "/api/v1/faults", &[TEXT], large.as_bytes());
    assert_eq!(response.status, 413);
    assert_eq!(
        Client::rcpt_reply(smtp, "x@bad.example"),
        "550 5.1.1 No such user\r\n"
    );

    // Text, one rule a line: replaces the whole set.
    let text = "# the signup test\nrcpt to=*@slow.example reply=451 4.3.0 Try later\n\n";
    let response = request_with_body(api, "PUT", "/api/v1/faults", &[TEXT], text.as_bytes());
    assert_eq!(response.status, 200);
    assert!(Client::rcpt_reply(smtp, "x@bad.example").starts_with("250 "));
    assert_eq!(
        Client::rcpt_reply(smtp, "x@slow.example"),
        "451 4.3.0 Try later\r\n"
    );

    // DELETE: accepted again; the startup rules stay.
    let response = request(api, "DELETE", "/api/v1/faults", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["runtime"], json!([]));
    assert!(Client::rcpt_reply(smtp, "x@slow.example").starts_with("250 "));
    let mut blocked = Client::connect(smtp);
    assert!(blocked.read_reply().starts_with("220 "));
    blocked.send("EHLO client.test\r\nMAIL FROM:<blocked@test>\r\n");
    assert!(blocked.read_reply().starts_with("250"));
    assert_eq!(blocked.read_reply(), "550 5.7.1 Startup says no\r\n");
}

#[test]
fn the_faults_routes_need_the_token_and_a_loopback_host() {
    let (_child, _smtp, api) =
        util::start_binary_with_api(1, "127.0.0.1", &["--api-token", "s3cret"]);
    let api: SocketAddr = api.parse().unwrap();
    let body = br#"{"rules": ["rcpt disconnect"]}"#;
    let response = request_with_body(api, "PUT", "/api/v1/faults", &[JSON], body);
    assert_eq!(response.status, 401);
    let response = request_with_body(
        api,
        "PUT",
        "/api/v1/faults",
        &[JSON, "Authorization: Bearer s3cret"],
        body,
    );
    assert_eq!(response.status, 200);
    // Another Host on a loopback API: 403 (DNS rebinding), nothing changed.
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"DELETE /api/v1/faults HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let response = request(
        api,
        "GET",
        "/api/v1/faults",
        &["Authorization: Bearer s3cret"],
    );
    assert_eq!(response.json()["runtime"], json!(["rcpt disconnect"]));
}

/// Mail for these recipients (exactly, as a test's mailbox would route them).
#[derive(Debug)]
struct Recipients(&'static [&'static str]);

impl Scope for Recipients {
    fn covers(&self, recipient: &[u8], _auth_user: Option<&[u8]>) -> bool {
        self.0.iter().any(|r| r.as_bytes() == recipient)
    }
}

#[test]
fn a_scoped_plan_faults_only_the_mail_its_scope_covers() {
    let mut config = util::test_config();
    config.api = Some(ApiSettings {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: None,
        cors: None,
    });
    let server = util::TestServer::start(config);
    let handle = server.handle.as_ref().unwrap();
    let plans = handle
        .faults()
        .expect("--api gives every connection a gate");
    let texts = |rules: &[&str]| rules.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    // Two tests' mailboxes, each with its own plan.
    plans
        .set_scoped(
            "box-a",
            Arc::new(Recipients(&["a1@test", "a2@test"])),
            &texts(&["rcpt reply=550 5.1.1 Mailbox A refuses"]),
        )
        .unwrap();
    plans
        .set_scoped(
            "box-b",
            Arc::new(Recipients(&["b@test"])),
            &texts(&["eod reply=554 5.6.0 Mailbox B refuses the message"]),
        )
        .unwrap();
    // A connect rule cannot be scoped (the mailbox is not known there).
    let refused = plans
        .set_scoped(
            "box-c",
            Arc::new(Recipients(&["c@test"])),
            &texts(&["connect disconnect"]),
        )
        .unwrap_err();
    assert!(refused.to_string().contains("only at rcpt"), "{refused}");

    let smtp = server.addr;
    let mut client = Client::in_transaction(smtp);
    for (to, reply) in [
        ("a1@test", "550 5.1.1 Mailbox A refuses\r\n"),
        ("a2@test", "550 5.1.1 Mailbox A refuses\r\n"),
        ("other@test", "250 2.1.5 Ok\r\n"),
        ("b@test", "250 2.1.5 Ok\r\n"),
    ] {
        client.send(format!("RCPT TO:<{to}>\r\n"));
        assert_eq!(client.read_reply(), reply, "{to}");
    }
    // b@test was accepted: its plan refuses the message at its end.
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354 "));
    client.send("Subject: hi\r\n\r\nhello\r\n.\r\n");
    assert_eq!(
        client.read_reply(),
        "554 5.6.0 Mailbox B refuses the message\r\n"
    );
    // Without b@test, the message is taken.
    client.send("MAIL FROM:<app@test>\r\nRCPT TO:<other@test>\r\nDATA\r\n");
    assert!(client.read_reply().starts_with("250 "));
    assert!(client.read_reply().starts_with("250 "));
    assert!(client.read_reply().starts_with("354 "));
    client.send("Subject: hi\r\n\r\nhello\r\n.\r\n");
    assert!(client.read_reply().starts_with("250 "));

    // The runtime set comes after the plans, and is seen over HTTP.
    let api = handle.api_addr().unwrap();
    let body = br#"{"rules": ["rcpt reply=450 4.2.0 Everyone waits"]}"#;
    let response = request_with_body(api, "PUT", "/api/v1/faults", &[JSON], body);
    assert_eq!(response.status, 200);
    assert_eq!(
        Client::rcpt_reply(smtp, "a1@test"),
        "550 5.1.1 Mailbox A refuses\r\n"
    );
    assert_eq!(
        Client::rcpt_reply(smtp, "other@test"),
        "450 4.2.0 Everyone waits\r\n"
    );
    assert_eq!(
        plans.runtime(),
        texts(&["rcpt reply=450 4.2.0 Everyone waits"])
    );
    // Removing a plan frees its mail.
    assert!(plans.clear_scoped("box-a"));
    assert_eq!(
        Client::rcpt_reply(smtp, "a1@test"),
        "450 4.2.0 Everyone waits\r\n"
    );
    assert_eq!(
        plans.scoped("box-b"),
        Some(texts(&[
            "eod reply=554 5.6.0 Mailbox B refuses the message"
        ]))
    );
}
