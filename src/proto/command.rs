//! Command parsing: one complete command line in, one [`Command`] borrowing from it out.
//!
//! What it does: recognise the verb (case-insensitively, RFC 5321 §2.4), check the argument
//! syntax of every command we implement (paths per §4.1.2, ESMTP parameters per §4.1.2's
//! `esmtp-param`, `SIZE` per RFC 1870, `BODY` per RFC 6152/3030, `SMTPUTF8` per RFC 6531,
//! `BDAT` per RFC 3030), and say precisely what is wrong otherwise.
//!
//! What it does not do: decide whether a command is allowed *now* (sequence rules live in
//! [`super::session`]), look at anything past the line, or allocate. The line it receives is
//! already complete (framing is [`super::line`]'s job), so parsing cannot be "partial".

/// A parsed command. Byte slices borrow from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `HELO domain` (RFC 5321 §4.1.1.1).
    Helo {
        /// The client's claimed name, as sent.
        domain: &'a [u8],
    },
    /// `EHLO domain` (RFC 5321 §4.1.1.1).
    Ehlo {
        /// The client's claimed name, as sent.
        domain: &'a [u8],
    },
    /// `MAIL FROM:<reverse-path> [params]` (RFC 5321 §4.1.1.2).
    Mail {
        /// The mailbox without angle brackets or source route; empty for the null path `<>`.
        path: &'a [u8],
        /// The ESMTP parameters.
        params: MailParams,
        /// `ENVID=xtext` (RFC 3461 §4.4), checked ([`dsn::parse_envid`]) and still in xtext.
        envid: Option<&'a [u8]>,
    },
    /// `RCPT TO:<forward-path> [params]` (RFC 5321 §4.1.1.3).
    Rcpt {
        /// The mailbox without angle brackets or source route (may be a bare `Postmaster`).
        path: &'a [u8],
        /// The ESMTP parameters (only DSN's, RFC 3461 §4.1 and §4.2).
        params: RcptParams<'a>,
    },
    /// `DATA` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT chunk-size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Octets that follow the command line.
        size: u64,
        /// Whether this is the last chunk of the message.
        last: bool,
    },
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `NOOP [string]` (RFC 5321 §4.1.1.9).
    Noop,
    /// `VRFY string` (RFC 5321 §4.1.1.6).
    Vrfy,
    /// `HELP [string]` (RFC 5321 §4.1.1.8).
    Help,
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `STARTTLS` (RFC 3207 §4), which takes no argument.
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism name, as sent (compared without regard to case).
        mechanism: &'a [u8],
        /// The initial response (base64, or `=` for an empty one), if given.
        initial: Option<&'a [u8]>,
    },
}

/// `BODY=` values (RFC 6152 §2, RFC 3030 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME`: only with BDAT.
    BinaryMime,
}

/// The ESMTP parameters of `MAIL FROM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870), the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY=...` (RFC 6152 / RFC 3030).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531 §3.4): the envelope may hold UTF-8.
    pub smtputf8: bool,
    /// `AUTH=<mailbox>` or `AUTH=<>` (RFC 4954 §5) was given. Its value is not kept: this
    /// server relays nothing, so the identity a relay vouches for changes nothing here.
    pub auth: bool,
    /// `RET=FULL|HDRS` (RFC 3461 §4.3). `ENVID`, the other DSN parameter of `MAIL`, is a
    /// string and travels beside these ([`Command::Mail`]'s `envid`).
    pub ret: Option<Ret>,
    /// Whether any parameter was given at all (they are refused after `HELO`).
    pub any: bool,
}

/// The ESMTP parameters of `RCPT TO`: DSN's (RFC 3461), the only ones a server offers for
/// `RCPT` here, and only when it relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RcptParams<'a> {
    /// `NOTIFY=` (RFC 3461 §4.1); [`Notify::ABSENT`] when not given.
    pub notify: Notify,
    /// `ORCPT=addr-type;xtext` (RFC 3461 §4.2), checked ([`dsn::parse_orcpt`]) and kept as
    /// given.
    pub orcpt: Option<&'a [u8]>,
}

impl RcptParams<'_> {
    /// Whether any parameter was given.
    pub fn any(&self) -> bool {
        !self.notify.is_empty() || self.orcpt.is_some()
    }
}

/// Why a command line was refused. Each maps to one fixed reply (see [`super::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// Unknown verb: `500 5.5.2`.
    Unrecognized,
    /// A bare CR, bare LF or NUL in the line (RFC 5321 §2.3.8, §4.1.4): `500 5.5.2`.
    InvalidBytes,
    /// Bytes that are not UTF-8 (RFC 6531 §3.3 allows only UTF-8): `500 5.5.2`.
    InvalidUtf8,
    /// An HTTP request or a mail header line: the peer is not an SMTP client. `221 2.7.0`.
    NotSmtp,
    /// A verb we know but do not implement (EXPN, TURN, ...): `502 5.5.1`.
    NotImplemented,
    /// `HELO`/`EHLO` without a domain: `501 5.5.4`.
    MissingDomain,
    /// `HELO`/`EHLO` whose argument holds a control character (they would reach logs and
    /// `Received:` headers): `501 5.5.4`.
    ControlInDomain,
    /// `VRFY` without an argument: `501 5.5.4`.
    MissingArgument,
    /// An argument to a command that takes none (`DATA x`): `501 5.5.4`.
    UnexpectedArgument,
    /// `MAIL` not followed by `FROM:` / `RCPT` not followed by `TO:`: `501 5.5.4`.
    BadKeyword,
    /// Reverse-path syntax, or a reverse path that is not UTF-8: `501 5.1.7`.
    BadSenderPath,
    /// Forward-path syntax: `501 5.1.3`.
    BadRecipientPath,
    /// A reverse path over the limits of RFC 5321 §4.5.3.1 (local part 64 octets, domain
    /// 255, path 256): `501 5.1.7`.
    SenderTooLong,
    /// A forward path over the same limits: `501 5.1.3`.
    RecipientTooLong,
    /// A forward path with 8-bit octets that are not UTF-8 (RFC 6531 §3.3 allows only
    /// UTF-8): `553 5.6.7`.
    RecipientNotUtf8,
    /// A known parameter with a bad value, or given twice: `501 5.5.4`.
    BadParameter,
    /// A parameter we do not support: `555 5.5.4`.
    UnknownParameter,
    /// `AUTH` without a mechanism, with a name that is not a SASL name (RFC 4422 §3.1), or
    /// with more than one initial response: `501 5.5.4`.
    MissingMechanism,
    /// `BDAT` whose size is missing, malformed or too large: `501 5.5.4`, then close,
    /// because the octets that follow can no longer be framed (RFC 3030 §2).
    BadBdat,
}

use super::dsn::{self, Notify, Ret};

/// Parses one command line (without its `CR LF`).
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    // RFC 5321 §2.3.8 and §4.1.4: CR and LF only as the line end; NUL never.
    if memchr::memchr3(b'\r', b'\n', 0, line).is_some() {
        return Err(CommandError::InvalidBytes);
    }
    let (verb, rest) = match memchr::memchr(b' ', line) {
        Some(sp) => (&line[..sp], Some(&line[sp + 1..])),
        None => (line, None),
    };
    let verb_is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
    // MAIL and RCPT check their own bytes, so that an address that is not UTF-8 is answered
    // as a bad address (501 5.1.7 / 553 5.6.7), not as an unknown command.
    if !line.is_ascii() {
        let checks_own_bytes = verb_is(b"MAIL") || verb_is(b"RCPT");
        if !checks_own_bytes && std::str::from_utf8(line).is_err() {
            return Err(CommandError::InvalidUtf8);
        }
    }

    if verb_is(b"MAIL") {
        let arg = require_keyword(rest, b"FROM:")?;
        parse_mail(arg)
    } else if verb_is(b"RCPT") {
        let arg = require_keyword(rest, b"TO:")?;
        parse_rcpt(arg)
    } else if verb_is(b"DATA") {
        no_argument(rest, Command::Data)
    } else if verb_is(b"BDAT") {
        parse_bdat(rest)
    } else if verb_is(b"EHLO") || verb_is(b"HELO") {
        let domain = trim_trailing_spaces(rest.unwrap_or(b""));
        let domain = trim_leading_spaces(domain);
        if domain.is_empty() {
            return Err(CommandError::MissingDomain);
        }
        // The argument is logged and goes into trace headers: no control characters (a
        // terminal escape or a tab there is never a host name, RFC 5321 §4.1.1.1), nor
        // their UTF-8 forms or text-direction overrides.
        if has_control(domain) {
            return Err(CommandError::ControlInDomain);
        }
        Ok(if verb_is(b"EHLO") {
            Command::Ehlo { domain }
        } else {
            Command::Helo { domain }
        })
    } else if verb_is(b"RSET") {
        no_argument(rest, Command::Rset)
    } else if verb_is(b"NOOP") {
        Ok(Command::Noop)
    } else if verb_is(b"QUIT") {
        no_argument(rest, Command::Quit)
    } else if verb_is(b"VRFY") {
        match rest.map(trim_trailing_spaces) {
            Some(arg) if !arg.is_empty() => Ok(Command::Vrfy),
            _ => Err(CommandError::MissingArgument),
        }
    } else if verb_is(b"HELP") {
        Ok(Command::Help)
    } else if verb_is(b"STARTTLS") {
        // RFC 3207 §4: "STARTTLS" with no parameters (a 501 otherwise).
        no_argument(rest, Command::StartTls)
    } else if verb_is(b"AUTH") {
        parse_auth(rest)
    } else if NOT_IMPLEMENTED.iter().any(|name| verb_is(name)) {
        Err(CommandError::NotImplemented)
    } else if NOT_SMTP.iter().any(|name| verb_is(name))
        || (verb.len() > 1 && verb.ends_with(b":") && rest.is_some())
    {
        // An HTTP request, or a header line such as `Subject: hi` sent outside DATA: the peer
        // is not speaking SMTP (a browser, or a client that lost sync). Postfix's
        // `smtpd_forbidden_commands` draws the same line.
        Err(CommandError::NotSmtp)
    } else {
        Err(CommandError::Unrecognized)
    }
}

/// Verbs from RFC 5321 and its extensions that we recognise and deliberately do not implement.
const NOT_IMPLEMENTED: &[&[u8]] = &[
    b"EXPN", b"TURN", b"ETRN", b"SEND", b"SOML", b"SAML", b"ATRN",
];

/// `AUTH mechanism [initial-response]` (RFC 4954 §4): the mechanism is a SASL name
/// (RFC 4422 §3.1: upper-case letters, digits, `-` and `_`, at most 20 characters; compared
/// here without regard to case), the initial response one base64 word or `=`.
fn parse_auth(rest: Option<&[u8]>) -> Result<Command<'_>, CommandError> {
    let rest = trim_trailing_spaces(rest.unwrap_or(b""));
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(CommandError::MissingMechanism)?;
    let initial = words.next();
    let is_sasl_name = mechanism.len() <= 20
        && mechanism
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !is_sasl_name || words.next().is_some() {
        return Err(CommandError::MissingMechanism);
    }
    Ok(Command::Auth { mechanism, initial })
}

/// First words of HTTP requests.
const NOT_SMTP: &[&[u8]] = &[b"GET", b"POST", b"CONNECT", b"HEAD", b"PUT"];

fn trim_trailing_spaces(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b' ' | b'\t'] = s {
        s = head;
    }
    s
}

fn trim_leading_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', tail @ ..] = s {
        s = tail;
    }
    s
}

fn no_argument<'a>(rest: Option<&[u8]>, command: Command<'a>) -> Result<Command<'a>, CommandError> {
    match rest.map(trim_trailing_spaces) {
        None | Some(b"") => Ok(command),
        Some(_) => Err(CommandError::UnexpectedArgument),
    }
}

/// Checks for `FROM:`/`TO:` after the verb and returns what follows it. One or more spaces
/// after the colon are accepted as Postfix does (`MAIL FROM: <a@b>`); RFC 5321 has none.
fn require_keyword<'a>(rest: Option<&'a [u8]>, keyword: &[u8]) -> Result<&'a [u8], CommandError> {
    let rest = rest.ok_or(CommandError::BadKeyword)?;
    if rest.len() < keyword.len() || !rest[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return Err(CommandError::BadKeyword);
    }
    Ok(trim_leading_spaces(&rest[keyword.len()..]))
}

fn parse_mail(arg: &[u8]) -> Result<Command<'_>, CommandError> {
    let (path, consumed) = parse_path(arg, PathKind::Reverse).map_err(|e| match e {
        PathError::Syntax => CommandError::BadSenderPath,
        PathError::TooLong => CommandError::SenderTooLong,
    })?;
    // The path grammar admits no ASCII control: only 8-bit octets need a look. UTF-8 is
    // checked over the whole path, source route included (dropped, but part of the line).
    if !is_utf8(&arg[..consumed]) || (!path.is_ascii() && has_control(path)) {
        return Err(CommandError::BadSenderPath);
    }
    let mut params = MailParams::default();
    let mut envid = None;
    let tail = &arg[consumed..];
    if !tail.is_empty() && !is_blank(tail[0]) {
        return Err(CommandError::BadSenderPath);
    }
    // Parameters are ASCII (RFC 5321 §4.1.2 esmtp-keyword / esmtp-value).
    if !tail.is_ascii() {
        return Err(CommandError::BadParameter);
    }
    for param in tail.split(|&b| is_blank(b)).filter(|p| !p.is_empty()) {
        params.any = true;
        let (keyword, value) = match memchr::memchr(b'=', param) {
            Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
            None => (param, None),
        };
        if keyword.eq_ignore_ascii_case(b"SIZE") {
            // RFC 1870 §3: size-value ::= 1*20DIGIT.
            let value = value.ok_or(CommandError::BadParameter)?;
            if params.size.is_some() {
                return Err(CommandError::BadParameter);
            }
            // Twenty digits can exceed u64: that is valid syntax and simply over any limit,
            // so it saturates (552 5.3.4 from the session, not 501).
            let all_digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
            let size = match parse_decimal(value, 20) {
                Some(size) => size,
                None if all_digits && value.len() <= 20 => u64::MAX,
                None => return Err(CommandError::BadParameter),
            };
            params.size = Some(size);
        } else if keyword.eq_ignore_ascii_case(b"BODY") {
            let value = value.ok_or(CommandError::BadParameter)?;
            let body = if value.eq_ignore_ascii_case(b"7BIT") {
                Body::SevenBit
            } else if value.eq_ignore_ascii_case(b"8BITMIME") {
                Body::EightBitMime
            } else if value.eq_ignore_ascii_case(b"BINARYMIME") {
                Body::BinaryMime
            } else {
                return Err(CommandError::BadParameter);
            };
            // A repeat with the same value is harmless and real clients send it (Python's
            // smtplib adds `BODY=8BITMIME` for a UTF-8 envelope even when the caller passed
            // it already); two different values are a contradiction.
            if params.body.is_some_and(|earlier| earlier != body) {
                return Err(CommandError::BadParameter);
            }
            params.body = Some(body);
        } else if keyword.eq_ignore_ascii_case(b"SMTPUTF8") {
            // RFC 6531 §3.4: the parameter takes no value. A repeat is accepted, as Postfix
            // does: Python's `send_message(msg, mail_options=['SMTPUTF8'])` to a UTF-8 address
            // sends `SMTPUTF8 SMTPUTF8 BODY=8BITMIME`.
            if value.is_some() {
                return Err(CommandError::BadParameter);
            }
            params.smtputf8 = true;
        } else if keyword.eq_ignore_ascii_case(b"AUTH") {
            // RFC 4954 §5: AUTH=<> or AUTH=xtext (printable ASCII but `=`; `+XX` escapes).
            let value = value.ok_or(CommandError::BadParameter)?;
            let is_xtext = !value.is_empty()
                && value
                    .iter()
                    .all(|&b| (b'!'..=b'~').contains(&b) && b != b'=');
            if !is_xtext || params.auth {
                return Err(CommandError::BadParameter);
            }
            params.auth = true;
        } else if keyword.eq_ignore_ascii_case(b"RET") {
            // RFC 3461 §4.3: RET=FULL or RET=HDRS, once. Whether DSN is offered (and so
            // whether the parameter is known) is the session's question.
            let ret = value.and_then(dsn::parse_ret);
            if ret.is_none() || params.ret.is_some() {
                return Err(CommandError::BadParameter);
            }
            params.ret = ret;
        } else if keyword.eq_ignore_ascii_case(b"ENVID") {
            // RFC 3461 §4.4: xtext of at most 100 characters, once.
            let value = value.and_then(dsn::parse_envid);
            if value.is_none() || envid.is_some() {
                return Err(CommandError::BadParameter);
            }
            envid = value;
        } else if is_esmtp_keyword(keyword) {
            return Err(CommandError::UnknownParameter);
        } else {
            return Err(CommandError::BadParameter);
        }
    }
    Ok(Command::Mail {
        path,
        params,
        envid,
    })
}

fn parse_rcpt(arg: &[u8]) -> Result<Command<'_>, CommandError> {
    let (path, consumed) = parse_path(arg, PathKind::Forward).map_err(|e| match e {
        PathError::Syntax => CommandError::BadRecipientPath,
        PathError::TooLong => CommandError::RecipientTooLong,
    })?;
    // The path grammar admits no ASCII control: only 8-bit octets need a look. UTF-8 is
    // checked over the whole path, source route included (dropped, but part of the line).
    if !is_utf8(&arg[..consumed]) {
        return Err(CommandError::RecipientNotUtf8);
    }
    if !path.is_ascii() && has_control(path) {
        return Err(CommandError::BadRecipientPath);
    }
    let tail = &arg[consumed..];
    if !tail.is_empty() && !is_blank(tail[0]) {
        return Err(CommandError::BadRecipientPath);
    }
    // Parameters are ASCII (RFC 5321 §4.1.2 esmtp-keyword / esmtp-value).
    if !tail.is_ascii() {
        return Err(CommandError::BadParameter);
    }
    // DSN's NOTIFY and ORCPT are the only RCPT parameters known; whether DSN is offered
    // (else they are refused as unknown) is the session's question.
    let mut params = RcptParams::default();
    for param in tail.split(|&b| is_blank(b)).filter(|p| !p.is_empty()) {
        let (keyword, value) = match memchr::memchr(b'=', param) {
            Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
            None => (param, None),
        };
        if keyword.eq_ignore_ascii_case(b"NOTIFY") {
            // RFC 3461 §4.1: NEVER alone, or SUCCESS / FAILURE / DELAY each at most once
            // (a repeat is refused, as Postfix does); the parameter once.
            let notify = value.and_then(dsn::parse_notify);
            match notify {
                Some(notify) if params.notify.is_empty() => params.notify = notify,
                _ => return Err(CommandError::BadParameter),
            }
        } else if keyword.eq_ignore_ascii_case(b"ORCPT") {
            // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters; once.
            let valid = value.filter(|value| dsn::parse_orcpt(value).is_some());
            if valid.is_none() || params.orcpt.is_some() {
                return Err(CommandError::BadParameter);
            }
            params.orcpt = valid;
        } else if is_esmtp_keyword(keyword) {
            return Err(CommandError::UnknownParameter);
        } else {
            return Err(CommandError::BadParameter);
        }
    }
    Ok(Command::Rcpt { path, params })
}

fn parse_bdat(rest: Option<&[u8]>) -> Result<Command<'static>, CommandError> {
    let rest = trim_trailing_spaces(rest.ok_or(CommandError::BadBdat)?);
    let (size, last) = match memchr::memchr(b' ', rest) {
        Some(sp) => {
            if !rest[sp + 1..].eq_ignore_ascii_case(b"LAST") {
                return Err(CommandError::BadBdat);
            }
            (&rest[..sp], true)
        }
        None => (rest, false),
    };
    let size = parse_decimal(size, 20).ok_or(CommandError::BadBdat)?;
    Ok(Command::Bdat { size, last })
}

/// Space or tab: what may separate a path from its parameters and the parameters from each
/// other (RFC 5321 has a space; senders that put a tab there mean the same).
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether `bytes` hold a character that must not reach a log line or a header: an ASCII
/// control (C0 or DEL), a C1 control in its UTF-8 form (U+0080 to U+009F: the 8-bit terminal
/// escapes), or a bidirectional formatting character (U+061C, U+200E, U+200F, U+202A to
/// U+202E, U+2066 to U+2069: text that reads differently from what it is). `bytes` that are
/// not UTF-8 are checked only for the ASCII controls.
pub fn has_control(bytes: &[u8]) -> bool {
    if bytes.is_ascii() {
        return bytes.iter().any(|&b| b < 0x20 || b == 0x7f);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.chars().any(is_unsafe_char),
        Err(_) => bytes.iter().any(|&b| b < 0x20 || b == 0x7f),
    }
}

/// See [`has_control`].
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `bytes` are UTF-8 (ASCII is, cheaply).
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// Parses 1 to `max_digits` ASCII digits into a `u64`; `None` on anything else or overflow.
fn parse_decimal(digits: &[u8], max_digits: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_digits {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// RFC 5321 §4.1.2: `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
fn is_esmtp_keyword(keyword: &[u8]) -> bool {
    matches!(keyword.first(), Some(b) if b.is_ascii_alphanumeric())
        && keyword
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Which path grammar applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    /// `MAIL FROM`: `<>` allowed.
    Reverse,
    /// `RCPT TO`: a bare `<Postmaster>` allowed.
    Forward,
}

/// RFC 5321 §4.5.3.1.1: the longest local part, in octets.
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// RFC 5321 §4.5.3.1.2: the longest domain, in octets.
pub const MAX_DOMAIN_LEN: usize = 255;
/// RFC 5321 §4.5.3.1.3: the longest reverse or forward path, in octets, "including the
/// punctuation and element separators" (the angle brackets and any source route).
pub const MAX_PATH_LEN: usize = 256;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathError {
    /// Not the grammar of RFC 5321 §4.1.2.
    Syntax,
    /// Over a length limit of RFC 5321 §4.5.3.1.
    TooLong,
}

/// Parses `"<" [ A-d-l ":" ] Mailbox ">"` (RFC 5321 §4.1.2) at the start of `s`, or `<>` for a
/// reverse path, or `<Postmaster>` for a forward path. Returns the mailbox (the source route,
/// which §4.1.1.3 says to ignore, is skipped) and the bytes consumed. Paths over the limits
/// of §4.5.3.1 are refused, so a session's envelope has a small bound.
///
/// UTF-8 (bytes >= 0x80) is allowed in local parts and domains here (RFC 6531 §3.3); whether
/// the transaction allows it is the session's decision.
fn parse_path(s: &[u8], kind: PathKind) -> Result<(&[u8], usize), PathError> {
    let (path, consumed, local_len, domain_len) =
        parse_path_parts(s, kind).ok_or(PathError::Syntax)?;
    if consumed > MAX_PATH_LEN || local_len > MAX_LOCAL_PART_LEN || domain_len > MAX_DOMAIN_LEN {
        return Err(PathError::TooLong);
    }
    Ok((path, consumed))
}

/// The grammar of [`parse_path`]: the mailbox, the bytes consumed, and the lengths of the
/// local part and the domain.
fn parse_path_parts(s: &[u8], kind: PathKind) -> Option<(&[u8], usize, usize, usize)> {
    let mut cursor = Cursor { s, pos: 0 };
    cursor.expect(b'<')?;
    if kind == PathKind::Reverse && cursor.peek() == Some(b'>') {
        return Some((&s[1..1], 2, 0, 0));
    }
    if cursor.peek() == Some(b'@') {
        // A-d-l = At-domain *( "," At-domain ) ":"
        loop {
            cursor.expect(b'@')?;
            cursor.domain()?;
            match cursor.next()? {
                b',' => continue,
                b':' => break,
                _ => return None,
            }
        }
    }
    let start = cursor.pos;
    let quoted = cursor.local_part()?;
    let local_len = cursor.pos - start;
    let mut domain_len = 0;
    if cursor.peek() == Some(b'@') {
        cursor.pos += 1;
        let domain_start = cursor.pos;
        cursor.domain()?;
        domain_len = cursor.pos - domain_start;
    } else {
        // RFC 5321 §4.1.1.3: "Postmaster" without a domain is a valid forward path.
        let local = &s[start..cursor.pos];
        if kind != PathKind::Forward || quoted || !local.eq_ignore_ascii_case(b"postmaster") {
            return None;
        }
    }
    let end = cursor.pos;
    cursor.expect(b'>')?;
    Some((&s[start..end], cursor.pos, local_len, domain_len))
}

/// A read position in a path.
struct Cursor<'a> {
    /// The bytes being parsed.
    s: &'a [u8],
    /// The next byte to read.
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// `Local-part = Dot-string / Quoted-string`. Returns whether it was quoted.
    fn local_part(&mut self) -> Option<bool> {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            loop {
                match self.next()? {
                    b'"' => return Some(true),
                    // quoted-pairSMTP = %d92 %d32-126
                    b'\\' => {
                        let escaped = self.next()?;
                        if !(32..=126).contains(&escaped) {
                            return None;
                        }
                    }
                    // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531).
                    b if (32..=126).contains(&b) || b >= 0x80 => {}
                    _ => return None,
                }
            }
        }
        // Dot-string = Atom *("." Atom), loosened as Postfix does: consecutive and trailing
        // dots (`user..name@`, `user.@`) are accepted, because such addresses exist and their
        // mail must still be taken. The first octet must still be atext.
        if !matches!(self.peek(), Some(b) if is_atext(b)) {
            return None;
        }
        while matches!(self.peek(), Some(b) if is_atext(b) || b == b'.') {
            self.pos += 1;
        }
        Some(false)
    }

    /// `Domain = sub-domain *("." sub-domain)` or an address literal `"[" ... "]"`.
    fn domain(&mut self) -> Option<()> {
        if self.peek() == Some(b'[') {
            self.pos += 1;
            let start = self.pos;
            // dcontent = %d33-90 / %d94-126 (RFC 5321 §4.1.3)
            while matches!(self.peek(), Some(b) if (33..=90).contains(&b) || (94..=126).contains(&b))
            {
                self.pos += 1;
            }
            if self.pos == start {
                return None;
            }
            return self.expect(b']');
        }
        loop {
            let label_start = self.pos;
            // Let-dig and "-", plus UTF-8 for U-labels (RFC 6531 §3.3).
            while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
            {
                self.pos += 1;
            }
            if self.pos == label_start {
                return None;
            }
            if self.peek() != Some(b'.') {
                return Some(());
            }
            self.pos += 1;
        }
    }
}

/// RFC 5322 `atext`, plus UTF-8 octets (RFC 6531 §3.3).
#[inline]
fn is_atext(b: u8) -> bool {
    ATEXT[usize::from(b)]
}

/// [`is_atext`] as a table: one load per octet of a local part, the hottest loop of MAIL and
/// RCPT parsing.
const ATEXT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c >= 0x80;
        b += 1;
    }
    let specials = b"!#$%&'*+-/=?^_`{|}~";
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use CommandError::*;

    fn mail(path: &[u8], params: MailParams) -> Result<Command<'_>, CommandError> {
        Ok(Command::Mail {
            path,
            params,
            envid: None,
        })
    }

    #[test]
    fn verbs() {
        let cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (
                b"EHLO client.example",
                Ok(Command::Ehlo {
                    domain: b"client.example",
                }),
            ),
            (
                b"ehlo client.example  ",
                Ok(Command::Ehlo {
                    domain: b"client.example",
                }),
            ),
            (
                b"HeLo [192.0.2.1]",
                Ok(Command::Helo {
                    domain: b"[192.0.2.1]",
                }),
            ),
            (b"EHLO", Err(MissingDomain)),
            (b"EHLO ", Err(MissingDomain)),
            (b"HELO   ", Err(MissingDomain)),
            (b"DATA", Ok(Command::Data)),
            (b"data ", Ok(Command::Data)),
            (b"DATA x", Err(UnexpectedArgument)),
            (b"RSET", Ok(Command::Rset)),
            (b"RSET now", Err(UnexpectedArgument)),
            (b"NOOP", Ok(Command::Noop)),
            (b"NOOP anything at all", Ok(Command::Noop)),
            (b"QUIT", Ok(Command::Quit)),
            (b"quit", Ok(Command::Quit)),
            (b"VRFY postmaster", Ok(Command::Vrfy)),
            (b"VRFY", Err(MissingArgument)),
            (b"VRFY ", Err(MissingArgument)),
            (b"HELP", Ok(Command::Help)),
            (b"HELP MAIL", Ok(Command::Help)),
            (b"EXPN staff", Err(NotImplemented)),
            (b"TURN", Err(NotImplemented)),
            (b"ETRN example.org", Err(NotImplemented)),
            (b"SEND FROM:<a@b>", Err(NotImplemented)),
            (b"SOML FROM:<a@b>", Err(NotImplemented)),
            (b"SAML FROM:<a@b>", Err(NotImplemented)),
            (b"STARTTLS", Ok(Command::StartTls)),
            (b"starttls  ", Ok(Command::StartTls)),
            (b"STARTTLS x", Err(UnexpectedArgument)),
            (
                b"AUTH PLAIN",
                Ok(Command::Auth {
                    mechanism: b"PLAIN",
                    initial: None,
                }),
            ),
            (
                b"auth login dXNlcg==",
                Ok(Command::Auth {
                    mechanism: b"login",
                    initial: Some(b"dXNlcg=="),
                }),
            ),
            (b"AUTH", Err(MissingMechanism)),
            (b"AUTH PLAIN a b", Err(MissingMechanism)),
            (b"AUTH PL@IN", Err(MissingMechanism)),
            (b"EXPN list", Err(NotImplemented)),
            (b"", Err(Unrecognized)),
            (b"FOO", Err(Unrecognized)),
            (b"NOOPX", Err(Unrecognized)),
            (b" NOOP", Err(Unrecognized)),
            (b"GET / HTTP/1.1", Err(NotSmtp)),
            (b"POST /x HTTP/1.1", Err(NotSmtp)),
            (b"CONNECT example.org:25 HTTP/1.1", Err(NotSmtp)),
            (b"Subject: hello", Err(NotSmtp)),
            (b"From: a@b", Err(NotSmtp)),
            (b"NOOP\nNOOP", Err(InvalidBytes)),
            (b"NOOP\r", Err(InvalidBytes)),
            (b"NO\0OP", Err(InvalidBytes)),
            (b"NOOP \xff\xfe", Err(InvalidUtf8)),
            (b"NOOP caf\xc3\xa9", Ok(Command::Noop)),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_command(line),
                want,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn mail_from() {
        let none = MailParams::default();
        let cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (b"MAIL FROM:<a@b.example>", mail(b"a@b.example", none)),
            (b"mail from:<a@b.example>", mail(b"a@b.example", none)),
            (b"MAIL FROM: <a@b.example>", mail(b"a@b.example", none)),
            (b"MAIL FROM:<a@b.example> ", mail(b"a@b.example", none)),
            (b"MAIL FROM:<>", mail(b"", none)),
            (
                b"MAIL FROM:<@relay.one,@relay.two:user@c.example>",
                mail(b"user@c.example", none),
            ),
            (
                b"MAIL FROM:<\"john doe\"@example.org>",
                mail(b"\"john doe\"@example.org", none),
            ),
            (
                b"MAIL FROM:<\"a\\\"b\"@example.org>",
                mail(b"\"a\\\"b\"@example.org", none),
            ),
            (b"MAIL FROM:<a@[192.0.2.1]>", mail(b"a@[192.0.2.1]", none)),
            (
                b"MAIL FROM:<a@[IPv6:2001:db8::1]>",
                mail(b"a@[IPv6:2001:db8::1]", none),
            ),
            (
                b"MAIL FROM:<a.b+tag@x-y.example>",
                mail(b"a.b+tag@x-y.example", none),
            ),
            (
                b"MAIL FROM:<j\xc3\xb6rg@b\xc3\xbccher.example>",
                mail(b"j\xc3\xb6rg@b\xc3\xbccher.example", none),
            ),
            (b"MAIL", Err(BadKeyword)),
            (b"MAIL TO:<a@b>", Err(BadKeyword)),
            (b"MAIL FROM", Err(BadKeyword)),
            (b"MAIL FROM:", Err(BadSenderPath)),
            (b"MAIL FROM:a@b", Err(BadSenderPath)),
            (b"MAIL FROM:<a@b", Err(BadSenderPath)),
            (b"MAIL FROM:<a@>", Err(BadSenderPath)),
            (b"MAIL FROM:<@b>", Err(BadSenderPath)),
            // Consecutive and trailing dots exist in the wild (Postfix takes them); a leading
            // dot does not start an atom.
            (
                b"MAIL FROM:<user..name@x.example>",
                mail(b"user..name@x.example", none),
            ),
            (
                b"MAIL FROM:<user.@x.example>",
                mail(b"user.@x.example", none),
            ),
            (b"MAIL FROM:<.a@c>", Err(BadSenderPath)),
            (b"MAIL FROM:<..@c>", Err(BadSenderPath)),
            // A tab after the path is a separator like a space.
            (b"MAIL FROM:<a@b.example>\t", mail(b"a@b.example", none)),
            // 8-bit octets that are not UTF-8 are a bad address, not an unknown command.
            (b"MAIL FROM:<j\xf6rg@b.example>", Err(BadSenderPath)),
            (b"MAIL FROM:<a@b..c>", Err(BadSenderPath)),
            (b"MAIL FROM:<a b@c>", Err(BadSenderPath)),
            (b"MAIL FROM:<postmaster>", Err(BadSenderPath)),
            (b"MAIL FROM:<a@b>x", Err(BadSenderPath)),
            (b"MAIL FROM:<a@[]>", Err(BadSenderPath)),
            (b"MAIL FROM:<\"unterminated@b>", Err(BadSenderPath)),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_command(line),
                want,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn the_atext_table_is_the_rfc_5322_definition() {
        for b in 0..=255u8 {
            let defined =
                b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80;
            assert_eq!(is_atext(b), defined, "{b:#04x}");
        }
    }

    #[test]
    fn path_length_limits_of_rfc_5321_section_4_5_3_1() {
        let local = |n: usize| "l".repeat(n);
        // A domain of exactly `n` octets: labels of 63 separated by dots.
        let domain = |n: usize| {
            let mut d = String::new();
            while d.len() < n {
                if !d.is_empty() {
                    d.push('.');
                }
                let label = (n - d.len()).min(63);
                d.push_str(&"d".repeat(label));
            }
            d
        };
        let mail_line = |path: &str| format!("MAIL FROM:<{path}>");
        let rcpt_line = |path: &str| format!("RCPT TO:<{path}>");
        let ok = format!("{}@{}", local(64), domain(189)); // 254 octets, 256 with brackets
        assert!(matches!(
            parse_command(mail_line(&ok).as_bytes()),
            Ok(Command::Mail { .. })
        ));
        assert!(matches!(
            parse_command(rcpt_line(&ok).as_bytes()),
            Ok(Command::Rcpt { .. })
        ));
        let path_too_long = format!("{}@{}", local(64), domain(190));
        let local_too_long = format!("{}@x.example", local(65));
        let domain_too_long = format!("a@{}", domain(300));
        for path in [&path_too_long, &local_too_long, &domain_too_long] {
            assert_eq!(
                parse_command(mail_line(path).as_bytes()),
                Err(SenderTooLong)
            );
            assert_eq!(
                parse_command(rcpt_line(path).as_bytes()),
                Err(RecipientTooLong)
            );
        }
        // A source route counts toward the path.
        let routed = format!("<@{}:{}>", domain(100), ok);
        assert_eq!(
            parse_command(format!("RCPT TO:{routed}").as_bytes()),
            Err(RecipientTooLong)
        );
    }

    #[test]
    fn addresses_that_are_not_utf8_are_bad_addresses() {
        assert_eq!(
            parse_command(b"RCPT TO:<\xe9@b.example>"),
            Err(RecipientNotUtf8)
        );
        assert_eq!(
            parse_command(b"MAIL FROM:<\xe9@b.example>"),
            Err(BadSenderPath)
        );
        assert_eq!(parse_command(b"MAIL FROM:<a@b> X=\xe9"), Err(BadParameter));
        assert_eq!(parse_command(b"NOOP \xe9"), Err(InvalidUtf8));
        // In a source route too, though the route itself is dropped: the line is not UTF-8
        // (RFC 6531 §3.3). Found by the `command_parse` fuzz target.
        assert_eq!(
            parse_command(b"RCPT TO:<@a,@b\xff:c@d.example>"),
            Err(RecipientNotUtf8)
        );
        assert_eq!(
            parse_command(b"MAIL FROM:<@\xe9.example:c@d.example>"),
            Err(BadSenderPath)
        );
        // A route in UTF-8 is still dropped as before.
        assert_eq!(
            parse_command("RCPT TO:<@é.example:c@d.example>".as_bytes()),
            Ok(Command::Rcpt {
                path: b"c@d.example",
                params: RcptParams::default(),
            })
        );
        assert_eq!(
            parse_command(b"RCPT TO:<a@b.example>\t"),
            Ok(Command::Rcpt {
                path: b"a@b.example",
                params: RcptParams::default(),
            })
        );
    }

    #[test]
    fn helo_refuses_control_characters() {
        assert_eq!(
            parse_command(b"EHLO evil.example\x1b]0;x\x07 from=<ceo@bank.example>"),
            Err(ControlInDomain)
        );
        assert_eq!(parse_command(b"HELO a\tb"), Err(ControlInDomain));
        assert_eq!(parse_command(b"HELO a\x7f"), Err(ControlInDomain));
        // C1 controls and text-direction overrides in their UTF-8 forms too.
        assert_eq!(
            parse_command("EHLO evil\u{9b}31m".as_bytes()),
            Err(ControlInDomain)
        );
        assert_eq!(
            parse_command("EHLO a\u{202e}lpmaxe".as_bytes()),
            Err(ControlInDomain)
        );
        assert!(matches!(
            parse_command("EHLO b\u{fc}cher.example".as_bytes()),
            Ok(Command::Ehlo { .. })
        ));
        assert_eq!(
            parse_command("RCPT TO:<u\u{85}\u{9b}2J@b.example>".as_bytes()),
            Err(BadRecipientPath)
        );
        assert_eq!(
            parse_command("MAIL FROM:<a\u{202e}@b.example> SMTPUTF8".as_bytes()),
            Err(BadSenderPath)
        );
        assert_eq!(
            parse_command(b"EHLO client.example\t"),
            Ok(Command::Ehlo {
                domain: b"client.example"
            }),
            "trailing white space is trimmed, as before"
        );
    }

    #[test]
    fn mail_parameters() {
        let p = |size, body, smtputf8| MailParams {
            size,
            body,
            smtputf8,
            auth: false,
            ret: None,
            any: true,
        };
        let cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (
                b"MAIL FROM:<a@b> SIZE=1000",
                mail(b"a@b", p(Some(1000), None, false)),
            ),
            (
                b"MAIL FROM:<a@b> size=0",
                mail(b"a@b", p(Some(0), None, false)),
            ),
            (
                b"MAIL FROM:<a@b> SIZE=99999999999999999999",
                mail(b"a@b", p(Some(u64::MAX), None, false)),
            ),
            (
                b"MAIL FROM:<a@b> SIZE=18446744073709551615",
                mail(b"a@b", p(Some(u64::MAX), None, false)),
            ),
            (
                b"MAIL FROM:<a@b> SIZE=123456789012345678901",
                Err(BadParameter),
            ),
            (b"MAIL FROM:<a@b> SIZE=", Err(BadParameter)),
            (b"MAIL FROM:<a@b> SIZE", Err(BadParameter)),
            (b"MAIL FROM:<a@b> SIZE=12k", Err(BadParameter)),
            (b"MAIL FROM:<a@b> SIZE=-1", Err(BadParameter)),
            (b"MAIL FROM:<a@b> SIZE=1 SIZE=2", Err(BadParameter)),
            (
                b"MAIL FROM:<a@b> BODY=8BITMIME",
                mail(b"a@b", p(None, Some(Body::EightBitMime), false)),
            ),
            (
                b"MAIL FROM:<a@b> BODY=7bit",
                mail(b"a@b", p(None, Some(Body::SevenBit), false)),
            ),
            (
                b"MAIL FROM:<a@b> BODY=BINARYMIME",
                mail(b"a@b", p(None, Some(Body::BinaryMime), false)),
            ),
            (b"MAIL FROM:<a@b> BODY=9BIT", Err(BadParameter)),
            (
                b"MAIL FROM:<a@b> SMTPUTF8",
                mail(b"a@b", p(None, None, true)),
            ),
            (b"MAIL FROM:<a@b> SMTPUTF8=yes", Err(BadParameter)),
            (
                b"MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8 BODY=8BITMIME body=8bitmime",
                mail(b"a@b", p(None, Some(Body::EightBitMime), true)),
            ),
            (
                b"MAIL FROM:<a@b> BODY=7BIT BODY=8BITMIME",
                Err(BadParameter),
            ),
            (
                b"MAIL FROM:<a@b>  SIZE=5   BODY=8BITMIME SMTPUTF8 ",
                mail(b"a@b", p(Some(5), Some(Body::EightBitMime), true)),
            ),
            (
                b"MAIL FROM:<a@b> AUTH=<>",
                Ok(Command::Mail {
                    path: b"a@b",
                    params: MailParams {
                        auth: true,
                        any: true,
                        ..MailParams::default()
                    },
                    envid: None,
                }),
            ),
            (b"MAIL FROM:<a@b> AUTH=", Err(BadParameter)),
            (b"MAIL FROM:<a@b> AUTH=<> AUTH=<>", Err(BadParameter)),
            (b"MAIL FROM:<a@b> X-FOO", Err(UnknownParameter)),
            (b"MAIL FROM:<a@b> =x", Err(BadParameter)),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_command(line),
                want,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rcpt_to() {
        let rcpt = |path| {
            Ok(Command::Rcpt {
                path,
                params: RcptParams::default(),
            })
        };
        let cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (b"RCPT TO:<x@y.example>", rcpt(b"x@y.example")),
            (b"rcpt to: <x@y.example>", rcpt(b"x@y.example")),
            (b"RCPT TO:<Postmaster>", rcpt(b"Postmaster")),
            (b"RCPT TO:<postmaster>", rcpt(b"postmaster")),
            (b"RCPT TO:<@hop:x@y>", rcpt(b"x@y")),
            (b"RCPT TO:<>", Err(BadRecipientPath)),
            (b"RCPT TO:<x>", Err(BadRecipientPath)),
            (b"RCPT TO:x@y", Err(BadRecipientPath)),
            (b"RCPT TO:<x@y> X-FOO=1", Err(UnknownParameter)),
            (b"RCPT TO:<x@y> =1", Err(BadParameter)),
            (b"RCPT FROM:<x@y>", Err(BadKeyword)),
            (b"RCPT", Err(BadKeyword)),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_command(line),
                want,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// RFC 3461's parameters: accepted with good values, `BadParameter` (501 5.5.4) for bad
    /// syntax and for a repeat, whatever the session then says about DSN being offered.
    #[test]
    fn dsn_parameters_on_mail_and_rcpt() {
        let with_ret = |ret| MailParams {
            ret: Some(ret),
            any: true,
            ..MailParams::default()
        };
        let mail_cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (
                b"MAIL FROM:<a@b> RET=HDRS",
                mail(b"a@b", with_ret(Ret::Headers)),
            ),
            (
                b"MAIL FROM:<a@b> ret=full",
                mail(b"a@b", with_ret(Ret::Full)),
            ),
            (
                b"MAIL FROM:<a@b> ENVID=QQ+2B314159",
                Ok(Command::Mail {
                    path: b"a@b",
                    params: MailParams {
                        any: true,
                        ..MailParams::default()
                    },
                    envid: Some(b"QQ+2B314159"),
                }),
            ),
            (
                b"MAIL FROM:<> RET=FULL ENVID=x SIZE=10",
                Ok(Command::Mail {
                    path: b"",
                    params: MailParams {
                        size: Some(10),
                        ..with_ret(Ret::Full)
                    },
                    envid: Some(b"x"),
                }),
            ),
            (b"MAIL FROM:<a@b> RET=", Err(BadParameter)),
            (b"MAIL FROM:<a@b> RET", Err(BadParameter)),
            (b"MAIL FROM:<a@b> RET=BODY", Err(BadParameter)),
            (b"MAIL FROM:<a@b> RET=FULL RET=FULL", Err(BadParameter)),
            (b"MAIL FROM:<a@b> RET=FULL RET=HDRS", Err(BadParameter)),
            (b"MAIL FROM:<a@b> ENVID=", Err(BadParameter)),
            (b"MAIL FROM:<a@b> ENVID", Err(BadParameter)),
            (b"MAIL FROM:<a@b> ENVID=a=b", Err(BadParameter)),
            (b"MAIL FROM:<a@b> ENVID=a+2", Err(BadParameter)),
            (b"MAIL FROM:<a@b> ENVID=x ENVID=y", Err(BadParameter)),
        ];
        let rcpt = |notify, orcpt| {
            Ok(Command::Rcpt {
                path: b"x@y",
                params: RcptParams { notify, orcpt },
            })
        };
        let rcpt_cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (b"RCPT TO:<x@y> NOTIFY=NEVER", rcpt(Notify::NEVER, None)),
            (
                b"RCPT TO:<x@y> notify=success,delay",
                rcpt(Notify::SUCCESS.union(Notify::DELAY), None),
            ),
            (
                b"RCPT TO:<x@y> ORCPT=rfc822;x+2Bz@y NOTIFY=FAILURE",
                rcpt(Notify::FAILURE, Some(b"rfc822;x+2Bz@y")),
            ),
            (
                b"RCPT TO:<x@y>\tORCPT=rfc822;x@y ",
                rcpt(Notify::ABSENT, Some(b"rfc822;x@y")),
            ),
            (b"RCPT TO:<x@y> NOTIFY=NEVER,SUCCESS", Err(BadParameter)),
            (b"RCPT TO:<x@y> NOTIFY=DELAY,DELAY", Err(BadParameter)),
            (b"RCPT TO:<x@y> NOTIFY=", Err(BadParameter)),
            (b"RCPT TO:<x@y> NOTIFY", Err(BadParameter)),
            (b"RCPT TO:<x@y> NOTIFY=SOMETIMES", Err(BadParameter)),
            (
                b"RCPT TO:<x@y> NOTIFY=NEVER NOTIFY=NEVER",
                Err(BadParameter),
            ),
            (b"RCPT TO:<x@y> ORCPT=x@y", Err(BadParameter)),
            (b"RCPT TO:<x@y> ORCPT=rfc822;", Err(BadParameter)),
            (b"RCPT TO:<x@y> ORCPT=rfc822;a=b", Err(BadParameter)),
            (
                b"RCPT TO:<x@y> ORCPT=rfc822;a ORCPT=rfc822;b",
                Err(BadParameter),
            ),
            (b"RCPT TO:<x@y> ORCPT=rfc822;\xc3\xa9", Err(BadParameter)),
        ];
        for (line, want) in mail_cases.iter().chain(rcpt_cases) {
            assert_eq!(
                &parse_command(line),
                want,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
        // The length limits of RFC 3461 §4.2 and §4.4, at the edge.
        let envid = |len: usize| format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(len));
        assert!(parse_command(envid(dsn::MAX_ENVID_LEN).as_bytes()).is_ok());
        assert_eq!(
            parse_command(envid(dsn::MAX_ENVID_LEN + 1).as_bytes()),
            Err(BadParameter)
        );
        let orcpt = |len: usize| {
            let address = "o".repeat(len - "rfc822;".len());
            format!("RCPT TO:<x@y> ORCPT=rfc822;{address}")
        };
        assert!(parse_command(orcpt(dsn::MAX_ORCPT_LEN).as_bytes()).is_ok());
        assert_eq!(
            parse_command(orcpt(dsn::MAX_ORCPT_LEN + 1).as_bytes()),
            Err(BadParameter)
        );
    }

    #[test]
    fn bdat() {
        let cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (
                b"BDAT 12",
                Ok(Command::Bdat {
                    size: 12,
                    last: false,
                }),
            ),
            (
                b"BDAT 0 LAST",
                Ok(Command::Bdat {
                    size: 0,
                    last: true,
                }),
            ),
            (
                b"bdat 5 last",
                Ok(Command::Bdat {
                    size: 5,
                    last: true,
                }),
            ),
            (
                b"BDAT 18446744073709551615",
                Ok(Command::Bdat {
                    size: u64::MAX,
                    last: false,
                }),
            ),
            (b"BDAT 18446744073709551616", Err(BadBdat)),
            (b"BDAT", Err(BadBdat)),
            (b"BDAT ", Err(BadBdat)),
            (b"BDAT x", Err(BadBdat)),
            (b"BDAT 12x", Err(BadBdat)),
            (b"BDAT -1", Err(BadBdat)),
            (b"BDAT 12 FIRST", Err(BadBdat)),
            (b"BDAT 12 LAST now", Err(BadBdat)),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_command(line),
                want,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn every_byte_value_in_a_path_is_handled() {
        // No input may panic; every byte either parses or yields an error.
        for b in 0..=255u8 {
            let mut line = b"MAIL FROM:<a".to_vec();
            line.push(b);
            line.extend_from_slice(b"@b>");
            let _ = parse_command(&line);
            let mut line = b"RCPT TO:<".to_vec();
            line.push(b);
            line.push(b'>');
            let _ = parse_command(&line);
        }
    }
}
