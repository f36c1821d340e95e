//! The Mailpit-compatible API (`/compat/mailpit`, `src/api/mailpit.rs`) driven by the real
//! npm client a Mailpit suite uses, `mailpit-api` 2.1.0 (pinned in `tests/mailpit/`):
//! `tests/mailpit/compat.mjs` lists, reads, searches, waits and deletes against the real
//! binary with `--api`, after this test sent three messages over SMTP.
//!
//! Needs `node` (18 or later) and `npm`; `npm ci` installs the client into
//! `tests/mailpit/node_modules` (gitignored) once. CI's `.ci/run` installs node and sets
//! `FASTSMTPD_REQUIRE_NODE_TEST=1`, so there the test cannot pass by skipping.

mod util;

use std::path::Path;
use std::process::Command;
use util::Client;

/// Sends one message: `rcpts` in the envelope, `content` as the DATA (CRLF lines).
fn send(smtp: std::net::SocketAddr, from: &str, rcpts: &[&str], content: &str) {
    let mut client = Client::connect(smtp);
    assert!(client.read_reply().starts_with("220"));
    client.send("EHLO client.test\r\n");
    assert!(client.read_reply().starts_with("250"));
    client.send(format!("MAIL FROM:<{from}>\r\n"));
    assert!(client.read_reply().starts_with("250"));
    for rcpt in rcpts {
        client.send(format!("RCPT TO:<{rcpt}>\r\n"));
        assert!(client.read_reply().starts_with("250"));
    }
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354"));
    client.send(format!("{content}.\r\n"));
    let reply = client.read_reply();
    assert!(reply.starts_with("250"), "{reply}");
    client.send("QUIT\r\n");
}

/// Message A: text, HTML and an attachment, Cc, Reply-To, List-Unsubscribe, a folded field.
const ALPHA: &str = "From: Shop <shop@example.test>\r\n\
To: Jane Doe <jane@example.test>\r\n\
Cc: cc@example.test\r\n\
Reply-To: help@example.test\r\n\
Subject: Welcome Alpha\r\n\
Message-ID: <alpha@example.test>\r\n\
Date: Sun, 06 Dec 2026 17:43:01 +0000\r\n\
List-Unsubscribe: <mailto:unsub@example.test>, <https://example.test/u>\r\n\
X-Folded: one\r\n two\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Jane, welcome.\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p><b>Hello Jane</b>, welcome.</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: text/plain\r\n\
Content-Disposition: attachment; filename=\"a.txt\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
YXR0YWNoZWQgZmlsZQo=\r\n\
--outer--\r\n";

/// Message B: text only.
const BETA: &str = "From: Shop <shop@example.test>\r\n\
To: bob@example.test\r\n\
Subject: Reset Beta\r\n\
\r\n\
Your code is 123456.\r\n";

/// Message C: an envelope recipient the headers do not name.
const GAMMA: &str = "From: Shop <shop@example.test>\r\n\
To: jane@example.test\r\n\
Subject: Welcome Gamma\r\n\
\r\n\
Hello Jane, gamma.\r\n";

#[test]
fn the_mailpit_api_client_reads_searches_and_deletes_through_the_compat_routes() {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(node && npm) {
        assert!(
            std::env::var_os("FASTSMTPD_REQUIRE_NODE_TEST").is_none(),
            "FASTSMTPD_REQUIRE_NODE_TEST is set but node ({node}) or npm ({npm}) is missing"
        );
        eprintln!("skipped: needs node and npm");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailpit");
    if !dir.join("node_modules/mailpit-api/package.json").exists() {
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("npm runs");
        assert!(
            output.status.success(),
            "npm ci failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (mut server, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    send(
        smtp,
        "bounce@example.test",
        &["jane@example.test", "cc@example.test"],
        ALPHA,
    );
    send(smtp, "shop@example.test", &["bob@example.test"], BETA);
    send(
        smtp,
        "shop@example.test",
        &["jane@example.test", "hidden@example.test"],
        GAMMA,
    );
    let output = Command::new("node")
        .arg(dir.join("compat.mjs"))
        .arg(format!("http://{api}/compat/mailpit"))
        .current_dir(&dir)
        .output()
        .expect("node runs");
    server.kill();
    print!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "compat.mjs failed:\n{}\n{}\nserver: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
}

/// One HTTP/1.1 request over a fresh connection; the status code.
fn status(addr: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn with_a_token_the_compat_routes_take_it_as_basic_auth_password_or_bearer() {
    let (_server, _smtp, api) =
        util::start_binary_with_api(1, "127.0.0.1", &["--api-token", "s3cret"]);
    let get = |auth: &str| {
        status(
            &api,
            &format!(
                "GET /compat/mailpit/api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(get(""), 401);
    // base64("user:s3cret") and base64("user:wrong")
    assert_eq!(get("Authorization: Basic dXNlcjpzM2NyZXQ=\r\n"), 200);
    assert_eq!(get("Authorization: Basic dXNlcjp3cm9uZw==\r\n"), 401);
    assert_eq!(get("Authorization: Bearer s3cret\r\n"), 200);
    assert_eq!(get("Authorization: Bearer wrong\r\n"), 401);
}
