//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms, as pure
//! functions over the client's base64 lines, and the buffer that holds the credentials of one
//! attempt while the server checks them.
//!
//! What it does: name the mechanisms we offer ([`Mechanism`]), decode a client response
//! (base64, `*` to cancel, `=` for an empty initial response, RFC 4954 §4), split a PLAIN
//! message into authorization identity, user and password, and fill the credentials from
//! each response ([`Credentials::take_response`]: user and password in reused buffers that
//! are wiped once the attempt is decided). The session only sequences the exchange: which
//! challenge, which reply.
//!
//! What it does not do: check a password (the caller does, against `--auth any` or a
//! password file, possibly on another thread: see [`super::session::Session::credentials`]),
//! or choose replies (the session does).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A SASL mechanism we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616): one message `[authzid] NUL authcid NUL passwd`.
    Plain,
    /// `LOGIN` (draft-murchison-sasl-login): the user name, then the password, each asked
    /// for with a `334` challenge.
    Login,
}

impl Mechanism {
    /// The mechanism named `name` (RFC 4422 §3.1: names compare without regard to case).
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// What a client response line says.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    /// `*`: the client cancels the exchange (RFC 4954 §4: answered `501`).
    Cancel,
    /// The decoded octets (appended to the caller's buffer).
    Decoded,
    /// Not base64 (RFC 4954 §4: `501 5.5.2`).
    Undecodable,
}

/// Decodes one response line into `into` (cleared first). `initial` is true for the initial
/// response on the `AUTH` line, where `=` stands for an empty response (RFC 4954 §4).
pub fn decode_response(line: &[u8], initial: bool, into: &mut Vec<u8>) -> Response {
    into.clear();
    if line == b"*" {
        return Response::Cancel;
    }
    if initial && line == b"=" {
        return Response::Decoded;
    }
    match STANDARD.decode_vec(line, into) {
        Ok(()) => Response::Decoded,
        Err(_) => {
            wipe(into);
            Response::Undecodable
        }
    }
}

/// The parts of a PLAIN message (RFC 4616 §2): `(authzid, authcid, passwd)`, or `None` when
/// it does not have exactly two NULs or the user or password is empty.
pub fn split_plain(message: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = message.splitn(3, |&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let passwd = parts.next()?;
    if authcid.is_empty() || passwd.is_empty() || passwd.contains(&0) {
        return None;
    }
    Some((authzid, authcid, passwd))
}

/// Overwrites `buf` with zeros and empties it (the password does not linger in a reused
/// buffer; best effort: a copy the allocator moved earlier is out of reach).
pub fn wipe(buf: &mut Vec<u8>) {
    buf.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&buf);
    buf.clear();
}

/// The user and password of the attempt being decided, in buffers reused from one attempt to
/// the next.
#[derive(Default)]
pub struct Credentials {
    /// The authentication identity (the user name), as sent.
    pub user: Vec<u8>,
    /// The password, as sent. Wiped once the attempt is decided.
    pub password: Vec<u8>,
    /// Scratch for decoding a response.
    pub decoded: Vec<u8>,
    /// The attempt fails whatever the password check says: an authorization identity other
    /// than the user, a user name we do not keep, an empty user or password. It is still
    /// handed to the caller like any attempt, so that it takes as long and counts the same.
    pub refused: bool,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, nor the user name (it is sometimes a password typed in the
    // wrong field).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    /// Forgets both, wiping the password and the decode buffer.
    pub fn wipe(&mut self) {
        wipe(&mut self.password);
        wipe(&mut self.decoded);
        self.user.clear();
        self.refused = false;
    }
}

/// Which response of an exchange a client line answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The PLAIN message, after an empty `334` challenge (or on the `AUTH` line).
    Plain,
    /// LOGIN's user name.
    LoginUser,
    /// LOGIN's password.
    LoginPassword,
}

/// What a response did to the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// User and password are in: the attempt waits for its verdict.
    Complete,
    /// LOGIN's user name is in: the password comes next ([`Step::LoginPassword`]).
    NeedPassword,
    /// The client cancelled (`*`).
    Cancelled,
    /// Not base64, or not a PLAIN message.
    Undecodable,
}

impl Credentials {
    /// Decodes the response `line` to `step` (`initial`: on the `AUTH` line) into the user
    /// and password. An attempt that can only fail (an authorization identity other than
    /// the user: acting for someone else is not supported; a user name we would not keep; an
    /// empty password) is marked `refused` but completed like any other, so that the caller
    /// decides it like a wrong password, in the same time. The decode buffer is wiped.
    pub fn take_response(&mut self, step: Step, line: &[u8], initial: bool) -> Filled {
        let filled = match decode_response(line, initial, &mut self.decoded) {
            Response::Cancel => Filled::Cancelled,
            Response::Undecodable => Filled::Undecodable,
            Response::Decoded => match step {
                Step::Plain => match split_plain(&self.decoded) {
                    None => Filled::Undecodable,
                    Some((authzid, user, password)) => {
                        let valid =
                            (authzid.is_empty() || authzid == user) && is_acceptable_user(user);
                        self.user.extend_from_slice(user);
                        self.password.extend_from_slice(password);
                        self.refused = !valid;
                        Filled::Complete
                    }
                },
                Step::LoginUser => {
                    self.user.extend_from_slice(&self.decoded);
                    self.refused = !is_acceptable_user(&self.user);
                    Filled::NeedPassword
                }
                Step::LoginPassword => {
                    self.password.extend_from_slice(&self.decoded);
                    self.refused |= self.password.is_empty();
                    Filled::Complete
                }
            },
        };
        wipe(&mut self.decoded);
        filled
    }
}

/// A user name we keep and log: not empty, UTF-8 without control characters (a user name is
/// written to the session log and the JSON line), at most 255 octets.
pub fn is_acceptable_user(user: &[u8]) -> bool {
    !user.is_empty()
        && user.len() <= 255
        && std::str::from_utf8(user).is_ok()
        && !super::command::has_control(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_fill_the_credentials() {
        let mut c = Credentials::default();
        // PLAIN "\0alice\0pw", then acting for someone else (refused, but complete).
        assert_eq!(
            c.take_response(Step::Plain, b"AGFsaWNlAHB3", true),
            Filled::Complete
        );
        assert_eq!(
            (&c.user[..], &c.password[..], c.refused),
            (&b"alice"[..], &b"pw"[..], false)
        );
        c.wipe();
        assert_eq!(
            c.take_response(Step::Plain, b"Ym9iAGFsaWNlAHB3", true),
            Filled::Complete
        );
        assert!(c.refused);
        c.wipe();
        // LOGIN: the user, then the password; an empty password can only fail.
        assert_eq!(
            c.take_response(Step::LoginUser, b"YWxpY2U=", false),
            Filled::NeedPassword
        );
        assert_eq!(
            c.take_response(Step::LoginPassword, b"", false),
            Filled::Complete
        );
        assert!(c.refused && c.decoded.is_empty());
        c.wipe();
        assert_eq!(c.take_response(Step::Plain, b"*", false), Filled::Cancelled);
        assert_eq!(
            c.take_response(Step::Plain, b"YWxpY2U=", false),
            Filled::Undecodable
        );
    }

    #[test]
    fn responses_decode_cancel_and_refuse_garbage() {
        let mut buf = Vec::new();
        assert_eq!(decode_response(b"*", false, &mut buf), Response::Cancel);
        assert_eq!(decode_response(b"=", true, &mut buf), Response::Decoded);
        assert!(buf.is_empty());
        assert_eq!(
            decode_response(b"=", false, &mut buf),
            Response::Undecodable
        );
        assert_eq!(
            decode_response(b"dXNlcg==", false, &mut buf),
            Response::Decoded
        );
        assert_eq!(buf, b"user");
        assert_eq!(
            decode_response(b"dXNlcg", false, &mut buf),
            Response::Undecodable
        );
        assert_eq!(
            decode_response(b"!!!!", true, &mut buf),
            Response::Undecodable
        );
        assert!(buf.is_empty());
        assert_eq!(decode_response(b"", false, &mut buf), Response::Decoded);
    }

    #[test]
    fn plain_messages_split_in_three() {
        assert_eq!(
            split_plain(b"\0user\0pass"),
            Some((&b""[..], &b"user"[..], &b"pass"[..]))
        );
        assert_eq!(
            split_plain(b"admin\0user\0pa ss"),
            Some((&b"admin"[..], &b"user"[..], &b"pa ss"[..]))
        );
        for bad in [
            &b"user\0pass"[..],
            b"\0\0pass",
            b"\0user\0",
            b"\0u\0p\0q",
            b"",
        ] {
            assert_eq!(split_plain(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mechanisms_by_name_and_user_names() {
        assert_eq!(Mechanism::from_name(b"plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name(b"LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name(b"CRAM-MD5"), None);
        assert!(is_acceptable_user("jörg@example.org".as_bytes()));
        assert!(!is_acceptable_user(b"a\x1b[2Jb"));
        assert!(!is_acceptable_user(b"\xff"));
        assert!(!is_acceptable_user(b""));
        let mut credentials = Credentials {
            user: b"u".to_vec(),
            password: b"secret".to_vec(),
            decoded: b"x".to_vec(),
            refused: true,
        };
        assert!(!format!("{credentials:?}").contains("secret"));
        credentials.wipe();
        assert!(credentials.password.is_empty() && credentials.user.is_empty());
    }
}
