//! The envelope of the transaction being received (RFC 5321 §2.3.1): who greeted, the
//! reverse path, the `MAIL` parameters (`ENVID` among them, RFC 3461 §4.4) and the accepted
//! forward paths with their `NOTIFY` and `ORCPT` (RFC 3461 §4.1, §4.2).
//!
//! What it does: keep the envelope in a few buffers that are cleared, never freed, between
//! transactions ([`EnvelopeBuf`]: after warm-up a session allocates nothing for it), and lend
//! it out as a borrowed view ([`Envelope`]) to sinks and gates.
//!
//! What it does not do: decide whether a path or a recipient is acceptable (the session and
//! [`super::command`] do), or outlive a transaction: a sink that needs the envelope later
//! copies what it needs.

use super::command::{MailParams, RcptParams};
use super::dsn::Notify;

/// How the message content arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `DATA`, dot-stuffed and terminated by `CR LF . CR LF` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT` chunks, counted octets (RFC 3030).
    Bdat,
}

/// The envelope of the message being received, borrowed from the session.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The `HELO`/`EHLO` argument.
    pub helo: &'a [u8],
    /// The reverse path without brackets; empty for `<>`.
    pub sender: &'a [u8],
    /// The `MAIL FROM` parameters.
    pub params: MailParams,
    /// `ENVID` (RFC 3461 §4.4) as given, in xtext, when given.
    pub envid: Option<&'a [u8]>,
    /// The accepted recipients, without brackets.
    pub recipients: Recipients<'a>,
    /// DATA or BDAT.
    pub transfer: Transfer,
    /// Whether the client greeted with EHLO (for the `with` clause of a `Received:` header).
    pub esmtp: bool,
    /// The TLS session the transaction came over, if any (RFC 3207, RFC 8314).
    pub tls: Option<&'a TlsInfo>,
    /// The user the client authenticated as (RFC 4954), if it did.
    pub auth_user: Option<&'a [u8]>,
}

/// What the transport says about the TLS session, for records and trace headers. Made by the
/// caller (the session never sees TLS itself) once the handshake is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The server name the client asked for (SNI, RFC 6066 §3), a DNS name checked by the TLS
    /// library; `None` when it sent none.
    pub sni: Option<Box<str>>,
    /// Whether the session was resumed (a ticket or session id) rather than fully negotiated.
    pub resumed: bool,
}

/// A list of recipients stored back to back (no allocation per recipient).
#[derive(Debug, Clone, Copy, Default)]
pub struct Recipients<'a> {
    /// All recipients, back to back.
    bytes: &'a [u8],
    /// The end offset of each recipient in `bytes`.
    ends: &'a [u32],
    /// Each recipient's DSN parameters, in the same order.
    dsn: &'a [RecipientDsn],
    /// Every `ORCPT` value given, back to back.
    orcpt_bytes: &'a [u8],
}

/// One recipient's DSN parameters (RFC 3461 §4.1, §4.2), its `ORCPT` as a place in the
/// shared `ORCPT` buffer.
#[derive(Debug, Clone, Copy, Default)]
struct RecipientDsn {
    /// `NOTIFY`, [`Notify::ABSENT`] when not given.
    notify: Notify,
    /// Whether `ORCPT` was given.
    has_orcpt: bool,
    /// Where its `ORCPT` starts in the `ORCPT` buffer.
    orcpt_start: u32,
    /// Where it ends.
    orcpt_end: u32,
}

impl<'a> Recipients<'a> {
    /// The recipients, in the order given (iterable twice: `Clone`).
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        let bytes = self.bytes;
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let recipient = &bytes[start..end as usize];
            start = end as usize;
            recipient
        })
    }

    /// Each recipient's `NOTIFY` and `ORCPT` (as given, `addr-type;xtext`), in the order of
    /// [`Recipients::iter`].
    pub fn dsn(&self) -> impl Iterator<Item = RcptParams<'a>> + Clone + 'a {
        let orcpt_bytes = self.orcpt_bytes;
        self.dsn.iter().map(move |one| RcptParams {
            notify: one.notify,
            orcpt: one
                .has_orcpt
                .then(|| orcpt_bytes.get(one.orcpt_start as usize..one.orcpt_end as usize))
                .flatten(),
        })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<'a> Envelope<'a> {
    /// The accepted recipients, in the order given.
    pub fn recipients(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.recipients.iter()
    }

    /// How many recipients were accepted.
    pub fn recipient_count(&self) -> usize {
        self.recipients.len()
    }
}

/// The session's own copy of the envelope, reused from one transaction to the next.
#[derive(Debug, Default)]
pub struct EnvelopeBuf {
    /// Whether the client greeted with EHLO (and may use extensions).
    pub(crate) esmtp: bool,
    /// The HELO/EHLO argument.
    helo: Vec<u8>,
    /// The reverse path of the open transaction.
    sender: Vec<u8>,
    /// The MAIL parameters of the open transaction.
    pub(crate) params: MailParams,
    /// `ENVID` as given (xtext), meaningful when `has_envid`.
    envid: Vec<u8>,
    /// Whether `ENVID` was given.
    has_envid: bool,
    /// Accepted recipients, back to back.
    recipient_bytes: Vec<u8>,
    /// End offset of each recipient in `recipient_bytes`.
    recipient_ends: Vec<u32>,
    /// Each accepted recipient's DSN parameters.
    recipient_dsn: Vec<RecipientDsn>,
    /// The accepted recipients' `ORCPT` values, back to back.
    orcpt_bytes: Vec<u8>,
    /// Recipients refused in this transaction (for `554` versus `503` on DATA, RFC 5321 §3.3).
    pub(crate) recipients_refused: u32,
    /// The TLS session, once the handshake is complete.
    pub(crate) tls: Option<Box<TlsInfo>>,
    /// The authenticated user (meaningful only while `authenticated`).
    auth_user: Vec<u8>,
    /// Whether AUTH succeeded in this session (since the last STARTTLS).
    pub(crate) authenticated: bool,
}

impl EnvelopeBuf {
    /// Records a new greeting (`HELO`/`EHLO` argument).
    pub(crate) fn set_helo(&mut self, domain: &[u8], esmtp: bool) {
        self.esmtp = esmtp;
        self.helo.clear();
        self.helo.extend_from_slice(domain);
    }

    /// Opens a transaction with this reverse path and its parameters.
    pub(crate) fn set_sender(&mut self, path: &[u8], params: MailParams, envid: Option<&[u8]>) {
        self.sender.clear();
        self.sender.extend_from_slice(path);
        self.params = params;
        self.envid.clear();
        self.has_envid = envid.is_some();
        self.envid.extend_from_slice(envid.unwrap_or_default());
    }

    /// The reverse path of the open transaction.
    pub(crate) fn sender(&self) -> &[u8] {
        &self.sender
    }

    /// Adds an accepted recipient with its DSN parameters.
    pub(crate) fn add_recipient(&mut self, path: &[u8], params: RcptParams<'_>) {
        self.recipient_bytes.extend_from_slice(path);
        // Recipient bytes are bounded by max_recipients (at most `config::MAX_MAX_RECIPIENTS`,
        // 100 000) times a path's length (at most `command::MAX_PATH_LEN`, 256 octets, RFC 5321
        // §4.5.3.1.3): 25.6 MB, far inside u32. The conversion saturates rather than wraps
        // for a session configured past those bounds. `ORCPT` values (at most
        // `dsn::MAX_ORCPT_LEN`, 500 characters each) stay under 50 MB the same way.
        self.recipient_ends
            .push(u32::try_from(self.recipient_bytes.len()).unwrap_or(u32::MAX));
        let orcpt_start = u32::try_from(self.orcpt_bytes.len()).unwrap_or(u32::MAX);
        self.orcpt_bytes
            .extend_from_slice(params.orcpt.unwrap_or_default());
        self.recipient_dsn.push(RecipientDsn {
            notify: params.notify,
            has_orcpt: params.orcpt.is_some(),
            orcpt_start,
            orcpt_end: u32::try_from(self.orcpt_bytes.len()).unwrap_or(u32::MAX),
        });
    }

    /// The accepted recipients.
    pub(crate) fn recipients(&self) -> Recipients<'_> {
        Recipients {
            bytes: &self.recipient_bytes,
            ends: &self.recipient_ends,
            dsn: &self.recipient_dsn,
            orcpt_bytes: &self.orcpt_bytes,
        }
    }

    /// Forgets the transaction (sender, parameters, recipients), keeping the greeting and
    /// the buffers' capacity (RFC 5321 §4.1.1.5).
    pub(crate) fn clear_transaction(&mut self) {
        self.sender.clear();
        self.params = MailParams::default();
        self.envid.clear();
        self.has_envid = false;
        self.recipient_bytes.clear();
        self.recipient_ends.clear();
        self.recipient_dsn.clear();
        self.orcpt_bytes.clear();
        self.recipients_refused = 0;
    }

    /// The user a successful AUTH named, while the session is authenticated.
    pub(crate) fn auth_user(&self) -> Option<&[u8]> {
        self.authenticated.then_some(&self.auth_user[..])
    }

    /// Records the user a successful AUTH named.
    pub(crate) fn set_auth_user(&mut self, user: &[u8]) {
        self.auth_user.clear();
        self.auth_user.extend_from_slice(user);
        self.authenticated = true;
    }

    /// Forgets everything the client said before STARTTLS (RFC 3207 §4.2): the greeting,
    /// the transaction and any authentication.
    pub(crate) fn forget_all(&mut self) {
        self.clear_transaction();
        self.helo.clear();
        self.esmtp = false;
        self.auth_user.clear();
        self.authenticated = false;
    }

    /// The envelope as sinks see it.
    pub(crate) fn view(&self, transfer: Transfer) -> Envelope<'_> {
        Envelope {
            helo: &self.helo,
            sender: &self.sender,
            params: self.params,
            envid: self.has_envid.then_some(&self.envid[..]),
            recipients: self.recipients(),
            transfer,
            esmtp: self.esmtp,
            tls: self.tls.as_deref(),
            auth_user: self.auth_user(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_come_back_in_order_and_clearing_keeps_the_greeting() {
        let mut envelope = EnvelopeBuf::default();
        envelope.set_helo(b"client.example", true);
        envelope.set_sender(b"a@b", MailParams::default(), Some(b"ENV+2B1"));
        let none = RcptParams::default();
        let orcpt = RcptParams {
            notify: Notify::SUCCESS,
            orcpt: Some(b"rfc822;three@y"),
        };
        let empty_orcpt = RcptParams {
            notify: Notify::NEVER,
            orcpt: Some(b""),
        };
        envelope.add_recipient(b"one@x", none);
        envelope.add_recipient(b"", empty_orcpt);
        envelope.add_recipient(b"three@y", orcpt);
        let view = envelope.view(Transfer::Data);
        let all: Vec<&[u8]> = view.recipients().collect();
        assert_eq!(all, [&b"one@x"[..], b"", b"three@y"]);
        assert_eq!(view.recipient_count(), 3);
        let dsn: Vec<RcptParams<'_>> = view.recipients.dsn().collect();
        assert_eq!(dsn, [none, empty_orcpt, orcpt]);
        assert_eq!(view.envid, Some(&b"ENV+2B1"[..]));
        envelope.clear_transaction();
        let view = envelope.view(Transfer::Bdat);
        assert!(view.recipients.is_empty() && view.sender.is_empty());
        assert_eq!(view.recipients.dsn().count(), 0);
        assert_eq!(view.envid, None);
        assert_eq!(view.helo, b"client.example");
        assert!(view.esmtp);
    }
}
