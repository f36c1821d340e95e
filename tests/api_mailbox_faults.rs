//! Per-mailbox fault plans over real sockets, against the real binary (issue 18):
//! `PUT /api/v1/mailboxes/{id}/faults` faults the mail of that mailbox only (a parallel
//! test's mailbox, and mail in no mailbox, go through), `DELETE` clears the plan, deleting
//! or expiring the mailbox ends it, a bad rule is a `400` that keeps the old plan, a
//! header-routed mailbox is a `409`, an unknown one `404`, an ended one `410`.

mod api_client;
mod util;

use api_client::{request, request_with_body};
use serde_json::{json, Value};
use std::net::SocketAddr;
use util::Client;

const JSON: &str = "Content-Type: application/json";
const TEXT: &str = "Content-Type: text/plain";

/// A server with the API on loopback; its SMTP and API addresses.
fn server() -> (util::process::ChildGuard, SocketAddr, SocketAddr) {
    let (child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    (child, smtp, api.parse().unwrap())
}

/// A new mailbox (`route` as JSON, or plus-tag if `None`): its id and address.
fn mailbox(api: SocketAddr, route: Option<Value>) -> (String, String) {
    let body = match route {
        Some(route) => json!({"route": route}),
        None => json!({}),
    };
    let response = request_with_body(
        api,
        "POST",
        "/api/v1/mailboxes",
        &[JSON],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 201);
    let created = response.json();
    let address = created["address"].as_str().unwrap_or_default().to_owned();
    (created["id"].as_str().unwrap().to_owned(), address)
}

/// `PUT` the plan `rules` (JSON) on mailbox `id`: the response.
fn put(api: SocketAddr, id: &str, rules: &[&str]) -> api_client::Response {
    let body = json!({ "rules": rules }).to_string();
    request_with_body(api, "PUT", &faults(id), &[JSON], body.as_bytes())
}

fn faults(id: &str) -> String {
    format!("/api/v1/mailboxes/{id}/faults")
}

/// `GET` mailbox `id`'s plan's rules.
fn plan(api: SocketAddr, id: &str) -> Value {
    let response = request(api, "GET", &faults(id), &[]);
    assert_eq!(response.status, 200);
    response.json()["rules"].clone()
}

/// Sends a message to `to` (its RCPT accepted): the reply to the end of data.
fn send(smtp: SocketAddr, to: &str) -> String {
    let mut client = Client::in_transaction(smtp);
    client.send(format!("RCPT TO:<{to}>\r\n"));
    assert!(client.read_reply().starts_with("250 "), "RCPT {to}");
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354 "));
    client.send(format!("To: <{to}>\r\nSubject: hi\r\n\r\nbody\r\n.\r\n"));
    client.read_reply()
}

#[test]
fn a_mailboxs_plan_faults_only_its_own_mail_until_cleared_or_the_mailbox_is_deleted() {
    let (_child, smtp, api) = server();
    let (a, a_address) = mailbox(api, None);
    let (b, b_address) = mailbox(api, None);
    assert_eq!(plan(api, &a), json!([]));

    let response = put(api, &a, &["rcpt reply=550 5.1.1 No such user"]);
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        response.json(),
        json!({"rules": ["rcpt reply=550 5.1.1 No such user"]})
    );
    assert_eq!(
        Client::rcpt_reply(smtp, &a_address),
        "550 5.1.1 No such user\r\n"
    );
    assert!(Client::rcpt_reply(smtp, &b_address).starts_with("250 "));
    assert!(Client::rcpt_reply(smtp, "nobody@mx.test").starts_with("250 "));
    // The plan is the mailbox's only: the server-wide set is untouched.
    let server_wide = request(api, "GET", "/api/v1/faults", &[]).json();
    assert_eq!(server_wide["runtime"], json!([]));

    // A text body, one rule a line, at end of data: only B's messages fail.
    let body = "# B's sender must retry\neod reply=451 4.3.0 Try later\n";
    let response = request_with_body(api, "PUT", &faults(&b), &[TEXT], body.as_bytes());
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(send(smtp, &b_address), "451 4.3.0 Try later\r\n");
    assert!(send(smtp, "nobody@mx.test").starts_with("250 "));
    assert_eq!(plan(api, &b), json!(["eod reply=451 4.3.0 Try later"]));

    // DELETE clears A's plan (and answers the plan after: none).
    let response = request(api, "DELETE", &faults(&a), &[]);
    assert_eq!(
        (response.status, response.json()),
        (200, json!({"rules": []}))
    );
    assert!(Client::rcpt_reply(smtp, &a_address).starts_with("250 "));
    assert!(send(smtp, &a_address).starts_with("250 "));

    // Deleting B ends its plan: mail to its address goes through, its faults answer 410.
    let response = request(api, "DELETE", &format!("/api/v1/mailboxes/{b}"), &[]);
    assert_eq!(response.status, 200);
    assert!(send(smtp, &b_address).starts_with("250 "));
    let response = request(api, "GET", &faults(&b), &[]);
    assert_eq!(response.status, 410, "{:?}", response.json());
    assert_eq!(put(api, &b, &["rcpt reply=550 5.1.1 No"]).status, 410);
    assert!(Client::rcpt_reply(smtp, &b_address).starts_with("250 "));
}

#[test]
fn a_bad_rule_is_a_400_naming_it_and_the_old_plan_stays() {
    let (_child, smtp, api) = server();
    let (a, a_address) = mailbox(api, None);
    assert_eq!(put(api, &a, &["rcpt reply=550 5.1.1 No"]).status, 200);
    for (rules, named) in [
        (
            &["rcpt reply=452 4.5.3 Full", "rcpt nonsense=1"][..],
            "rules[1]",
        ),
        // A point where the mailbox is not known yet.
        (&["mail reply=550 5.7.1 No"][..], "rules[0]"),
        (
            &["connect reply=554 5.7.1 No"][..],
            "rcpt, data, eod and bdat",
        ),
    ] {
        let response = put(api, &a, rules);
        assert_eq!(response.status, 400, "{rules:?}");
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(named), "{rules:?}: {message}");
    }
    let response = request_with_body(api, "PUT", &faults(&a), &[JSON], b"{\"rules\": 1}");
    assert_eq!(response.status, 400);
    let response = request_with_body(api, "PUT", &faults(&a), &[], b"rcpt reply=550 5.1.1 x");
    assert_eq!(response.status, 415);
    assert_eq!(plan(api, &a), json!(["rcpt reply=550 5.1.1 No"]));
    assert_eq!(Client::rcpt_reply(smtp, &a_address), "550 5.1.1 No\r\n");
}

#[test]
fn routes_by_rcpt_and_domain_scope_a_plan_and_a_header_route_is_a_409() {
    let (_child, smtp, api) = server();
    let (exact, _) = mailbox(api, Some(json!({"type": "rcpt", "address": "a@x.test"})));
    let (domain, _) = mailbox(api, Some(json!({"type": "domain", "domain": "y.test"})));
    let (header, _) = mailbox(
        api,
        Some(json!({"type": "header", "name": "X-Run", "value": "7"})),
    );
    assert_eq!(
        put(api, &exact, &["rcpt reply=550 5.1.1 Exact"]).status,
        200
    );
    assert_eq!(
        put(api, &domain, &["rcpt reply=550 5.1.1 Domain"]).status,
        200
    );
    // Local part as sent, domain case-insensitive; never a substring.
    assert_eq!(Client::rcpt_reply(smtp, "a@X.test"), "550 5.1.1 Exact\r\n");
    assert!(Client::rcpt_reply(smtp, "ba@x.test").starts_with("250 "));
    assert_eq!(
        Client::rcpt_reply(smtp, "anyone@Y.test"),
        "550 5.1.1 Domain\r\n"
    );
    assert!(Client::rcpt_reply(smtp, "anyone@sub.y.test").starts_with("250 "));

    let response = put(api, &header, &["rcpt reply=550 5.1.1 Never"]);
    assert_eq!(response.status, 409);
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("header"), "{message}");
    assert_eq!(plan(api, &header), json!([]));

    // Unknown: 404 (a well-formed id nobody was given, and a malformed one).
    let unknown = "z".repeat(exact.len());
    assert_eq!(request(api, "GET", &faults(&unknown), &[]).status, 404);
    assert_eq!(request(api, "GET", &faults("../x"), &[]).status, 404);
    // Methods: POST is a 405.
    assert_eq!(request(api, "POST", &faults(&exact), &[]).status, 405);
}

#[test]
fn an_expired_mailboxs_plan_no_longer_fires() {
    let (_child, smtp, api) = server();
    let created = request_with_body(
        api,
        "POST",
        "/api/v1/mailboxes",
        &[JSON],
        br#"{"ttl": "1s"}"#,
    )
    .json();
    let id = created["id"].as_str().unwrap();
    let address = created["address"].as_str().unwrap();
    let response = put(api, id, &["rcpt reply=550 5.1.1 No such user"]);
    // The mailbox may have expired already on a slow machine.
    if response.status == 200 {
        // Wait (no timing asserted) until the API says the mailbox expired.
        while request(api, "GET", &format!("/api/v1/mailboxes/{id}"), &[]).status != 410 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    } else {
        assert_eq!(response.status, 410);
    }
    assert!(Client::rcpt_reply(smtp, address).starts_with("250 "));
    assert_eq!(request(api, "GET", &faults(id), &[]).status, 410);
}
