//! The relay's `ClientSession` driven like a delivery loop will drive it, against whatever a
//! next hop might send: replies arrive in fuzzer-chosen pieces, unconsumed bytes are carried
//! and presented again, and the driver acts on every event (a transaction on `Ready`, the
//! body on `Content`, the handshake on `StartTls`).
//!
//! Input: `[flags] [recipients] [chunk] [max line] [max lines] [cut count] [cuts]...
//! payload`. Flags: bits 0–1 the TLS policy (0 off, 1 opportunistic, else required), bit 2
//! credentials configured, bit 3 QUIT when no message is left, bits 4–5 what ends the run (0
//! nothing, 1 a timeout, 2 a disconnect, 3 a disconnect after a timeout). The payload is what
//! the next hop sends.
//!
//! Checks: no panic; `on_input` never uses more than it is given, and the carry stays
//! shorter than one reply's limits (max line × max lines); every transaction started gets
//! exactly one report with one outcome per recipient; nothing follows `Closed`; every kept
//! reply text is bounded and has no control character; the credentials (the password, its
//! PLAIN and LOGIN base64 forms) are never written before the handshake was reported done.
#![no_main]

use fastsmtpd::proto::dsn::Notify;
use fastsmtpd::relay::client::session::{
    ClientConfig, ClientSession, Credentials, Envelope, Event, Reason, Recipient, TlsPolicy,
    MAX_REPLY_TEXT_LEN,
};
use fastsmtpd_fuzz::{cut_bounds, Header};
use libfuzzer_sys::fuzz_target;

const PASSWORD: &str = "s3cret-Pw";
/// What must never be written outside TLS: the password, `AUTH PLAIN`'s response
/// (`\0relay\0s3cret-Pw`) and `AUTH LOGIN`'s password line, in base64.
const SECRETS: [&[u8]; 3] = [b"s3cret-Pw", b"AHJlbGF5AHMzY3JldC1Qdw==", b"czNjcmV0LVB3"];

fn check_reason(reason: &Reason) {
    if let Reason::Remote(reply) = reason {
        assert!(reply.text.len() <= MAX_REPLY_TEXT_LEN);
        assert!(!reply.text.chars().any(char::is_control));
        assert!((200..=559).contains(&reply.code));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut header = Header::new(data);
    let flags = header.u8();
    let recipients = 1 + usize::from(header.u8() % 4);
    let chunk = 1 + usize::from(header.u8() % 16);
    let max_line = 4 + usize::from(header.u8());
    let max_lines = 1 + usize::from(header.u8() % 8);
    let cuts = header.cuts();
    let payload = header.rest();

    let mut config = ClientConfig::new("relay.test");
    config.tls = match flags & 3 {
        0 => TlsPolicy::Off,
        1 => TlsPolicy::Opportunistic,
        _ => TlsPolicy::Required,
    };
    if flags & 4 != 0 {
        config.credentials = Some(Credentials {
            user: "relay".into(),
            password: PASSWORD.into(),
        });
    }
    config.max_reply_line = max_line;
    config.max_reply_lines = max_lines;
    let quit = flags & 8 != 0;
    let mut session = ClientSession::new(&config).unwrap();

    let to: Vec<Recipient<'_>> = ["b@y", "c@y", "d@y", "e@y"][..recipients]
        .iter()
        .map(|to| Recipient {
            forward_path: to.as_bytes(),
            notify: Notify::ABSENT,
            orcpt: None,
        })
        .collect();
    let envelope = Envelope {
        reverse_path: b"a@x",
        recipients: &to,
        size: 40,
        eight_bit: false,
        binary: false,
        smtputf8: false,
        ret: None,
        envid: None,
    };
    let body: &[u8] = b"Subject: x\r\n\r\n.\r\n..dots\r\nno end";

    let mut wire = Vec::new();
    let mut plain_wire_end = None::<usize>;
    let mut started = 0usize;
    let mut reports = 0usize;
    let mut closed = false;
    let mut messages_left = 2usize;
    let mut sent = 0usize;
    let mut carry: Vec<u8> = Vec::new();

    let mut react = |session: &mut ClientSession, wire: &mut Vec<u8>| loop {
        session.commands_into(wire);
        let Some(event) = session.next_event() else {
            break;
        };
        assert!(!closed, "an event after Closed: {event:?}");
        match event {
            Event::Ready => {
                if messages_left > 0 {
                    if session.start_transaction(&envelope).is_ok() {
                        messages_left -= 1;
                        started += 1;
                        sent = 0;
                    }
                } else if quit {
                    let _ = session.finish();
                }
            }
            Event::StartTls => {
                if session.on_tls_established().is_ok() && plain_wire_end.is_none() {
                    plain_wire_end = Some(wire.len());
                }
            }
            Event::Content => {
                while session.accepts_content() {
                    let end = (sent + chunk).min(body.len());
                    let last = end == body.len();
                    session.content_into(&body[sent..end], last, wire).unwrap();
                    sent = end;
                    if last {
                        break;
                    }
                }
            }
            Event::TransactionDone(report) => {
                reports += 1;
                assert_eq!(report.recipients.len(), recipients);
                for outcome in &report.recipients {
                    check_reason(&outcome.reason);
                }
                if let Some(reply) = &report.message {
                    check_reason(&Reason::Remote(reply.clone()));
                }
            }
            Event::Closed { error } => {
                if let Some(reason) = &error {
                    check_reason(reason);
                }
                closed = true;
            }
        }
    };

    react(&mut session, &mut wire);
    let mut from = 0;
    for end in cut_bounds(&cuts, payload.len()) {
        carry.extend_from_slice(&payload[from..end]);
        from = end;
        let used = session.on_input(&carry);
        assert!(used <= carry.len());
        carry.drain(..used);
        assert!(
            carry.len() < max_line * max_lines,
            "a carry of {} octets",
            carry.len()
        );
        react(&mut session, &mut wire);
    }
    let ending = (flags >> 4) & 3;
    if ending & 1 != 0 {
        session.on_timeout();
        react(&mut session, &mut wire);
    }
    if ending & 2 != 0 {
        session.on_disconnect();
        react(&mut session, &mut wire);
    }
    // Whatever ended the run, a disconnect now reports every transaction still open.
    session.on_disconnect();
    react(&mut session, &mut wire);
    assert_eq!(reports, started, "one report per transaction started");

    let plain = &wire[..plain_wire_end.unwrap_or(wire.len())];
    for secret in SECRETS {
        assert!(
            !plain.windows(secret.len()).any(|w| w == secret),
            "credentials outside TLS"
        );
    }
});
