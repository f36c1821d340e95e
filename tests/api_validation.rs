//! Request validation gaps a reviewer found (issue 18, finding 10), each answered with its
//! status and a clear message over real sockets: a JSON key given twice, a fault rule whose
//! selector can never hold, a domain route that is not a domain, a seeded `helo=` longer than
//! SMTP takes, and mailbox routes that answer `HEAD` as `GET`; and the plus-tag rule for a
//! tag followed by more tag (`x+ID+retry@host` joins mailbox ID).

mod api_client;
mod util;

use api_client::{request, request_with_body, serve, Response};
use fastsmtpd::api::ApiOptions;
use serde_json::Value;

const JSON: &str = "Content-Type: application/json";

fn message(response: &Response) -> String {
    response.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[track_caller]
fn refused(response: &Response, status: u16, says: &str) {
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(message(response).contains(says), "{}", message(response));
}

#[test]
fn a_json_key_given_twice_is_a_400_naming_it() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    let post =
        |body: &str| request_with_body(api, "POST", "/api/v1/mailboxes", &[JSON], body.as_bytes());
    refused(
        &post(r#"{"ttl": "1s", "ttl": "7d"}"#),
        400,
        "\"ttl\" is given twice",
    );
    refused(
        &post(r#"{"route": {"type": "rcpt", "address": "a@x", "address": "b@x"}}"#),
        400,
        "\"address\" is given twice",
    );
    let put =
        |path: &str, body: &str| request_with_body(api, "PUT", path, &[JSON], body.as_bytes());
    refused(
        &put(
            "/api/v1/faults",
            r#"{"rules": ["rcpt reply=550 5.1.1 No"], "rules": []}"#,
        ),
        400,
        "\"rules\" is given twice",
    );
    // Nothing changed.
    let rules = request(api, "GET", "/api/v1/faults", &[]).json();
    assert_eq!(rules["runtime"], Value::Array(vec![]));
    let made = post("{}");
    assert_eq!(made.status, 201);
    let id = made.json()["id"].as_str().unwrap().to_owned();
    refused(
        &put(
            &format!("/api/v1/mailboxes/{id}/faults"),
            r#"{"rules": [], "rules": ["rcpt reply=550 5.1.1 No"]}"#,
        ),
        400,
        "given twice",
    );
}

#[test]
fn a_rule_whose_selector_can_never_hold_is_refused_at_run_time_as_at_start() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    for (rule, says) in [
        ("helo from=a@x reply=550 5.7.1 No", "helo has no sender"),
        ("ehlo to=*@x disconnect", "ehlo has no sender"),
        ("mail to=*@x reply=550 5.7.1 No", "mail has no recipient"),
    ] {
        let body = serde_json::json!({ "rules": [rule] }).to_string();
        let put = request_with_body(api, "PUT", "/api/v1/faults", &[JSON], body.as_bytes());
        refused(&put, 400, says);
    }
    // The same rules refused at startup.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "helo from=a@x reply=550 5.7.1 No",
    ]);
    let start = util::process::run_bounded(command, None, util::process::CHILD_LIMIT);
    assert_eq!(start.status.code(), Some(2), "{}", start.dump());
    assert!(
        start.stderr.contains("helo has no sender"),
        "{}",
        start.dump()
    );
}

#[test]
fn a_domain_route_must_be_a_domain() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    for domain in ["*", "*.example.com", "", "a..b", ".example.com", "a b"] {
        let body = serde_json::json!({"route": {"type": "domain", "domain": domain}}).to_string();
        let made = request_with_body(api, "POST", "/api/v1/mailboxes", &[JSON], body.as_bytes());
        refused(&made, 400, "route.domain");
    }
    let body = r#"{"route": {"type": "domain", "domain": "tenant.example"}}"#;
    let made = request_with_body(api, "POST", "/api/v1/mailboxes", &[JSON], body.as_bytes());
    assert_eq!(made.status, 201);
}

#[test]
fn a_seeded_helo_is_bounded_as_smtp_bounds_helo() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    // The default command line is 2048 octets: `HELO ` + the name + CR LF.
    let seed = |helo: usize| {
        request_with_body(
            api,
            "POST",
            &format!(
                "/api/v1/messages?from=a@x&rcpt=b@y&helo={}",
                "h".repeat(helo)
            ),
            &["Content-Type: message/rfc822"],
            b"Subject: s\r\n\r\nbody\r\n",
        )
    };
    assert_eq!(seed(2041).status, 201);
    refused(&seed(2042), 400, "helo=");
}

#[test]
fn a_plus_tag_followed_by_more_tag_joins_the_mailbox_of_its_first_segment() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    let made = request_with_body(api, "POST", "/api/v1/mailboxes", &[JSON], b"{}");
    let id = made.json()["id"].as_str().unwrap().to_owned();
    for (rcpt, joins) in [
        (format!("x%2B{id}%2Bretry@host.test"), true),
        (format!("x%2Bretry%2B{id}@host.test"), false),
    ] {
        let seeded = request_with_body(
            api,
            "POST",
            &format!("/api/v1/messages?from=a@x&rcpt={rcpt}"),
            &["Content-Type: message/rfc822"],
            b"Subject: s\r\n\r\nbody\r\n",
        );
        assert_eq!(
            seeded.status,
            201,
            "{}",
            String::from_utf8_lossy(&seeded.body)
        );
        let listed = request(api, "GET", &format!("/api/v1/messages?mailbox={id}"), &[]).json();
        let seq = seeded.json()["seq"].clone();
        let has = listed["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["seq"] == seq);
        assert_eq!(has, joins, "{rcpt}: {listed}");
    }
}

#[test]
fn mailbox_routes_answer_head_as_get_without_a_body() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = server.local_addr();
    let made = request_with_body(api, "POST", "/api/v1/mailboxes", &[JSON], b"{}");
    let id = made.json()["id"].as_str().unwrap().to_owned();
    for path in [
        "/api/v1/mailboxes".to_owned(),
        format!("/api/v1/mailboxes/{id}"),
        format!("/api/v1/mailboxes/{id}/faults"),
    ] {
        let get = request(api, "GET", &path, &[]);
        let head = request(api, "HEAD", &path, &[]);
        assert_eq!((get.status, head.status), (200, 200), "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str()),
            "{path}"
        );
    }
    let gone = request(api, "HEAD", "/api/v1/mailboxes/000000000000", &[]);
    assert_eq!((gone.status, gone.body.len()), (404, 0));
}
