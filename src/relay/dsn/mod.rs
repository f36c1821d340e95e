//! Delivery status notifications, pure: the message a relay sends to a message's sender when it
//! gives up on recipients, is still retrying them, or was asked to report their delivery (RFC
//! 3464 for the report, RFC 3461 for the rules of when, RFC 6522 for `multipart/report`, RFC
//! 6533 for UTF-8 addresses).
//!
//! What it does:
//! - [`notification_due`] says whether one recipient's outcome is reported at all: never to a
//!   `<>` reverse path (RFC 5321 §4.5.5: no notification about a notification), never with
//!   `NOTIFY=NEVER`, a failure only with `FAILURE` (or `NOTIFY` absent), a delay only with
//!   `DELAY` (or absent), a success (`delivered`, `relayed`, `expanded`) only with `SUCCESS`
//!   (RFC 3461 §4.1).
//! - [`notification_into`] writes the whole notification for one message: an RFC 5322 message
//!   whose body is `multipart/report; report-type=delivery-status` with three parts (a short text
//!   for a person, the `message/delivery-status` fields of RFC 3464 §2, and the original's header
//!   block, or the whole original with `RET=FULL`), and returns its envelope: reverse path `<>`,
//!   one recipient (the original sender), and whether it needs `SMTPUTF8` or `BODY=8BITMIME` to
//!   be relayed. Recipients whose outcome is not due are left out; when none is due there is no
//!   notification.
//! - The RFC 3461 parameters themselves (`NOTIFY`, `RET`, xtext) are
//!   [`crate::proto::dsn`]'s, the one definition the server's parser, the spool and the
//!   client share.
//!
//! Everything the caller passes may come from someone hostile (the next hop's reply text, the
//! addresses, the original's header lines): it is made printable, cut at the bounds named
//! below, and folded so no line exceeds 998 octets (RFC 5322 §2.1.1); the MIME boundary is
//! chosen so it occurs in none of the parts. See [`field`].
//!
//! What it does not do: read a clock (the caller passes seconds since the Unix epoch), invent
//! identifiers (the caller passes a unique token for `Message-ID` and the boundary), keep, queue
//! or send anything, or decide whether delay warnings are wanted (`--delay-warning`: the caller
//! passes `delayed` outcomes only when they are). A notification about a notification cannot
//! be asked for: its reverse path is `<>`.

pub mod field;

use crate::proto::dsn::{Notify, Ret};
use crate::relay::client::reply::EnhancedStatus;
use field::{address_text, folded_into, one_line_text, unitext};

/// The longest diagnostic text kept from a next hop's reply, in octets (RFC 5321 §4.5.3.1.5
/// allows 512 per reply line; two lines' worth is plenty for a person, and a hostile next hop
/// cannot make the notification large).
pub const MAX_DIAGNOSTIC_LEN: usize = 1024;

/// The longest address written, in octets (RFC 5321 §4.5.3.1.3 allows a path of 256; an
/// ORCPT may be up to 500, RFC 3461 §4.2).
pub const MAX_ADDRESS_LEN: usize = 512;

/// The longest `Original-Envelope-Id` written, in octets (RFC 3461 §4.4: ENVID is at most 100).
pub const MAX_ENVID_LEN: usize = 100;

/// The longest host name written (reporting, remote or sending MTA), in octets (RFC 1035
/// §2.3.4: 255).
pub const MAX_HOST_LEN: usize = 255;

/// The most octets of the original's header block returned, whole lines only.
pub const MAX_RETURNED_HEADER_LEN: usize = 64 * 1024;

/// The largest original returned whole with `RET=FULL`, in octets; a larger one is returned as
/// its header block only (Postfix's `bounce_size_limit` plays the same part).
pub const MAX_RETURNED_MESSAGE_LEN: usize = 1024 * 1024;

/// The longest part of the caller's token used in `Message-ID` and the boundary, in octets
/// (short enough that the boundary stays under RFC 2046 §5.1.1's 70 characters).
const MAX_TOKEN_LEN: usize = 32;

/// What happened to one recipient (RFC 3464 §2.3.3, the `Action` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up on: a permanent refusal, or the queue lifetime ran out.
    Failed,
    /// Not delivered yet, still being retried.
    Delayed,
    /// Delivered, and the next hop is the final one.
    Delivered,
    /// Handed to a next hop that does not offer DSN, so no further report will come from it
    /// (RFC 3461 §5.2.2).
    Relayed,
    /// Delivered to a mailing list or alias that passed it on to several addresses.
    Expanded,
}

impl Action {
    /// The field's value: `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// What a successful hand-off to the next hop is, for the notification rules: `relayed` when
/// the next hop does not offer DSN (RFC 3461 §5.2.2: we are the last MTA able to report), and
/// `None` when it does and the DSN parameters were passed on (reporting is now its job).
pub fn handoff_action(next_hop_offers_dsn: bool) -> Option<Action> {
    (!next_hop_offers_dsn).then_some(Action::Relayed)
}

/// The `ORCPT` parameter of one recipient (RFC 3461 §4.2), xtext already decoded
/// ([`crate::proto::dsn::decode_xtext`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalRecipient<'a> {
    /// The address type, e.g. `rfc822` or `utf-8` (RFC 6533 §3).
    pub address_type: &'a str,
    /// The address as the sender gave it, decoded.
    pub address: &'a str,
}

/// Why a recipient ended as it did, for the `Diagnostic-Code` field (RFC 3464 §2.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnostic<'a> {
    /// The next hop's reply as received (code, enhanced code and text; a multi-line reply
    /// whole): written as `smtp; 550 5.1.1 ...` on one (folded) line.
    Smtp(&'a [u8]),
    /// Our own words when no reply explains it (e.g. the connection was refused until the
    /// queue lifetime ran out): written as `x-fastsmtpd; ...`.
    Local(&'a [u8]),
}

/// One recipient's outcome, as the spool and the client know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientOutcome<'a> {
    /// The recipient's address as given on `RCPT TO` (without the angle brackets).
    pub address: &'a str,
    /// Its `ORCPT` parameter, when one was given.
    pub original: Option<OriginalRecipient<'a>>,
    /// Its `NOTIFY` parameter ([`Notify::ABSENT`]: [`Notify::DEFAULT`] applies).
    pub notify: Notify,
    /// What happened to it.
    pub action: Action,
    /// The RFC 3463 status: the next hop's enhanced code when it gave one, else ours (e.g.
    /// `4.4.7` for an expired message, RFC 3463 §3.5).
    pub status: EnhancedStatus,
    /// The next hop's host name or address, when one was reached (`Remote-MTA: dns; host`).
    pub remote_mta: Option<&'a str>,
    /// What explains the outcome, when something does.
    pub diagnostic: Option<Diagnostic<'a>>,
    /// When the last attempt was made, in seconds since the Unix epoch.
    pub last_attempt: Option<u64>,
    /// Until when the recipient will be retried, in seconds since the Unix epoch: written for
    /// `delayed` only (RFC 3464 §2.3.9).
    pub will_retry_until: Option<u64>,
}

/// The original message's envelope, as the spool kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalEnvelope<'a> {
    /// The reverse path of `MAIL FROM` without the angle brackets; empty for `<>`.
    pub reverse_path: &'a str,
    /// Its `ENVID` parameter, xtext already decoded, when one was given (RFC 3461 §4.4).
    pub envid: Option<&'a [u8]>,
    /// Its `RET` parameter, when one was given ([`Ret::Headers`] applies when absent).
    pub ret: Option<Ret>,
    /// Whether it was sent with `SMTPUTF8` (RFC 6531): its header may hold UTF-8.
    pub smtputf8: bool,
    /// When we accepted it, in seconds since the Unix epoch (`Arrival-Date`).
    pub arrival: u64,
    /// The client it came from, as its EHLO name or address (`Received-From-MTA: dns; ...`).
    pub received_from: Option<&'a str>,
}

/// Everything one notification is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    /// Our host name: `Reporting-MTA`, the `From:` domain and the `Message-ID` domain.
    pub reporting_mta: &'a str,
    /// The original's envelope.
    pub envelope: OriginalEnvelope<'a>,
    /// The outcomes to report; those not due ([`notification_due`]) are left out.
    pub recipients: &'a [RecipientOutcome<'a>],
    /// The original message as received (header block, blank line, body).
    pub original: &'a [u8],
    /// Now, in seconds since the Unix epoch (the `Date:` field).
    pub now: u64,
    /// A token unique to this notification (e.g. the queue id and an attempt counter): its
    /// letters and digits make the `Message-ID` and the MIME boundary.
    pub token: &'a str,
}

/// Which notification it is, by the most serious outcome in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// At least one recipient failed.
    Failure,
    /// None failed, at least one is delayed.
    Delay,
    /// Every reported recipient was delivered, relayed or expanded.
    Success,
}

/// What part three of the notification holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// The original's header block (`text/rfc822-headers` or `message/global-headers`).
    Headers,
    /// The whole original (`message/rfc822` or `message/global`).
    Full,
}

/// The envelope of a notification [`notification_into`] wrote, and what relaying it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The one recipient: the original's reverse path (without angle brackets).
    pub recipient: String,
    /// Whether it must go out with `SMTPUTF8` (RFC 6533 types, UTF-8 addresses or header).
    pub smtputf8: bool,
    /// Whether it holds 8-bit octets, so must go out with `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// Which notification it is.
    pub kind: Kind,
    /// How many recipients it reports.
    pub reported: usize,
    /// What of the original it carries.
    pub returned: Returned,
}

impl Notification {
    /// The notification's reverse path: always empty, `MAIL FROM:<>` (RFC 5321 §4.5.5), so no
    /// notification is ever sent about it.
    pub fn reverse_path(&self) -> &'static str {
        ""
    }
}

/// Whether the outcome `action` of a recipient with `NOTIFY` value `notify` (absent:
/// [`Notify::ABSENT`]) is reported to `reverse_path` (RFC 3461 §4.1; RFC 5321 §4.5.5 for `<>`).
pub fn notification_due(reverse_path: &str, notify: Notify, action: Action) -> bool {
    if reverse_path.is_empty() {
        return false;
    }
    notify.wants(match action {
        Action::Failed => Notify::FAILURE,
        Action::Delayed => Notify::DELAY,
        Action::Delivered | Action::Relayed | Action::Expanded => Notify::SUCCESS,
    })
}

/// Appends the notification for `report` to `out` (a complete RFC 5322 message, lines ending
/// in CR LF, none over 998 octets) and returns its envelope, or appends nothing and returns
/// `None` when no recipient's outcome is due.
pub fn notification_into(report: &Report<'_>, out: &mut Vec<u8>) -> Option<Notification> {
    let envelope = &report.envelope;
    let due: Vec<&RecipientOutcome<'_>> = report
        .recipients
        .iter()
        .filter(|r| notification_due(envelope.reverse_path, r.notify, r.action))
        .collect();
    if due.is_empty() {
        return None;
    }
    let any = |action: Action| due.iter().any(|r| r.action == action);
    let kind = if any(Action::Failed) {
        Kind::Failure
    } else if any(Action::Delayed) {
        Kind::Delay
    } else {
        Kind::Success
    };

    // Part three first: what it holds decides whether the notification is global. The whole
    // original goes back only with RET=FULL and a failure in the report (RFC 3461 §4.3: a
    // report of no failure returns the header only).
    let wants_full = envelope.ret == Some(Ret::Full) && kind == Kind::Failure;
    let full = wants_full && returnable_whole(report.original);
    let returned_owned;
    let returned: &[u8] = if full {
        report.original
    } else {
        returned_owned = header_block(report.original);
        &returned_owned
    };
    let returned_eight_bit = !returned.is_ascii();
    let needs_crlf = !returned.is_empty() && !returned.ends_with(b"\r\n");

    // RFC 6533: a non-ASCII address anywhere, or a UTF-8 header returned from an SMTPUTF8
    // message, makes the report global; an all-ASCII one keeps the classic types.
    let global = !envelope.reverse_path.is_ascii()
        || due
            .iter()
            .any(|r| !r.address.is_ascii() || r.original.is_some_and(|o| !o.address.is_ascii()))
        || (envelope.smtputf8 && returned_eight_bit);

    let mta = host_text(report.reporting_mta);
    let text = human_text_into(&due, kind, &mta, wants_full && !full, global);
    let status = delivery_status_into(report, &due, &mta, global);
    let token = token_text(report.token);
    let boundary = boundary_for(&token, &[&text, &status, returned]);
    let eight_bit = returned_eight_bit || !text.is_ascii() || !status.is_ascii();

    // The header.
    out.extend_from_slice(b"From: Mail Delivery System <MAILER-DAEMON@");
    out.extend_from_slice(mta.as_bytes());
    out.extend_from_slice(b">\r\n");
    let sender = address_text(envelope.reverse_path, MAX_ADDRESS_LEN);
    folded_into(out, "To: ", &format!("<{sender}>"), " ");
    let subject = match kind {
        Kind::Failure => "Undelivered Mail Returned to Sender",
        Kind::Delay => "Delayed Mail (still being retried)",
        Kind::Success => "Successful Mail Delivery Report",
    };
    out.extend_from_slice(format!("Subject: {subject}\r\nDate: ").as_bytes());
    field::date_into(out, report.now);
    out.extend_from_slice(format!("\r\nMessage-ID: <{token}.dsn@{mta}>\r\n").as_bytes());
    // RFC 3834 §5: an automatic reply says so, so responders do not answer it.
    out.extend_from_slice(b"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    // RFC 6522 §3: the report type names the kind of report. A global report keeps
    // `delivery-status` too, as Postfix's bounce daemon writes it, so readers that look for
    // that value find both.
    out.extend_from_slice(b"Content-Type: multipart/report; report-type=delivery-status;\r\n");
    out.extend_from_slice(format!("\tboundary=\"{boundary}\"\r\n").as_bytes());
    if eight_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\nThis is a MIME-encapsulated message.\r\n");

    // Part one: for a person.
    let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
    part_into(
        out,
        &boundary,
        "Notification",
        &format!("text/plain; charset={charset}"),
        &text,
    );
    // Part two: for a program (RFC 3464 §2).
    let status_type = if global {
        "message/global-delivery-status"
    } else {
        "message/delivery-status"
    };
    part_into(out, &boundary, "Delivery report", status_type, &status);
    // Part three: the original (RFC 6522 §3, RFC 6533 §6.3 for the global types).
    let (description, returned_type) = match (full, global) {
        (true, false) => ("Undelivered Message", "message/rfc822"),
        (true, true) => ("Undelivered Message", "message/global"),
        (false, false) => ("Message Headers", "text/rfc822-headers"),
        (false, true) => ("Message Headers", "message/global-headers"),
    };
    part_into(out, &boundary, description, returned_type, returned);
    if needs_crlf {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    Some(Notification {
        recipient: envelope.reverse_path.to_string(),
        smtputf8: global,
        eight_bit,
        kind,
        reported: due.len(),
        returned: if full {
            Returned::Full
        } else {
            Returned::Headers
        },
    })
}

/// Writes one body part: its delimiter, its header, a blank line and `body` (which ends in CR
/// LF unless it is empty or the whole original without one).
fn part_into(out: &mut Vec<u8>, boundary: &str, description: &str, kind: &str, body: &[u8]) {
    out.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Description: {description}\r\n").as_bytes(),
    );
    out.extend_from_slice(format!("Content-Type: {kind}\r\n").as_bytes());
    if !body.is_ascii() {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The short explanation for a person: what happened, then each recipient with its outcome
/// and the next hop's words, wrapped at [`field::FOLD_LEN`].
fn human_text_into(
    due: &[&RecipientOutcome<'_>],
    kind: Kind,
    mta: &str,
    full_withheld: bool,
    global: bool,
) -> Vec<u8> {
    let mut text = Vec::with_capacity(1024);
    let intro = match kind {
        Kind::Failure => {
            "Your message could not be delivered to one or more of its recipients. The mail \
             system gave up on them for the reasons below. A machine-readable report and the \
             original message's header (or the whole message, if you asked for it) are attached."
        }
        Kind::Delay => {
            "Your message has not been delivered yet to one or more of its recipients. The mail \
             system is still trying and will go on until the time shown below; you need not \
             send it again. You will be told if it gives up."
        }
        Kind::Success => {
            "You asked to be told when your message was delivered. It was delivered (or handed \
             on) to the recipients below."
        }
    };
    folded_into(
        &mut text,
        "",
        &format!("This is the mail system at {mta}."),
        "",
    );
    text.extend_from_slice(b"\r\n");
    folded_into(&mut text, "", intro, "");
    if full_withheld {
        text.extend_from_slice(b"\r\n");
        folded_into(
            &mut text,
            "",
            "The message was too large, or held lines too long, to be returned whole; only \
             its header is attached.",
            "",
        );
    }
    for outcome in due {
        text.extend_from_slice(b"\r\n");
        let address = address_text(outcome.address, MAX_ADDRESS_LEN);
        let what = match outcome.action {
            Action::Failed => "delivery failed",
            Action::Delayed => "delivery delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed to a system that sends no further reports",
            Action::Expanded => "delivered and passed on to a list",
        };
        folded_into(
            &mut text,
            "",
            &format!("<{address}>: {what} ({})", outcome.status),
            "    ",
        );
        let remote = outcome.remote_mta.map(host_text);
        let said = match (outcome.diagnostic, &remote) {
            (Some(Diagnostic::Smtp(reply)), Some(host)) => Some(format!(
                "{host} said: {}",
                one_line_text(reply, global, MAX_DIAGNOSTIC_LEN)
            )),
            (Some(Diagnostic::Smtp(reply)), None) => Some(format!(
                "the next hop said: {}",
                one_line_text(reply, global, MAX_DIAGNOSTIC_LEN)
            )),
            (Some(Diagnostic::Local(words)), _) => {
                Some(one_line_text(words, global, MAX_DIAGNOSTIC_LEN))
            }
            (None, Some(host)) => Some(format!("next hop: {host}")),
            (None, None) => None,
        };
        if let Some(said) = said {
            folded_into(&mut text, "    ", &said, "    ");
        }
        if outcome.action == Action::Delayed {
            if let Some(until) = outcome.will_retry_until {
                folded_into(
                    &mut text,
                    "    ",
                    &format!("Will be retried until {}.", field::date(until)),
                    "    ",
                );
            }
        }
    }
    text
}

/// The `message/delivery-status` body (RFC 3464 §2.1): the per-message fields, then for each
/// recipient a blank line and its fields, in the order of RFC 3464 §2.2 and §2.3.
fn delivery_status_into(
    report: &Report<'_>,
    due: &[&RecipientOutcome<'_>],
    mta: &str,
    global: bool,
) -> Vec<u8> {
    let envelope = &report.envelope;
    let mut status = Vec::with_capacity(512 + 256 * due.len());
    if let Some(envid) = envelope.envid {
        // RFC 3461 §6.3: with ENVID given, the field must be there, its value decoded.
        let envid = one_line_text(envid, false, MAX_ENVID_LEN);
        folded_into(&mut status, "Original-Envelope-Id: ", &envid, " ");
    }
    folded_into(&mut status, "Reporting-MTA: ", &format!("dns; {mta}"), " ");
    if let Some(from) = envelope.received_from {
        folded_into(
            &mut status,
            "Received-From-MTA: ",
            &format!("dns; {}", host_text(from)),
            " ",
        );
    }
    folded_into(
        &mut status,
        "Arrival-Date: ",
        &field::date(envelope.arrival),
        " ",
    );
    for outcome in due {
        status.extend_from_slice(b"\r\n");
        if let Some(original) = outcome.original {
            folded_into(
                &mut status,
                "Original-Recipient: ",
                &typed_address(original.address_type, original.address),
                " ",
            );
        }
        folded_into(
            &mut status,
            "Final-Recipient: ",
            &typed_address("rfc822", outcome.address),
            " ",
        );
        folded_into(&mut status, "Action: ", outcome.action.as_str(), " ");
        folded_into(&mut status, "Status: ", &outcome.status.to_string(), " ");
        if let Some(remote) = outcome.remote_mta {
            folded_into(
                &mut status,
                "Remote-MTA: ",
                &format!("dns; {}", host_text(remote)),
                " ",
            );
        }
        let diagnostic = match outcome.diagnostic {
            Some(Diagnostic::Smtp(reply)) => Some(("smtp", reply)),
            Some(Diagnostic::Local(words)) => Some(("x-fastsmtpd", words)),
            None => None,
        };
        if let Some((kind, words)) = diagnostic {
            let words = one_line_text(words, global, MAX_DIAGNOSTIC_LEN);
            if !words.is_empty() {
                folded_into(
                    &mut status,
                    "Diagnostic-Code: ",
                    &format!("{kind}; {words}"),
                    " ",
                );
            }
        }
        if let Some(last) = outcome.last_attempt {
            folded_into(&mut status, "Last-Attempt-Date: ", &field::date(last), " ");
        }
        if outcome.action == Action::Delayed {
            if let Some(until) = outcome.will_retry_until {
                folded_into(&mut status, "Will-Retry-Until: ", &field::date(until), " ");
            }
        }
    }
    status
}

/// `type; address` for `Original-Recipient` and `Final-Recipient` (RFC 3464 §2.3.1, §2.3.2):
/// a non-ASCII address (or one typed `utf-8`) as `utf-8; ` and RFC 6533 §3's unitext, any other
/// as its type and the address made printable.
fn typed_address(address_type: &str, address: &str) -> String {
    let address = address_text(address, MAX_ADDRESS_LEN);
    let is_utf8_type = address_type.eq_ignore_ascii_case("utf-8");
    let mailbox_type = is_utf8_type || address_type.eq_ignore_ascii_case("rfc822");
    if is_utf8_type || (mailbox_type && !address.is_ascii()) {
        return format!("utf-8; {}", unitext(&address));
    }
    let address_type: String = address_type
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(32)
        .collect();
    let address_type = if address_type.is_empty() {
        "unknown"
    } else {
        &address_type
    };
    format!("{address_type}; {address}")
}

/// A host name made safe for a field: letters, digits and `.-_:[]` kept, anything else as `-`,
/// at most [`MAX_HOST_LEN`] octets; `unknown` when nothing is left.
fn host_text(host: &str) -> String {
    let text: String = host
        .chars()
        .take(MAX_HOST_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if text.is_empty() {
        "unknown".to_string()
    } else {
        text
    }
}

/// The letters and digits of the caller's token, at most [`MAX_TOKEN_LEN`]; `0` when none.
fn token_text(token: &str) -> String {
    let text: String = token
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_TOKEN_LEN)
        .collect();
    if text.is_empty() {
        "0".to_string()
    } else {
        text
    }
}

/// A MIME boundary (RFC 2046 §5.1.1) that occurs in none of `parts`: `=_dsn_TOKEN_N`, with N
/// one more than the largest number after `=_dsn_TOKEN_` anywhere in them, checked (and
/// lengthened in the unlikely case a part holds it anyway).
fn boundary_for(token: &str, parts: &[&[u8]]) -> String {
    let mut stem = format!("=_dsn_{token}_");
    loop {
        let mut largest: u64 = 0;
        for part in parts {
            for at in memchr::memmem::find_iter(part, stem.as_bytes()) {
                let digits = part[at + stem.len()..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .take(19);
                let number = digits.fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                largest = largest.max(number);
            }
        }
        let candidate = format!("{stem}{}", largest.saturating_add(1));
        if parts
            .iter()
            .all(|part| memchr::memmem::find(part, candidate.as_bytes()).is_none())
        {
            return candidate;
        }
        stem.push('x');
    }
}

/// Whether the whole original can be returned as a `message/rfc822` part unchanged: not empty,
/// no larger than [`MAX_RETURNED_MESSAGE_LEN`], no NUL, every CR and LF paired as CR LF (RFC 5322
/// §2.3), no line over [`field::MAX_LINE_LEN`] octets.
fn returnable_whole(original: &[u8]) -> bool {
    if original.is_empty() || original.len() > MAX_RETURNED_MESSAGE_LEN || original.contains(&0) {
        return false;
    }
    let mut line_start = 0;
    for at in memchr::memchr2_iter(b'\r', b'\n', original) {
        let paired = match original[at] {
            b'\r' => original.get(at + 1) == Some(&b'\n'),
            _ => at > 0 && original[at - 1] == b'\r',
        };
        if !paired {
            return false;
        }
        if original[at] == b'\n' {
            if at - 1 - line_start > field::MAX_LINE_LEN {
                return false;
            }
            line_start = at + 1;
        }
    }
    original.len() - line_start <= field::MAX_LINE_LEN
}

/// The original's header block, made safe to return: the lines before the first empty one (all
/// of them when there is no empty line: a message without a body, RFC 5322 §3.5), a bare LF
/// taken as a line end, a stray CR or NUL as a space, each line cut to
/// [`field::MAX_LINE_LEN`] octets (on a UTF-8 boundary), at most [`MAX_RETURNED_HEADER_LEN`]
/// octets of whole lines, every line ending in CR LF.
fn header_block(original: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(original.len().min(4096));
    for line in original.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let mut end = line.len().min(field::MAX_LINE_LEN);
        // Do not cut inside a UTF-8 sequence: back up over continuation octets (at most three
        // in UTF-8; a line of nothing else is not UTF-8 and is cut where it stands).
        if end < line.len() {
            let mut start = end;
            while start + 3 > end && start > 0 && (line[start] & 0xC0) == 0x80 {
                start -= 1;
            }
            if (line[start] & 0xC0) != 0x80 {
                end = start;
            }
        }
        if out.len() + end + 2 > MAX_RETURNED_HEADER_LEN {
            break;
        }
        out.extend(
            line[..end]
                .iter()
                .map(|&b| if b == b'\r' || b == 0 { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests;
