//! The primitives of the query language, applied to one kept message: exact recipient,
//! exact envelope sender, subject substring, and a located header's value, exact or
//! substring. A [`Filter`] is their conjunction.
//!
//! What it does not do: parse a query string (the HTTP side builds a `Filter`), decode
//! RFC 2047 words (the subject is matched RAW for now: decoding comes with lazy MIME), or
//! search bodies.

use super::address::Address;
use super::envelope::EnvelopeView;
use super::headers::{contains_ignore_ascii_case, unfold, Field, HeaderRanges};

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
    /// The envelope sender is this address (`<>` or empty: the null sender).
    Sender(Vec<u8>),
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

    /// Whether a message with this envelope, raw bytes and located headers matches.
    pub fn matches(&self, envelope: &EnvelopeView<'_>, raw: &[u8], headers: &HeaderRanges) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Recipient(address) => {
                let wanted = Address::parse(address);
                envelope
                    .recipients
                    .iter()
                    .any(|r| Address::parse(r).same(&wanted))
            }
            Term::Sender(address) => Address::parse(envelope.sender).same(&Address::parse(address)),
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
        })
    }
}
