//! The one place where the relay's rooms' types meet: the spool's envelope becomes the
//! client's (what a transaction sends), the client's outcomes become the spool's recipient
//! states (what is kept), and the spool's envelope and states become the notification's
//! report (what the sender is told).
//!
//! Why a place of its own: the spool, the client and the notifications were built in
//! parallel, and each has its own small `Envelope` and `Recipient` (the spool's own the
//! bytes; the client's and the notification's borrow). DSN's `Notify` and `Ret` are one type
//! for all three ([`crate::proto::dsn`]); every conversion between the rest is here, pure,
//! and tested here.
//!
//! What it does not do: read the spool, open a socket or read a clock.

use crate::proto::dsn::{decode_xtext, xtext_into, Notify};
use crate::relay::client::reply::EnhancedStatus;
use crate::relay::client::session::{self as client, Reason};
use crate::relay::dsn;
use crate::relay::spool::{self, BodyType, ClientIdentity, MailParams, RecipientState};

/// The client's recipients for the spool envelope's recipients at `indexes` (those not yet
/// final), in that order.
pub fn client_recipients<'a>(
    envelope: &'a spool::Envelope,
    indexes: &[usize],
) -> Vec<client::Recipient<'a>> {
    indexes
        .iter()
        .filter_map(|&index| envelope.recipients.get(index))
        .map(|recipient| client::Recipient {
            forward_path: &recipient.address,
            notify: recipient.notify,
            orcpt: recipient.orcpt.as_deref(),
        })
        .collect()
}

/// `ENVID` as the client sends it: the spool keeps it decoded, RFC 3461 §4.4 sends xtext.
pub fn envid_xtext(envelope: &spool::Envelope) -> Option<Vec<u8>> {
    envelope.params.envid.as_deref().map(|envid| {
        let mut out = Vec::with_capacity(envid.len());
        xtext_into(envid, &mut out);
        out
    })
}

/// The client's envelope for a spooled message: its `recipients` (from
/// [`client_recipients`]), its body (for `SIZE` and whether it is 8-bit) and its `ENVID` in
/// xtext (from [`envid_xtext`]).
pub fn client_envelope<'a>(
    envelope: &'a spool::Envelope,
    recipients: &'a [client::Recipient<'a>],
    body: &[u8],
    envid_xtext: Option<&'a [u8]>,
) -> client::Envelope<'a> {
    let declared_eight_bit = matches!(
        envelope.params.body,
        BodyType::EightBitMime | BodyType::BinaryMime
    );
    client::Envelope {
        reverse_path: &envelope.reverse_path,
        recipients,
        size: body.len() as u64,
        eight_bit: declared_eight_bit || body.iter().any(|&byte| byte >= 0x80),
        binary: envelope.params.body == BodyType::BinaryMime,
        smtputf8: envelope.params.smtputf8,
        ret: envelope.params.ret,
        envid: envid_xtext,
    }
}

/// A reason as the spool keeps it (the "last reply" of a recipient): the next hop's reply
/// as `550 5.1.1 text`, or ours as `4.4.2 text` (no reply code: nobody said it on the wire).
pub fn reason_text(reason: &Reason) -> Vec<u8> {
    match reason {
        Reason::Remote(reply) => reply.to_string().into_bytes(),
        // Our words (`LocalReason`'s `Display`), never Rust's debug text.
        Reason::Local(local) => format!("{} {local}", local.status()).into_bytes(),
    }
}

/// What a kept reply says for a notification: its enhanced status (the one written, else
/// `class.0.0` of its reply code, else `default`) and whether it is the next hop's reply (a
/// reply code first) rather than our words.
pub fn parse_kept_reply(reply: &[u8], default: EnhancedStatus) -> (EnhancedStatus, bool) {
    let code = reply
        .get(..3)
        .filter(|digits| digits.iter().all(u8::is_ascii_digit))
        .filter(|_| matches!(reply.get(3), None | Some(b' ' | b'-')));
    let rest = if code.is_some() {
        reply.get(4..).unwrap_or_default()
    } else {
        reply
    };
    let word = rest.split(|&byte| byte == b' ').next().unwrap_or_default();
    let status = parse_status_word(word).or_else(|| {
        code.and_then(|digits| match digits[0] {
            class @ (b'2' | b'4' | b'5') => Some(EnhancedStatus {
                class: class - b'0',
                subject: 0,
                detail: 0,
            }),
            _ => None,
        })
    });
    (status.unwrap_or(default), code.is_some())
}

/// `class.subject.detail` (RFC 3463 §2), or `None`.
fn parse_status_word(word: &[u8]) -> Option<EnhancedStatus> {
    let text = std::str::from_utf8(word).ok()?;
    let mut parts = text.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some(EnhancedStatus {
        class,
        subject,
        detail,
    })
}

/// Everything a notification about one message is made from.
#[derive(Debug, Clone, Copy)]
pub struct NotificationInput<'a> {
    /// Our host name (`Reporting-MTA`).
    pub reporting_mta: &'a str,
    /// The original's envelope.
    pub envelope: &'a spool::Envelope,
    /// Its recipients' states, one per envelope recipient.
    pub states: &'a [RecipientState],
    /// The original message.
    pub original: &'a [u8],
    /// Now, Unix milliseconds.
    pub now_unix_ms: u64,
    /// A token unique to this notification (the original's spool id and the kind of
    /// notification will do: see the callers).
    pub token: &'a str,
}

/// Writes the notification about a message's failed recipients into `out` and returns the
/// spool envelope to keep it with (reverse path `<>`, one recipient: the original's sender,
/// arrival `now_unix_ms`); or `None`, nothing appended, when no failure is to be reported (a
/// `<>` sender, `NOTIFY` without `FAILURE`, no failed recipient).
pub fn failure_notification_into(
    input: &NotificationInput<'_>,
    out: &mut Vec<u8>,
) -> Option<spool::Envelope> {
    let failed: Vec<(usize, dsn::Action)> = input
        .states
        .iter()
        .enumerate()
        .filter(|(_, state)| matches!(state, RecipientState::Failed { .. }))
        .map(|(index, _)| (index, dsn::Action::Failed))
        .collect();
    notification_into(input, &failed, None, out)
}

/// Writes the notification that the recipients at `indexes` were handed to a next hop that
/// does not offer DSN (RFC 3461 §5.2.2: `Action: relayed`, sent when their `NOTIFY` holds
/// `SUCCESS`, since no further notification will come from beyond that hop). The kept state
/// of each (its `Delivered` reply) gives the status and the `Diagnostic-Code`. `None`,
/// nothing appended, when none of them asked for it.
pub fn relayed_notification_into(
    input: &NotificationInput<'_>,
    indexes: &[usize],
    out: &mut Vec<u8>,
) -> Option<spool::Envelope> {
    let relayed: Vec<(usize, dsn::Action)> = indexes
        .iter()
        .map(|&index| (index, dsn::Action::Relayed))
        .collect();
    notification_into(input, &relayed, None, out)
}

/// Writes the delay warning (`Action: delayed`, RFC 3464 §2.3.3) for every recipient that is
/// still deferred, with `Will-Retry-Until` at `retry_until_unix_ms` (the queue lifetime's
/// end): each recipient's `NOTIFY` decides (absent: `FAILURE,DELAY`, RFC 3461 §4.1). `None`,
/// nothing appended, when none is deferred or none asked for it.
pub fn delay_notification_into(
    input: &NotificationInput<'_>,
    retry_until_unix_ms: u64,
    out: &mut Vec<u8>,
) -> Option<spool::Envelope> {
    let delayed: Vec<(usize, dsn::Action)> = input
        .states
        .iter()
        .enumerate()
        .filter(|(_, state)| matches!(state, RecipientState::Deferred { .. }))
        .map(|(index, _)| (index, dsn::Action::Delayed))
        .collect();
    notification_into(input, &delayed, Some(retry_until_unix_ms / 1000), out)
}

/// The reply kept with a recipient's state, and the status to assume without one.
fn kept_reply(state: &RecipientState, action: dsn::Action) -> (&[u8], EnhancedStatus) {
    let class = match action {
        dsn::Action::Failed => 5,
        dsn::Action::Delayed => 4,
        _ => 2,
    };
    let reply = match state {
        RecipientState::Failed { reply, .. } | RecipientState::Delivered { reply, .. } => reply,
        RecipientState::Deferred { last_reply, .. } => last_reply,
        RecipientState::Pending => &[][..],
    };
    let default = EnhancedStatus {
        class,
        subject: 0,
        detail: 0,
    };
    (reply, default)
}

/// The notification reporting `reported` (recipient index, action) of the input's message;
/// see the three callers above.
fn notification_into(
    input: &NotificationInput<'_>,
    reported: &[(usize, dsn::Action)],
    will_retry_until: Option<u64>,
    out: &mut Vec<u8>,
) -> Option<spool::Envelope> {
    let envelope = input.envelope;
    let reverse_path = String::from_utf8_lossy(&envelope.reverse_path).into_owned();
    if reverse_path.is_empty() {
        return None; // RFC 5321 §4.5.5: never about a notification
    }
    struct Owned {
        address: String,
        original: Option<(String, String)>,
        notify: Notify,
        action: dsn::Action,
        status: EnhancedStatus,
        smtp: bool,
        reply: Vec<u8>,
        remote_mta: String,
    }
    let owned: Vec<Owned> = reported
        .iter()
        .filter_map(|&(index, action)| {
            let recipient = envelope.recipients.get(index)?;
            let state = input.states.get(index)?;
            let (reply, default) = kept_reply(state, action);
            let (status, smtp) = parse_kept_reply(reply, default);
            // The status must say what the action says (RFC 3464 §2.3.4): a kept reply of
            // another class (a 2yz kept for a failure) gives way to the action's class. A
            // failure whose last reply was temporary is one whose lifetime ran out: RFC 3463
            // §3.5's X.4.7 "delivery time expired" (the reply stays in Diagnostic-Code).
            let status = if status.class == default.class {
                status
            } else if action == dsn::Action::Failed && status.class == 4 {
                EnhancedStatus {
                    class: 5,
                    subject: 4,
                    detail: 7,
                }
            } else {
                default
            };
            // RFC 3461 §6.3 / RFC 3464 §2.3.1: ORCPT's address shown decoded, with its type.
            let original = recipient.orcpt.as_deref().and_then(|orcpt| {
                let split = orcpt.iter().position(|&byte| byte == b';')?;
                let kind = String::from_utf8_lossy(&orcpt[..split]).into_owned();
                let address = decode_xtext(&orcpt[split + 1..])?;
                Some((kind, String::from_utf8_lossy(&address).into_owned()))
            });
            Some(Owned {
                address: String::from_utf8_lossy(&recipient.address).into_owned(),
                original,
                notify: recipient.notify,
                action,
                status,
                smtp,
                reply: reply.to_vec(),
                // RFC 3464 §2.3.5: the next hop that gave the reply, when one was reached.
                remote_mta: String::from_utf8_lossy(state.remote_mta()).into_owned(),
            })
        })
        .collect();
    let now_secs = input.now_unix_ms / 1000;
    let outcomes: Vec<dsn::RecipientOutcome<'_>> = owned
        .iter()
        .map(|one| dsn::RecipientOutcome {
            address: &one.address,
            original: one
                .original
                .as_ref()
                .map(|(kind, address)| dsn::OriginalRecipient {
                    address_type: kind,
                    address,
                }),
            notify: one.notify,
            action: one.action,
            status: one.status,
            remote_mta: (!one.remote_mta.is_empty()).then_some(one.remote_mta.as_str()),
            diagnostic: (!one.reply.is_empty()).then_some(if one.smtp {
                dsn::Diagnostic::Smtp(&one.reply)
            } else {
                dsn::Diagnostic::Local(&one.reply)
            }),
            // The spool keeps no time per attempt, and the notification's own time is not
            // the last attempt's (the fresh review: a recipient refused at 10:27:35 was
            // reported at 10:27:47): left out until the states carry it (RFC 3464 §2.3.7
            // makes the field optional).
            last_attempt: None,
            will_retry_until: (one.action == dsn::Action::Delayed)
                .then_some(will_retry_until)
                .flatten(),
        })
        .collect();
    let helo = String::from_utf8_lossy(&envelope.client.helo).into_owned();
    let report = dsn::Report {
        reporting_mta: input.reporting_mta,
        envelope: dsn::OriginalEnvelope {
            reverse_path: &reverse_path,
            envid: envelope.params.envid.as_deref(),
            ret: envelope.params.ret,
            smtputf8: envelope.params.smtputf8,
            arrival: envelope.arrival_unix_ms / 1000,
            received_from: (!helo.is_empty()).then_some(helo.as_str()),
        },
        recipients: &outcomes,
        original: input.original,
        now: now_secs,
        token: input.token,
    };
    let notification = dsn::notification_into(&report, out)?;
    Some(spool::Envelope {
        arrival_unix_ms: input.now_unix_ms,
        reverse_path: Vec::new(),
        params: MailParams {
            ret: None,
            envid: None,
            body: if notification.eight_bit {
                BodyType::EightBitMime
            } else {
                BodyType::Unspecified
            },
            smtputf8: notification.smtputf8,
            size: None,
        },
        client: ClientIdentity {
            helo: input.reporting_mta.as_bytes().to_vec(),
            address: b"127.0.0.1".to_vec(),
            protocol: b"local".to_vec(),
        },
        // Decision: the notification's own recipient says `NOTIFY=NEVER`, passed on to a
        // next hop that offers DSN (RFC 3461 §5.2.1). RFC 3461 asks only for `MAIL FROM:<>`
        // (§6.1; RFC 5321 §4.5.5: never a notification about a notification), which already
        // keeps anyone from returning one; NEVER says so to the next hop explicitly, as RFC
        // 5230 has vacation replies do. Here it changes nothing: the `<>` reverse path
        // already keeps us from making one.
        recipients: vec![spool::Recipient {
            address: notification.recipient.into_bytes(),
            notify: Notify::NEVER,
            orcpt: None,
        }],
    })
}

/// Panics when `text` holds Rust debug output: a CamelCase word (`TooManyLines`: a
/// lower-case letter then an upper-case one) or braces (`TooBig { limit: 5 }`). What kept
/// replies and `Diagnostic-Code`s are checked with (nit 7: words, never debug text).
#[cfg(test)]
pub(crate) fn assert_words(text: &str) {
    assert!(!text.contains(['{', '}']), "debug braces in {text:?}");
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let bytes = word.as_bytes();
        let camel = bytes
            .windows(2)
            .any(|pair| pair[0].is_ascii_lowercase() && pair[1].is_ascii_uppercase());
        assert!(!camel, "debug word {word:?} in {text:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dsn::Ret;
    use crate::relay::client::session::{LocalReason, RemoteReply};

    fn status(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }

    fn envelope(sender: &[u8], notify: Notify) -> spool::Envelope {
        spool::Envelope {
            arrival_unix_ms: 1_800_000_000_000,
            reverse_path: sender.to_vec(),
            recipients: ["good@x.test", "bad@x.test"]
                .iter()
                .map(|address| spool::Recipient {
                    address: address.as_bytes().to_vec(),
                    notify,
                    orcpt: Some(b"rfc822;bad+2Bone@x.test".to_vec()),
                })
                .collect(),
            ..spool::Envelope::default()
        }
    }

    #[test]
    fn the_client_envelope_sends_only_the_recipients_asked_and_says_8_bit() {
        let mut spooled = envelope(b"s@x.test", Notify::FAILURE);
        spooled.params.ret = Some(Ret::Full);
        spooled.params.envid = Some(b"id 1".to_vec());
        let recipients = client_recipients(&spooled, &[1, 7]);
        assert_eq!(recipients.len(), 1);
        assert_eq!(recipients[0].forward_path, b"bad@x.test");
        assert_eq!(recipients[0].notify, Notify::FAILURE);
        assert_eq!(recipients[0].orcpt, Some(&b"rfc822;bad+2Bone@x.test"[..]));
        // The spool keeps ENVID decoded; the client sends it in xtext (RFC 3461 §4.4).
        let envid = envid_xtext(&spooled);
        assert_eq!(envid.as_deref(), Some(&b"id+201"[..]));
        let sent = client_envelope(&spooled, &recipients, b"caf\xc3\xa9\r\n", envid.as_deref());
        assert!(sent.eight_bit);
        assert_eq!(sent.size, 7);
        assert_eq!(sent.ret, Some(Ret::Full));
        assert_eq!(sent.envid, Some(&b"id+201"[..]));
        let plain = client_envelope(&spooled, &recipients, b"ascii\r\n", None);
        assert!(!plain.eight_bit);
        spooled.params.envid = None;
        assert_eq!(envid_xtext(&spooled), None);
    }

    #[test]
    fn kept_replies_say_their_status_and_whose_words_they_are() {
        let default = status(5, 0, 0);
        let table: &[(&[u8], EnhancedStatus, bool)] = &[
            (b"550 5.1.1 No such user", status(5, 1, 1), true),
            (b"451 Try later", status(4, 0, 0), true),
            (
                b"4.4.2 connection to the next hop lost",
                status(4, 4, 2),
                false,
            ),
            (b"garbage", default, false),
            (b"", default, false),
            (b"999 9.9.9 odd", default, true),
            (b"550", status(5, 0, 0), true),
        ];
        for &(reply, want, smtp) in table {
            assert_eq!(parse_kept_reply(reply, default), (want, smtp), "{reply:?}");
        }
        let remote = Reason::Remote(RemoteReply {
            code: 550,
            enhanced: Some(status(5, 1, 1)),
            text: "5.1.1 No such user".into(),
        });
        assert_eq!(reason_text(&remote), b"550 5.1.1 No such user");
        let local = reason_text(&Reason::Local(LocalReason::ConnectionLost));
        assert!(local.starts_with(b"4.4.2 "), "{local:?}");
    }

    /// Every local reason, with every wait and every way of losing sync, is kept as its
    /// status and words: no Rust debug text (`(TooManyLines)`, `(Greeting)`).
    #[test]
    fn every_local_reason_is_kept_in_words() {
        use crate::relay::client::reply::ReplyError;
        use crate::relay::client::session::{SyncError, Wait};
        let waits = [
            Wait::Greeting,
            Wait::Command,
            Wait::Handshake,
            Wait::Mail,
            Wait::Rcpt,
            Wait::DataInitiation,
            Wait::DataBlock,
            Wait::DataTermination,
        ];
        let syncs = [
            SyncError::Reply(ReplyError::LineTooLong),
            SyncError::Reply(ReplyError::TooManyLines),
            SyncError::Reply(ReplyError::BadCode),
            SyncError::Reply(ReplyError::BadSeparator),
            SyncError::Reply(ReplyError::CodeChanged),
            SyncError::Reply(ReplyError::BareLf),
            SyncError::Unexpected(354),
            SyncError::InputBeforeHandshake,
        ];
        let mut reasons = vec![
            LocalReason::TooBig { limit: 1000 },
            LocalReason::EightBitRefused,
            LocalReason::Utf8Refused,
            LocalReason::BinaryRefused,
            LocalReason::ConnectionLost,
            LocalReason::TlsUnavailable,
            LocalReason::AuthWithoutTls,
            LocalReason::AuthUnavailable,
        ];
        reasons.extend(waits.map(LocalReason::Timeout));
        reasons.extend(syncs.map(LocalReason::OutOfSync));
        let mut seen = std::collections::HashSet::new();
        for reason in reasons {
            let kept = reason_text(&Reason::Local(reason));
            let text = String::from_utf8(kept).unwrap();
            let code = reason.status().to_string();
            assert!(text.starts_with(&format!("{code} ")), "{text}");
            assert_words(&text);
            assert!(seen.insert(text.clone()), "two reasons say {text:?}");
            // And as the notification shows it: an `x-fastsmtpd;` Diagnostic-Code.
            let (parsed, smtp) = parse_kept_reply(text.as_bytes(), status(2, 0, 0));
            assert_eq!((parsed, smtp), (reason.status(), false), "{text}");
        }
        assert_eq!(
            reason_text(&Reason::Local(LocalReason::OutOfSync(SyncError::Reply(
                ReplyError::TooManyLines
            )))),
            b"4.5.0 lost sync with the next hop: the next hop sent a reply with more lines than the limit"
        );
        assert_eq!(
            reason_text(&Reason::Local(LocalReason::Timeout(Wait::Greeting))),
            b"4.4.2 timed out waiting for the next hop's greeting"
        );
    }

    #[test]
    fn a_failure_notification_goes_from_null_to_the_sender_and_names_the_failed() {
        let spooled = envelope(b"s@x.test", Notify::default());
        let states = [
            RecipientState::Delivered {
                reply: b"250 ok".to_vec(),
                remote_mta: b"mx.far.test".to_vec(),
            },
            RecipientState::Failed {
                reply: b"550 5.1.1 No such user".to_vec(),
                remote_mta: b"mx.far.test".to_vec(),
            },
        ];
        let input = NotificationInput {
            reporting_mta: "relay.test",
            envelope: &spooled,
            states: &states,
            original: b"Subject: hi\r\n\r\nbody\r\n",
            now_unix_ms: 1_800_000_100_000,
            token: "Q42",
        };
        let mut out = Vec::new();
        let kept = failure_notification_into(&input, &mut out).unwrap();
        assert!(kept.reverse_path.is_empty());
        assert_eq!(kept.recipients.len(), 1);
        assert_eq!(kept.recipients[0].address, b"s@x.test");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("multipart/report"), "{text}");
        assert!(
            text.contains("Final-Recipient: rfc822; bad@x.test"),
            "{text}"
        );
        assert!(!text.contains("good@x.test"), "{text}");
        assert!(text.contains("Action: failed"), "{text}");
        assert!(text.contains("Status: 5.1.1"), "{text}");
        assert!(text.contains("smtp; 550 5.1.1 No such user"), "{text}");
        assert!(
            text.contains("Original-Recipient: rfc822; bad+one@x.test"),
            "{text}"
        );
        // RFC 3464 §2.3.5: the next hop that gave the reply.
        assert!(text.contains("Remote-MTA: dns; mx.far.test\r\n"), "{text}");
        assert!(text.contains("mx.far.test said: 550 5.1.1"), "{text}");
        // A failure of our own before any next hop answered names none.
        let states = [
            states[0].clone(),
            RecipientState::Failed {
                reply: b"4.4.1 no next hop answered".to_vec(),
                remote_mta: Vec::new(),
            },
        ];
        let input = NotificationInput {
            states: &states,
            ..input
        };
        let mut out = Vec::new();
        failure_notification_into(&input, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Action: failed"), "{text}");
        // Failed after a temporary reply: its lifetime ran out.
        assert!(text.contains("Status: 5.4.7\r\n"), "{text}");
        assert!(!text.contains("Remote-MTA"), "{text}");
        assert!(
            text.contains("x-fastsmtpd; 4.4.1 no next hop answered"),
            "{text}"
        );
    }

    #[test]
    fn a_relayed_notification_names_only_the_recipients_asked_with_orcpt_and_envid() {
        let mut spooled = envelope(b"s@x.test", Notify::SUCCESS);
        spooled.params.envid = Some(b"ENV 1".to_vec());
        spooled.recipients[0].notify = Notify::ABSENT;
        let states = [
            RecipientState::Delivered {
                reply: b"250 2.0.0 Ok: queued as A".to_vec(),
                remote_mta: b"127.0.0.1".to_vec(),
            },
            RecipientState::Delivered {
                reply: b"250 2.0.0 Ok: queued as B".to_vec(),
                remote_mta: b"127.0.0.1".to_vec(),
            },
        ];
        let input = NotificationInput {
            reporting_mta: "relay.test",
            envelope: &spooled,
            states: &states,
            original: b"Subject: hi\r\n\r\nbody\r\n",
            now_unix_ms: 1_800_000_100_000,
            token: "Q42R",
        };
        let mut out = Vec::new();
        // Recipient 0 did not ask for SUCCESS: reported only if asked, so only 1 is.
        let kept = relayed_notification_into(&input, &[0, 1], &mut out).unwrap();
        assert_eq!(kept.recipients[0].address, b"s@x.test");
        assert_eq!(kept.recipients[0].notify, Notify::NEVER);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Action: relayed"), "{text}");
        assert!(text.contains("Status: 2.0.0"), "{text}");
        assert!(text.contains("Remote-MTA: dns; 127.0.0.1\r\n"), "{text}");
        assert!(
            text.contains("Final-Recipient: rfc822; bad@x.test"),
            "{text}"
        );
        assert!(!text.contains("good@x.test"), "{text}");
        assert!(text.contains("Original-Envelope-Id: ENV 1"), "{text}");
        assert!(
            text.contains("Original-Recipient: rfc822; bad+one@x.test"),
            "{text}"
        );
        assert!(!text.contains("body"), "headers only: {text}");
        let mut out = Vec::new();
        assert!(relayed_notification_into(&input, &[0], &mut out).is_none());
        assert!(out.is_empty());
    }

    #[test]
    fn a_delay_notification_reports_the_deferred_until_the_lifetime() {
        let spooled = envelope(b"s@x.test", Notify::ABSENT);
        let states = [
            RecipientState::Deferred {
                attempts: 3,
                next_attempt_unix_ms: 0,
                last_reply: b"451 4.2.0 later".to_vec(),
                remote_mta: b"mx.far.test".to_vec(),
            },
            RecipientState::Delivered {
                reply: b"250 ok".to_vec(),
                remote_mta: b"mx.far.test".to_vec(),
            },
        ];
        let input = NotificationInput {
            reporting_mta: "relay.test",
            envelope: &spooled,
            states: &states,
            original: b"Subject: hi\r\n\r\nbody\r\n",
            now_unix_ms: 1_800_000_100_000,
            token: "Q42D",
        };
        let mut out = Vec::new();
        delay_notification_into(&input, 1_800_000_500_000, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Action: delayed"), "{text}");
        assert!(text.contains("Status: 4.2.0"), "{text}");
        assert!(text.contains("Remote-MTA: dns; mx.far.test\r\n"), "{text}");
        assert!(text.contains("smtp; 451 4.2.0 later"), "{text}");
        assert!(text.contains("Will-Retry-Until:"), "{text}");
        assert!(
            text.contains("Final-Recipient: rfc822; good@x.test"),
            "{text}"
        );
        assert!(
            !text.contains("bad@x.test"),
            "delivered is not delayed: {text}"
        );
        // A kept reply of another class gives way to the action's (RFC 3464 §2.3.4).
        let odd = [
            RecipientState::Deferred {
                attempts: 1,
                next_attempt_unix_ms: 0,
                last_reply: b"550 5.1.1 odd".to_vec(),
                remote_mta: Vec::new(),
            },
            RecipientState::Pending,
        ];
        let input = NotificationInput {
            states: &odd,
            ..input
        };
        let mut out = Vec::new();
        delay_notification_into(&input, 1_800_000_500_000, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("Status: 4.0.0"));
        let never = envelope(b"s@x.test", Notify::FAILURE);
        let input = NotificationInput {
            envelope: &never,
            ..input
        };
        assert!(delay_notification_into(&input, 0, &mut Vec::new()).is_none());
    }

    #[test]
    fn no_notification_to_null_for_never_or_without_a_failure() {
        let failed = [
            RecipientState::Failed {
                reply: b"550 no".to_vec(),
                remote_mta: b"mx.test".to_vec(),
            },
            RecipientState::Failed {
                reply: b"4.4.7 expired".to_vec(),
                remote_mta: Vec::new(),
            },
        ];
        let delivered = [
            RecipientState::Delivered {
                reply: Vec::new(),
                remote_mta: Vec::new(),
            },
            RecipientState::Delivered {
                reply: Vec::new(),
                remote_mta: Vec::new(),
            },
        ];
        let cases = [
            (envelope(b"", Notify::default()), &failed),
            (envelope(b"s@x.test", Notify::NEVER), &failed),
            (envelope(b"s@x.test", Notify::SUCCESS), &failed),
            (envelope(b"s@x.test", Notify::default()), &delivered),
        ];
        for (spooled, states) in &cases {
            let input = NotificationInput {
                reporting_mta: "relay.test",
                envelope: spooled,
                states: &states[..],
                original: b"\r\n",
                now_unix_ms: 0,
                token: "Q1",
            };
            let mut out = Vec::new();
            assert!(failure_notification_into(&input, &mut out).is_none());
            assert!(out.is_empty());
        }
    }
}
