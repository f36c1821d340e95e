//! The primitives of the query language that the store evaluates on its index, under its
//! lock, without MIME: envelope recipient and sender (exact or substring), an address in a
//! located header (`To:`, `Cc:`, `From:`), the `Message-ID`, a located header's raw value,
//! the raw subject, the size and the time of arrival. A [`Filter`] is their conjunction.
//!
//! Each term costs a few comparisons over the envelope and the located header values (at
//! most [`super::headers::HEADER_SCAN_MAX`] octets): cheap enough to run on every kept
//! message while the lock is held.
//!
//! What it does not do: parse a query string ([`super::query`] does), decode RFC 2047 words
//! (the subject is matched RAW here: the decoded subject and bodies are matched outside the
//! lock on parsed views, see [`super::query::Residual`]), or read header fields the insert
//! did not locate.

use super::address::Address;
use super::envelope::EnvelopeView;
use super::headers::{contains_ignore_ascii_case, unfold, Field, HeaderRanges};
use super::mailbox::MailboxId;
use std::time::SystemTime;

/// How a header value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The unfolded value, less leading and trailing white space, equals the text octet for
    /// octet.
    Exact,
    /// The text occurs in the unfolded value, ASCII letters compared case-insensitively.
    Contains,
}

/// One condition on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// One of the envelope recipients is this address (see [`super::address`]: local part
    /// as sent, domain ASCII case-insensitive; `a@x` never matches `ba@x`). Served from the
    /// recipient index.
    Recipient(Vec<u8>),
    /// One of the envelope recipients contains this text, ASCII case-insensitively
    /// (`rcpt~@example.com`).
    RecipientContains(Vec<u8>),
    /// The envelope sender is this address (`<>` or empty: the null sender).
    Sender(Vec<u8>),
    /// The envelope sender contains this text, ASCII case-insensitively.
    SenderContains(Vec<u8>),
    /// One address of a located address field (`To:`, `Cc:` or `From:`, its first
    /// occurrence; see [`header_addresses`]) is this address, compared as envelope addresses
    /// are ([`Address::same`]).
    HeaderAddress {
        /// Which field.
        field: Field,
        /// The address, without display name or angle brackets (either is dropped if given).
        address: Vec<u8>,
    },
    /// The `Message-ID:` is this id, octet for octet, angle brackets optional on either side
    /// (RFC 5322 §3.6.4: the brackets are not part of the id).
    MessageId(Vec<u8>),
    /// The raw message is more than this many octets.
    SizeAbove(u64),
    /// The raw message is fewer than this many octets.
    SizeBelow(u64),
    /// Received (content complete) strictly before this time.
    ReceivedBefore(SystemTime),
    /// Received at or after this time (so `before:T` and `after:T` split the messages in two).
    ReceivedAfter(SystemTime),
    /// The raw `Subject:` value contains this text, case-insensitively.
    SubjectContains(Vec<u8>),
    /// A located header field's value matches.
    Header {
        /// Which field (only the located ones can be matched at this layer).
        field: Field,
        /// The text to compare with.
        value: Vec<u8>,
        /// How.
        how: Match,
    },
    /// The message is in this per-test mailbox (see [`super::mailbox`]). Served from the
    /// mailbox's own index by the store; [`Filter::matches`] cannot see memberships and
    /// takes it as holding (only the store evaluates it).
    Mailbox(MailboxId),
}

/// All of its terms must hold; no terms matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The terms, all required.
    terms: Vec<Term>,
}

impl Filter {
    /// Matches every message.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Messages to `address` (a shorthand for `Filter::all().and(Term::Recipient(..))`).
    pub fn recipient(address: &[u8]) -> Filter {
        Filter::all().and(Term::Recipient(address.to_vec()))
    }

    /// This filter and `term` too.
    pub fn and(mut self, term: Term) -> Filter {
        self.terms.push(term);
        self
    }

    /// The terms.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Whether it matches everything.
    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }

    /// The first recipient term: the store answers it from its recipient index.
    pub(super) fn recipient_hint(&self) -> Option<&[u8]> {
        self.terms.iter().find_map(|t| match t {
            Term::Recipient(address) => Some(&address[..]),
            _ => None,
        })
    }

    /// The first mailbox term: the store pages it from the mailbox's index.
    pub(super) fn mailbox_hint(&self) -> Option<&MailboxId> {
        self.mailboxes().next()
    }

    /// The mailboxes named (every one must hold).
    pub fn mailboxes(&self) -> impl Iterator<Item = &MailboxId> + '_ {
        self.terms.iter().filter_map(|t| match t {
            Term::Mailbox(id) => Some(id),
            _ => None,
        })
    }

    /// Whether a message with this envelope, raw bytes and located headers, received at
    /// `received_at`, matches.
    pub fn matches(
        &self,
        envelope: &EnvelopeView<'_>,
        raw: &[u8],
        headers: &HeaderRanges,
        received_at: SystemTime,
    ) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Recipient(address) => {
                let wanted = Address::parse(address);
                envelope
                    .recipients
                    .iter()
                    .any(|r| Address::parse(r).same(&wanted))
            }
            Term::RecipientContains(text) => envelope
                .recipients
                .iter()
                .any(|r| contains_ignore_ascii_case(r, text)),
            Term::Sender(address) => Address::parse(envelope.sender).same(&Address::parse(address)),
            Term::SenderContains(text) => contains_ignore_ascii_case(envelope.sender, text),
            Term::HeaderAddress { field, address } => {
                let wanted = Address::parse(address);
                headers.value(raw, *field).is_some_and(|v| {
                    header_addresses(&unfold(v))
                        .iter()
                        .any(|a| Address::parse(a).same(&wanted))
                })
            }
            Term::MessageId(id) => headers
                .value(raw, Field::MessageId)
                .is_some_and(|v| strip_brackets(&unfold(v)) == strip_brackets(id)),
            Term::SizeAbove(n) => raw.len() as u64 > *n,
            Term::SizeBelow(n) => (raw.len() as u64) < *n,
            Term::ReceivedBefore(t) => received_at < *t,
            Term::ReceivedAfter(t) => received_at >= *t,
            Term::SubjectContains(text) => headers
                .value(raw, Field::Subject)
                .is_some_and(|v| contains_ignore_ascii_case(&unfold(v), text)),
            Term::Header { field, value, how } => headers.value(raw, *field).is_some_and(|v| {
                let v = unfold(v);
                match how {
                    Match::Exact => v.trim_ascii() == &value[..],
                    Match::Contains => contains_ignore_ascii_case(&v, value),
                }
            }),
            // Memberships are the store's to check (see `Term::Mailbox`).
            Term::Mailbox(_) => true,
        })
    }
}

/// `id` trimmed, without one pair of angle brackets.
fn strip_brackets(id: &[u8]) -> &[u8] {
    let id = id.trim_ascii();
    id.strip_prefix(b"<")
        .and_then(|i| i.strip_suffix(b">"))
        .unwrap_or(id)
}

/// The addresses of an address-list field value (RFC 5322 §3.4), unfolded: each mailbox's
/// `addr-spec`, the text inside its angle brackets when it has them, else the mailbox with
/// comments dropped and trimmed; group names (`name:` ... `;`) are skipped, their members
/// kept. Commas, colons and semicolons inside quoted strings, comments or angle brackets do
/// not split. Lenient: a malformed list yields what its commas delimit, never an error.
pub fn header_addresses(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut item: Vec<u8> = Vec::new();
    let mut angle: Option<Vec<u8>> = None;
    let (mut quoted, mut escaped, mut comment, mut in_angle) = (false, false, 0usize, false);
    let finish = |item: &mut Vec<u8>, angle: &mut Option<Vec<u8>>, out: &mut Vec<Vec<u8>>| {
        let address = match angle.take() {
            Some(inside) => inside,
            None => std::mem::take(item),
        };
        let address = address.trim_ascii();
        if !address.is_empty() {
            out.push(address.to_vec());
        }
        item.clear();
    };
    for &b in value {
        if escaped {
            escaped = false;
            if comment > 0 {
                continue;
            }
            match &mut angle {
                Some(inside) if in_angle => inside.push(b),
                _ => item.push(b),
            }
            continue;
        }
        if comment > 0 {
            match b {
                b'\\' => escaped = true,
                b'(' => comment += 1,
                b')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            // A quoted local part belongs to the address as sent (quotes included).
            match &mut angle {
                Some(inside) if in_angle => inside.push(b),
                _ => item.push(b),
            }
            continue;
        }
        if in_angle {
            match b {
                b'>' => in_angle = false,
                b'"' => {
                    quoted = true;
                    angle.get_or_insert_with(Vec::new).push(b);
                }
                _ => angle.get_or_insert_with(Vec::new).push(b),
            }
            continue;
        }
        match b {
            b'(' => comment = 1,
            b'"' => {
                quoted = true;
                item.push(b);
            }
            b'<' => {
                in_angle = true;
                angle = Some(Vec::new());
            }
            b',' | b';' => finish(&mut item, &mut angle, &mut out),
            // The end of a group's display name: what came before is not an address.
            b':' => {
                item.clear();
                angle = None;
            }
            _ => item.push(b),
        }
    }
    finish(&mut item, &mut angle, &mut out);
    out
}

#[cfg(test)]
mod tests;
