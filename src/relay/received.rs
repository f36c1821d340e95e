//! The relay's `Received:` line and its loop check (RFC 5321 §4.4 and §6.3), sans I/O.
//!
//! What it does: [`received_line_into`] writes the trace field a relay puts in front of a
//! message it accepts (`Received: from HELO ([ADDR]) by OURHOST with ESMTP id ID[ for
//! <rcpt>]; DATE`, the address `[IPv6:...]` for IPv6: [`address_literal_into`]);
//! [`ReceivedCounter`] counts the `Received:` fields of a message's header block as its
//! content streams past, in pieces split anywhere, keeping a few bytes of state and looking
//! at nothing past the header block, so the sink can refuse a looping message
//! with [`LOOP_REFUSAL`] when it has more than [`MAX_RECEIVED`].
//!
//! What it does not do: read sockets or clocks (the caller gives the date), parse the rest
//! of the header (folded fields are continuation lines: they start with white space, never
//! with `Received:`), or check the relay's own line (the counter sees the content as the
//! client sent it).

use super::dsn::field::date_into;
use std::io::Write;
use std::net::IpAddr;

/// The most `Received:` fields a message may carry into the relay (RFC 5321 §6.3: "a simple
/// counting of the number of Received header fields"; 50 is issue 19's decision, Postfix's
/// `hopcount_limit` is 50 too). More: refused with [`LOOP_REFUSAL`].
pub const MAX_RECEIVED: u32 = 50;

/// The reply to a message with more than [`MAX_RECEIVED`] `Received:` fields (RFC 3463
/// X.4.6 "routing loop detected", permanent).
pub const LOOP_REFUSAL: &[u8] =
    b"554 5.4.6 Error: too many hops (more than 50 Received: fields), mail loop?\r\n";

/// The reply when the spool cannot keep a message (RFC 3463 X.3.1 "mail system full",
/// transient: the client retries; the spool kept nothing of it).
pub const SPOOL_REFUSAL: &[u8] = b"452 4.3.1 Error: could not spool message, try again later\r\n";

/// The field name the counter looks for at the start of each header line (then a colon,
/// maybe after spaces or tabs: RFC 5322 §4.5.3's obsolete `field-name *WSP ":"`, which a
/// loop could carry as well as the modern form).
const FIELD: &[u8] = b"received";

/// Where the counter is in the header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// At the start of a line, `n` bytes of [`FIELD`] matched so far (0: none yet).
    LineStart(u8),
    /// The line began with `CR`: an `LF` next ends the header block.
    LineStartCr,
    /// After the field name and maybe spaces or tabs: a colon next makes it a field.
    BeforeColon,
    /// Inside a line that is not (or no longer) a `Received:` start: skip to its `LF`.
    InLine,
    /// Past the header block: nothing more is looked at.
    Done,
}

/// Counts the `Received:` fields of a header block fed in pieces (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedCounter {
    /// Where it is.
    place: Place,
    /// The fields seen, saturating at one past [`MAX_RECEIVED`].
    count: u32,
}

impl Default for ReceivedCounter {
    fn default() -> ReceivedCounter {
        ReceivedCounter::new()
    }
}

impl ReceivedCounter {
    /// A counter at the start of a message.
    pub fn new() -> ReceivedCounter {
        ReceivedCounter {
            place: Place::LineStart(0),
            count: 0,
        }
    }

    /// The next piece of the message's content (dot-stuffing undone).
    pub fn on_data(&mut self, piece: &[u8]) {
        let mut at = 0;
        while let Some(&byte) = piece.get(at) {
            self.place = match self.place {
                Place::Done => return,
                Place::InLine => match memchr::memchr(b'\n', &piece[at..]) {
                    // The rest of the line in one step.
                    Some(end) => {
                        at += end + 1;
                        Place::LineStart(0)
                    }
                    None => return,
                },
                Place::LineStartCr => {
                    at += 1;
                    if byte == b'\n' {
                        Place::Done
                    } else {
                        Place::InLine
                    }
                }
                Place::BeforeColon => {
                    at += 1;
                    match byte {
                        b':' => {
                            self.count = (self.count + 1).min(MAX_RECEIVED + 1);
                            Place::InLine
                        }
                        b' ' | b'\t' => Place::BeforeColon,
                        b'\n' => Place::LineStart(0),
                        _ => Place::InLine,
                    }
                }
                Place::LineStart(matched) => {
                    at += 1;
                    let next = usize::from(matched);
                    if next == FIELD.len() {
                        // The whole name: the colon (or spaces before it) is next.
                        at -= 1;
                        Place::BeforeColon
                    } else if matched == 0 && byte == b'\n' {
                        Place::Done
                    } else if matched == 0 && byte == b'\r' {
                        Place::LineStartCr
                    } else if FIELD.get(next) == Some(&byte.to_ascii_lowercase()) {
                        Place::LineStart(matched + 1)
                    } else if byte == b'\n' {
                        Place::LineStart(0)
                    } else {
                        Place::InLine
                    }
                }
            };
        }
    }

    /// The `Received:` fields seen so far (at most one past [`MAX_RECEIVED`]).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the message has more than [`MAX_RECEIVED`] of them: refuse it.
    pub fn is_loop(&self) -> bool {
        self.count > MAX_RECEIVED
    }
}

/// What the relay's `Received:` line says.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    /// The client's HELO/EHLO argument.
    pub helo: &'a [u8],
    /// The client's address (written as an address literal: [`address_literal_into`]).
    pub address: IpAddr,
    /// Our host name.
    pub by: &'a str,
    /// The `with` word (`SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA`: RFC 3848).
    pub with: &'a str,
    /// The message's id (the one its `250` named).
    pub id: &'a str,
    /// The only recipient, when there is exactly one (more would disclose Bcc recipients,
    /// RFC 5321 §7.2).
    pub for_recipient: Option<&'a [u8]>,
    /// When it was received, seconds since the Unix epoch.
    pub unix_seconds: u64,
}

/// Writes the trace field for `trace`, `CR LF` included (RFC 5321 §4.4: `Received: from
/// HELO (TCP-info) by OURHOST with PROTOCOL id ID for <PATH>; DATE`), folded before `by`,
/// `for` and nowhere else. The address stands in the comment as an address literal
/// ([`address_literal_into`]), with no reverse DNS name (none is looked up). The HELO
/// argument is written as the stores' trace headers write it ([`helo_into`]): ASCII only, a
/// space, parenthesis, `"`, `\\`, control character or byte of 0x80 and up becomes `?`, so it
/// can neither close the clause and forge another nor make a 7-bit message 8-bit; a
/// recipient's control bytes become `?` too.
pub fn received_line_into(out: &mut Vec<u8>, trace: &Trace<'_>) {
    out.extend_from_slice(b"Received: from ");
    helo_into(out, trace.helo);
    out.extend_from_slice(b" (");
    address_literal_into(out, trace.address);
    out.extend_from_slice(b")\r\n\tby ");
    out.extend_from_slice(trace.by.as_bytes());
    out.extend_from_slice(b" with ");
    out.extend_from_slice(trace.with.as_bytes());
    out.extend_from_slice(b" id ");
    out.extend_from_slice(trace.id.as_bytes());
    if let Some(recipient) = trace.for_recipient {
        out.extend_from_slice(b"\r\n\tfor <");
        // UTF-8 addresses (SMTPUTF8) are kept as they are: RFC 6532 allows them in fields.
        out.extend(
            recipient
                .iter()
                .map(|&b| if b < b' ' || b == 0x7f { b'?' } else { b }),
        );
        out.push(b'>');
    }
    out.extend_from_slice(b"; ");
    date_into(out, trace.unix_seconds);
    out.extend_from_slice(b"\r\n");
}

/// Appends `address` as an RFC 5321 §4.1.3 address literal: `[192.0.2.1]` for IPv4,
/// `[IPv6:2001:db8::1]` for IPv6 (the `IPv6:` tag is part of the grammar:
/// `IPv6-address-literal = "IPv6:" IPv6-addr`), and an IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`, RFC 4291 §2.5.5.2: an IPv4 client on a dual-stack socket) as the
/// IPv4 address it maps.
pub fn address_literal_into(out: &mut Vec<u8>, address: IpAddr) {
    // Writing into a Vec cannot fail.
    let _ = match address {
        IpAddr::V4(v4) => write!(out, "[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => write!(out, "[{v4}]"),
            None => write!(out, "[IPv6:{v6}]"),
        },
    };
}

/// Appends the HELO argument as it may stand in the `from` clause (see
/// [`received_line_into`]; the stores' trace headers write it with this too): printable
/// ASCII but a space, parenthesis, `"` or `\\` is kept, every other byte becomes `?` (one
/// `?` per byte). Bytes of 0x80 and up too, UTF-8 or not: RFC 5321 §4.4's trace fields are
/// ASCII (only an SMTPUTF8 transaction may carry UTF-8 in them, RFC 6531 §3.7.3), and a
/// UTF-8 `EHLO bücher.example` in the relay's own line would turn a 7-bit message 8-bit, so
/// a next hop without 8BITMIME would refuse it (and its notification) with 5.6.3.
pub fn helo_into(out: &mut Vec<u8>, helo: &[u8]) {
    out.extend(helo.iter().map(|&byte| match byte {
        b'(' | b')' | b'"' | b'\\' => b'?',
        b'!'..=b'~' => byte,
        _ => b'?',
    }));
}

/// The `with` word of the trace field: `SMTP` after HELO, else `ESMTP` (RFC 3848) or
/// `UTF8SMTP` for an SMTPUTF8 transaction (RFC 6531 §3.7.3), with `S` for TLS and `A` for
/// AUTH (the stores' trace headers use it too).
pub fn protocol_word(esmtp: bool, smtputf8: bool, tls: bool, auth: bool) -> &'static str {
    match (esmtp, smtputf8, tls, auth) {
        (false, _, _, _) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count of a whole message fed at once, for a reference.
    fn count_whole(message: &[u8]) -> u32 {
        let mut counter = ReceivedCounter::new();
        counter.on_data(message);
        counter.count()
    }

    fn headers(received: usize) -> Vec<u8> {
        let mut message = Vec::new();
        for i in 0..received {
            message.extend_from_slice(
                format!("Received: from h{i} ([192.0.2.1])\r\n\tby x; Mon, 7 Dec 2026\r\n")
                    .as_bytes(),
            );
        }
        message.extend_from_slice(b"Subject: s\r\n\r\nReceived: in the body\r\n");
        message
    }

    #[test]
    fn counts_received_fields_of_the_header_block_only() {
        let cases: &[(&[u8], u32)] = &[
            (b"", 0),
            (b"Received: a\r\n\r\n", 1),
            (b"RECEIVED: a\r\nreceived:b\r\n\r\n", 2),
            (b"Subject: x\r\n\r\nReceived: body\r\n", 0),
            (b"X-Received: a\r\n Received: folded\r\n\r\n", 0),
            (b"Received a\r\nReceivedX: b\r\n\r\n", 0),
            (b"Received: a\nReceived: b\n\nReceived: c\n", 2),
            (b"\r\nReceived: after the empty line\r\n", 0),
            (b"Received: no end of header", 1),
            (b"Subject: \rReceived: x\r\n\r\n", 0),
            (b"Received : a\r\nreceived\t \t:b\r\nReceived :\r\n\r\n", 3),
            (b"Received x: a\r\nReceived \r\nReceived\r\n\r\n", 0),
        ];
        for (message, want) in cases {
            assert_eq!(
                count_whole(message),
                *want,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn every_split_point_counts_the_same() {
        let mut message = headers(3);
        message.splice(0..0, b"Subject: a\r\nreCeiVed: b\r\n".iter().copied());
        let want = count_whole(&message);
        assert_eq!(want, 4);
        for at in 0..=message.len() {
            for second in at..=message.len() {
                let mut counter = ReceivedCounter::new();
                counter.on_data(&message[..at]);
                counter.on_data(&message[at..second]);
                counter.on_data(&message[second..]);
                assert_eq!(counter.count(), want, "split at {at} and {second}");
            }
        }
        let mut counter = ReceivedCounter::new();
        for byte in &message {
            counter.on_data(std::slice::from_ref(byte));
        }
        assert_eq!(counter.count(), want, "byte by byte");
    }

    #[test]
    fn fifty_pass_and_fifty_one_is_a_loop() {
        let mut counter = ReceivedCounter::new();
        counter.on_data(&headers(50));
        assert_eq!(counter.count(), 50);
        assert!(!counter.is_loop());
        let mut counter = ReceivedCounter::new();
        counter.on_data(&headers(51));
        assert!(counter.is_loop());
        let mut counter = ReceivedCounter::new();
        counter.on_data(&headers(10_000));
        assert_eq!(counter.count(), MAX_RECEIVED + 1, "saturates");
    }

    #[test]
    fn the_received_line_names_client_host_protocol_id_recipient_and_date() {
        let mut out = Vec::new();
        let trace = Trace {
            helo: b"client.example",
            address: IpAddr::from([192, 0, 2, 7]),
            by: "relay.test",
            with: "ESMTPS",
            id: "1765.M1P2Q3",
            for_recipient: Some(b"rcpt@example.org"),
            unix_seconds: 1_796_624_410,
        };
        received_line_into(&mut out, &trace);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from client.example ([192.0.2.7])\r\n\tby relay.test with ESMTPS id 1765.M1P2Q3\r\n\tfor <rcpt@example.org>; Mon, 7 Dec 2026 06:20:10 +0000\r\n"
        );
        let mut out = Vec::new();
        received_line_into(
            &mut out,
            &Trace {
                helo: b"bad\x01helo (forged) \xc3\xa9",
                for_recipient: None,
                ..trace
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Received: from bad?helo??forged???? ([192.0.2.7])\r\n"),
            "{text:?}"
        );
        assert!(!text.contains("for <"));
        assert!(
            text.is_ascii(),
            "the relay's line keeps a 7-bit message 7-bit"
        );
        let mut counter = ReceivedCounter::new();
        counter.on_data(text.as_bytes());
        assert_eq!(counter.count(), 1, "the line is one field, folded");
    }

    #[test]
    fn the_client_address_is_an_rfc_5321_address_literal() {
        let cases: &[(&str, &str)] = &[
            ("192.0.2.7", "[192.0.2.7]"),
            ("127.0.0.1", "[127.0.0.1]"),
            ("::1", "[IPv6:::1]"),
            ("2001:db8::1", "[IPv6:2001:db8::1]"),
            ("2001:db8:0:0:1:0:0:1", "[IPv6:2001:db8::1:0:0:1]"),
            ("fe80::1:2:3:4", "[IPv6:fe80::1:2:3:4]"),
            // IPv4-mapped: the IPv4 client it maps (a dual-stack listener's view of it).
            ("::ffff:192.0.2.7", "[192.0.2.7]"),
            ("::ffff:127.0.0.1", "[127.0.0.1]"),
            // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1) is an IPv6 address.
            ("::192.0.2.7", "[IPv6:::c000:207]"),
        ];
        for (address, want) in cases {
            let address: IpAddr = address.parse().unwrap();
            let mut out = b"(".to_vec();
            address_literal_into(&mut out, address);
            assert_eq!(out, [&b"("[..], want.as_bytes()].concat(), "{address}");
        }
        let mut out = Vec::new();
        received_line_into(
            &mut out,
            &Trace {
                helo: b"[127.0.0.1]",
                address: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                by: "relay.test",
                with: "ESMTP",
                id: "1",
                for_recipient: None,
                unix_seconds: 0,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Received: from [127.0.0.1] ([IPv6:::1])\r\n\tby relay.test"),
            "{text:?}"
        );
    }

    #[test]
    fn the_helo_name_is_written_as_ascii_with_a_question_mark_per_other_byte() {
        let cases: &[(&[u8], &str)] = &[
            (b"client.example", "client.example"),
            (b"[192.0.2.1]", "[192.0.2.1]"),
            (b"[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
            (b"", ""),
            // UTF-8 (2 bytes each for ü and é): one `?` per byte (RFC 5321 §4.4: ASCII).
            ("bücher.example".as_bytes(), "b??cher.example"),
            ("xn--bcher-kva.example".as_bytes(), "xn--bcher-kva.example"),
            (b"caf\xc3\xa9", "caf??"),
            // Not UTF-8 at all, a lone continuation byte, 0xff.
            (b"a\x80b\xffc", "a?b?c"),
            // Bidi controls are bytes of 0x80 and up too (U+202E: 3 bytes).
            ("a\u{202e}b".as_bytes(), "a???b"),
            (b"a b\tc\r\nd\x00e\x7f", "a?b?c??d?e?"),
            (b"x(y)z\"q\\", "x?y?z?q?"),
            (
                b"!#$%&'*+,-./:;<=>?@[]^_`{|}~",
                "!#$%&'*+,-./:;<=>?@[]^_`{|}~",
            ),
        ];
        for (helo, want) in cases {
            let mut out = b"prefix ".to_vec();
            helo_into(&mut out, helo);
            assert_eq!(out, [&b"prefix "[..], want.as_bytes()].concat(), "{helo:?}");
            assert!(out.is_ascii());
        }
        // Every byte: printable ASCII but `(`, `)`, `"` and `\` is kept, anything else is `?`.
        for byte in 0..=u8::MAX {
            let mut out = Vec::new();
            helo_into(&mut out, &[byte]);
            let kept = byte.is_ascii_graphic() && !b"()\"\\".contains(&byte);
            assert_eq!(out, [if kept { byte } else { b'?' }], "{byte:#x}");
        }
    }

    #[test]
    fn the_protocol_word_follows_rfc_3848_and_rfc_6531() {
        let cases = [
            ((false, true, true, true), "SMTP"),
            ((true, false, false, false), "ESMTP"),
            ((true, false, true, false), "ESMTPS"),
            ((true, false, false, true), "ESMTPA"),
            ((true, false, true, true), "ESMTPSA"),
            ((true, true, false, false), "UTF8SMTP"),
            ((true, true, true, true), "UTF8SMTPSA"),
        ];
        for ((esmtp, utf8, tls, auth), want) in cases {
            assert_eq!(protocol_word(esmtp, utf8, tls, auth), want);
        }
    }
}
