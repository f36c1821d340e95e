//! What the next hop offers: the service extensions in its EHLO reply (RFC 5321 §4.1.1.1).
//!
//! What it does: [`Capabilities::parse_ehlo`] reads a framed `250` EHLO reply into flags and a
//! size limit, for the extensions the relay may use: PIPELINING (RFC 2920), CHUNKING (RFC 3030),
//! SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461), STARTTLS
//! (RFC 3207), AUTH with PLAIN and LOGIN (RFC 4954), ENHANCEDSTATUSCODES (RFC 2034). Keywords
//! are case-insensitive; any other keyword is ignored (RFC 5321 §4.1.1.1 lets servers offer
//! extensions we do not know, and a client must not fail on them). It allocates nothing.
//!
//! What it does not do: decide whether to use what is offered (STARTTLS policy, AUTH only
//! inside TLS, refusing an 8-bit message to a hop without 8BITMIME: the client's state machine
//! will), or remember anything across a STARTTLS (RFC 3207 §4.2: the client must forget what
//! it was told before and ask again; a new [`Capabilities`] is parsed from the new EHLO).

use super::reply::Reply;

/// The extensions a next hop offered in its EHLO reply. The default offers nothing: what a
/// `HELO` (RFC 5321 §4.1.1.1) or a refused EHLO leaves the client with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920): commands may be sent in groups without waiting for each reply.
    pub pipelining: bool,
    /// `CHUNKING` (RFC 3030): content may go as `BDAT` chunks instead of `DATA`.
    pub chunking: bool,
    /// `SIZE` (RFC 1870): `MAIL` may carry `SIZE=n`, whether or not a limit is stated.
    pub size: bool,
    /// The largest message `SIZE n` says the next hop takes, in octets; `None` when it stated
    /// no limit (`SIZE` alone, `SIZE 0` per RFC 1870 §4, or a value that is not a number) or
    /// did not offer `SIZE`.
    pub max_size: Option<u64>,
    /// `8BITMIME` (RFC 6152): `BODY=8BITMIME` content is taken.
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531): UTF-8 addresses and headers are taken.
    pub smtputf8: bool,
    /// `BINARYMIME` (RFC 3030): `BODY=BINARYMIME` content is taken, sent with `BDAT` only.
    pub binary_mime: bool,
    /// `DSN` (RFC 3461): `NOTIFY`, `ORCPT`, `RET` and `ENVID` may be passed on.
    pub dsn: bool,
    /// `STARTTLS` (RFC 3207): the connection can be encrypted.
    pub starttls: bool,
    /// `AUTH` lists `PLAIN` (RFC 4954, RFC 4616).
    pub auth_plain: bool,
    /// `AUTH` lists `LOGIN` (the widespread non-standard mechanism).
    pub auth_login: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034): replies carry RFC 3463 codes.
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    /// The extensions offered in an EHLO reply, or `None` when the reply is not `250` (the
    /// EHLO was refused: RFC 5321 §4.1.4 lets the client fall back to `HELO`, which offers
    /// nothing). The first line is the server's name and greeting, never a keyword (RFC 5321
    /// §4.1.1.1 `ehlo-ok-rsp`); each further line is `keyword *(SP param)`.
    pub fn parse_ehlo(reply: &Reply<'_>) -> Option<Capabilities> {
        if reply.code() != 250 {
            return None;
        }
        let mut offered = Capabilities::default();
        for line in reply.lines().skip(1) {
            offered.on_line(line);
        }
        Some(offered)
    }

    /// Records what one `ehlo-line` offers; an unknown keyword changes nothing.
    fn on_line(&mut self, line: &[u8]) {
        let mut words = line
            .split(|byte| *byte == b' ')
            .filter(|word| !word.is_empty());
        let Some(keyword) = words.next() else {
            return;
        };
        // `AUTH=PLAIN LOGIN` is the form of the drafts before RFC 2554, still sent (next to
        // the standard line) by servers that serve old clients; it lists the same mechanisms.
        let (keyword, first_param) = match keyword.iter().position(|byte| *byte == b'=') {
            Some(equals) => (&keyword[..equals], Some(&keyword[equals + 1..])),
            None => (keyword, None),
        };
        let is = |name: &str| keyword.eq_ignore_ascii_case(name.as_bytes());
        if is("AUTH") {
            for mechanism in first_param.into_iter().chain(words) {
                if mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    self.auth_plain = true;
                } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
                    self.auth_login = true;
                }
            }
        } else if first_param.is_some() {
            // Only AUTH has the `=` form; `SIZE=10` and the like are no keyword we know.
        } else if is("PIPELINING") {
            self.pipelining = true;
        } else if is("CHUNKING") {
            self.chunking = true;
        } else if is("SIZE") {
            self.size = true;
            self.max_size = words.next().and_then(parse_size);
        } else if is("8BITMIME") {
            self.eight_bit_mime = true;
        } else if is("SMTPUTF8") {
            self.smtputf8 = true;
        } else if is("BINARYMIME") {
            self.binary_mime = true;
        } else if is("DSN") {
            self.dsn = true;
        } else if is("STARTTLS") {
            self.starttls = true;
        } else if is("ENHANCEDSTATUSCODES") {
            self.enhanced_status_codes = true;
        }
    }
}

/// `SIZE`'s parameter (RFC 1870 §4: `1*DIGIT`, 0 meaning no fixed maximum). Anything that is
/// not a number that fits in a `u64` states no limit we can use, so none.
fn parse_size(param: &[u8]) -> Option<u64> {
    if param.is_empty() || !param.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let limit = std::str::from_utf8(param).ok()?.parse::<u64>().ok()?;
    (limit > 0).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::super::reply::{next_reply, MAX_REPLY_LINES, MAX_REPLY_LINE_LEN};
    use super::*;

    fn parse(wire: &[u8]) -> Option<Capabilities> {
        let (reply, used) = next_reply(wire, MAX_REPLY_LINE_LEN, MAX_REPLY_LINES)
            .unwrap()
            .unwrap();
        assert_eq!(used, wire.len());
        Capabilities::parse_ehlo(&reply)
    }

    /// Real servers' replies and the edge cases of each keyword.
    #[test]
    fn ehlo_replies_are_read_into_flags_and_a_size_limit() {
        let none = Capabilities::default();
        let cases: &[(&[u8], Capabilities)] = &[
            // fastsmtpd's own (see PROTOCOL.md).
            (
                b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n\
                  250-BINARYMIME\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
                Capabilities {
                    pipelining: true,
                    chunking: true,
                    size: true,
                    max_size: Some(10_485_760),
                    eight_bit_mime: true,
                    smtputf8: true,
                    binary_mime: true,
                    enhanced_status_codes: true,
                    ..none
                },
            ),
            // Postfix's default, with TLS and SASL.
            (
                b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
                  250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n\
                  250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n\
                  250 CHUNKING\r\n",
                Capabilities {
                    pipelining: true,
                    chunking: true,
                    size: true,
                    max_size: Some(10_240_000),
                    eight_bit_mime: true,
                    smtputf8: true,
                    binary_mime: false,
                    dsn: true,
                    starttls: true,
                    auth_plain: true,
                    auth_login: true,
                    enhanced_status_codes: true,
                },
            ),
            // Exim's, lower case, odd spacing.
            (
                b"250-exim.example Hello x [127.0.0.1]\r\n250-size 52428800\r\n\
                  250-Pipelining\r\n250-auth  cram-md5 login\r\n250 help\r\n",
                Capabilities {
                    pipelining: true,
                    size: true,
                    max_size: Some(52_428_800),
                    auth_login: true,
                    ..none
                },
            ),
            // One line: the greeting only, nothing offered.
            (b"250 mx.example\r\n", none),
            // The greeting name is never a keyword, whatever it spells.
            (b"250-PIPELINING\r\n250 8BITMIME\r\n", Capabilities { eight_bit_mime: true, ..none }),
            // SIZE without a limit, with 0 (RFC 1870 §4: no fixed maximum), with junk, with an
            // overflow: offered, no limit.
            (b"250-x\r\n250 SIZE\r\n", Capabilities { size: true, ..none }),
            (b"250-x\r\n250 SIZE 0\r\n", Capabilities { size: true, ..none }),
            (b"250-x\r\n250 SIZE 10M\r\n", Capabilities { size: true, ..none }),
            (b"250-x\r\n250 SIZE 99999999999999999999999\r\n", Capabilities { size: true, ..none }),
            // AUTH with mechanisms we do not use, or none at all.
            (b"250-x\r\n250 AUTH GSSAPI XOAUTH2\r\n", none),
            (b"250-x\r\n250 AUTH\r\n", none),
            (b"250-x\r\n250 AUTH=login\r\n", Capabilities { auth_login: true, ..none }),
            // Unknown keywords, empty lines, a keyword only as a prefix or with `=`: ignored.
            (
                b"250-x\r\n250-XCLIENT NAME\r\n250-\r\n250-PIPELININGX\r\n250-DSN=1\r\n250 X-STARTTLS\r\n",
                none,
            ),
        ];
        for &(wire, expected) in cases {
            assert_eq!(
                parse(wire),
                Some(expected),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    /// A refused EHLO offers nothing to parse: the caller falls back to HELO.
    #[test]
    fn a_reply_other_than_250_is_no_ehlo_reply() {
        assert_eq!(parse(b"502 5.5.1 EHLO not supported\r\n"), None);
        assert_eq!(parse(b"421-4.7.0 busy\r\n421 4.7.0 PIPELINING\r\n"), None);
        assert_eq!(parse(b"251 PIPELINING\r\n"), None);
    }
}
