//! The SMTP service extension for delivery status notifications (RFC 3461): the one
//! definition of its parameters, shared by the server's parser, the relay's spool, its SMTP
//! client and its notifications.
//!
//! What it does: the two values, [`Notify`] (RFC 3461 §4.1, `RCPT ... NOTIFY=`) and [`Ret`]
//! (§4.3, `MAIL ... RET=`); their parsers ([`parse_notify`], [`parse_ret`]) and encoders
//! ([`Notify::value_into`], [`Ret::as_str`]); xtext (RFC 3461 §4, the form `ENVID` and
//! `ORCPT` travel in): [`is_xtext`], [`decode_xtext_into`] and [`xtext_into`]; and the checks
//! of the two text parameters, [`parse_envid`] (§4.4, at most [`MAX_ENVID_LEN`] characters)
//! and [`parse_orcpt`] (§4.2, `addr-type ";" xtext`, at most [`MAX_ORCPT_LEN`]).
//!
//! What it does not do: decide whether DSN is offered (the session does: only a server that
//! relays offers it), keep anything, or write a notification (`crate::relay::dsn`). Nothing
//! here allocates but the `*_into` encoders, which append to the caller's buffer.

/// The longest `ENVID` value, in characters as sent (xtext): RFC 3461 §4.4, "the ENVID
/// parameter ... MUST NOT exceed 100 characters".
pub const MAX_ENVID_LEN: usize = 100;

/// The longest `ORCPT` value, in characters as sent (`addr-type;xtext`): RFC 3461 §4.2, "MUST
/// NOT exceed 500 characters".
pub const MAX_ORCPT_LEN: usize = 500;

/// `NOTIFY` of one recipient (RFC 3461 §4.1): a set of conditions, empty when the parameter
/// was not given. Stored as bits (what the spool writes to disk: [`Notify::bits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify(u8);

impl Notify {
    /// No `NOTIFY` parameter: what [`Notify::default`] is. The relay then acts as if
    /// `FAILURE,DELAY` was given (RFC 3461 §4.1 leaves the choice between that and `FAILURE`
    /// to the MTA; delay warnings are still sent only with `--delay-warning`).
    pub const ABSENT: Notify = Notify(0);
    /// `NOTIFY=NEVER`: no notification whatever happens.
    pub const NEVER: Notify = Notify(1);
    /// `SUCCESS`: report delivery (and relaying to a next hop without DSN, RFC 3461 §5.2.2).
    pub const SUCCESS: Notify = Notify(2);
    /// `FAILURE`: report a permanent failure (or a recipient that expired in the queue).
    pub const FAILURE: Notify = Notify(4);
    /// `DELAY`: report that delivery is delayed.
    pub const DELAY: Notify = Notify(8);
    /// What an absent `NOTIFY` means here: `FAILURE,DELAY` (see [`Notify::ABSENT`]).
    pub const DEFAULT: Notify = Notify(4 | 8);

    /// The set as bits (what the spool's segments store).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set of `bits`, or `None` when a bit means nothing.
    pub fn from_bits(bits: u8) -> Option<Notify> {
        (bits & !0x0f == 0).then_some(Notify(bits))
    }

    /// Both sets together.
    pub fn union(self, other: Notify) -> Notify {
        Notify(self.0 | other.0)
    }

    /// Whether every condition of `other` is in this set (as given: an absent `NOTIFY`
    /// contains nothing; see [`Notify::wants`]).
    pub fn contains(self, other: Notify) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no `NOTIFY` was given.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a notification for `condition` (one of [`Notify::SUCCESS`],
    /// [`Notify::FAILURE`], [`Notify::DELAY`]) is wanted: as given, or [`Notify::DEFAULT`]
    /// when absent. `NEVER` wants none.
    pub fn wants(self, condition: Notify) -> bool {
        let effective = if self.is_empty() {
            Notify::DEFAULT
        } else {
            self
        };
        !condition.is_empty() && effective.contains(condition)
    }

    /// Appends the parameter's value as RFC 3461 §4.1 spells it: `NEVER`, or the conditions
    /// in the order `SUCCESS,FAILURE,DELAY`. An absent `NOTIFY` writes nothing (the caller
    /// leaves the parameter out).
    pub fn value_into(self, out: &mut Vec<u8>) {
        if self.contains(Notify::NEVER) {
            out.extend_from_slice(b"NEVER");
            return;
        }
        let mut first = true;
        for (condition, word) in [
            (Notify::SUCCESS, &b"SUCCESS"[..]),
            (Notify::FAILURE, b"FAILURE"),
            (Notify::DELAY, b"DELAY"),
        ] {
            if self.contains(condition) {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(word);
                first = false;
            }
        }
    }
}

/// Reads a `NOTIFY` value (RFC 3461 §4.1): `NEVER` alone, or a comma-separated list of
/// `SUCCESS`, `FAILURE` and `DELAY`, case-insensitive, each at most once. `None` for
/// anything else: an empty value or item, an unknown word, `NEVER` with another word, a
/// word given twice (`DELAY,DELAY`).
///
/// Why a repeat is refused: §4.1's grammar (`"NOTIFY=" ("NEVER" / 1#notify-list-element)`)
/// does not forbid it outright, but a list that names a condition twice is a client's
/// mistake, and Postfix refuses it (`501 5.5.4 Error: Bad NOTIFY parameter syntax`): one
/// simple contract, the same at both ends of a relay. Allocates nothing.
pub fn parse_notify(value: &[u8]) -> Option<Notify> {
    if value.eq_ignore_ascii_case(b"NEVER") {
        return Some(Notify::NEVER);
    }
    let mut notify = Notify::ABSENT;
    for word in value.split(|&b| b == b',') {
        let condition = if word.eq_ignore_ascii_case(b"SUCCESS") {
            Notify::SUCCESS
        } else if word.eq_ignore_ascii_case(b"FAILURE") {
            Notify::FAILURE
        } else if word.eq_ignore_ascii_case(b"DELAY") {
            Notify::DELAY
        } else {
            return None;
        };
        if notify.contains(condition) {
            return None; // a repeat: see above
        }
        notify = notify.union(condition);
    }
    Some(notify)
}

/// `RET` (RFC 3461 §4.3): what a notification returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: its header block only (also what an absent `RET` gets here).
    Headers,
}

impl Ret {
    /// The parameter's value: `FULL` or `HDRS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Headers => "HDRS",
        }
    }
}

/// Reads a `RET` value, `FULL` or `HDRS`, case-insensitive (RFC 3461 §4.3).
pub fn parse_ret(value: &[u8]) -> Option<Ret> {
    if value.eq_ignore_ascii_case(b"FULL") {
        Some(Ret::Full)
    } else if value.eq_ignore_ascii_case(b"HDRS") {
        Some(Ret::Headers)
    } else {
        None
    }
}

/// Whether `value` is xtext (RFC 3461 §4): `xchar` (`!` to `~` but `+` and `=`) or
/// `hexchar` (`+` and two upper-case hex digits). The empty string is xtext.
pub fn is_xtext(value: &[u8]) -> bool {
    let mut rest = value;
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'+' => match tail {
                [high, low, more @ ..] if is_upper_hex(*high) && is_upper_hex(*low) => rest = more,
                _ => return false,
            },
            b'=' => return false,
            b'!'..=b'~' => rest = tail,
            _ => return false,
        }
    }
    true
}

/// `0-9` or `A-F`: RFC 3461 §4's `hexchar` digits.
fn is_upper_hex(digit: u8) -> bool {
    digit.is_ascii_digit() || (b'A'..=b'F').contains(&digit)
}

/// The value of an upper-case hex digit (see [`is_upper_hex`]).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit.wrapping_sub(b'A').wrapping_add(10),
    }
}

/// Appends `value` decoded from xtext to `out` and returns `true`; appends nothing and
/// returns `false` when it is not xtext ([`is_xtext`]). The `ENVID` and `ORCPT` parameters
/// arrive in this form; a notification shows them decoded (RFC 3461 §6.3).
pub fn decode_xtext_into(value: &[u8], out: &mut Vec<u8>) -> bool {
    if !is_xtext(value) {
        return false;
    }
    let mut rest = value;
    while let Some((&first, tail)) = rest.split_first() {
        match (first, tail) {
            (b'+', [high, low, more @ ..]) => {
                out.push(hex_value(*high) << 4 | hex_value(*low));
                rest = more;
            }
            _ => {
                out.push(first);
                rest = tail;
            }
        }
    }
    true
}

/// `value` decoded from xtext, or `None` when it is not xtext (an owning form of
/// [`decode_xtext_into`], for code off the protocol's hot path).
pub fn decode_xtext(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    decode_xtext_into(value, &mut out).then_some(out)
}

/// Appends `value` as xtext (RFC 3461 §4): octets outside `!` to `~`, and `+` and `=`, as
/// `+HH`; every other octet as itself.
pub fn xtext_into(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
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
}

/// Checks an `ENVID` value (RFC 3461 §4.4): non-empty xtext of at most [`MAX_ENVID_LEN`]
/// characters. Returns it, still in xtext, or `None`.
pub fn parse_envid(value: &[u8]) -> Option<&[u8]> {
    (!value.is_empty() && value.len() <= MAX_ENVID_LEN && is_xtext(value)).then_some(value)
}

/// An `ORCPT` value (RFC 3461 §4.2), checked: `addr-type ";" xtext`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orcpt<'a> {
    /// The address type, an atom such as `rfc822` or `utf-8` (RFC 6533 §3).
    pub address_type: &'a [u8],
    /// The original address, still in xtext.
    pub address_xtext: &'a [u8],
}

/// Checks an `ORCPT` value (RFC 3461 §4.2): at most [`MAX_ORCPT_LEN`] characters, an
/// address type that is an RFC 5322 atom (letters, digits, `-` and the other atom
/// characters; RFC 3461 §4.2 names it an `atom`), `;`, and a non-empty xtext address.
pub fn parse_orcpt(value: &[u8]) -> Option<Orcpt<'_>> {
    if value.len() > MAX_ORCPT_LEN {
        return None;
    }
    let split = memchr::memchr(b';', value)?;
    let (address_type, address_xtext) = (&value[..split], &value[split + 1..]);
    let is_atom = !address_type.is_empty()
        && address_type
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b));
    (is_atom && !address_xtext.is_empty() && is_xtext(address_xtext)).then_some(Orcpt {
        address_type,
        address_xtext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_values_parse_as_rfc_3461_section_4_1_says() {
        let table: &[(&[u8], Option<Notify>)] = &[
            (b"NEVER", Some(Notify::NEVER)),
            (b"never", Some(Notify::NEVER)),
            (b"SUCCESS", Some(Notify::SUCCESS)),
            (
                b"success,Failure,DELAY",
                Some(Notify::SUCCESS.union(Notify::FAILURE).union(Notify::DELAY)),
            ),
            (b"DELAY,FAILURE", Some(Notify::DEFAULT)),
            // Repeats are refused (Postfix's choice too).
            (b"FAILURE,FAILURE", None),
            (b"DELAY,DELAY", None),
            (b"delay,DELAY", None),
            (b"SUCCESS,FAILURE,success", None),
            (b"NEVER,NEVER", None),
            (b"", None),
            (b"NEVER,SUCCESS", None),
            (b"SUCCESS,NEVER", None),
            (b"SUCCESS,", None),
            (b",SUCCESS", None),
            (b"SUCCESS FAILURE", None),
            (b"ALWAYS", None),
        ];
        for &(value, want) in table {
            assert_eq!(parse_notify(value), want, "{value:?}");
        }
    }

    #[test]
    fn notify_says_what_it_wants_with_the_absent_default() {
        let absent = Notify::ABSENT;
        assert!(absent.is_empty());
        assert!(absent.wants(Notify::FAILURE) && absent.wants(Notify::DELAY));
        assert!(!absent.wants(Notify::SUCCESS));
        assert!(!Notify::NEVER.wants(Notify::FAILURE));
        assert!(!Notify::NEVER.wants(Notify::DELAY));
        assert!(Notify::SUCCESS.wants(Notify::SUCCESS));
        assert!(!Notify::SUCCESS.wants(Notify::FAILURE));
        assert!(!Notify::FAILURE.wants(Notify::ABSENT));
        for bits in 0..=0x0f {
            assert_eq!(Notify::from_bits(bits).map(Notify::bits), Some(bits));
        }
        // The relay's spool stores these bits on disk: they never change.
        let on_disk = [
            Notify::NEVER,
            Notify::SUCCESS,
            Notify::FAILURE,
            Notify::DELAY,
        ];
        assert_eq!(on_disk.map(Notify::bits), [1, 2, 4, 8]);
        assert_eq!(Notify::from_bits(0x10), None);
    }

    #[test]
    fn notify_values_are_written_back_as_they_parse() {
        for value in [
            &b"NEVER"[..],
            b"SUCCESS",
            b"FAILURE",
            b"DELAY",
            b"SUCCESS,FAILURE",
            b"SUCCESS,FAILURE,DELAY",
            b"FAILURE,DELAY",
        ] {
            let mut out = Vec::new();
            parse_notify(value).unwrap().value_into(&mut out);
            assert_eq!(out, value);
        }
        let mut out = Vec::new();
        Notify::ABSENT.value_into(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn ret_values() {
        assert_eq!(parse_ret(b"full"), Some(Ret::Full));
        assert_eq!(parse_ret(b"HDRS"), Some(Ret::Headers));
        assert_eq!(parse_ret(b"BODY"), None);
        assert_eq!(parse_ret(b""), None);
        assert_eq!(Ret::Full.as_str(), "FULL");
        assert_eq!(Ret::Headers.as_str(), "HDRS");
    }

    #[test]
    fn xtext_is_checked_decoded_and_encoded() {
        let table: &[(&[u8], Option<&[u8]>)] = &[
            (b"", Some(b"")),
            (b"plain", Some(b"plain")),
            (b"a+2Bb+3Dc", Some(b"a+b=c")),
            (b"+20+0D+0A", Some(b" \r\n")),
            (b"a=b", None),
            (b"a+2", None),
            (b"a+", None),
            (b"a+2b", None),
            (b"a+GG", None),
            (b"a b", None),
            (b"\xc3\xa9", None),
            (b"tab\there", None),
        ];
        for &(value, want) in table {
            assert_eq!(is_xtext(value), want.is_some(), "{value:?}");
            assert_eq!(decode_xtext(value).as_deref(), want, "{value:?}");
            let mut out = b"keep".to_vec();
            assert_eq!(decode_xtext_into(value, &mut out), want.is_some());
            if want.is_none() {
                assert_eq!(out, b"keep", "nothing appended for {value:?}");
            }
        }
        // Every octet survives a round trip, and the encoding is always xtext.
        let all: Vec<u8> = (0..=255).collect();
        let mut encoded = Vec::new();
        xtext_into(&all, &mut encoded);
        assert!(is_xtext(&encoded));
        assert_eq!(decode_xtext(&encoded).unwrap(), all);
        let mut out = Vec::new();
        xtext_into(b"a+b", &mut out);
        assert_eq!(out, b"a+2Bb");
    }

    proptest::proptest! {
        /// Any octets encode to xtext that decodes back to them; any input to the parsers is
        /// answered without a panic, and what they accept is what they check.
        #[test]
        fn xtext_round_trips_and_the_parsers_take_anything(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut encoded = Vec::new();
            xtext_into(&value, &mut encoded);
            proptest::prop_assert!(is_xtext(&encoded));
            proptest::prop_assert_eq!(decode_xtext(&encoded), Some(value.clone()));
            if let Some(envid) = parse_envid(&value) {
                proptest::prop_assert!(is_xtext(envid) && envid.len() <= MAX_ENVID_LEN);
            }
            if let Some(orcpt) = parse_orcpt(&value) {
                proptest::prop_assert!(is_xtext(orcpt.address_xtext));
            }
            if let Some(notify) = parse_notify(&value) {
                let mut out = Vec::new();
                notify.value_into(&mut out);
                proptest::prop_assert_eq!(parse_notify(&out), Some(notify));
            }
            let _ = parse_ret(&value);
        }
    }

    #[test]
    fn envid_and_orcpt_are_bounded_xtext() {
        assert_eq!(parse_envid(b"QQ314159"), Some(&b"QQ314159"[..]));
        assert_eq!(parse_envid(b""), None);
        assert_eq!(parse_envid(b"a=b"), None);
        let longest = vec![b'x'; MAX_ENVID_LEN];
        assert!(parse_envid(&longest).is_some());
        assert_eq!(parse_envid(&[b'x'; MAX_ENVID_LEN + 1]), None);

        let orcpt = parse_orcpt(b"rfc822;Bob+2Bx@example.org").unwrap();
        assert_eq!(orcpt.address_type, b"rfc822");
        assert_eq!(orcpt.address_xtext, b"Bob+2Bx@example.org");
        assert!(parse_orcpt(b"utf-8;a@b").is_some());
        for bad in [
            &b"rfc822"[..],
            b";a@b",
            b"rfc822;",
            b"rfc822;a=b",
            b"rfc 822;a@b",
            b"rfc822;a b",
        ] {
            assert_eq!(parse_orcpt(bad), None, "{bad:?}");
        }
        let mut long = b"rfc822;".to_vec();
        long.resize(MAX_ORCPT_LEN, b'a');
        assert!(parse_orcpt(&long).is_some());
        long.push(b'a');
        assert_eq!(parse_orcpt(&long), None);
    }
}
