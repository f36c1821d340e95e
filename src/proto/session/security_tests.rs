//! STARTTLS and AUTH in the session, driven the way the server drives it: input fed at every
//! split point, credentials answered by a caller-side check, TLS "started" when the session
//! asks for it.

use super::*;
use crate::proto::envelope::TlsInfo;
use crate::proto::gate::Open;
use crate::proto::reply::{Banner, ReplyTally};
use base64::Engine as _;

use crate::proto::testkit::RecordingSink as Sink;

fn policy(auth_plaintext: bool, require_tls: bool, auth_required: bool) -> SessionConfig {
    let security = SecurityPolicy {
        starttls: true,
        require_tls,
        auth: true,
        auth_plaintext,
        auth_required,
    };
    SessionConfig {
        banner: Banner::with("mx.test", 1000, security.advertised()),
        max_line_len: 512,
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 5,
        max_junk_commands: 100,
        bare_lf: BareLfPolicy::Reject,
        security,
        dsn: false,
    }
}

/// What a run produced: replies before and after TLS started, and what was discarded.
struct Run {
    plaintext: String,
    inside_tls: String,
    discarded: usize,
    sink: Sink,
    session: Session,
}

/// Runs `before_tls` (cut at `cut`), then, if the session started TLS, `after_tls`.
/// Credentials are accepted when the password is "right".
fn run(config: &SessionConfig, before_tls: &[u8], cut: usize, after_tls: &[u8]) -> Run {
    let mut session = Session::new();
    let mut sink = Sink::default();
    let mut tally = ReplyTally::default();
    let mut out = Vec::new();
    session.on_connect(
        config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    let mut discarded = 0;
    let mut carry = Vec::new();
    let mut tls_out = Vec::new();
    let mut feed =
        |session: &mut Session, carry: &mut Vec<u8>, out: &mut Vec<u8>, sink: &mut Sink| loop {
            let progress = session.on_input(
                config,
                carry,
                &mut Replies::new(out, &mut tally),
                sink,
                &mut Open,
            );
            carry.drain(..progress.consumed);
            discarded += progress.discarded;
            let verdict = session
                .credentials()
                .map(|(user, password)| user == b"alice" && password == b"right");
            let verdict = match verdict {
                Some(true) => AuthVerdict::Accepted,
                Some(false) => AuthVerdict::Rejected,
                None => return progress.wait,
            };
            session.resume(
                config,
                Resume::Auth(verdict),
                &mut Replies::new(out, &mut tally),
                sink,
            );
        };
    let cut = cut.min(before_tls.len());
    let mut wait = None;
    for piece in [&before_tls[..cut], &before_tls[cut..]] {
        carry.extend_from_slice(piece);
        wait = feed(&mut session, &mut carry, &mut out, &mut sink);
    }
    if wait == Some(Wait::StartTls) {
        // The server drops what is left, starts TLS, and reports the finished handshake.
        carry.clear();
        let info = TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            sni: None,
            resumed: false,
        };
        session.resume(
            config,
            Resume::TlsStarted(info),
            &mut Replies::new(&mut tls_out, &mut ReplyTally::default()),
            &mut sink,
        );
        carry.extend_from_slice(after_tls);
        feed(&mut session, &mut carry, &mut tls_out, &mut sink);
    }
    let greeting = "220 mx.test ESMTP fastsmtpd\r\n";
    let plaintext = String::from_utf8(out).unwrap();
    Run {
        plaintext: plaintext.strip_prefix(greeting).unwrap().to_string(),
        inside_tls: String::from_utf8(tls_out).unwrap(),
        discarded,
        sink,
        session,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ehlo_reply(config: &SessionConfig, tls: bool) -> String {
    let bytes = if tls {
        &config.banner.ehlo_tls
    } else {
        &config.banner.ehlo
    };
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn starttls_is_advertised_only_before_tls_and_auth_only_inside_it() {
    let config = policy(false, false, false);
    let plain = ehlo_reply(&config, false);
    let tls = ehlo_reply(&config, true);
    assert!(plain.contains("250-STARTTLS\r\n") && !plain.contains("AUTH"));
    assert!(!tls.contains("STARTTLS") && tls.contains("250-AUTH PLAIN LOGIN\r\n"));
    let both = policy(true, false, false);
    assert!(ehlo_reply(&both, false).contains("250-AUTH PLAIN LOGIN\r\n"));
}

#[test]
fn starttls_then_the_session_starts_over_at_every_split_point() {
    let config = policy(false, false, false);
    let before = b"EHLO client\r\nSTARTTLS\r\n";
    let after = b"MAIL FROM:<a@b>\r\nEHLO client\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n";
    for cut in 0..=before.len() {
        let run = run(&config, before, cut, after);
        assert_eq!(
            run.plaintext,
            format!(
                "{}220 2.0.0 Ready to start TLS\r\n",
                ehlo_reply(&config, false)
            ),
            "cut {cut}"
        );
        // RFC 3207 §4.2: EHLO forgotten, so MAIL first gets 503; no STARTTLS in the new EHLO.
        assert_eq!(
            run.inside_tls,
            format!(
                "503 5.5.1 Error: send HELO/EHLO first\r\n{}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n",
                ehlo_reply(&config, true)
            ),
            "cut {cut}"
        );
        assert_eq!(run.discarded, 0);
        assert!(run.session.is_tls());
        assert_eq!(run.sink.security, [(Some("TLSv1.3".to_string()), None)]);
    }
}

#[test]
fn plaintext_behind_starttls_is_discarded_never_run_inside_tls() {
    // CVE-2011-0411: the injected RSET/MAIL must get no reply, before or after TLS.
    let config = policy(false, false, false);
    let before = b"EHLO client\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n";
    for cut in 13..=before.len() {
        let run = run(&config, before, cut, b"EHLO client\r\n");
        assert!(
            run.plaintext.ends_with("220 2.0.0 Ready to start TLS\r\n"),
            "cut {cut}"
        );
        assert_eq!(run.inside_tls, ehlo_reply(&config, true), "cut {cut}");
        assert_eq!(run.discarded, before.len() - 23, "cut {cut}");
    }
}

#[test]
fn starttls_refusals() {
    let config = policy(false, false, false);
    let run1 = run(&config, b"EHLO c\r\nSTARTTLS now\r\n", usize::MAX, b"");
    assert!(run1
        .plaintext
        .ends_with("501 5.5.4 Syntax: command takes no argument\r\n"));
    let run2 = run(
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n",
        usize::MAX,
        b"",
    );
    assert!(run2
        .plaintext
        .ends_with("503 5.5.1 Error: command not allowed during a mail transaction\r\n"));
    let run3 = run(
        &config,
        b"STARTTLS\r\n",
        usize::MAX,
        b"EHLO c\r\nSTARTTLS\r\n",
    );
    assert!(run3
        .inside_tls
        .ends_with("503 5.5.1 Error: TLS already active\r\n"));
    let mut no_tls = policy(false, false, false);
    no_tls.security.starttls = false;
    let run4 = run(&no_tls, b"EHLO c\r\nSTARTTLS\r\n", usize::MAX, b"");
    assert!(run4
        .plaintext
        .ends_with("502 5.5.1 Error: command not implemented\r\n"));
}

#[test]
fn require_tls_refuses_mail_and_auth_on_plaintext() {
    let config = policy(true, true, false);
    let run = run(
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\nSTARTTLS\r\n",
        usize::MAX,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\n",
    );
    let tail = "530 5.7.0 Must issue a STARTTLS command first\r\n\
                530 5.7.0 Must issue a STARTTLS command first\r\n\
                220 2.0.0 Ready to start TLS\r\n";
    assert!(run.plaintext.ends_with(tail), "{}", run.plaintext);
    assert!(run.inside_tls.ends_with("250 2.1.0 Ok\r\n"));
}

#[test]
fn auth_plain_and_login_at_every_split_point() {
    let config = policy(true, false, true);
    let plain = b64(b"\0alice\0right");
    let user = b64(b"alice");
    let password = b64(b"right");
    let sessions = [
        (
            format!("EHLO c\r\nAUTH PLAIN {plain}\r\n"),
            "235 2.7.0 Authentication successful\r\n",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN\r\n{plain}\r\n"),
            "334 \r\n235 2.7.0 Authentication successful\r\n",
        ),
        (
            format!("EHLO c\r\nAUTH LOGIN\r\n{user}\r\n{password}\r\n"),
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
        ),
        (
            format!("EHLO c\r\nauth login {user}\r\n{password}\r\n"),
            "334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
        ),
    ];
    for (input, replies) in sessions {
        let input =
            format!("{input}MAIL FROM:<a@b> AUTH=<>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
        for cut in 0..=input.len() {
            let run = run(&config, input.as_bytes(), cut, b"");
            let want = format!(
                "{}{replies}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n",
                ehlo_reply(&config, false)
            );
            assert_eq!(run.plaintext, want, "{input:?} cut {cut}");
            assert_eq!(run.sink.security, [(None, Some(b"alice".to_vec()))]);
        }
    }
}

#[test]
fn auth_refusals_each_with_its_code() {
    let config = policy(true, false, true);
    let wrong = b64(b"\0alice\0wrong");
    let cases: Vec<(String, &str)> = vec![
        (
            "AUTH PLAIN\r\n".into(),
            "503 5.5.1 Error: send EHLO first\r\n",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN {wrong}\r\n"),
            "535 5.7.8 Error: authentication failed\r\n",
        ),
        (
            "EHLO c\r\nAUTH PLAIN\r\n*\r\n".into(),
            "334 \r\n501 5.7.0 Error: authentication cancelled\r\n",
        ),
        (
            "EHLO c\r\nAUTH LOGIN\r\n*\r\n".into(),
            "334 VXNlcm5hbWU6\r\n501 5.7.0 Error: authentication cancelled\r\n",
        ),
        (
            "EHLO c\r\nAUTH PLAIN %%%%\r\n".into(),
            "501 5.5.2 Error: cannot decode response\r\n",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", b64(b"alice\0right")),
            "501 5.5.2 Error: cannot decode response\r\n",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", b64(b"bob\0alice\0right")),
            "535 5.7.8 Error: authentication failed\r\n",
        ),
        (
            "EHLO c\r\nAUTH CRAM-MD5\r\n".into(),
            "504 5.5.4 Error: unrecognized authentication mechanism\r\n",
        ),
        (
            "EHLO c\r\nAUTH\r\n".into(),
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n",
        ),
        (
            "EHLO c\r\nMAIL FROM:<a@b>\r\n".into(),
            "530 5.7.0 Error: authentication required\r\n",
        ),
        (
            format!(
                "EHLO c\r\nAUTH PLAIN {}\r\nAUTH PLAIN\r\n",
                b64(b"\0alice\0right")
            ),
            "235 2.7.0 Authentication successful\r\n503 5.5.1 Error: already authenticated\r\n",
        ),
        (
            "HELO c\r\nAUTH PLAIN\r\n".into(),
            "503 5.5.1 Error: send EHLO first\r\n",
        ),
    ];
    for (input, tail) in cases {
        let run = run(&config, input.as_bytes(), usize::MAX, b"");
        assert!(
            run.plaintext.ends_with(tail),
            "{input:?}: {}",
            run.plaintext
        );
    }
    // Inside a transaction (no --auth-required here, so MAIL gets through first).
    let open = policy(true, false, false);
    let run1 = run(
        &open,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\n",
        usize::MAX,
        b"",
    );
    assert!(run1
        .plaintext
        .ends_with("503 5.5.1 Error: command not allowed during a mail transaction\r\n"));
    // AUTH on plaintext when offered only under TLS, and AUTH= without AUTH offered.
    let tls_only = policy(false, false, false);
    let run2 = run(
        &tls_only,
        b"EHLO c\r\nAUTH PLAIN\r\nMAIL FROM:<a@b> AUTH=<>\r\n",
        usize::MAX,
        b"",
    );
    assert!(run2.plaintext.ends_with(
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n555 5.5.4 Error: unsupported parameter\r\n"
    ), "{}", run2.plaintext);
}

#[test]
fn failures_count_toward_the_error_cap_and_starttls_forgets_auth() {
    let config = policy(true, false, false);
    let wrong = b64(b"\0alice\0wrong");
    let input = format!("EHLO c\r\n{}", format!("AUTH PLAIN {wrong}\r\n").repeat(5));
    let run1 = run(&config, input.as_bytes(), usize::MAX, b"");
    assert!(run1.plaintext.ends_with("535 5.7.8 Error: authentication failed\r\n421 4.7.0 Error: too many errors, closing connection\r\n"));
    assert_eq!(run1.session.auth_failures(), 5);
    assert!(run1.session.is_closed());
    // Authenticated on plaintext, then STARTTLS: the login is forgotten (RFC 3207 §4.2).
    let right = b64(b"\0alice\0right");
    let before = format!("EHLO c\r\nAUTH PLAIN {right}\r\nSTARTTLS\r\n");
    let run2 = run(
        &config,
        before.as_bytes(),
        usize::MAX,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(run2.sink.security, [(Some("TLSv1.3".to_string()), None)]);
}

#[test]
fn credentials_never_reach_a_reply() {
    let config = policy(true, false, false);
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
        b64(b"\0alice\0s3cr3t"),
        b64(b"alice"),
        b64(b"s3cr3t")
    );
    let run = run(&config, input.as_bytes(), usize::MAX, b"");
    assert!(!run.plaintext.contains("s3cr3t") && !run.plaintext.contains("alice"));
    assert!(!format!("{:?}", run.session).contains("s3cr3t"));
}

#[test]
fn invalid_attempts_are_decided_like_any_other_and_fail() {
    // Each goes to the caller (so it takes as long as a real check) and gets 535 even though
    // the caller's check would accept the password.
    let config = policy(true, false, false);
    for input in [
        format!("EHLO c\r\nAUTH PLAIN {}\r\n", b64(b"bob\0alice\0right")),
        format!("EHLO c\r\nAUTH LOGIN {}\r\n\r\n", b64(b"alice")),
        "EHLO c\r\nAUTH LOGIN =\r\ncmlnaHQ=\r\n".to_string(),
        format!("EHLO c\r\nAUTH LOGIN {}\r\ncmlnaHQ=\r\n", b64(b"al\x1bice")),
    ] {
        let run = run(&config, input.as_bytes(), usize::MAX, b"");
        assert!(
            run.plaintext
                .ends_with("535 5.7.8 Error: authentication failed\r\n"),
            "{input:?}: {}",
            run.plaintext
        );
        assert_eq!(run.session.auth_failures(), 1, "{input:?}");
    }
}

/// Bug (issue 16, item 8): a `454` was free: 200 pipelined `AUTH` lines answered `454` on
/// one connection were counted neither as errors nor as junk, so the connection was never
/// closed. Now each `454` counts toward the error cap.
#[test]
fn a_454_counts_toward_the_error_cap_and_the_session_goes_on_until_it() {
    let mut config = policy(true, false, false);
    config.max_errors = 3;
    let mut session = Session::new();
    let mut sink = Sink::default();
    let mut tally = ReplyTally::default();
    let mut out = Vec::new();
    let auth = format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0right"));
    let input = format!("EHLO c\r\n{auth}NOOP\r\n{auth}{auth}NOOP\r\n");
    let mut input = input.as_bytes();
    let replies = [reply::AUTH_TEMPORARY_FAILURE, reply::AUTH_TOO_MANY_FAILURES];
    let mut answered = 0;
    while !input.is_empty() && !session.is_closed() {
        let progress = session.on_input(
            &config,
            input,
            &mut Replies::new(&mut out, &mut tally),
            &mut sink,
            &mut Open,
        );
        input = &input[progress.consumed..];
        if session.credentials().is_some() {
            session.resume(
                &config,
                Resume::Auth(AuthVerdict::Unavailable(replies[answered % 2])),
                &mut Replies::new(&mut out, &mut tally),
                &mut sink,
            );
            answered += 1;
        }
    }
    let out = String::from_utf8(out).unwrap();
    let busy = "454 4.7.0 Temporary authentication failure\r\n";
    let limited =
        "454 4.7.0 Error: too many failed authentications from your address, try again later\r\n";
    let want = format!(
        "{busy}250 2.0.0 Ok\r\n{limited}{busy}421 4.7.0 Error: too many errors, closing connection\r\n"
    );
    assert!(out.ends_with(&want), "{out}");
    assert_eq!(session.auth_failures(), 0, "not failed attempts");
    assert_eq!(session.errors(), 3);
    assert!(session.is_closed());
}

#[test]
fn require_tls_answers_530_to_all_but_noop_ehlo_starttls_quit() {
    let mut config = policy(false, true, false);
    config.max_errors = 20;
    let run = run(
        &config,
        b"HELO c\r\nEHLO c\r\nNOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nRCPT TO:<a@b>\r\nDATA\r\nQUIT\r\n",
        usize::MAX,
        b"",
    );
    let must = "530 5.7.0 Must issue a STARTTLS command first\r\n";
    let want = format!(
        "{must}{}250 2.0.0 Ok\r\n{}221 2.0.0 Bye\r\n",
        ehlo_reply(&config, false),
        must.repeat(5)
    );
    assert_eq!(run.plaintext, want);
}
