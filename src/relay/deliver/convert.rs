//! The one place where the relay's rooms' types meet: the spool's envelope becomes the
//! client's (what a transaction sends), the client's outcomes become the spool's recipient
//! states (what is kept), and the spool's envelope and states become the notification's
//! report (what the sender is told).
//!
//! Why a place of its own: the spool, the client and the notifications were built in
//! parallel, and each has its own small `Notify`, `Ret`, `Envelope` and `Recipient` (the
//! spool's own the bytes and store bits; the client's and the notification's borrow). They
//! stay separate types for now (each room is tested alone against its own), and every
//! conversion between them is here, pure, and tested here.
//!
//! What it does not do: read the spool, open a socket or read a clock.

use crate::relay::client::reply::EnhancedStatus;
use crate::relay::client::session::{self as client, LocalReason, Reason};
use crate::relay::dsn::{self, field::decode_xtext};
use crate::relay::spool::{self, BodyType, ClientIdentity, MailParams, RecipientState};

/// The client's `NOTIFY` for the spool's: `None` when none was given (RFC 3461 §4.1).
pub fn client_notify(notify: spool::Notify) -> Option<client::Notify> {
    (!notify.is_empty()).then(|| client::Notify {
        success: notify.contains(spool::Notify::SUCCESS),
        failure: notify.contains(spool::Notify::FAILURE),
        delay: notify.contains(spool::Notify::DELAY),
    })
}

/// The notification's `NOTIFY` for the spool's: `None` when none was given.
pub fn dsn_notify(notify: spool::Notify) -> Option<dsn::Notify> {
    (!notify.is_empty()).then(|| dsn::Notify {
        success: notify.contains(spool::Notify::SUCCESS),
        failure: notify.contains(spool::Notify::FAILURE),
        delay: notify.contains(spool::Notify::DELAY),
    })
}

/// The client's `RET` for the spool's.
pub fn client_ret(ret: spool::Ret) -> client::Ret {
    match ret {
        spool::Ret::Full => client::Ret::Full,
        spool::Ret::Headers => client::Ret::Headers,
    }
}

/// The notification's `RET` for the spool's.
pub fn dsn_ret(ret: spool::Ret) -> dsn::Ret {
    match ret {
        spool::Ret::Full => dsn::Ret::Full,
        spool::Ret::Headers => dsn::Ret::Headers,
    }
}

/// `value` as xtext (RFC 3461 §4): octets outside `!`..`~`, and `+` and `=`, as `+HH`. The
/// spool keeps `ENVID` decoded; the client sends it as received, in xtext.
pub fn encode_xtext(value: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(value.len());
    for &byte in value {
        if (b'!'..=b'~').contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'+',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
    out
}

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
            notify: client_notify(recipient.notify),
            orcpt: recipient.orcpt.as_deref(),
        })
        .collect()
}

/// The client's envelope for a spooled message: its `recipients` (from
/// [`client_recipients`]), its body (for `SIZE` and whether it is 8-bit) and its `ENVID` in
/// xtext (from [`encode_xtext`]).
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
        smtputf8: envelope.params.smtputf8,
        ret: envelope.params.ret.map(client_ret),
        envid: envid_xtext,
    }
}

/// A reason as the spool keeps it (the "last reply" of a recipient): the next hop's reply
/// as `550 5.1.1 text`, or ours as `4.4.2 text` (no reply code: nobody said it on the wire).
pub fn reason_text(reason: &Reason) -> Vec<u8> {
    match reason {
        Reason::Remote(reply) => reply.to_string().into_bytes(),
        Reason::Local(local) => format!("{} {}", local.status(), local_words(local)).into_bytes(),
    }
}

/// Our words for a local reason.
fn local_words(reason: &LocalReason) -> String {
    match reason {
        LocalReason::TooBig { limit } => {
            format!("message larger than the next hop's limit of {limit} octets")
        }
        LocalReason::EightBitRefused => "8-bit message and the next hop lacks 8BITMIME".into(),
        LocalReason::Utf8Refused => "SMTPUTF8 message and the next hop lacks SMTPUTF8".into(),
        LocalReason::Timeout(wait) => format!("timed out waiting for the next hop ({wait:?})"),
        LocalReason::OutOfSync(error) => format!("lost sync with the next hop ({error:?})"),
        LocalReason::ConnectionLost => "connection to the next hop lost".into(),
        LocalReason::TlsUnavailable => "TLS is required, but was not offered".into(),
        LocalReason::AuthWithoutTls => "credentials are never sent without TLS".into(),
        LocalReason::AuthUnavailable => "the next hop offers no usable AUTH".into(),
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

/// Everything a failure notification about one message is made from.
#[derive(Debug, Clone, Copy)]
pub struct NotificationInput<'a> {
    /// Our host name (`Reporting-MTA`).
    pub reporting_mta: &'a str,
    /// The original's envelope.
    pub envelope: &'a spool::Envelope,
    /// Its recipients' states (final ones; only `Failed` are reported).
    pub states: &'a [RecipientState],
    /// The original message.
    pub original: &'a [u8],
    /// Now, Unix milliseconds.
    pub now_unix_ms: u64,
    /// A token unique to this notification (the original's spool id will do: a message gets
    /// at most one failure notification).
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
    let envelope = input.envelope;
    let reverse_path = String::from_utf8_lossy(&envelope.reverse_path).into_owned();
    if reverse_path.is_empty() {
        return None; // RFC 5321 §4.5.5: never about a notification
    }
    struct Owned {
        address: String,
        original: Option<(String, String)>,
        notify: Option<dsn::Notify>,
        status: EnhancedStatus,
        smtp: bool,
        reply: Vec<u8>,
    }
    let failed_default = EnhancedStatus {
        class: 5,
        subject: 0,
        detail: 0,
    };
    let owned: Vec<Owned> = envelope
        .recipients
        .iter()
        .zip(input.states)
        .filter_map(|(recipient, state)| {
            let RecipientState::Failed { reply } = state else {
                return None;
            };
            let (status, smtp) = parse_kept_reply(reply, failed_default);
            let original = recipient.orcpt.as_deref().and_then(|orcpt| {
                let split = orcpt.iter().position(|&byte| byte == b';')?;
                let kind = String::from_utf8_lossy(&orcpt[..split]).into_owned();
                let address = decode_xtext(&orcpt[split + 1..])?;
                Some((kind, String::from_utf8_lossy(&address).into_owned()))
            });
            Some(Owned {
                address: String::from_utf8_lossy(&recipient.address).into_owned(),
                original,
                notify: dsn_notify(recipient.notify),
                status,
                smtp,
                reply: reply.clone(),
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
            action: dsn::Action::Failed,
            status: one.status,
            remote_mta: None,
            diagnostic: Some(if one.smtp {
                dsn::Diagnostic::Smtp(&one.reply)
            } else {
                dsn::Diagnostic::Local(&one.reply)
            }),
            last_attempt: Some(now_secs),
            will_retry_until: None,
        })
        .collect();
    let helo = String::from_utf8_lossy(&envelope.client.helo).into_owned();
    let report = dsn::Report {
        reporting_mta: input.reporting_mta,
        envelope: dsn::OriginalEnvelope {
            reverse_path: &reverse_path,
            envid: envelope.params.envid.as_deref(),
            ret: envelope.params.ret.map(dsn_ret),
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
        recipients: vec![spool::Recipient {
            address: notification.recipient.into_bytes(),
            notify: spool::Notify::default(),
            orcpt: None,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::client::session::RemoteReply;

    fn status(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }

    fn envelope(sender: &[u8], notify: spool::Notify) -> spool::Envelope {
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
    fn notify_and_ret_keep_their_meaning_across_the_three_rooms() {
        assert_eq!(client_notify(spool::Notify::default()), None);
        assert_eq!(dsn_notify(spool::Notify::default()), None);
        let never = client_notify(spool::Notify::NEVER).unwrap();
        assert!(!never.success && !never.failure && !never.delay);
        assert_eq!(dsn_notify(spool::Notify::NEVER), Some(dsn::Notify::NEVER));
        let both = spool::Notify::SUCCESS.union(spool::Notify::FAILURE);
        let converted = client_notify(both).unwrap();
        assert!(converted.success && converted.failure && !converted.delay);
        let converted = dsn_notify(spool::Notify::DELAY).unwrap();
        assert!(!converted.success && !converted.failure && converted.delay);
        assert_eq!(client_ret(spool::Ret::Full), client::Ret::Full);
        assert_eq!(dsn_ret(spool::Ret::Headers), dsn::Ret::Headers);
    }

    #[test]
    fn xtext_round_trips_through_the_notifications_decoder() {
        for value in [&b"plain"[..], b"a+b=c", b"sp ace\x01\xff", b""] {
            let encoded = encode_xtext(value);
            assert!(encoded.iter().all(|byte| byte.is_ascii_graphic()));
            assert_eq!(decode_xtext(&encoded).unwrap(), value);
        }
        assert_eq!(encode_xtext(b"a+b"), b"a+2Bb");
    }

    #[test]
    fn the_client_envelope_sends_only_the_recipients_asked_and_says_8_bit() {
        let mut spooled = envelope(b"s@x.test", spool::Notify::FAILURE);
        spooled.params.ret = Some(spool::Ret::Full);
        let recipients = client_recipients(&spooled, &[1, 7]);
        assert_eq!(recipients.len(), 1);
        assert_eq!(recipients[0].forward_path, b"bad@x.test");
        let envid = encode_xtext(b"id 1");
        let sent = client_envelope(&spooled, &recipients, b"caf\xc3\xa9\r\n", Some(&envid));
        assert!(sent.eight_bit);
        assert_eq!(sent.size, 7);
        assert_eq!(sent.ret, Some(client::Ret::Full));
        assert_eq!(sent.envid, Some(&b"id+201"[..]));
        let plain = client_envelope(&spooled, &recipients, b"ascii\r\n", None);
        assert!(!plain.eight_bit);
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

    #[test]
    fn a_failure_notification_goes_from_null_to_the_sender_and_names_the_failed() {
        let spooled = envelope(b"s@x.test", spool::Notify::default());
        let states = [
            RecipientState::Delivered {
                reply: b"250 ok".to_vec(),
            },
            RecipientState::Failed {
                reply: b"550 5.1.1 No such user".to_vec(),
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
    }

    #[test]
    fn no_notification_to_null_for_never_or_without_a_failure() {
        let failed = [
            RecipientState::Failed {
                reply: b"550 no".to_vec(),
            },
            RecipientState::Failed {
                reply: b"4.4.7 expired".to_vec(),
            },
        ];
        let delivered = [
            RecipientState::Delivered { reply: Vec::new() },
            RecipientState::Delivered { reply: Vec::new() },
        ];
        let cases = [
            (envelope(b"", spool::Notify::default()), &failed),
            (envelope(b"s@x.test", spool::Notify::NEVER), &failed),
            (envelope(b"s@x.test", spool::Notify::SUCCESS), &failed),
            (envelope(b"s@x.test", spool::Notify::default()), &delivered),
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
