//! The capture API's reading routes over real sockets: a message's parsed view (text, HTML,
//! every header, parts), a part's bytes and the headers that confine it, links and one-time
//! codes, `GET`/`DELETE /api/v1/search?q=` in the query language (exact addresses, body
//! search over decoded text, `400` with the term), `/api/v1/stats`, and the web UI's assets
//! with their Content Security Policy.

mod api_client;

use api_client::*;
use fastsmtpd::api::ApiOptions;

/// A multipart/alternative message: a quoted-printable text part with a code and a link, an
/// HTML part carrying a script, and an attached HTML file.
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
        "Content-Type: multipart/alternative; boundary=\"alt\"\r\n",
        "\r\n",
        "--alt\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "Caf=C3=A9: your verification code is 482913.\r\n",
        "Confirm at https://shop.test/confirm?token=t0k3n\r\n",
        "--alt\r\n",
        "Content-Type: text/html; charset=utf-8\r\n",
        "\r\n",
        "<p>Hello</p><script>alert(1)</script><a href=\"https://shop.test/a\">a</a>\r\n",
        "--alt--\r\n",
        "--outer\r\n",
        "Content-Type: text/html; name=\"page.html\"\r\n",
        "Content-Disposition: attachment; filename=\"page.html\"\r\n",
        "\r\n",
        "<script>alert(2)</script>\r\n",
        "--outer--\r\n",
    )
    .as_bytes()
    .to_vec()
}

#[test]
fn a_message_reads_as_text_html_headers_and_parts_and_parts_are_confined() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "rich1", "shop@test", &["alice@test"], &rich());

    let m = get(addr, "/api/v1/messages/rich1");
    assert_eq!(m.status, 200);
    let m = m.json();
    assert_eq!(m["headers"]["subject"], "Café order");
    assert!(m["text"]
        .as_str()
        .unwrap()
        .contains("Café: your verification code is 482913."));
    assert!(m["html"].as_str().unwrap().contains("<p>Hello</p>"));
    let names: Vec<&str> = m["header_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "From",
            "To",
            "Subject",
            "Message-ID",
            "MIME-Version",
            "Content-Type"
        ]
    );
    let parts = m["parts"].as_array().unwrap();
    let attachment = parts
        .iter()
        .find(|p| p["filename"] == "page.html")
        .expect("the attachment is listed");
    let number = attachment["number"].as_u64().unwrap();

    // The attached HTML is a download, sandboxed, never sniffed.
    let part = get(addr, &format!("/api/v1/messages/rich1/parts/{number}"));
    assert_eq!(part.status, 200);
    assert!(part
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(
        part.header("content-disposition"),
        Some("attachment; filename=\"page.html\"")
    );
    assert_eq!(
        part.header("content-security-policy"),
        Some("sandbox; default-src 'none'")
    );
    assert_eq!(part.header("x-content-type-options"), Some("nosniff"));
    // The CR LF before a boundary belongs to the boundary (RFC 2046 §5.1.1).
    assert_eq!(part.body, b"<script>alert(2)</script>");
    // The raw message is confined the same way.
    let raw = get(addr, "/api/v1/messages/rich1/raw");
    assert_eq!(raw.body, rich());
    assert_eq!(
        raw.header("content-security-policy"),
        Some("sandbox; default-src 'none'")
    );
    assert_eq!(get(addr, "/api/v1/messages/rich1/parts/99").status, 404);
    for bad in ["0", "x", "-1", "18446744073709551616"] {
        let r = get(addr, &format!("/api/v1/messages/rich1/parts/{bad}"));
        assert_eq!(r.status, 400, "part {bad}");
    }
    assert_eq!(get(addr, "/api/v1/messages/nope/parts/1").status, 404);
}

#[test]
fn links_and_codes_are_extracted_not_fetched() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "rich1", "shop@test", &["alice@test"], &rich());
    let found = get(addr, "/api/v1/messages/rich1/links").json();
    let links: Vec<&str> = found["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        links.contains(&"https://shop.test/confirm?token=t0k3n"),
        "{links:?}"
    );
    assert!(links.contains(&"https://shop.test/a"), "{links:?}");
    let codes: Vec<&str> = found["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"482913"), "{codes:?}");
    assert!(codes.contains(&"t0k3n"), "{codes:?}");
}

#[test]
fn search_speaks_the_query_language_exactly() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "m1", "s@test", &["a@x.test"], &mail("one"));
    insert(&capture, "m2", "s@test", &["ba@x.test"], &mail("two"));
    insert(&capture, "rich1", "shop@test", &["alice@test"], &rich());
    let ids = |path: &str| -> Vec<String> {
        let r = get(addr, path);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // `a@x` never matches `ba@x`; the domain is case-insensitive.
    assert_eq!(ids("/api/v1/search?q=rcpt:a@X.TEST"), ["m1"]);
    assert_eq!(ids("/api/v1/search?q=rcpt~a@x.test"), ["m2", "m1"]);
    // Body search runs over decoded text (quoted-printable, UTF-8).
    assert_eq!(ids("/api/v1/search?q=body:caf%C3%A9"), ["rich1"]);
    assert_eq!(
        ids("/api/v1/search?q=subject:%22Caf%C3%A9%20order%22"),
        ["rich1"]
    );
    assert_eq!(
        ids("/api/v1/search?q=from:shop@test%20body:482913"),
        ["rich1"]
    );
    // Index-only queries are counted; residual ones say they were not.
    assert_eq!(get(addr, "/api/v1/search?q=rcpt~x.test").json()["total"], 2);
    assert!(get(addr, "/api/v1/search?q=body:482913").json()["total"].is_null());
    // Errors name the term.
    for (q, says) in [
        ("nope:1", "nope"),
        ("subject:%22open", "quote"),
        ("mailbox:abc", "mailbox"),
    ] {
        let r = get(addr, &format!("/api/v1/search?q={q}"));
        assert_eq!(r.status, 400, "{q}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.to_lowercase().contains(says), "{q}: {message}");
    }
    assert_eq!(get(addr, "/api/v1/search").status, 400);
    assert_eq!(get(addr, "/api/v1/search?q=a&what=1").status, 400);
    // Delete by query: only what matches.
    let r = request(addr, "DELETE", "/api/v1/search?q=body:482913", &[]);
    assert_eq!((r.status, r.json()["deleted"].as_u64()), (200, Some(1)));
    assert_eq!(get(addr, "/api/v1/messages/rich1").status, 410);
    assert_eq!(ids("/api/v1/messages"), ["m2", "m1"]);
}

#[test]
fn stats_count_what_is_kept() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    insert(&capture, "m1", "s@test", &["a@test"], &mail("one"));
    insert(&capture, "m2", "s@test", &["a@test"], &mail("two"));
    request(addr, "DELETE", "/api/v1/messages/m1", &[]);
    let s = get(addr, "/api/v1/stats").json();
    assert_eq!(s["messages"], 1);
    assert_eq!(s["accepted_total"], 2);
    assert_eq!(s["deleted"], 1);
    assert_eq!(s["head"], "2");
    assert!(s["bytes"].as_u64().unwrap() > 0);
    assert!(s["budget_bytes"].as_u64().unwrap() >= s["bytes"].as_u64().unwrap());
}

#[test]
fn the_ui_is_served_under_a_policy_that_forbids_foreign_script() {
    let (_capture, server) = serve(ApiOptions {
        token: Some("secret".into()),
        cors_origin: None,
        ..ApiOptions::default()
    });
    let addr = server.local_addr();
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        // Open without the token: the assets hold no data.
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        let policy = r.header("content-security-policy").unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-eval"), "{policy}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let page = String::from_utf8(get(addr, "/").body).unwrap();
    assert!(page.contains("src=\"/ui/app.js\""));
    assert!(!page.contains("<script>"), "no inline script in the page");
    // The data is behind the token.
    assert_eq!(get(addr, "/api/v1/stats").status, 401);
    assert_eq!(
        request(addr, "POST", "/", &["Content-Length: 0"]).status,
        405
    );
}
