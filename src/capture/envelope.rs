//! A kept message's envelope packed into one allocation: the queue id, reverse path and its
//! ESMTP parameters, HELO name, client address, TLS version and cipher, AUTH user and every
//! recipient, each as a length-prefixed run of bytes.
//!
//! Layout: one flags byte (bit 0: TLS, bit 1: AUTH user, bit 2: client address), then
//! `id`, `sender`, `params`, `helo`, then if flagged `client`, `tls version` and `tls cipher`,
//! `auth user`, then the recipient count, then each recipient; every length and the count a LEB128
//! varint (one octet below 128). A one-recipient envelope costs its text plus about 10
//! octets, and one heap block.
//!
//! The client's address is packed as its text; a connection makes that text once
//! ([`ClientText`]) for all its messages.
//!
//! What it does not do: check anything (the session did), or keep what the capture store does
//! not show (the `Received:`-style trace is the HTTP side's to render from these fields).

use crate::proto::command::{Body, MailParams};
use crate::proto::sink::QueueId;
use std::net::SocketAddr;

/// Flag: TLS version and cipher follow.
const HAS_TLS: u8 = 1;
/// Flag: an AUTH user follows.
const HAS_AUTH: u8 = 2;
/// Flag: a client address follows.
const HAS_CLIENT: u8 = 4;

/// The envelope fields of one message, borrowed, as a caller hands them to [`Packed::pack`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvelopeParts<'a> {
    /// The reverse path without brackets; empty for `<>`.
    pub sender: &'a [u8],
    /// The `MAIL FROM` ESMTP parameters as text (`SIZE=1024 BODY=8BITMIME`), as sent.
    pub params: &'a [u8],
    /// The `HELO`/`EHLO` argument.
    pub helo: &'a [u8],
    /// The client's address (after a PROXY header, the one it announced).
    pub client: Option<SocketAddr>,
    /// The TLS protocol version and cipher suite, if the message came over TLS.
    pub tls: Option<(&'a str, &'a str)>,
    /// The user the client authenticated as, if it did.
    pub auth_user: Option<&'a [u8]>,
}

/// The `MAIL FROM` parameters as the capture store keeps them, as text on the stack.
#[derive(Clone, Copy)]
pub struct ParamsText {
    /// Octets used.
    len: u8,
    /// The text (55 octets at most: `SIZE=` and 20 digits, ` BODY=BINARYMIME`, ` SMTPUTF8`,
    /// ` AUTH`).
    bytes: [u8; 64],
}

impl ParamsText {
    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ParamsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// `params` as text: the parameters the session kept, in a fixed order and canonical
/// spelling (`SIZE=1024 BODY=8BITMIME SMTPUTF8 AUTH`). The session keeps no `AUTH=` value
/// (see [`MailParams::auth`]), so `AUTH` alone says one was given.
pub fn mail_params_text(params: &MailParams) -> ParamsText {
    let mut text = ParamsText {
        len: 0,
        bytes: [0; 64],
    };
    let mut push = |word: &[u8]| {
        let at = usize::from(text.len);
        let space = usize::from(at > 0);
        if space == 1 {
            text.bytes[at] = b' ';
        }
        text.bytes[at + space..at + space + word.len()].copy_from_slice(word);
        text.len += (space + word.len()) as u8;
    };
    if let Some(size) = params.size {
        let mut digits = itoa::Buffer::new();
        let mut word = [0u8; 25];
        let digits = digits.format(size).as_bytes();
        word[..5].copy_from_slice(b"SIZE=");
        word[5..5 + digits.len()].copy_from_slice(digits);
        push(&word[..5 + digits.len()]);
    }
    match params.body {
        Some(Body::SevenBit) => push(b"BODY=7BIT"),
        Some(Body::EightBitMime) => push(b"BODY=8BITMIME"),
        Some(Body::BinaryMime) => push(b"BODY=BINARYMIME"),
        None => {}
    }
    if params.smtputf8 {
        push(b"SMTPUTF8");
    }
    if params.auth {
        push(b"AUTH");
    }
    text
}

/// A packed envelope (see the module doc). Immutable once made.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("len", &self.0.len())
            .finish()
    }
}

/// Appends `n` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends `bytes` with its length in front.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Octets a varint for `n` takes.
fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Writes `addr` as its `Display` text (`192.0.2.1:4567`, `[2001:db8::1]:25`) into `out`;
/// the length. An IPv4 address, the common case, is written digit by digit: `write!` through
/// the formatting machinery cost more per message than the rest of the packing (measured
/// with callgrind, docs/benchmarks/2026-12-06-capture-ingest.md).
fn socket_addr_text(addr: SocketAddr, out: &mut [u8; 64]) -> usize {
    match addr {
        SocketAddr::V4(v4) => {
            let mut len = 0;
            let mut put = |bytes: &[u8]| {
                out[len..len + bytes.len()].copy_from_slice(bytes);
                len += bytes.len();
            };
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    put(b".");
                }
                put(digits.format(octet).as_bytes());
            }
            put(b":");
            put(digits.format(v4.port()).as_bytes());
            len
        }
        SocketAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut out[..]);
            // The longest socket address text is 55 octets (`[v6%scope]:port`); 64 fits it.
            let _ = write!(cursor, "{addr}");
            cursor.position() as usize
        }
    }
}

/// A client's address as a packed envelope keeps it: its `Display` text (`192.0.2.1:4567`),
/// made once per connection ([`ClientText::new`]) rather than once per message.
#[derive(Clone, Copy)]
pub struct ClientText {
    /// Octets used.
    len: u8,
    /// The text (55 octets at most: `[v6%scope]:port`).
    bytes: [u8; 64],
}

impl ClientText {
    /// The text of `addr`.
    pub fn new(addr: SocketAddr) -> ClientText {
        let mut bytes = [0u8; 64];
        let len = socket_addr_text(addr, &mut bytes);
        ClientText {
            len: len as u8,
            bytes,
        }
    }

    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ClientText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Reads packed fields in order. Packed data is made only by [`Packed::pack`], so a short
/// read is a bug; it yields empty fields rather than panicking.
struct Reader<'a> {
    /// The packed bytes.
    buf: &'a [u8],
    /// The next octet to read.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next varint (one octet, below 128, for every length but a long one).
    fn varint(&mut self) -> usize {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                usize::from(b)
            }
            _ => self.long_varint(),
        }
    }

    /// The next varint, of any length.
    fn long_varint(&mut self) -> usize {
        let mut n = 0usize;
        let mut shift = 0;
        while let Some(&b) = self.buf.get(self.pos) {
            self.pos += 1;
            n |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 || shift > 56 {
                break;
            }
        }
        n
    }

    /// The next length-prefixed field.
    fn field(&mut self) -> &'a [u8] {
        let len = self.varint();
        let start = self.pos.min(self.buf.len());
        let end = (start + len).min(self.buf.len());
        self.pos = end;
        &self.buf[start..end]
    }
}

/// A packed envelope's fields, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeView<'a> {
    /// The queue id the `250` named.
    pub id: &'a [u8],
    /// The reverse path without brackets; empty for `<>`.
    pub sender: &'a [u8],
    /// The `MAIL FROM` parameters as text.
    pub params: &'a [u8],
    /// The `HELO`/`EHLO` argument.
    pub helo: &'a [u8],
    /// The client's address as text (`192.0.2.1:4567`), if known.
    pub client: Option<&'a [u8]>,
    /// The TLS version and cipher suite, if TLS.
    pub tls: Option<(&'a str, &'a str)>,
    /// The AUTH user, if any.
    pub auth_user: Option<&'a [u8]>,
    /// The recipients, in RCPT order.
    pub recipients: Recipients<'a>,
}

impl EnvelopeView<'_> {
    /// The client's address, parsed back.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        std::str::from_utf8(self.client?).ok()?.parse().ok()
    }
}

/// The recipients of a packed envelope.
#[derive(Debug, Clone, Copy)]
pub struct Recipients<'a> {
    /// How many.
    count: usize,
    /// The packed recipients (each length-prefixed).
    rest: &'a [u8],
}

impl<'a> Recipients<'a> {
    /// How many recipients.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each recipient, without brackets, as sent.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut reader = Reader {
            buf: self.rest,
            pos: 0,
        };
        (0..self.count).map(move |_| reader.field())
    }
}

impl Packed {
    /// Packs `id`, `parts` and `recipients` into one allocation (exact size, no slack).
    pub fn pack<'r>(
        id: &QueueId,
        parts: &EnvelopeParts<'_>,
        recipients: impl IntoIterator<Item = &'r [u8]> + Clone,
    ) -> Packed {
        let client = parts.client.map(ClientText::new);
        Packed::pack_with(id, parts, client.as_ref(), recipients)
    }

    /// [`Packed::pack`] with the client's address as text made already (`parts.client` is
    /// not read).
    pub fn pack_with<'r>(
        id: &QueueId,
        parts: &EnvelopeParts<'_>,
        client: Option<&ClientText>,
        recipients: impl IntoIterator<Item = &'r [u8]> + Clone,
    ) -> Packed {
        let client = client.map(ClientText::as_bytes);
        let field = |b: &[u8]| varint_len(b.len()) + b.len();
        let mut size = 1 + field(id.as_bytes()) + field(parts.sender) + field(parts.params);
        size += field(parts.helo) + client.map_or(0, field);
        size += parts
            .tls
            .map_or(0, |(v, c)| field(v.as_bytes()) + field(c.as_bytes()));
        size += parts.auth_user.map_or(0, field);
        let mut count = 0;
        for r in recipients.clone() {
            size += field(r);
            count += 1;
        }
        size += varint_len(count);
        let mut out = Vec::with_capacity(size);
        let flags = if parts.tls.is_some() { HAS_TLS } else { 0 }
            | if parts.auth_user.is_some() {
                HAS_AUTH
            } else {
                0
            }
            | if client.is_some() { HAS_CLIENT } else { 0 };
        out.push(flags);
        put_field(&mut out, id.as_bytes());
        put_field(&mut out, parts.sender);
        put_field(&mut out, parts.params);
        put_field(&mut out, parts.helo);
        if let Some(client) = client {
            put_field(&mut out, client);
        }
        if let Some((version, cipher)) = parts.tls {
            put_field(&mut out, version.as_bytes());
            put_field(&mut out, cipher.as_bytes());
        }
        if let Some(user) = parts.auth_user {
            put_field(&mut out, user);
        }
        put_varint(&mut out, count);
        for r in recipients {
            put_field(&mut out, r);
        }
        debug_assert_eq!(out.len(), size);
        Packed(out.into_boxed_slice())
    }

    /// The packed size in octets (what the budget charges for the envelope).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a packed envelope).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields.
    pub fn view(&self) -> EnvelopeView<'_> {
        let flags = self.0.first().copied().unwrap_or(0);
        let mut r = Reader {
            buf: &self.0,
            pos: 1,
        };
        let id = r.field();
        let sender = r.field();
        let params = r.field();
        let helo = r.field();
        let client = (flags & HAS_CLIENT != 0).then(|| r.field());
        let tls = (flags & HAS_TLS != 0).then(|| {
            let version = std::str::from_utf8(r.field()).unwrap_or_default();
            let cipher = std::str::from_utf8(r.field()).unwrap_or_default();
            (version, cipher)
        });
        let auth_user = (flags & HAS_AUTH != 0).then(|| r.field());
        let count = r.varint();
        let rest = &self.0[r.pos.min(self.0.len())..];
        EnvelopeView {
            id,
            sender,
            params,
            helo,
            client,
            tls,
            auth_user,
            recipients: Recipients { count, rest },
        }
    }

    /// The queue id.
    pub fn id(&self) -> QueueId {
        // Packed from a QueueId, so it is one.
        QueueId::new(self.view().id).unwrap_or_else(|| unreachable!("packed from a QueueId"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_packed_comes_back() {
        let id = QueueId::new(b"1764393906.M1P2Q3").unwrap();
        let long = vec![b'r'; 300];
        let rcpts: Vec<&[u8]> = vec![b"a@x", b"\"q u\"@y", &long];
        let parts = EnvelopeParts {
            sender: b"s@x",
            params: b"SIZE=10 BODY=8BITMIME",
            helo: b"client.example",
            client: Some("[2001:db8::1]:2525".parse().unwrap()),
            tls: Some(("TLSv1.3", "TLS_AES_128_GCM_SHA256")),
            auth_user: Some(b"ann"),
        };
        let packed = Packed::pack(&id, &parts, rcpts.iter().copied());
        let v = packed.view();
        assert_eq!(v.id, id.as_bytes());
        assert_eq!(packed.id(), id);
        assert_eq!(v.sender, b"s@x");
        assert_eq!(v.params, b"SIZE=10 BODY=8BITMIME");
        assert_eq!(v.helo, b"client.example");
        assert_eq!(v.client_addr(), parts.client);
        assert_eq!(v.tls, parts.tls);
        assert_eq!(v.auth_user, Some(&b"ann"[..]));
        assert_eq!(v.recipients.iter().collect::<Vec<_>>(), rcpts);
        assert_eq!(v.recipients.len(), 3);
    }

    #[test]
    fn a_client_address_is_its_display_text() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:54321",
            "192.0.2.255:65535",
            "10.20.3.40:25",
            "[2001:db8::1]:587",
            "[::ffff:192.0.2.1]:25",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut out = [0u8; 64];
            let len = socket_addr_text(addr, &mut out);
            assert_eq!(&out[..len], addr.to_string().as_bytes(), "{text}");
        }
    }

    #[test]
    fn mail_params_as_text() {
        let text = |params: MailParams| mail_params_text(&params).as_bytes().to_vec();
        assert_eq!(text(MailParams::default()), b"");
        let all = MailParams {
            size: Some(u64::MAX),
            body: Some(Body::BinaryMime),
            smtputf8: true,
            auth: true,
            ret: None,
            any: true,
        };
        assert_eq!(
            text(all),
            b"SIZE=18446744073709551615 BODY=BINARYMIME SMTPUTF8 AUTH"
        );
        let some = MailParams {
            body: Some(Body::EightBitMime),
            any: true,
            ..MailParams::default()
        };
        assert_eq!(text(some), b"BODY=8BITMIME");
    }

    #[test]
    fn a_small_envelope_is_its_text_and_a_few_octets() {
        let id = QueueId::new(b"1764393906.M123456P1234Q1").unwrap();
        let parts = EnvelopeParts {
            sender: b"sender@example.com",
            helo: b"client.example",
            client: Some("127.0.0.1:54321".parse().unwrap()),
            ..EnvelopeParts::default()
        };
        let packed = Packed::pack(&id, &parts, [&b"user@example.com"[..]]);
        let text = 25 + 18 + 14 + 15 + 16;
        assert_eq!(packed.len(), text + 1 + 6 + 1);
        let v = packed.view();
        assert!(v.tls.is_none() && v.auth_user.is_none() && v.params.is_empty());
        let none = Packed::pack(&id, &EnvelopeParts::default(), std::iter::empty());
        assert!(none.view().client.is_none() && none.view().recipients.is_empty());
    }
}
