//! What "the same address" means to the capture store: the one normalisation every recipient
//! and sender comparison, index key and waiter key goes through.
//!
//! The rule (RFC 5321 §2.4, §2.3.11): the local part is compared exactly as sent (case kept:
//! only the receiving host may fold it), the domain ASCII case-insensitively. On top of that:
//! - one pair of angle brackets is dropped, and `<>` (or nothing) is the null reverse path;
//! - a source route (`@a,@b:u@c`, RFC 5321 §4.1.2, obsolete) is dropped;
//! - the local part is split off at the LAST `@` (a quoted local part may hold an `@`);
//! - a quoted local part whose content is a plain dot-atom (`"john.doe"`) is the same mailbox
//!   as the unquoted one (RFC 5321 §4.1.2: such quoting SHOULD NOT be used, and means the
//!   same); any other quoted local part is kept exactly as sent, quotes and escapes included;
//! - `Postmaster` without a domain is matched case-insensitively (RFC 5321 §4.5.1);
//! - a non-ASCII domain (IDN U-labels, RFC 6531) is left as sent: only ASCII letters fold.
//!   `xn--` A-labels and U-labels are NOT treated as equal (that would need IDNA tables).
//!
//! What it does not do: check syntax (the session did), or allocate: [`Address`] borrows.

use std::hash::{BuildHasher, Hasher, RandomState};

/// An address split into the parts that are compared, borrowed from the text as sent.
#[derive(Debug, Clone, Copy)]
pub struct Address<'a> {
    /// The local part as sent (unquoted only when the quotes meant nothing).
    local: &'a [u8],
    /// The domain as sent; compared ASCII case-insensitively. Empty when there was no `@`.
    domain: &'a [u8],
}

/// `atext` of RFC 5322 §3.2.3.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// Whether `text` is a dot-atom (RFC 5322 §3.2.3; UTF-8 allowed, RFC 6531 §3.3).
fn is_dot_atom(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .split(|&b| b == b'.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&b| is_atext(b)))
}

impl<'a> Address<'a> {
    /// Splits `text` (with or without angle brackets) into the parts compared.
    pub fn parse(text: &'a [u8]) -> Address<'a> {
        let mut text = text.trim_ascii();
        if let Some(inner) = text.strip_prefix(b"<").and_then(|t| t.strip_suffix(b">")) {
            text = inner;
        }
        if text.first() == Some(&b'@') {
            if let Some(colon) = memchr::memchr(b':', text) {
                text = &text[colon + 1..];
            }
        }
        let (mut local, domain) = match memchr::memrchr(b'@', text) {
            Some(at) => (&text[..at], &text[at + 1..]),
            None => (text, &text[text.len()..]),
        };
        if let Some(inner) = local
            .strip_prefix(b"\"")
            .and_then(|l| l.strip_suffix(b"\""))
        {
            if is_dot_atom(inner) {
                local = inner;
            }
        }
        Address { local, domain }
    }

    /// Whether this is the null reverse path (`<>`).
    pub fn is_null(&self) -> bool {
        self.local.is_empty() && self.domain.is_empty()
    }

    /// The local part as compared.
    pub fn local(&self) -> &'a [u8] {
        self.local
    }

    /// The domain as sent (compare with [`Address::same`]).
    pub fn domain(&self) -> &'a [u8] {
        self.domain
    }

    /// Whether the local part is `Postmaster` without a domain (matched case-insensitively).
    fn is_bare_postmaster(&self) -> bool {
        self.domain.is_empty() && self.local.eq_ignore_ascii_case(b"postmaster")
    }

    /// Whether `self` and `other` name the same mailbox under the module's rule.
    pub fn same(&self, other: &Address<'_>) -> bool {
        if self.is_bare_postmaster() || other.is_bare_postmaster() {
            return self.is_bare_postmaster() && other.is_bare_postmaster();
        }
        self.local == other.local && self.domain.eq_ignore_ascii_case(other.domain)
    }

    /// Feeds the normalised form to `hasher`: equal under [`Address::same`] means equal
    /// hashes. Allocates nothing.
    pub fn hash_into<H: Hasher>(&self, hasher: &mut H) {
        if self.is_bare_postmaster() {
            hasher.write(b"postmaster");
        } else {
            hasher.write(self.local);
        }
        hasher.write_u8(0);
        let mut lower = [0u8; 64];
        for chunk in self.domain.chunks(lower.len()) {
            let lower = &mut lower[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            hasher.write(lower);
        }
        hasher.write_u8(0xff);
    }

    /// The normalised text, `local@domain` with the domain's ASCII letters lowercased (no
    /// brackets; empty for `<>`): what a [`super::WaitKey`] or an API response shows.
    pub fn normalized(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.local.len() + 1 + self.domain.len());
        if self.is_bare_postmaster() {
            out.extend_from_slice(b"postmaster");
            return out;
        }
        out.extend_from_slice(self.local);
        if !self.domain.is_empty() {
            out.push(b'@');
            out.extend(self.domain.iter().map(u8::to_ascii_lowercase));
        }
        out
    }
}

/// Whether `a` and `b` name the same mailbox (see the module doc).
pub fn same_address(a: &[u8], b: &[u8]) -> bool {
    Address::parse(a).same(&Address::parse(b))
}

/// The keyed hash of `address` normalised: the same for the same mailbox (see the module
/// doc); the key of the recipient index, the waiters and the mailboxes' recipient routes.
///
/// The normalised form is fed in one `write` from a buffer on the stack when it fits (an
/// address of up to [`KEY_INLINE`] octets: every usual one): SipHash is a byte stream, so
/// one write hashes exactly as [`Address::hash_into`]'s several, at a fraction of the
/// calls (measured, docs/benchmarks/2026-12-06-capture-ingest.md round 7c).
pub(super) fn address_hash(keys: &RandomState, address: &[u8]) -> u64 {
    let mut hasher = keys.build_hasher();
    let parsed = Address::parse(address);
    let local: &[u8] = match parsed.is_bare_postmaster() {
        true => b"postmaster",
        false => parsed.local,
    };
    let len = 1 + local.len() + 1 + parsed.domain.len() + 1;
    if len > KEY_INLINE {
        hasher.write_u8(0);
        parsed.hash_into(&mut hasher);
        return hasher.finish();
    }
    let mut key = [0u8; KEY_INLINE];
    key[1..1 + local.len()].copy_from_slice(local);
    let domain = &mut key[2 + local.len()..len - 1];
    domain.copy_from_slice(parsed.domain);
    domain.make_ascii_lowercase();
    key[len - 1] = 0xff;
    hasher.write(&key[..len]);
    hasher.finish()
}

/// The longest normalised address (with its three separator octets) that
/// [`address_hash`] hashes from the stack.
const KEY_INLINE: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    fn hash(text: &[u8]) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        Address::parse(text).hash_into(&mut h);
        h.finish()
    }

    #[test]
    fn the_table_of_same_and_different() {
        let same: &[(&[u8], &[u8])] = &[
            (b"a@x", b"a@x"),
            (b"a@x", b"<a@x>"),
            (b"a@Example.COM", b"a@example.com"),
            (b"\"john.doe\"@x", b"john.doe@x"),
            (b"<@relay.example,@b.example:u@c.example>", b"u@c.example"),
            (b"<>", b""),
            (b"Postmaster", b"postmaster"),
            (b"POSTMASTER", b"<Postmaster>"),
            (b"\"a@b\"@x", b"\"a@b\"@X"),
            (b"u@b\xc3\xbccher.example", b"u@b\xc3\xbccher.example"),
            (b"u@[192.0.2.1]", b"u@[192.0.2.1]"),
            (b" a@x ", b"a@x"),
        ];
        for (a, b) in same {
            assert!(
                same_address(a, b),
                "{:?} == {:?}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
            assert_eq!(hash(a), hash(b));
        }
        let different: &[(&[u8], &[u8])] = &[
            (b"a@x", b"ba@x"),
            (b"ba@x", b"a@x"),
            (b"a@x", b"a@xx"),
            (b"a@x", b"a@x.y"),
            (b"A@x", b"a@x"),
            (b"John@x", b"john@x"),
            (b"\"a b\"@x", b"a b@x"),
            (b"\"a@b\"@x", b"a@b@x"),
            (b"<>", b"a@x"),
            (b"u@b\xc3\xbccher.example", b"u@xn--bcher-kva.example"),
            (b"u@B\xc3\x9cCHER.example", b"u@b\xc3\xbccher.example"),
            (b"postmaster@x", b"postmaster"),
            (b"Postmaster@x", b"postmaster@x"),
        ];
        for (a, b) in different {
            assert!(
                !same_address(a, b),
                "{:?} != {:?}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn the_keyed_hash_from_the_stack_is_the_hash_of_the_normalised_form() {
        let keys = RandomState::new();
        let streamed = |text: &[u8]| {
            let mut hasher = keys.build_hasher();
            hasher.write_u8(0);
            Address::parse(text).hash_into(&mut hasher);
            hasher.finish()
        };
        let long_domain = [b"u@".as_slice(), &[b'D'; 300]].concat();
        let long_local = [&[b'l'; 300][..], b"@X.example"].concat();
        let just_fits = [&[b'l'; 200][..], b"@", &[b'X'; 53]].concat();
        for text in [
            &b"a@x"[..],
            b"<Ann@Example.COM>",
            b"Postmaster",
            b"<>",
            b"\"j.d\"@X",
            b"\"a b\"@X",
            b"u@B\xc3\x9cCHER.example",
            &long_domain,
            &long_local,
            &just_fits,
        ] {
            assert_eq!(
                address_hash(&keys, text),
                streamed(text),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(
            address_hash(&keys, &long_domain),
            address_hash(&keys, &long_domain.to_ascii_lowercase())
        );
    }

    #[test]
    fn normalised_text_and_parts() {
        assert_eq!(
            Address::parse(b"<Ann@Example.COM>").normalized(),
            b"Ann@example.com"
        );
        assert_eq!(Address::parse(b"\"j.d\"@X").normalized(), b"j.d@x");
        assert_eq!(Address::parse(b"\"a b\"@X").normalized(), b"\"a b\"@x");
        assert_eq!(Address::parse(b"<>").normalized(), b"");
        assert!(Address::parse(b"<>").is_null());
        assert_eq!(Address::parse(b"PostMaster").normalized(), b"postmaster");
        let quoted = Address::parse(b"\"a@b\"@x.example");
        assert_eq!(
            (quoted.local(), quoted.domain()),
            (&b"\"a@b\""[..], &b"x.example"[..])
        );
    }
}
