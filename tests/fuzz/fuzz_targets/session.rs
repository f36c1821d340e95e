//! A whole `Session` driven like the server drives it: input arrives in fuzzer-chosen pieces,
//! unconsumed bytes are carried and presented again with the next piece.
//!
//! Input: `[line] [size lo] [size hi] [recipients] [errors] [flags] [security] [cut count]
//! [cuts]... [splice: u8, u16 LE if flag bit 4] payload`. Flags: bit 0 bare-LF policy Keep,
//! bit 1 the sink fails to store, bit 2 shutdown after the input, bit 3 also feed the payload
//! one byte at a time, bit 4 insert one of the SMTP smuggling vectors of
//! `fastsmtpd::proto::data::reference` into the payload (`fastsmtpd_fuzz::Splice`).
//! Security (the server's settings, turned into a `SessionConfig` by `Config::session_config`
//! as the server does, so the EHLO replies advertise what the policy allows): bit 0 TLS is
//! configured (STARTTLS offered), bit 1 AUTH (`--auth`), bit 2 AUTH on plaintext too
//! (`--auth-plaintext`), bit 3 `--require-tls`, bit 4 `--auth-required`, bit 5 the session
//! starts inside TLS (`Session::over_tls`, an implicit-TLS listener). Combinations the server's
//! `Config::validate` refuses are fuzzed too: the session must cope with any policy.
//!
//! Driven like `src/server/conn/`: after each `on_input`, credentials waiting for a verdict
//! ([`Wait::Credentials`]) are answered with [`Resume::Auth`] (accepted exactly when the
//! password is [`RIGHT_PASSWORD`]) and the kept input is presented again. When the session
//! answers `STARTTLS` with `220` ([`Wait::StartTls`]), the server discards everything behind
//! it: each run ends its input there (every split variant stops at the same point), then, like
//! the server, starts TLS, reports the finished handshake ([`Resume::TlsStarted`]) and sends
//! one `EHLO` inside it. The sink is the crate's test kit (`testkit` feature).
//!
//! Checks: the sink sees start/data/end/abort properly paired; the carry stays shorter than
//! `max_line_len`; output, stored messages, counters and the point where STARTTLS cut the input
//! do not depend on the split points; every reply line ends in CR LF and is printable ASCII;
//! accepted counts agree with the `250 ... queued` replies. Security: the bytes discarded
//! after STARTTLS (whole-input run) are exactly the input behind the STARTTLS line; no reply
//! contains the password or its base64; `235` comes once per accepted password and never
//! otherwise; `535`s = `auth_failures()`; no reply given inside TLS mentions STARTTLS, and the
//! EHLO after the upgrade gets the TLS EHLO reply; the sink never starts a message without a
//! successful AUTH under `--auth-required`, nor outside TLS under `--require-tls`, and each
//! message's envelope carries exactly the TLS state and the user the driver knows of.
#![no_main]

use fastsmtpd::auth::AuthSource;
use fastsmtpd::config::{Auth, Config, Limits, Tls};
use fastsmtpd::config::TlsSource;
use fastsmtpd::proto::envelope::TlsInfo;
use fastsmtpd::proto::gate::Open;
use fastsmtpd::proto::reply::{
    Replies, ReplyTally, AUTH_FAILED, AUTH_OK, MESSAGE_ACCEPTED, READY_TO_START_TLS,
};
use fastsmtpd::proto::session::{
    AuthVerdict, BareLfPolicy, Resume, Session, SessionConfig, Wait,
};
use fastsmtpd::proto::testkit::{RecordingSink, SecurityChecks};
use fastsmtpd_fuzz::{cut_bounds, hex, Header, Splice};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The one password the driver accepts (any user). Distinctive, so finding it in a reply
/// cannot be a coincidence.
const RIGHT_PASSWORD: &[u8] = b"right-pw-7Zq";
/// Forms of it that must never appear in a reply: base64 of the password (an AUTH LOGIN
/// response) and of `\0alice\0right-pw-7Zq` (an AUTH PLAIN response, in the dictionary).
const PASSWORD_FORMS: [&[u8]; 3] = [
    RIGHT_PASSWORD,
    b"cmlnaHQtcHctN1px",
    b"AGFsaWNlAHJpZ2h0LXB3LTdacQ==",
];
/// What the session is told once the driver "started TLS".
fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3",
        cipher: "TLS_AES_128_GCM_SHA256",
        sni: None,
        resumed: false,
    }
}
/// The command the driver sends inside TLS after an upgrade.
const PROBE_EHLO: &[u8] = b"EHLO p\r\n";

/// Everything observable after a run, compared across split points.
#[derive(Debug, PartialEq)]
struct Observed {
    out: Vec<u8>,
    sink: RecordingSink,
    carry: Vec<u8>,
    closed: bool,
    commands: u64,
    errors: u32,
    accepted: (u64, u64),
    /// AUTH verdicts given: accepted, refused.
    verdicts: (u32, u32),
    auth_failures: u32,
    /// Where the input stopped counting: the offset right behind the STARTTLS line.
    starttls_at: Option<usize>,
    /// Replies inside TLS after the upgrade (to the probe EHLO, or a closing 421).
    after_upgrade: Vec<u8>,
}

struct Plan {
    shutdown: bool,
    fail_store: bool,
    over_tls: bool,
    require_tls: bool,
    auth_required: bool,
}

/// The settings the target varies start from the server's defaults (built once: the
/// default thread count asks the OS).
fn base_config() -> &'static Config {
    static BASE: OnceLock<Config> = OnceLock::new();
    BASE.get_or_init(|| Config {
        hostname: "mx.test".into(),
        threads: 1,
        ..Config::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut header = Header::new(data);
    let line = header.u8();
    let size = header.u16();
    let recipients = header.u8();
    let errors = header.u8();
    let flags = header.u8();
    let security = header.u8();
    let raw_cuts = header.cuts();
    let splice = (flags & 16 != 0).then(|| Splice::read(&mut header));
    let payload = header.rest();
    let spliced = splice.map(|s| s.apply(payload));
    let input = spliced.as_deref().unwrap_or(payload);

    let max_message_size = 1 + u64::from(size % 4096);
    let server = Config {
        limits: Limits {
            // Mostly tiny limits so that they are hit; sometimes the RFC minimum.
            max_line_len: if line < 0xc0 {
                1 + usize::from(line % 0x80)
            } else {
                512
            },
            max_message_size,
            max_recipients: 1 + usize::from(recipients % 4),
            max_errors: 1 + u32::from(errors % 24),
            max_junk_commands: 100,
            ..base_config().limits.clone()
        },
        bare_lf: if flags & 1 == 1 {
            BareLfPolicy::Keep
        } else {
            BareLfPolicy::Reject
        },
        tls: Tls {
            source: (security & 1 != 0).then_some(TlsSource::SelfSigned),
            require: security & 8 != 0,
            ..base_config().tls.clone()
        },
        auth: Auth {
            source: (security & 2 != 0).then_some(AuthSource::Any),
            plaintext: security & 4 != 0,
            required: security & 16 != 0,
            ..base_config().auth.clone()
        },
        ..base_config().clone()
    };
    let config = server.session_config();
    let plan = Plan {
        fail_store: flags & 2 != 0,
        shutdown: flags & 4 != 0,
        over_tls: security & 32 != 0,
        require_tls: server.tls.require,
        auth_required: server.auth.required,
    };

    // Octets discarded behind STARTTLS are compared with the input only for the whole-input
    // run: a split run never presents the pieces after the one holding STARTTLS.
    let (whole, discarded) = run(&config, &plan, input, &[input.len()]);
    check_output(&whole, discarded, &plan, &config, input);
    let (split, _) = run(&config, &plan, input, &cut_bounds(&raw_cuts, input.len()));
    assert!(
        whole == split,
        "split {raw_cuts:?} changed the result\nwhole {whole:?}\nsplit {split:?}\ninput {}",
        hex(input)
    );
    if flags & 8 != 0 {
        let every: Vec<usize> = (0..=input.len()).collect();
        let (bytewise, _) = run(&config, &plan, input, &every);
        assert!(
            whole == bytewise,
            "bytewise changed the result\nwhole {whole:?}\nbytewise {bytewise:?}\ninput {}",
            hex(input)
        );
    }
});

/// One `on_input` round as the server does it: the input, then each AUTH verdict followed by
/// the kept input again, until the session waits for nothing from the driver. Returns the
/// commands completed.
#[allow(clippy::too_many_arguments)]
fn feed(
    config: &SessionConfig,
    session: &mut Session,
    carry: &mut Vec<u8>,
    out: &mut Vec<u8>,
    tally: &mut ReplyTally,
    sink: &mut RecordingSink,
    verdicts: &mut (u32, u32),
    discarded: &mut usize,
    wait: &mut Option<Wait>,
) -> u64 {
    let mut commands = 0;
    loop {
        let tls = session.is_tls();
        let before = out.len();
        let progress = session.on_input(
            config,
            carry,
            &mut Replies::new(out, tally),
            sink,
            &mut Open,
        );
        assert!(progress.pause_at.is_none(), "paused without a gate asking");
        commands += u64::from(progress.completed);
        assert!(progress.consumed <= carry.len(), "consumed more than given");
        *wait = progress.wait;
        if matches!(progress.wait, Some(Wait::Closed | Wait::StartTls)) {
            assert_eq!(progress.consumed, carry.len(), "input left behind");
        }
        carry.drain(..progress.consumed);
        *discarded += progress.discarded;
        // The driver accepts the right password; the session still refuses an attempt it
        // found invalid itself (another authorization identity, a user name that is not
        // printable UTF-8, an empty password), so `235` comes exactly for the right password
        // and a valid attempt.
        let refused = session.credentials_refused();
        let verdict = session.credentials().map(|(user, password)| {
            (user.to_vec(), password == RIGHT_PASSWORD, refused == Some(true))
        });
        assert_eq!(
            verdict.is_some(),
            progress.wait == Some(Wait::Credentials),
            "credentials without the wait for them"
        );
        if let Some((_, accepted, refused)) = &verdict {
            let replies_before = out.len();
            let answer = if *accepted {
                AuthVerdict::Accepted
            } else {
                AuthVerdict::Rejected
            };
            let resumed = session.resume(
                config,
                Resume::Auth(answer),
                &mut Replies::new(out, tally),
                sink,
            );
            *wait = resumed.wait;
            assert!(session.credentials().is_none(), "verdict ignored");
            let reply = &out[replies_before..];
            if *accepted && !*refused {
                verdicts.0 += 1;
                assert!(reply.starts_with(AUTH_OK), "{reply:?}");
            } else {
                verdicts.1 += 1;
                assert!(reply.starts_with(AUTH_FAILED), "{reply:?}");
            }
        }
        let answered = verdict.is_some();
        if let Some((user, true, false)) = verdict {
            checks(sink).authenticated = Some(user);
        }
        // RFC 3207 §4.2: inside TLS, STARTTLS is neither offered nor accepted.
        if tls {
            assert!(
                !contains(&out[before..], b"STARTTLS"),
                "STARTTLS inside TLS: {:?}",
                String::from_utf8_lossy(&out[before..])
            );
        }
        if !answered {
            return commands;
        }
    }
}

/// Feeds `input[prev..end]` for each `end` of `ends` (ascending, last = len) like the server:
/// the unconsumed tail of each call is presented again, followed by the next piece. Stops
/// feeding once the session answered STARTTLS. Also returns the input octets the session
/// reported discarded behind STARTTLS.
fn run(config: &SessionConfig, plan: &Plan, input: &[u8], ends: &[usize]) -> (Observed, usize) {
    let mut session = if plan.over_tls {
        Session::over_tls()
    } else {
        Session::new()
    };
    let mut sink = RecordingSink {
        fail_store: plan.fail_store,
        checks: Some(SecurityChecks {
            require_tls: plan.require_tls,
            auth_required: plan.auth_required,
            ..SecurityChecks::default()
        }),
        ..RecordingSink::default()
    };
    let mut out = Vec::new();
    let mut tally = ReplyTally::default();
    if plan.over_tls {
        // The handshake of an implicit-TLS listener completes before the greeting.
        let progress = session.resume(
            config,
            Resume::TlsStarted(tls_info()),
            &mut Replies::new(&mut out, &mut tally),
            &mut sink,
        );
        assert!(out.is_empty() && progress.wait.is_none());
        checks(&mut sink).tls = true;
    }
    session.on_connect(
        config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    let mut commands = 0u64;
    let mut verdicts = (0, 0);
    let mut discarded = 0;
    let mut carry: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut starttls_at = None;
    let mut wait = None;
    for &end in ends {
        carry.extend_from_slice(&input[start..end]);
        commands += feed(
            config,
            &mut session,
            &mut carry,
            &mut out,
            &mut tally,
            &mut sink,
            &mut verdicts,
            &mut discarded,
            &mut wait,
        );
        let left = carry.len();
        assert!(
            left < config.max_line_len,
            "carry of {left} bytes, max_line_len {}: {}",
            config.max_line_len,
            hex(input)
        );
        start = end;
        if wait == Some(Wait::StartTls) {
            // The server flushes the 220 and drops everything else it has read.
            assert!(out.ends_with(READY_TO_START_TLS), "{}", hex(input));
            starttls_at = Some(end - discarded);
            break;
        }
    }
    if plan.shutdown {
        let before = out.len();
        let progress = session.resume(
            config,
            Resume::Shutdown,
            &mut Replies::new(&mut out, &mut tally),
            &mut sink,
        );
        assert_eq!(out.len(), before, "shutdown said something at once");
        wait = progress.wait;
    }
    let mut after_upgrade = Vec::new();
    if wait == Some(Wait::StartTls) {
        let progress = session.resume(
            config,
            Resume::TlsStarted(tls_info()),
            &mut Replies::new(&mut after_upgrade, &mut tally),
            &mut sink,
        );
        wait = progress.wait;
        assert!(session.is_tls() && wait != Some(Wait::StartTls));
        checks(&mut sink).tls = true;
        checks(&mut sink).authenticated = None;
        let mut probe = PROBE_EHLO.to_vec();
        commands += feed(
            config,
            &mut session,
            &mut probe,
            &mut after_upgrade,
            &mut tally,
            &mut sink,
            &mut verdicts,
            &mut discarded,
            &mut wait,
        );
        // The EHLO inside TLS gets the TLS reply (or an error such as a tiny line limit's).
        if after_upgrade.starts_with(b"250") {
            assert_eq!(after_upgrade, &config.banner.ehlo_tls[..]);
        }
    }
    let closed = wait == Some(Wait::Closed);
    let errors = session.errors();
    let auth_failures = session.auth_failures();
    let accepted = session.take_accepted();
    assert_eq!(session.take_accepted(), (0, 0));
    session.on_disconnect(&mut sink);
    let mut after_close = Vec::new();
    let progress = session.resume(
        config,
        Resume::Expired(b"421 4.4.2 closing\r\n"),
        &mut Replies::new(&mut after_close, &mut tally),
        &mut sink,
    );
    assert!(progress.wait == Some(Wait::Closed) && after_close.is_empty());
    assert!(!sink.open, "message left open after disconnect");
    assert_eq!(
        sink.started,
        sink.ended + sink.aborted,
        "start/end/abort unpaired"
    );
    let observed = Observed {
        out,
        sink,
        carry,
        closed,
        commands,
        errors,
        accepted,
        verdicts,
        auth_failures,
        starttls_at,
        after_upgrade,
    };
    (observed, discarded)
}

/// The sink's security checks (every run sets them).
fn checks(sink: &mut RecordingSink) -> &mut SecurityChecks {
    sink.checks.as_mut().expect("checks set by run")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn check_output(
    observed: &Observed,
    discarded: usize,
    plan: &Plan,
    config: &SessionConfig,
    input: &[u8],
) {
    let out = &observed.out;
    assert!(
        out.ends_with(b"\r\n"),
        "output does not end in CRLF: {}",
        hex(input)
    );
    let all = [&out[..], &observed.after_upgrade[..]].concat();
    for line in all.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
            panic!(
                "reply line without CRLF in {:?}: {}",
                String::from_utf8_lossy(&all),
                hex(input)
            )
        });
        assert!(
            line.iter().all(|&b| (0x20..=0x7e).contains(&b)),
            "non-printable reply line {line:?}: {}",
            hex(input)
        );
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "{line:?}"
        );
    }
    // Every `250 ... queued` is one stored message, and the counters agree.
    let queued = count(out, MESSAGE_ACCEPTED);
    let stored = &observed.sink.messages;
    assert_eq!(
        queued,
        stored.len(),
        "queued replies vs stored: {}",
        hex(input)
    );
    if plan.fail_store {
        assert!(stored.is_empty());
    }
    let bytes: u64 = stored.iter().map(|m| m.2.len() as u64).sum();
    assert_eq!(
        observed.accepted,
        (stored.len() as u64, bytes),
        "{}",
        hex(input)
    );

    // AUTH: no reply repeats the password; 235 only for the right one; 535s counted.
    for form in PASSWORD_FORMS {
        assert!(!contains(&all, form), "password in a reply: {}", hex(input));
    }
    let lines_with_code = |code: &[u8]| {
        all.split_inclusive(|&b| b == b'\n')
            .filter(|line| line.starts_with(code))
            .count()
    };
    assert_eq!(
        lines_with_code(b"235") as u32,
        observed.verdicts.0,
        "235 without the right password: {}",
        hex(input)
    );
    assert_eq!(
        lines_with_code(b"535") as u32,
        observed.auth_failures,
        "535 replies vs auth_failures(): {}",
        hex(input)
    );
    assert!(observed.auth_failures >= observed.verdicts.1);
    if !config.security.auth {
        assert_eq!(observed.verdicts, (0, 0), "AUTH without AUTH configured");
    }

    // STARTTLS: the whole-input run discards exactly what follows the STARTTLS line.
    if let Some(at) = observed.starttls_at {
        assert!(config.security.starttls && !plan.over_tls);
        assert_eq!(
            discarded,
            input.len() - at,
            "discarded vs input behind STARTTLS: {}",
            hex(input)
        );
        let line = input[..at]
            .strip_suffix(b"\r\n")
            .expect("STARTTLS line ends in CR LF");
        let line = line.trim_ascii_end();
        assert!(
            line.len() >= 8 && line[line.len() - 8..].eq_ignore_ascii_case(b"STARTTLS"),
            "220 to a line that is not STARTTLS: {}",
            hex(input)
        );
        assert!(!contains(&observed.after_upgrade, b"STARTTLS"));
    } else {
        assert_eq!(discarded, 0);
        assert!(observed.after_upgrade.is_empty());
        assert_eq!(count(out, READY_TO_START_TLS), 0, "220 without an upgrade");
    }
    if plan.over_tls {
        assert!(!contains(out, b"STARTTLS"), "STARTTLS inside TLS");
    }
}
