//! The OpenAPI document (`src/api/openapi.json`, served at `GET /api/v1/openapi.json`) checked
//! against the REAL responses: every route of the routes table is in it with its methods,
//! every route and status (200, 400, 401, 404, 405, 408, 409, 410) is exercised over
//! loopback, and each JSON body is validated against the schema the document gives for that
//! path, method and status, by Python `jsonschema` (Draft 2020-12, the dialect of OpenAPI
//! 3.1) fed over stdin. A response whose status or content type the document does not list
//! fails; a route added to the table, or to the code of `routes.rs`, without a path in the
//! document fails.
//!
//! Without `jsonschema` the schema validation is skipped (said on stderr) unless
//! `FASTSMTPD_REQUIRE_OPENAPI_TEST` is set (CI sets it, after `pip install jsonschema`).

mod api_client;
mod util;

use api_client::*;
use fastsmtpd::api::{ApiOptions, OPENAPI};
use fastsmtpd::capture::Limits;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

const TOKEN: &str = "s3cret";
const AUTH: &str = "Authorization: Bearer s3cret";

/// A multipart message: a text part with a code and a link, an HTML part, an attached file.
fn rich() -> Vec<u8> {
    concat!(
        "From: Shop <shop@test>\r\n",
        "To: alice@test\r\n",
        "Subject: =?UTF-8?B?Q2Fmw6kgb3JkZXI=?=\r\n",
        "Message-ID: <rich@test>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"outer\"\r\n",
        "\r\n",
        "--outer\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "\r\n",
        "Your verification code is 482913.\r\n",
        "Confirm at https://shop.test/confirm?token=t0k3n\r\n",
        "--outer\r\n",
        "Content-Type: text/html; charset=utf-8\r\n",
        "\r\n",
        "<p>Hello</p><a href=\"https://shop.test/a\">a</a>\r\n",
        "--outer\r\n",
        "Content-Type: application/pdf; name=\"a.pdf\"\r\n",
        "Content-Disposition: attachment; filename=\"a.pdf\"\r\n",
        "\r\n",
        "%PDF-1.4\r\n",
        "--outer--\r\n",
    )
    .as_bytes()
    .to_vec()
}

/// The document's path template matching a concrete path (`{x}` is one segment).
fn template<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let path = path.split('?').next().unwrap();
    let concrete: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .map(String::as_str)
        .find(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            parts.len() == concrete.len()
                && parts
                    .iter()
                    .zip(&concrete)
                    .all(|(t, c)| t == c || (t.starts_with('{') && t.ends_with('}')))
        })
}

/// Follows a `$ref` to a component (one level: that is all the document uses for
/// responses).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{reference} does not resolve")),
        None => value,
    }
}

/// A JSON pointer token (RFC 6901 §3).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// What was checked: the cases for Python, and the (path, method, status) triples seen.
#[derive(Default)]
struct Checks {
    cases: Vec<Value>,
    seen: BTreeSet<(String, String, u16)>,
}

impl Checks {
    /// Finds the document's response for `method path` → `response` (its status and content
    /// type must be listed) and queues the body for validation if it is JSON.
    fn check(&mut self, doc: &Value, method: &str, path: &str, response: &Response) {
        let status = response.status;
        let label = format!("{method} {path} → {status}");
        let pointer = if status == 405 {
            "/components/responses/MethodNotAllowed".to_owned()
        } else if let Some(t) = template(doc, path) {
            let op = format!("/paths/{}/{}", escape(t), method.to_ascii_lowercase());
            assert!(
                doc.pointer(&op).is_some(),
                "{label}: no {op} in the document"
            );
            self.seen.insert((t.to_owned(), method.to_owned(), status));
            format!("{op}/responses/{status}")
        } else {
            assert_eq!(status, 404, "{label}: a path the document does not have");
            "/components/responses/NotFound".to_owned()
        };
        let listed = doc
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{label}: the document lists no such status ({pointer})"));
        let pointer = match listed["$ref"].as_str() {
            Some(reference) => reference.trim_start_matches('#').to_owned(),
            None => pointer,
        };
        let documented = resolve(doc, listed);
        if method == "HEAD" {
            return;
        }
        let content_type = response
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let content = &documented["content"];
        let key = if content.get(&content_type).is_some() {
            content_type.clone()
        } else if content.get("*/*").is_some() {
            "*/*".to_owned()
        } else {
            panic!("{label}: content type {content_type:?} not in the document: {content}")
        };
        if content_type == "application/json" {
            self.cases.push(json!({
                "label": label,
                "schema": format!("{pointer}/content/{}/schema", escape(&key)),
                "body": response.json(),
            }));
        }
    }
}

const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
given = json.load(sys.stdin)
doc = given["doc"]
registry = Registry().with_resource("urn:openapi", Resource(contents=doc, specification=DRAFT202012))
failed = 0
for name, schema in doc["components"]["schemas"].items():
    Draft202012Validator.check_schema(schema)
for case in given["cases"]:
    validator = Draft202012Validator({"$ref": "urn:openapi#" + case["schema"]}, registry=registry)
    for error in validator.iter_errors(case["body"]):
        failed += 1
        print(f"{case['label']}: {error.json_path}: {error.message}")
print(f"validated {len(given['cases'])} bodies, {failed} errors")
sys.exit(1 if failed else 0)
"#;

/// Whether Python `jsonschema` (with `referencing`) is importable.
fn have_jsonschema() -> bool {
    Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The routes table of `src/api/routes.rs`'s module doc: (path, methods).
fn routes_table() -> Vec<(String, Vec<String>)> {
    let source = include_str!("../src/api/routes.rs");
    let mut routes = Vec::new();
    for line in source.lines() {
        let Some(row) = line.strip_prefix("//! | `") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let paths = cells.next().unwrap();
        let methods: Vec<String> = cells
            .next()
            .unwrap()
            .split('`')
            .filter(|m| m.chars().all(|c| c.is_ascii_uppercase()) && !m.is_empty())
            .map(str::to_owned)
            .collect();
        for path in paths.split('`').filter(|p| p.starts_with('/')) {
            let path = path.split('?').next().unwrap().to_owned();
            routes.push((path, methods.clone()));
        }
    }
    assert!(routes.len() > 10, "the routes table was not found");
    routes
}

#[test]
fn the_document_covers_every_route_of_the_table() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "openapi: {}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut listed = BTreeSet::new();
    for (path, methods) in routes_table() {
        if !path.starts_with("/api/") && !path.ends_with("z") {
            continue; // the web UI's assets: not an API
        }
        listed.insert(path.clone());
        let item = paths
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is in the routes table, not in openapi.json"));
        for method in methods {
            assert!(
                item.get(method.to_ascii_lowercase()).is_some(),
                "{method} {path} is in the routes table, not in openapi.json"
            );
        }
    }
    for path in paths.keys() {
        assert!(
            listed.contains(path),
            "{path} is in openapi.json, not in the routes table"
        );
    }
}

/// The `/api/v1/` paths the code of `src/api/routes.rs` matches (its `api` function's arms),
/// with every variable segment as `{}`: a route added to the code and to neither the table
/// nor the document is caught here.
fn routes_in_code() -> BTreeSet<String> {
    let source = include_str!("../src/api/routes.rs");
    let start = source
        .find("async fn api(")
        .expect("routes.rs has `async fn api(`");
    let end = start + source[start..].find("\nfn ").unwrap();
    let mut paths = BTreeSet::new();
    for line in source[start..end].lines() {
        let line = line.trim();
        let Some(arm) = line.strip_prefix('[').and_then(|l| l.split_once("] =>")) else {
            continue;
        };
        let segments: Vec<String> = arm
            .0
            .split(", ")
            .map(
                |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(literal) => literal.to_owned(),
                    None => "{}".to_owned(),
                },
            )
            .collect();
        paths.insert(format!("/api/v1/{}", segments.join("/")));
    }
    assert!(
        paths.len() > 8,
        "the arms of routes.rs were not found: {paths:?}"
    );
    paths
}

/// A path template with every variable segment as `{}`.
fn shape(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_the_code_matches_is_in_the_document() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| shape(p))
        .collect();
    for path in routes_in_code() {
        assert!(
            documented.contains(&path),
            "src/api/routes.rs answers {path}, which openapi.json does not describe"
        );
    }
}

#[test]
fn every_response_validates_against_the_document() {
    let (capture, server) = serve(ApiOptions {
        token: Some(TOKEN.into()),
        cors_origin: None,
        ..ApiOptions::default()
    });
    let addr = server.local_addr();
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    insert(&capture, "rich", "shop@test", &["alice@test"], &rich());
    insert(&capture, "m2", "app@test", &["bob@test"], &mail("Hello"));
    insert(&capture, "gone", "app@test", &["carol@test"], &mail("Bye"));
    insert(&capture, "del", "app@test", &["dave@test"], &mail("Del"));
    let mut checks = Checks::default();
    let mut call = |method: &str, path: &str, with_token: bool, want: u16| {
        let headers: &[&str] = if with_token { &[AUTH] } else { &[] };
        let response = request(addr, method, path, headers);
        assert_eq!(
            response.status,
            want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&response.body)
        );
        checks.check(&doc, method, path, &response);
        response
    };
    let served = call("GET", "/api/v1/openapi.json", true, 200);
    assert_eq!(served.body, OPENAPI.as_bytes());
    call("GET", "/api/v1/openapi.json", false, 401);
    call("GET", "/healthz", false, 200);
    call("HEAD", "/healthz", false, 200);
    call("GET", "/readyz", false, 200);
    call("HEAD", "/readyz", false, 200);
    call("GET", "/api/v1/cursor", true, 200);
    call("GET", "/api/v1/cursor", false, 401);
    call("PUT", "/api/v1/cursor", true, 405);
    call("PUT", "/api/v1/messages", true, 405);
    call("GET", "/api/v1/nothing", true, 404);
    call("GET", "/api/v1/await?rcpt=alice@test&timeout=5s", true, 200);
    call("GET", "/api/v1/await?count=0", true, 400);
    call("GET", "/api/v1/await?rcpt=nobody@test&timeout=0", true, 408);
    call(
        "GET",
        "/api/v1/await?rcpt=bob@test&expect=none&timeout=0",
        true,
        409,
    );
    call(
        "GET",
        "/api/v1/await?rcpt=nobody@test&expect=none&timeout=0",
        true,
        200,
    );
    call("GET", "/api/v1/messages?limit=2", true, 200);
    call("GET", "/api/v1/messages?subject~=hel", true, 200);
    call("GET", "/api/v1/messages?limit=0", true, 400);
    call("DELETE", "/api/v1/messages?rcpt=nobody@test", true, 200);
    call("DELETE", "/api/v1/messages?limit=1", true, 400);
    call("DELETE", "/api/v1/messages/gone", true, 200);
    call("GET", "/api/v1/messages/rich", true, 200);
    call("GET", "/api/v1/messages/m2", true, 200);
    call("GET", "/api/v1/messages/rich?x=1", true, 400);
    call("GET", "/api/v1/messages/nosuch", true, 404);
    call("GET", "/api/v1/messages/gone", true, 410);
    call("DELETE", "/api/v1/messages/gone", true, 410);
    call("DELETE", "/api/v1/messages/nosuch", true, 404);
    call("DELETE", "/api/v1/messages/rich?x=1", true, 400);
    call("GET", "/api/v1/messages/rich/raw", true, 200);
    call("HEAD", "/api/v1/messages/rich/raw", true, 200);
    call("GET", "/api/v1/messages/rich/raw?x=1", true, 400);
    call("GET", "/api/v1/messages/nosuch/raw", true, 404);
    call("GET", "/api/v1/messages/gone/raw", true, 410);
    call("GET", "/api/v1/messages/rich/links", true, 200);
    call("GET", "/api/v1/messages/rich/links?x=1", true, 400);
    call("GET", "/api/v1/messages/nosuch/links", true, 404);
    call("GET", "/api/v1/messages/gone/links", true, 410);
    // A message kept in a file (`--store eml:DIR`) whose file was removed: `410` `FileGone`.
    let filed = fastsmtpd::capture::Arrival::new(
        fastsmtpd::proto::sink::QueueId::new(b"filed").unwrap(),
        std::time::SystemTime::now(),
        bytes::Bytes::from(mail("Filed")),
        &fastsmtpd::capture::EnvelopeParts::default(),
        [&b"erin@test"[..]],
    );
    let missing = std::env::temp_dir().join("fastsmtpd-openapi-no-such-file.eml");
    capture.insert(filed.in_file(missing, 100)).unwrap();
    for route in ["", "/raw", "/links", "/parts/1"] {
        let r = call("GET", &format!("/api/v1/messages/filed{route}"), true, 410);
        assert_eq!(r.json()["reason"], "file_missing");
    }
    call("DELETE", "/api/v1/messages/filed", true, 200);
    capture.attach_transcript(
        &fastsmtpd::proto::sink::QueueId::new(b"rich").unwrap(),
        bytes::Bytes::from_static(b"S 0 220 mx.test ESMTP\nC 3 EHLO c.test\n* 4 [TLS: x y]\n"),
    );
    call("GET", "/api/v1/messages/rich/transcript", true, 200);
    call(
        "GET",
        "/api/v1/messages/rich/transcript?format=json",
        true,
        200,
    );
    call(
        "GET",
        "/api/v1/messages/rich/transcript?format=xml",
        true,
        400,
    );
    call("GET", "/api/v1/messages/m2/transcript", true, 404);
    call("GET", "/api/v1/messages/gone/transcript", true, 410);
    call("GET", "/api/v1/messages/rich/parts/1", true, 200);
    call("GET", "/api/v1/messages/rich/parts/3", true, 200);
    call("HEAD", "/api/v1/messages/rich/parts/1", true, 200);
    call("GET", "/api/v1/messages/rich/parts/99", true, 404);
    call("GET", "/api/v1/messages/rich/parts/1?x=1", true, 400);
    call("GET", "/api/v1/messages/gone/parts/1", true, 410);
    call("GET", "/api/v1/search?q=rcpt:alice@test", true, 200);
    call("GET", "/api/v1/search?q=body:482913", true, 200);
    call("GET", "/api/v1/search", true, 400);
    call("DELETE", "/api/v1/search?q=rcpt:nobody@test", true, 200);
    call("DELETE", "/api/v1/search?q=rcpt:dave@test", true, 200);
    call("DELETE", "/api/v1/search?q=colour:blue", true, 400);
    call("GET", "/api/v1/search?q=subject:%22unclosed", true, 400);
    call("GET", "/api/v1/stats", true, 200);
    call("GET", "/api/v1/events?after=x", true, 400);
    call("GET", "/api/v1/events", false, 401);
    call("DELETE", "/api/v1/stats", true, 405);

    // Per-test mailboxes: create (no body: the defaults), list, get, the filters, delete;
    // then the answers for a mailbox that is gone (410) or unknown (404).
    let made = call("POST", "/api/v1/mailboxes", true, 201).json();
    let id = made["id"].as_str().unwrap().to_owned();
    let address = made["address"].as_str().unwrap().to_owned();
    insert(&capture, "boxed", "app@test", &[&address], &mail("Boxed"));
    call("GET", "/api/v1/mailboxes", true, 200);
    call("GET", "/api/v1/mailboxes?limit=1&q=x", true, 200);
    call("GET", "/api/v1/mailboxes?label=none&before=1", true, 200);
    call("GET", "/api/v1/mailboxes?limit=501", true, 400);
    call("GET", &format!("/api/v1/mailboxes/{id}"), true, 200);
    call("HEAD", "/api/v1/mailboxes", true, 200);
    call("HEAD", &format!("/api/v1/mailboxes/{id}"), true, 200);
    call("HEAD", &format!("/api/v1/mailboxes/{id}/faults"), true, 200);
    call("GET", "/api/v1/mailboxes?x=1", true, 400);
    call(
        "DELETE",
        "/api/v1/mailboxes?label=no%20such%20label",
        true,
        200,
    );
    call("DELETE", "/api/v1/mailboxes?q=x", true, 400);
    call("DELETE", "/api/v1/mailboxes", false, 401);
    call("GET", &format!("/api/v1/mailboxes/{id}?x=1"), true, 400);
    call("PUT", "/api/v1/mailboxes", true, 405);
    call("GET", "/api/v1/mailboxes", false, 401);
    call(
        "GET",
        &format!("/api/v1/await?mailbox={id}&timeout=1s"),
        true,
        200,
    );
    call("GET", &format!("/api/v1/messages?mailbox={id}"), true, 200);
    call("GET", &format!("/api/v1/search?q=mailbox:{id}"), true, 200);
    call("GET", "/api/v1/events?mailbox=000000000000", true, 404);
    let other = capture
        .create_mailbox(None, std::time::Duration::from_secs(60), String::new())
        .unwrap();
    call(
        "DELETE",
        &format!("/api/v1/messages?mailbox={}", other.id),
        true,
        200,
    );
    call(
        "DELETE",
        &format!("/api/v1/search?q=mailbox:{}", other.id),
        true,
        200,
    );
    call("DELETE", &format!("/api/v1/mailboxes/{id}"), true, 200);
    for (method, path) in [
        ("GET", format!("/api/v1/mailboxes/{id}")),
        ("DELETE", format!("/api/v1/mailboxes/{id}")),
        ("GET", format!("/api/v1/await?mailbox={id}&timeout=1s")),
        ("GET", format!("/api/v1/messages?mailbox={id}")),
        ("DELETE", format!("/api/v1/messages?mailbox={id}")),
        ("GET", format!("/api/v1/search?q=mailbox:{id}")),
        ("DELETE", format!("/api/v1/search?q=mailbox:{id}")),
        ("GET", format!("/api/v1/events?mailbox={id}")),
    ] {
        call(method, &path, true, 410);
        call(method, &path.replace(&id, "000000000000"), true, 404);
    }
    for (path, method) in [
        ("/api/v1/messages", "GET"),
        ("/api/v1/search", "DELETE"),
        ("/api/v1/stats", "GET"),
    ] {
        call(method, path, false, 401);
    }

    // A seeded message (a route that takes a body).
    let mut seed = |path: &str, content_type: &str, body: &[u8], want: u16| {
        let content_type = format!("Content-Type: {content_type}");
        let response = request_with_body(addr, "POST", path, &[AUTH, &content_type], body);
        assert_eq!(
            response.status,
            want,
            "POST {path}: {}",
            String::from_utf8_lossy(&response.body)
        );
        checks.check(&doc, "POST", path, &response);
    };
    let envelope = "/api/v1/messages?from=app@test&rcpt=erin@test";
    seed(envelope, "message/rfc822", &mail("Seeded"), 201);
    seed(
        "/api/v1/messages?from=app@test",
        "message/rfc822",
        b"x",
        400,
    );
    seed(envelope, "text/plain", b"x", 415);
    // Over the size limit by its Content-Length: refused before the body is read.
    let over = format!(
        "Content-Length: {}",
        fastsmtpd::config::DEFAULT_MAX_MESSAGE_SIZE + 1
    );
    let response = request(
        addr,
        "POST",
        envelope,
        &[AUTH, "Content-Type: message/rfc822", &over],
    );
    assert_eq!(response.status, 413);
    checks.check(&doc, "POST", envelope, &response);
    // Bodies: a bad one (400), an oversized one (413), and creation past the bound (429).
    for (body, want) in [
        (b"{\"ttl\": \"8d\"}".to_vec(), 400),
        (vec![b' '; 20 << 10], 413),
    ] {
        let response = request_with_body(addr, "POST", "/api/v1/mailboxes", &[AUTH], &body);
        assert_eq!(response.status, want);
        checks.check(&doc, "POST", "/api/v1/mailboxes", &response);
    }
    while capture
        .create_mailbox(None, std::time::Duration::from_secs(60), String::new())
        .is_ok()
    {}
    let response = request_with_body(addr, "POST", "/api/v1/mailboxes", &[AUTH], b"");
    assert_eq!(response.status, 429);
    checks.check(&doc, "POST", "/api/v1/mailboxes", &response);
    // A budget that mailboxes' records fill (no mail to evict for them): 507.
    let small = Limits {
        max_bytes: 2000,
        ..Limits::default()
    };
    let (_small, small_server) = serve_with(
        small,
        ApiOptions {
            token: Some(TOKEN.into()),
            cors_origin: None,
            ..ApiOptions::default()
        },
    );
    let small_addr = small_server.local_addr();
    let full = loop {
        let response = request_with_body(small_addr, "POST", "/api/v1/mailboxes", &[AUTH], b"");
        if response.status != 201 {
            break response;
        }
    };
    assert_eq!(full.status, 507);
    checks.check(&doc, "POST", "/api/v1/mailboxes", &full);
    // A foreign origin may not delete them; then every one goes in one request.
    let origin = "Origin: http://127.0.0.1:39998";
    let response = request(addr, "DELETE", "/api/v1/mailboxes", &[AUTH, origin]);
    assert_eq!(response.status, 403);
    checks.check(&doc, "DELETE", "/api/v1/mailboxes", &response);
    let response = request(addr, "DELETE", "/api/v1/mailboxes", &[AUTH]);
    assert_eq!(response.status, 200);
    checks.check(&doc, "DELETE", "/api/v1/mailboxes", &response);
    // The runtime fault rules (routes with a request body too).
    let json_type = "Content-Type: application/json";
    let text_type = "Content-Type: text/plain";
    for (method, headers, body, want) in [
        ("GET", &[AUTH][..], "", 200),
        ("GET", &[][..], "", 401),
        ("GET", &[AUTH][..], "", 200),
        (
            "PUT",
            &[AUTH, json_type][..],
            r#"{"rules": ["rcpt to=*@bad.test reply=550 5.1.1 No"]}"#,
            200,
        ),
        (
            "PUT",
            &[AUTH, text_type][..],
            "# one rule\nrcpt disconnect\n",
            200,
        ),
        (
            "PUT",
            &[AUTH, json_type][..],
            r#"{"rules": ["rcpt reply=250 fine"]}"#,
            400,
        ),
        (
            "PUT",
            &[AUTH, "Content-Type: application/x-www-form-urlencoded"][..],
            "rcpt disconnect",
            415,
        ),
        ("DELETE", &[AUTH][..], "", 200),
        ("DELETE", &[AUTH][..], "", 200),
        ("POST", &[AUTH][..], "", 405),
    ] {
        let path = "/api/v1/faults";
        let response = request_with_body(addr, method, path, headers, body.as_bytes());
        assert_eq!(
            response.status,
            want,
            "{method} {path} {body}: {}",
            String::from_utf8_lossy(&response.body)
        );
        checks.check(&doc, method, path, &response);
    }
    let large = format!(
        r#"{{"rules": ["{}"]}}"#,
        "x".repeat(fastsmtpd::api::MAX_FAULTS_BODY)
    );
    let response = request_with_body(
        addr,
        "PUT",
        "/api/v1/faults",
        &[AUTH, json_type],
        large.as_bytes(),
    );
    assert_eq!(response.status, 413);
    checks.check(&doc, "PUT", "/api/v1/faults", &response);
    let response = request(addr, "GET", "/api/v1/faults?x=1", &[AUTH]);
    assert_eq!(response.status, 400);
    checks.check(&doc, "GET", "/api/v1/faults?x=1", &response);

    // A mailbox's fault plan: shown, replaced, refused (bad rule, header route, content
    // type), cleared; unknown and ended mailboxes (two made room for past the bound).
    let newest = capture.mailbox_page(None, 2, &fastsmtpd::capture::MailboxFilter::default());
    for full in newest.items {
        capture.delete_mailbox(&full.id);
    }
    let boxed = capture
        .create_mailbox(None, std::time::Duration::from_secs(60), String::new())
        .unwrap()
        .id;
    let by_header = capture
        .create_mailbox(
            Some(fastsmtpd::capture::Route::Header {
                name: b"X-Run".to_vec(),
                value: b"1".to_vec(),
            }),
            std::time::Duration::from_secs(60),
            String::new(),
        )
        .unwrap()
        .id;
    let good = r#"{"rules": ["rcpt reply=550 5.1.1 No such user"]}"#;
    for (method, id, headers, body, want) in [
        ("GET", boxed, &[AUTH][..], "", 200),
        ("PUT", boxed, &[AUTH, json_type][..], good, 200),
        (
            "PUT",
            boxed,
            &[AUTH, "Content-Type: text/plain"][..],
            "eod reply=451 4.3.0 Later",
            200,
        ),
        (
            "PUT",
            boxed,
            &[AUTH, json_type][..],
            r#"{"rules": ["mail reply=550 5.7.1 No"]}"#,
            400,
        ),
        ("PUT", boxed, &[AUTH][..], "rcpt disconnect", 415),
        ("PUT", by_header, &[AUTH, json_type][..], good, 409),
        ("GET", boxed, &[][..], "", 401),
        ("DELETE", boxed, &[AUTH][..], "", 200),
    ] {
        let path = format!("/api/v1/mailboxes/{id}/faults");
        let response = request_with_body(addr, method, &path, headers, body.as_bytes());
        assert_eq!(
            response.status,
            want,
            "{method} {path} {body}: {}",
            String::from_utf8_lossy(&response.body)
        );
        checks.check(&doc, method, &path, &response);
    }
    capture.delete_mailbox(&boxed).unwrap();
    for (path, want) in [
        (format!("/api/v1/mailboxes/{boxed}/faults"), 410),
        ("/api/v1/mailboxes/000000000000/faults".to_owned(), 404),
    ] {
        let response = request(addr, "GET", &path, &[AUTH]);
        assert_eq!(response.status, want, "{path}");
        checks.check(&doc, "GET", &path, &response);
    }

    // The event stream: its status, and each event's data as the document says.
    let mut events = Events::open(addr, "/api/v1/events?after=0", &[AUTH]);
    assert_eq!(events.status, 200);
    checks
        .seen
        .insert(("/api/v1/events".into(), "GET".into(), 200));
    let event = events.next();
    assert_eq!(event.event, "message");
    checks.cases.push(json!({
        "label": "GET /api/v1/events: event: message",
        "schema": "/components/schemas/Summary",
        "body": serde_json::from_str::<Value>(&event.data).unwrap(),
    }));

    // Every operation succeeded (200, or 201 for a creation) at least once, and every status
    // was seen.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method == "parameters" {
                continue;
            }
            let method = method.to_ascii_uppercase();
            let answered = |status| {
                checks
                    .seen
                    .contains(&(path.clone(), method.clone(), status))
            };
            assert!(
                answered(200) || answered(201),
                "{method} {path} was never answered 200 (or 201) here: add it to this test"
            );
        }
    }
    let statuses: BTreeSet<u16> = checks.seen.iter().map(|s| s.2).collect();
    for status in [200, 400, 401, 404, 408, 409, 410] {
        assert!(statuses.contains(&status), "no {status} was checked");
    }

    if !have_jsonschema() {
        assert!(
            std::env::var_os("FASTSMTPD_REQUIRE_OPENAPI_TEST").is_none(),
            "FASTSMTPD_REQUIRE_OPENAPI_TEST is set but Python jsonschema is missing"
        );
        eprintln!("skipped the schema validation: python3 -m pip install jsonschema");
        return;
    }
    let mut python = Command::new("python3");
    python.args(["-c", VALIDATE]);
    let input = json!({"doc": doc, "cases": checks.cases}).to_string();
    let output =
        util::process::run_bounded(python, Some(input.as_bytes()), util::process::CHILD_LIMIT);
    let report = &output.stdout;
    assert!(output.status.success(), "{report}");
    assert!(report.contains(" 0 errors"), "{report}");
}
