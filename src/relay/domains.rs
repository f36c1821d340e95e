//! `--relay-domains`: which recipients the relay carries to its next hops.
//!
//! A list of domains, separated by commas: `example.com` matches recipients at exactly that
//! domain, `.example.com` recipients at any of its subdomains (`a.example.com`,
//! `b.a.example.com`) and not at `example.com` itself; list both for both. Compared without
//! regard to ASCII case (RFC 5321 §2.4: domain names are case-insensitive). A recipient's
//! domain is what follows the last `@` of its address (RFC 5321 §4.1.2's `Mailbox`); an
//! address without one (`postmaster`, RFC 5321 §4.5.1) is in no domain and never relayed.
//! An address literal (`[192.0.2.1]`) matches only an item written the same way.
//!
//! What it does: parse the list (clear errors for an empty item, a character no domain has,
//! a name longer than RFC 1035's 255 octets, more than [`RELAY_DOMAINS_MAX`] items), and
//! answer whether an address is in it, without allocating. What it does not do: decide what
//! happens to the other recipients (the stores keep every message as they do without a relay,
//! `crate::store`), look up DNS, or understand UTF-8 domains beyond comparing their octets
//! (an A-label and its U-label are different items: list both when mail uses both).

use std::fmt;

/// The most items `--relay-domains` takes (each is compared in turn, per recipient).
pub const RELAY_DOMAINS_MAX: usize = 1_000;

/// The longest domain name (RFC 1035 §2.3.4: 255 octets).
const DOMAIN_MAX_OCTETS: usize = 255;

/// The domains whose recipients are relayed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayDomains {
    /// Domains matched exactly, lower-cased.
    exact: Vec<Box<[u8]>>,
    /// Parents whose subdomains match, lower-cased, each with its leading dot.
    subdomains_of: Vec<Box<[u8]>>,
}

/// Why a `--relay-domains` list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainsError(String);

impl fmt::Display for DomainsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DomainsError {}

impl RelayDomains {
    /// Reads a list like `example.com,.example.org` (see the module doc).
    pub fn parse(text: &str) -> Result<RelayDomains, DomainsError> {
        let mut domains = RelayDomains::default();
        let mut count = 0;
        for item in text.split(',') {
            let item = item.trim();
            count += 1;
            if count > RELAY_DOMAINS_MAX {
                return Err(DomainsError(format!(
                    "more than {RELAY_DOMAINS_MAX} domains"
                )));
            }
            if item.is_empty() {
                return Err(DomainsError(format!(
                    "{text:?}: expected DOMAIN[,DOMAIN...] (an item is empty)"
                )));
            }
            let (subdomains, name) = match item.strip_prefix('.') {
                Some(name) => (true, name),
                None => (false, item),
            };
            check_name(item, name)?;
            let lower = name.to_ascii_lowercase().into_bytes();
            if subdomains {
                let mut dotted = Vec::with_capacity(lower.len() + 1);
                dotted.push(b'.');
                dotted.extend_from_slice(&lower);
                domains.subdomains_of.push(dotted.into_boxed_slice());
            } else {
                domains.exact.push(lower.into_boxed_slice());
            }
        }
        Ok(domains)
    }

    /// Whether the recipient `address` (without angle brackets) is in one of the domains.
    pub fn matches(&self, address: &[u8]) -> bool {
        let Some(at) = memchr::memrchr(b'@', address) else {
            return false;
        };
        let domain = &address[at + 1..];
        if domain.is_empty() {
            return false;
        }
        self.exact.iter().any(|d| domain.eq_ignore_ascii_case(d))
            || self.subdomains_of.iter().any(|parent| {
                domain.len() > parent.len()
                    && domain[domain.len() - parent.len()..].eq_ignore_ascii_case(parent)
            })
    }
}

/// Checks one item's name: a dotted domain or an address literal, no empty label.
fn check_name(item: &str, name: &str) -> Result<(), DomainsError> {
    let refuse = |why: &str| Err(DomainsError(format!("{item:?}: {why}")));
    if name.is_empty() {
        return refuse("a domain is needed after the dot");
    }
    if name.len() > DOMAIN_MAX_OCTETS {
        return refuse("longer than a domain can be (255 octets, RFC 1035)");
    }
    if name.starts_with('[') {
        let literal_ok = name.ends_with(']')
            && name.len() > 2
            && !name[1..name.len() - 1].contains(['[', ']'])
            && name.bytes().all(|b| b.is_ascii_graphic());
        if !literal_ok || item.starts_with('.') {
            return refuse("an address literal is written [192.0.2.1] or [IPv6:2001:db8::1]");
        }
        return Ok(());
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return refuse("not a domain (an empty label, or one that starts or ends with '-')");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || !c.is_ascii();
    if !name.chars().all(allowed) {
        return refuse("not a domain (letters, digits, '-' and '.' only)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_domains_and_subdomains_match_as_written_without_regard_to_case() {
        let domains = RelayDomains::parse("example.com, .Example.ORG,[192.0.2.1]").unwrap();
        let yes: &[&[u8]] = &[
            b"a@example.com",
            b"a@EXAMPLE.Com",
            b"a@b.example.org",
            b"a@c.b.EXAMPLE.org",
            b"\"a@b\"@example.com",
            b"a@[192.0.2.1]",
        ];
        for address in yes {
            assert!(
                domains.matches(address),
                "{}",
                String::from_utf8_lossy(address)
            );
        }
        let no: &[&[u8]] = &[
            b"a@example.org",      // only its subdomains are listed
            b"a@b.example.com",    // only the domain itself is listed
            b"a@notexample.com",   // not a subdomain: no dot before
            b"a@xexample.org",     // not a subdomain of example.org
            b"postmaster",         // no domain
            b"a@",                 // empty domain
            b"a@example.com.evil", // a suffix is not a match
            b"a@[192.0.2.2]",
            b"",
        ];
        for address in no {
            assert!(
                !domains.matches(address),
                "{}",
                String::from_utf8_lossy(address)
            );
        }
    }

    #[test]
    fn bad_lists_are_refused_with_the_item_named() {
        for (text, needle) in [
            ("", "an item is empty"),
            ("a.com,,b.com", "an item is empty"),
            (".", "a domain is needed"),
            ("a..com", "empty label"),
            ("-a.com", "starts or ends with '-'"),
            ("a_b.com", "letters, digits"),
            ("a.com/x", "letters, digits"),
            ("[1.2.3.4", "address literal"),
            (".[1.2.3.4]", "address literal"),
        ] {
            let error = RelayDomains::parse(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        let long = format!("{}.com", "a".repeat(300));
        assert!(RelayDomains::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("255"));
        let many = vec!["a.com"; RELAY_DOMAINS_MAX + 1].join(",");
        assert!(RelayDomains::parse(&many).is_err());
        assert!(RelayDomains::parse(&vec!["a.com"; RELAY_DOMAINS_MAX].join(",")).is_ok());
    }
}
