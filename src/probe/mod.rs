//! `fastsmtpd await` and `fastsmtpd ready`: the capture API asked from a shell or a compose
//! health check, without curl. `await` waits for mail (`GET /api/v1/await`) and prints the
//! JSON result; `ready` polls `/readyz` (and an SMTP greeting) until the server serves.
//!
//! Exit codes, so a script can branch: [`SATISFIED`] (0), [`NOT_SATISFIED`] (1: the await's
//! `408` timeout or `409` with `--expect-none`, or its `410`: the `--mailbox` expired or was
//! deleted, before or while it waited; `ready` not ready by its timeout), [`USAGE`]
//! (2: a bad argument, the API unreachable, a `400`/`401`, anything unexpected), each with a
//! line on stderr saying which.
//!
//! What it does not do: TLS, retries of an `await` (one request, held by the server up to its
//! timeout), or start a server.

pub mod http;

use http::{get, BaseUrl};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Exit code: the condition holds.
pub const SATISFIED: u8 = 0;
/// Exit code: it did not by the timeout (or `--expect-none` saw mail).
pub const NOT_SATISFIED: u8 = 1;
/// Exit code: bad usage, or the API could not be asked.
pub const USAGE: u8 = 2;

/// Where a probe finds the API when not told.
pub const DEFAULT_API: &str = "http://127.0.0.1:8025";

/// Slack over an `await`'s own timeout before the client gives up on the server's answer.
const ANSWER_SLACK: Duration = Duration::from_secs(10);

/// Pause between two `ready` attempts.
const RETRY: Duration = Duration::from_millis(100);

/// What `fastsmtpd await` asks.
#[derive(Debug, Clone, Default)]
pub struct AwaitArgs {
    /// The API's base URL.
    pub api: String,
    /// `rcpt=` filters (each must hold).
    pub rcpt: Vec<String>,
    /// `from=` filter.
    pub from: Option<String>,
    /// `subject=` filter.
    pub subject: Option<String>,
    /// `mailbox=`: a per-test mailbox's id.
    pub mailbox: Option<String>,
    /// How many messages.
    pub count: Option<u32>,
    /// A cursor: only messages after it.
    pub after: Option<String>,
    /// How long the server waits.
    pub timeout: Duration,
    /// Success is that nothing matching arrives.
    pub expect_none: bool,
    /// The bearer token.
    pub token: Option<String>,
}

/// A query-string value percent-encoded (RFC 3986 §2.1: everything but unreserved
/// characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl AwaitArgs {
    /// The request's path and query.
    pub fn path(&self) -> String {
        let mut pairs = vec![format!("timeout={}ms", self.timeout.as_millis())];
        pairs.extend(self.rcpt.iter().map(|r| format!("rcpt={}", encode(r))));
        pairs.extend(self.from.iter().map(|f| format!("from={}", encode(f))));
        pairs.extend(
            self.subject
                .iter()
                .map(|s| format!("subject={}", encode(s))),
        );
        pairs.extend(
            self.mailbox
                .iter()
                .map(|m| format!("mailbox={}", encode(m))),
        );
        pairs.extend(self.count.map(|c| format!("count={c}")));
        pairs.extend(self.after.iter().map(|a| format!("after={}", encode(a))));
        if self.expect_none {
            pairs.push("expect=none".into());
        }
        format!("/api/v1/await?{}", pairs.join("&"))
    }
}

/// The error message of an API error body, or the body as text.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(500)
                .collect()
        })
}

/// The line for a `410`: `mailbox ID expired at T` (or `deleted at T`).
fn mailbox_gone(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error_text(body);
    };
    let id = value["mailbox"].as_str().unwrap_or("?");
    for (key, word) in [("expired_at", "expired"), ("deleted_at", "was deleted")] {
        if let Some(at) = value[key].as_str() {
            return format!("mailbox {id} {word} at {at}: nothing more will arrive in it");
        }
    }
    error_text(body)
}

/// Runs `fastsmtpd await`: the JSON result on `out` (also on a timeout or a `409`), a line on
/// `err` for anything but success; the exit code.
pub fn run_await(args: &AwaitArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let base = match BaseUrl::parse(&args.api) {
        Ok(base) => base,
        Err(e) => {
            let _ = writeln!(err, "fastsmtpd await: --api {e}");
            return USAGE;
        }
    };
    let deadline = Instant::now() + args.timeout + ANSWER_SLACK;
    let reply = match get(&base, &args.path(), args.token.as_deref(), deadline) {
        Ok(reply) => reply,
        Err(e) => {
            let _ = writeln!(err, "fastsmtpd await: cannot ask {}: {e}", args.api);
            return USAGE;
        }
    };
    match reply.status {
        200 | 408 | 409 => {
            let _ = out.write_all(&reply.body);
            if !reply.body.ends_with(b"\n") {
                let _ = out.write_all(b"\n");
            }
            if reply.status == 200 {
                return SATISFIED;
            }
            let _ = writeln!(err, "fastsmtpd await: {}", error_text(&reply.body));
            NOT_SATISFIED
        }
        410 => {
            let _ = writeln!(err, "fastsmtpd await: {}", mailbox_gone(&reply.body));
            NOT_SATISFIED
        }
        status => {
            let _ = writeln!(
                err,
                "fastsmtpd await: the API answered {status}: {}",
                error_text(&reply.body)
            );
            USAGE
        }
    }
}

/// What `fastsmtpd ready` checks.
#[derive(Debug, Clone)]
pub struct ReadyArgs {
    /// The API's base URL (its `/readyz`).
    pub api: String,
    /// An SMTP listener whose greeting must be `220`.
    pub smtp: Option<String>,
    /// How long to keep trying.
    pub timeout: Duration,
}

/// One look at `/readyz`: `Err` says why not ready.
fn api_ready(base: &BaseUrl, deadline: Instant) -> Result<(), String> {
    let attempt = deadline.min(Instant::now() + Duration::from_secs(5));
    match get(base, "/readyz", None, attempt) {
        Ok(reply) if reply.status == 200 => Ok(()),
        Ok(reply) => Err(format!("/readyz answered {}", reply.status)),
        Err(e) => Err(format!("/readyz: {e}")),
    }
}

/// One look at the SMTP listener: a `220` greeting (RFC 5321 §4.2, §3.1), then `QUIT`.
fn smtp_ready(address: &str, deadline: Instant) -> Result<(), String> {
    let attempt = deadline.min(Instant::now() + Duration::from_secs(5));
    let left = || http::until(attempt);
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?;
    let mut last = format!("{address}: no address");
    for addr in addrs {
        let stream = match TcpStream::connect_timeout(&addr, left()) {
            Ok(stream) => stream,
            Err(e) => {
                last = format!("{address}: {e}");
                continue;
            }
        };
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        let mut line = Vec::new();
        let read = BufReader::new((&stream).take(1024)).read_until(b'\n', &mut line);
        let _ = (&stream).write_all(b"QUIT\r\n");
        return match read {
            Ok(_) if line.starts_with(b"220") => Ok(()),
            Ok(_) => Err(format!(
                "{address} greeted {:?}",
                String::from_utf8_lossy(&line).trim_end()
            )),
            Err(e) => Err(format!("{address}: no greeting: {e}")),
        };
    }
    Err(last)
}

/// Runs `fastsmtpd ready`: polls until `/readyz` is `200` and (with `--smtp`) the listener
/// greets with `220`, or the timeout; the exit code (a line on `err` says what was not
/// ready).
pub fn run_ready(args: &ReadyArgs, err: &mut dyn Write) -> u8 {
    let base = match BaseUrl::parse(&args.api) {
        Ok(base) => base,
        Err(e) => {
            let _ = writeln!(err, "fastsmtpd ready: --api {e}");
            return USAGE;
        }
    };
    let deadline = Instant::now() + args.timeout;
    loop {
        let check = api_ready(&base, deadline).and_then(|()| match &args.smtp {
            Some(address) => smtp_ready(address, deadline),
            None => Ok(()),
        });
        match check {
            Ok(()) => return SATISFIED,
            Err(why) if Instant::now() + RETRY >= deadline => {
                let _ = writeln!(
                    err,
                    "fastsmtpd ready: not ready after {:?}: {why}",
                    args.timeout
                );
                return NOT_SATISFIED;
            }
            Err(_) => std::thread::sleep(RETRY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_await_path_carries_every_filter_encoded() {
        let args = AwaitArgs {
            rcpt: vec!["a+b@x.test".into()],
            subject: Some("Hello world & more".into()),
            count: Some(2),
            after: Some("17".into()),
            timeout: Duration::from_secs(30),
            expect_none: true,
            mailbox: Some("abc".into()),
            ..AwaitArgs::default()
        };
        assert_eq!(
            args.path(),
            "/api/v1/await?timeout=30000ms&rcpt=a%2Bb%40x.test&subject=Hello%20world%20%26%20more&mailbox=abc&count=2&after=17&expect=none"
        );
    }

    #[test]
    fn a_gone_mailbox_is_said_in_one_line() {
        let body = br#"{"error": {"status": 410, "message": "mailbox m1 expired"},
                         "mailbox": "m1", "expired_at": "2026-12-07T01:00:00Z"}"#;
        assert_eq!(
            mailbox_gone(body),
            "mailbox m1 expired at 2026-12-07T01:00:00Z: nothing more will arrive in it"
        );
        assert_eq!(mailbox_gone(b"no json"), "no json");
    }
}
