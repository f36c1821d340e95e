//! `fastsmtpd await` and `fastsmtpd ready` run as the binary against the binary: exit codes
//! (0 satisfied, 1 not, 2 usage or connection), the JSON on stdout, the token from the
//! environment, and the server still started by flags without a subcommand.

mod api_client;
mod util;

use std::process::Command;
use util::process::{run_bounded, CHILD_LIMIT};

/// `fastsmtpd ARGS` run to its exit, with `FASTSMTPD_API_TOKEN` set to `token` (or unset).
fn fastsmtpd(args: &[&str], token: Option<&str>) -> util::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args(args).env_remove("FASTSMTPD_API_TOKEN");
    if let Some(token) = token {
        command.env("FASTSMTPD_API_TOKEN", token);
    }
    run_bounded(command, None, CHILD_LIMIT)
}

#[test]
fn ready_waits_for_the_api_and_the_greeting_and_fails_on_nothing() {
    let (_server, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let url = format!("http://{api}");
    let smtp = smtp.to_string();
    let out = fastsmtpd(
        &["ready", "--api", &url, "--smtp", &smtp, "--timeout", "30s"],
        None,
    );
    out.assert_success("ready against a running server");

    let nobody = format!("http://{}", util::free_local_addr());
    let out = fastsmtpd(&["ready", "--api", &nobody, "--timeout", "300ms"], None);
    assert_eq!(out.status.code(), Some(1), "{}", out.dump());
    assert!(out.stderr.contains("not ready after"), "{}", out.dump());

    let elsewhere = util::free_local_addr();
    let out = fastsmtpd(
        &[
            "ready",
            "--api",
            &url,
            "--smtp",
            &elsewhere,
            "--timeout",
            "300ms",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.dump());
    assert!(out.stderr.contains(&elsewhere), "{}", out.dump());

    let out = fastsmtpd(&["ready", "--api", "https://127.0.0.1:1"], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.dump());
    assert!(
        out.stderr.contains("https is not supported"),
        "{}",
        out.dump()
    );
}

#[test]
fn await_prints_the_result_and_exits_by_what_happened() {
    let (_server, smtp, api) =
        util::start_binary_with_api(1, "127.0.0.1", &["--api-token", "s3cret"]);
    let url = format!("http://{api}");
    let mut client = util::Client::connect(smtp);
    client.read_reply();
    client.helo();
    client.deliver("Subject: Welcome aboard\r\n\r\nhello\r\n");

    // Satisfied: the summary on stdout, exit 0 (the token from the environment).
    let out = fastsmtpd(
        &[
            "await",
            "--api",
            &url,
            "--rcpt",
            "b@example.org",
            "--subject",
            "Welcome aboard",
            "--timeout",
            "30s",
        ],
        Some("s3cret"),
    );
    out.assert_success("await for a message that arrived");
    let result: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result["messages"][0]["rcpt_to"][0], "b@example.org");
    assert_eq!(result["messages"][0]["subject"], "Welcome aboard");
    let cursor = result["cursor"].as_str().unwrap().to_owned();

    // Nothing after the cursor by the timeout: 408, exit 1, what matched (nothing) printed.
    let out = fastsmtpd(
        &[
            "await",
            "--api",
            &url,
            "--token",
            "s3cret",
            "--rcpt",
            "b@example.org",
            "--after",
            &cursor,
            "--timeout",
            "0s",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.dump());
    let result: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result["error"]["status"], 408);

    // --expect-none: nothing new is success; the kept message is a 409, exit 1.
    let out = fastsmtpd(
        &[
            "await",
            "--api",
            &url,
            "--rcpt",
            "b@example.org",
            "--after",
            &cursor,
            "--timeout",
            "0s",
            "--expect-none",
        ],
        Some("s3cret"),
    );
    out.assert_success("expect-none with nothing new");
    let out = fastsmtpd(
        &[
            "await",
            "--api",
            &url,
            "--rcpt",
            "b@example.org",
            "--timeout",
            "0s",
            "--expect-none",
        ],
        Some("s3cret"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.dump());
    assert!(out.stderr.contains("arrived"), "{}", out.dump());

    // Usage and connection errors: exit 2 with a line saying which.
    let out = fastsmtpd(&["await", "--api", &url, "--timeout", "0s"], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.dump());
    assert!(out.stderr.contains("401"), "{}", out.dump());
    let out = fastsmtpd(&["await", "--api", &url, "--after", "x"], Some("s3cret"));
    assert_eq!(out.status.code(), Some(2), "{}", out.dump());
    assert!(out.stderr.contains("400"), "{}", out.dump());
    let nobody = format!("http://{}", util::free_local_addr());
    let out = fastsmtpd(&["await", "--api", &nobody], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.dump());
    assert!(out.stderr.contains("cannot ask"), "{}", out.dump());
    let out = fastsmtpd(&["await", "--count", "0"], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.dump());
    let out = fastsmtpd(&["--listen", "127.0.0.1:1", "await"], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.dump());
}

#[test]
fn await_on_a_mailbox_that_expires_meanwhile_exits_1_saying_so() {
    let (_server, _smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    let made = api_client::request_with_body(
        api.parse().unwrap(),
        "POST",
        "/api/v1/mailboxes",
        &["Content-Type: application/json"],
        br#"{"ttl": "1s"}"#,
    );
    assert_eq!(made.status, 201);
    let id = made.json()["id"].as_str().unwrap().to_owned();
    let url = format!("http://{api}");
    // It expires while the probe waits (30 s: a 408 would be the bug).
    let out = fastsmtpd(
        &["await", "--api", &url, "--mailbox", &id, "--timeout", "30s"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.dump());
    assert!(
        out.stderr.contains(&format!("mailbox {id} expired at ")),
        "{}",
        out.dump()
    );
}
