//! What the generator sends: the workload settings and the bytes of each command and message.
//!
//! What it does: hold the immutable description of the load (recipients, sizes, modes,
//! address patterns or a recipient list, TLS mode, AUTH credentials, the corpus and the order
//! its messages are chosen in), choose each message's [`Content`], and write commands and
//! message content into a connection's [`Output`] without allocating. Generated content comes
//! from one template built at start-up, 78-byte text lines that never start with a dot, so
//! DATA content needs no dot-stuffing and can never contain the end-of-data sequence. A corpus
//! message goes into the output as a reference ([`Body`]), which the engine streams from its
//! file in wire form (`corpus`).
//!
//! What it does not do: decide when to send (the engine), read files, or parse replies (the
//! client).

use crate::drive::corpus::wire::Form;
use crate::drive::corpus::Corpus;
use crate::drive::output::{Body, Output};
use crate::drive::tag;
use crate::units::bytes_text;
use base64::Engine as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP.
    Plain,
    /// `STARTTLS` after the first EHLO (RFC 3207), then EHLO again inside TLS.
    StartTls,
    /// TLS from the first byte, the greeting inside it (RFC 8314 §3, "port 465 style").
    Implicit,
}

/// `--auth-mech`: the SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMech {
    /// PLAIN (RFC 4616) with the initial response: one round trip.
    Plain,
    /// LOGIN (draft-murchison-sasl-login): `334` for the user name, `334` for the password.
    Login,
}

impl AuthMech {
    /// The mechanism's name as EHLO lists it and AUTH sends it.
    pub fn name(self) -> &'static str {
        match self {
            AuthMech::Plain => "PLAIN",
            AuthMech::Login => "LOGIN",
        }
    }
}

/// `--auth USER:PASS` with its mechanism, the responses encoded once at start-up.
#[derive(Clone)]
pub struct Auth {
    /// The mechanism.
    pub mech: AuthMech,
    /// The user name (shown in the header and `--json`; the password never is).
    pub user: String,
    /// PLAIN: `base64(\0user\0pass)`; LOGIN: `base64(user)` (RFC 4954 §4: each response is
    /// one base64 line).
    first: String,
    /// LOGIN: `base64(pass)`; PLAIN: empty.
    second: String,
}

impl std::fmt::Debug for Auth {
    /// Never shows the password, not even encoded.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mech", &self.mech)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Credentials for `mech`.
    pub fn new(mech: AuthMech, user: &str, pass: &str) -> Auth {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let (first, second) = match mech {
            // RFC 4616 §2: authzid NUL authcid NUL passwd, with an empty authzid.
            AuthMech::Plain => (b64(format!("\0{user}\0{pass}").as_bytes()), String::new()),
            AuthMech::Login => (b64(user.as_bytes()), b64(pass.as_bytes())),
        };
        Auth {
            mech,
            user: user.to_string(),
            first,
            second,
        }
    }

    /// How many `334` challenges the exchange answers before its final reply.
    pub fn challenges(&self) -> u8 {
        match self.mech {
            AuthMech::Plain => 0,
            AuthMech::Login => 2,
        }
    }

    /// The `AUTH` command (RFC 4954 §4): PLAIN with its initial response, LOGIN bare.
    pub fn write_command(&self, out: &mut Output) {
        match self.mech {
            AuthMech::Plain => {
                out.extend_from_slice(b"AUTH PLAIN ");
                out.extend_from_slice(self.first.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            AuthMech::Login => out.extend_from_slice(b"AUTH LOGIN\r\n"),
        }
    }

    /// The response to challenge number `n` (0-based), one base64 line.
    pub fn write_response(&self, n: u8, out: &mut Output) {
        let line = if n == 0 { &self.first } else { &self.second };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// `--pipelining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipelining {
    /// Pipeline if the server advertises PIPELINING.
    Auto,
    /// Always pipeline.
    On,
    /// Never pipeline: one command, one reply.
    Off,
}

/// Message sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizes {
    /// Every message has this many bytes.
    Fixed(usize),
    /// Uniformly distributed in `[low, high]`, from the seeded generator.
    Range(usize, usize),
}

impl Sizes {
    /// The largest possible size.
    pub fn max(self) -> usize {
        match self {
            Sizes::Fixed(n) | Sizes::Range(_, n) => n,
        }
    }

    /// Picks a size with `rng`.
    pub fn pick(self, rng: &mut Rng) -> usize {
        match self {
            Sizes::Fixed(n) => n,
            Sizes::Range(low, high) => low + (rng.next_u64() % (high - low + 1) as u64) as usize,
        }
    }

    /// The sizes as a reader writes them: `1 KiB`, `1000 bytes`, `1 KiB..64 KiB`.
    pub fn text(self) -> String {
        match self {
            Sizes::Fixed(n) => bytes_text(n),
            Sizes::Range(low, high) => format!("{}..{}", bytes_text(low), bytes_text(high)),
        }
    }

    /// The sizes as typed JSON: `{"fixed": 1024}` or `{"range": {"min": 1024, "max": 65536}}`
    /// (bytes).
    pub fn json(self) -> serde_json::Value {
        match self {
            Sizes::Fixed(n) => serde_json::json!({ "fixed": n }),
            Sizes::Range(low, high) => serde_json::json!({ "range": { "min": low, "max": high } }),
        }
    }
}

/// The smallest message we generate: a header line, an empty line and CR LF.
pub const MIN_SIZE: usize = 32;

/// xorshift64*: a tiny seeded generator, so runs repeat exactly with the same `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// An address pattern: `{n}` stands for the message sequence number, `{r}` for the recipient
/// index; everything else is literal.
#[derive(Debug, Clone)]
pub struct AddressPattern {
    /// The pattern as given.
    pattern: String,
    /// The pattern cut once into what is written for each address: literal text (a range
    /// of `pattern`) and the numbers that stand in for `{n}` and `{r}`.
    pieces: Vec<Piece>,
}

/// A piece of an [`AddressPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// `pattern[start..end]`, as it is.
    Literal(usize, usize),
    /// `{n}`: the message sequence number.
    Seq,
    /// `{r}`: the recipient index.
    Rcpt,
}

impl AddressPattern {
    /// Checks and keeps a pattern. The expansion must be a plain address without `<>` or spaces.
    pub fn new(pattern: &str) -> Result<AddressPattern, String> {
        if pattern.is_empty()
            || !pattern
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
        {
            return Err(format!(
                "address pattern {pattern:?} must be printable ASCII without spaces or <>"
            ));
        }
        // `{n}` and `{r}` are placeholders; any other `{` is literal text.
        let bytes = pattern.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = 0;
        let mut i = 0;
        while i < bytes.len() {
            let piece = match &bytes[i..] {
                [b'{', b'n', b'}', ..] => Piece::Seq,
                [b'{', b'r', b'}', ..] => Piece::Rcpt,
                _ => {
                    i += 1;
                    continue;
                }
            };
            if literal < i {
                pieces.push(Piece::Literal(literal, i));
            }
            pieces.push(piece);
            i += 3;
            literal = i;
        }
        if literal < bytes.len() {
            pieces.push(Piece::Literal(literal, bytes.len()));
        }
        Ok(AddressPattern {
            pattern: pattern.to_string(),
            pieces,
        })
    }

    /// Writes the address for message `seq`, recipient `rcpt`.
    fn write(&self, seq: u64, rcpt: usize, out: &mut impl Append) {
        for piece in &self.pieces {
            match *piece {
                Piece::Literal(start, end) => {
                    out.extend_from_slice(&self.pattern.as_bytes()[start..end]);
                }
                Piece::Seq => write_decimal(seq, out),
                Piece::Rcpt => write_decimal(rcpt as u64, out),
            }
        }
    }
}

/// Where an address is written: a connection's stream, or a plain buffer (the end-to-end
/// watcher's, comparing arrivals with the addresses sent).
trait Append {
    /// Appends bytes.
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Append for Output {
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Output::extend_from_slice(self, bytes);
    }
}

impl Append for Vec<u8> {
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
}

/// Writes `n` in decimal, as `{n}` formats it (without the formatting machinery: two
/// numbers go into every message's commands).
fn write_decimal(mut n: u64, out: &mut impl Append) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Generated text of this many bytes.
    Generated(usize),
    /// Corpus message number `index`, `size` bytes as the server stores it.
    Corpus {
        /// Its number in the corpus.
        index: u32,
        /// Its size after line-end normalisation (what `BDAT` announces).
        size: u64,
        /// Whether it holds octets above 127 (sent with `BODY=8BITMIME` where offered).
        eight_bit: bool,
    },
}

impl Content {
    /// The message's size in bytes as stored (statistics and throughput count it).
    pub fn size(self) -> usize {
        match self {
            Content::Generated(size) => size.max(MIN_SIZE),
            Content::Corpus { size, .. } => size as usize,
        }
    }
}

/// `--order`: which corpus message each transaction sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// In order (message `seq` modulo the corpus size), over and over.
    Sequential,
    /// Uniformly at random, from the seeded generator (`--seed`).
    Random,
}

/// `--rcpt-file`: recipient addresses, one per line.
#[derive(Debug, Clone)]
pub struct RecipientList {
    /// The file as given.
    pub path: PathBuf,
    /// The addresses, in file order.
    addresses: Vec<String>,
}

impl RecipientList {
    /// Reads `path`: one address per line; blank lines and lines starting with `#` are
    /// skipped, white space around an address is trimmed. Addresses must be printable ASCII
    /// without spaces or `<>` (as `--to` patterns).
    pub fn read(path: &std::path::Path) -> Result<RecipientList, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("--rcpt-file {}: {e}", path.display()))?;
        let mut addresses = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let valid = line
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'<' && b != b'>');
            if !valid {
                return Err(format!(
                    "--rcpt-file {} line {}: {:?} is not an address (printable ASCII without spaces or <>)",
                    path.display(),
                    n + 1,
                    String::from_utf8_lossy(line)
                ));
            }
            addresses.push(String::from_utf8_lossy(line).into_owned());
        }
        if addresses.is_empty() {
            return Err(format!("--rcpt-file {}: no addresses", path.display()));
        }
        Ok(RecipientList {
            path: path.to_path_buf(),
            addresses,
        })
    }

    /// Addresses in the list.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether the list is empty (never: reading refuses that).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// Recipient `rcpt` of message `seq` with `per_message` recipients each: the list in
    /// order, cycling.
    fn address(&self, seq: u64, rcpt: usize, per_message: usize) -> &str {
        let n = seq
            .wrapping_mul(per_message as u64)
            .wrapping_add(rcpt as u64)
            % self.addresses.len() as u64;
        &self.addresses[n as usize]
    }
}

/// The whole description of the load, shared read-only by every connection.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Recipients per message.
    pub rcpts: usize,
    /// Messages per connection before QUIT (0: reuse the connection for ever).
    pub msgs_per_conn: u64,
    /// Pipelining mode.
    pub pipelining: Pipelining,
    /// Send content with `BDAT n LAST` instead of DATA.
    pub bdat: bool,
    /// BDAT transactions in flight per connection.
    pub inflight: usize,
    /// Greet with HELO (no extensions) instead of EHLO.
    pub helo: bool,
    /// The EHLO/HELO argument.
    pub ehlo_name: String,
    /// Sender pattern.
    pub from: AddressPattern,
    /// Recipient pattern.
    pub to: AddressPattern,
    /// Generated messages: their sizes and the text they are cut from.
    pub generated: Generated,
    /// Plain, STARTTLS or implicit TLS.
    pub security: Security,
    /// `AUTH` after the (last) EHLO, if asked for.
    pub auth: Option<Auth>,
    /// Real messages to send instead of generated ones.
    pub corpus: Option<Arc<Corpus>>,
    /// Which corpus message each transaction sends.
    pub order: Order,
    /// Recipients from `--rcpt-file` instead of the `to` pattern.
    pub recipients: Option<RecipientList>,
    /// `--delivered-via`: the current run's id, written with each message's number into its
    /// `Subject:` (see [`tag`]); set by the runner at each run's start (a sweep's steps
    /// have different ids, so a late arrival of one step is never taken for the next's).
    pub tag_run: Option<Arc<AtomicU32>>,
}

/// Generated messages: their sizes, and the text each is cut from (built once, at least as
/// long as the largest size, so the two always go together).
#[derive(Debug, Clone)]
pub struct Generated {
    /// Message sizes.
    sizes: Sizes,
    /// Header block and text lines, at least `sizes.max()` bytes.
    template: Vec<u8>,
    /// Where the tag starts in `template`, when messages are tagged (`--delivered-via`).
    tag_at: Option<usize>,
    /// The header block's length (the empty line included).
    header_len: usize,
}

impl Generated {
    /// Messages of `sizes`, and their content template; `tagged`: with a [`tag`] in the
    /// subject (its digits are written per message, the size stays exact).
    pub fn new(sizes: Sizes, tagged: bool) -> Generated {
        let mut template = b"From: smtp-loadgen <loadgen@example.org>\r\n\
            To: <sink@example.net>\r\n\
            Subject: "
            .to_vec();
        let tag_at = tagged.then_some(template.len());
        if tagged {
            tag::tag_into(0, 0, &mut template);
        } else {
            template.extend_from_slice(b"smtp-loadgen test message");
        }
        template.extend_from_slice(b"\r\nMessage-ID: <loadgen@example.org>\r\n\r\n");
        let header_len = template.len();
        let mut line_no = 0u64;
        while template.len() < sizes.max() + 80 {
            let _ = write!(
                template,
                "{line_no:06} The quick brown fox jumps over the lazy dog; smtp-loadgen text.\r\n"
            );
            line_no += 1;
        }
        Generated {
            sizes,
            template,
            tag_at,
            header_len,
        }
    }

    /// The smallest size a message may have and keep its whole header block (and so its
    /// tag) and end in CR LF.
    pub fn header_len(&self) -> usize {
        self.header_len + 2
    }

    /// The message sizes.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }
}

impl Workload {
    /// What message `seq` carries: the next corpus message (in order: number `seq` modulo
    /// the corpus size; at random: from `rng`), or generated content of a size from `rng`.
    pub fn pick_content(&self, seq: u64, rng: &mut Rng) -> Content {
        match &self.corpus {
            Some(corpus) => {
                let count = corpus.len() as u64;
                let index = match self.order {
                    Order::Sequential => seq % count,
                    Order::Random => rng.next_u64() % count,
                } as u32;
                Content::Corpus {
                    index,
                    size: corpus.size(index),
                    eight_bit: corpus.is_eight_bit(index),
                }
            }
            None => Content::Generated(self.generated.sizes.pick(rng)),
        }
    }

    /// `MAIL FROM:<...>`, with `BODY=8BITMIME` when `eight_bit` (RFC 6152 §3: a client
    /// sends 8-bit content only with it, to a server that offered 8BITMIME).
    pub fn write_mail(&self, seq: u64, eight_bit: bool, out: &mut Output) {
        out.extend_from_slice(b"MAIL FROM:<");
        self.from.write(seq, 0, out);
        out.extend_from_slice(if eight_bit {
            b"> BODY=8BITMIME\r\n"
        } else {
            b">\r\n"
        });
    }

    /// The address of recipient `rcpt` of message `seq` (as `RCPT TO` names it), appended
    /// to `out`.
    pub fn rcpt_address_into(&self, seq: u64, rcpt: usize, out: &mut Vec<u8>) {
        match &self.recipients {
            Some(list) => out.extend_from_slice(list.address(seq, rcpt, self.rcpts).as_bytes()),
            None => self.to.write(seq, rcpt, out),
        }
    }

    /// `RCPT TO:<...>` for recipient `rcpt` of message `seq`.
    pub fn write_rcpt(&self, seq: u64, rcpt: usize, out: &mut Output) {
        out.extend_from_slice(b"RCPT TO:<");
        match &self.recipients {
            Some(list) => out.extend_from_slice(list.address(seq, rcpt, self.rcpts).as_bytes()),
            None => self.to.write(seq, rcpt, out),
        }
        out.extend_from_slice(b">\r\n");
    }

    /// Exactly `size` bytes of generated content ending in CR LF; message `seq`'s tag in
    /// its subject when messages are tagged (and the size keeps the whole tag).
    fn write_message(&self, size: usize, seq: u64, out: &mut Output) {
        let size = size.max(MIN_SIZE);
        let template = &self.generated.template;
        let end = size - 3;
        let tag_at = match (self.generated.tag_at, &self.tag_run) {
            (Some(at), Some(run)) if at + tag::TAG_LEN <= end => {
                let run = run.load(Ordering::Relaxed);
                out.extend_from_slice(&template[..at + tag::RUN_OFFSET]);
                out.extend_from_slice(&tag::run_digits(run));
                out.extend_from_slice(
                    &template[at + tag::RUN_OFFSET + tag::RUN_ID_DIGITS..at + tag::SEQ_OFFSET],
                );
                out.extend_from_slice(&tag::seq_digits(seq));
                at + tag::TAG_LEN
            }
            _ => 0,
        };
        out.extend_from_slice(&template[tag_at..end]);
        // Cutting a line between its CR and LF would leave a bare CR; make it text.
        if template[end] == b'\r' {
            out.extend_from_slice(b"x");
        } else {
            out.extend_from_slice(&template[end..end + 1]);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// DATA content: the message and the terminating dot (RFC 5321 §4.1.1.4); a corpus
    /// message dot-stuffed, streamed by the engine.
    pub fn write_data_content(&self, content: Content, seq: u64, out: &mut Output) {
        match content {
            Content::Generated(size) => {
                self.write_message(size, seq, out);
                out.extend_from_slice(b".\r\n");
            }
            Content::Corpus { index, .. } => out.push_body(Body {
                message: index,
                form: Form::Data,
            }),
        }
    }

    /// `BDAT <size> LAST` and the message (RFC 3030 §2).
    pub fn write_bdat(&self, content: Content, seq: u64, out: &mut Output) {
        let _ = write!(out, "BDAT {} LAST\r\n", content.size());
        match content {
            Content::Generated(size) => self.write_message(size, seq, out),
            Content::Corpus { index, .. } => out.push_body(Body {
                message: index,
                form: Form::Bdat,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(sizes: Sizes) -> Workload {
        Workload {
            rcpts: 1,
            msgs_per_conn: 0,
            pipelining: Pipelining::Auto,
            bdat: false,
            inflight: 1,
            helo: false,
            ehlo_name: "loadgen.test".into(),
            from: AddressPattern::new("s{n}@example.org").unwrap(),
            to: AddressPattern::new("r{r}-{n}@example.net").unwrap(),
            generated: Generated::new(sizes, false),
            security: Security::Plain,
            auth: None,
            corpus: None,
            order: Order::Sequential,
            recipients: None,
            tag_run: None,
        }
    }

    #[test]
    fn tagged_messages_carry_their_number_at_their_exact_size() {
        let mut w = workload(Sizes::Fixed(4096));
        w.generated = Generated::new(Sizes::Fixed(4096), true);
        w.tag_run = Some(Arc::new(AtomicU32::new(0xabcd_0123)));
        let min = w.generated.header_len();
        for (size, seq) in [(min, 0), (min + 1, 7), (1024, u64::MAX), (4096, 123_456)] {
            let mut out = Output::default();
            w.write_data_content(Content::Generated(size), seq, &mut out);
            let text = String::from_utf8(out.written().to_vec()).unwrap();
            assert_eq!(text.len(), size + 3, "{size}: the message and the dot");
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap();
            assert_eq!(tag::parse_tag(subject), Some((0xabcd_0123, seq)));
            assert!(text.contains("\r\n\r\n"), "the header block is whole");
        }
        // Untagged workloads keep the old subject.
        let plain = workload(Sizes::Fixed(4096));
        let mut out = Output::default();
        plain.write_data_content(Content::Generated(1024), 9, &mut out);
        assert!(String::from_utf8_lossy(out.written())
            .contains("Subject: smtp-loadgen test message\r\n"));
    }

    #[test]
    fn messages_have_exact_sizes_and_no_bare_cr() {
        let w = workload(Sizes::Fixed(4096));
        for size in MIN_SIZE..1200 {
            let mut out = Output::default();
            w.write_message(size, 7, &mut out);
            let out = out.written();
            assert_eq!(out.len(), size);
            assert!(out.ends_with(b"\r\n"));
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(
                        out.get(i + 1),
                        Some(&b'\n'),
                        "bare CR at {i} for size {size}"
                    );
                }
                if b == b'\n' {
                    assert_eq!(out[i - 1], b'\r');
                }
            }
            assert!(!out.windows(5).any(|w| w == b"\r\n.\r\n"));
        }
    }

    #[test]
    fn patterns_expand() {
        let w = workload(Sizes::Fixed(100));
        let mut out = Output::default();
        w.write_mail(42, false, &mut out);
        w.write_rcpt(42, 3, &mut out);
        assert_eq!(
            out.written(),
            b"MAIL FROM:<s42@example.org>\r\nRCPT TO:<r3-42@example.net>\r\n"
        );
        assert!(AddressPattern::new("a b@c").is_err());
        assert!(AddressPattern::new("<a@b>").is_err());
    }

    #[test]
    fn patterns_expand_as_a_naive_reading_does() {
        // The reading before patterns were cut into pieces once: scan for `{` every time.
        fn naive(pattern: &str, seq: u64, rcpt: usize) -> String {
            let mut out = String::new();
            let mut rest = pattern;
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let tail = &rest[open..];
                if let Some(after) = tail.strip_prefix("{n}") {
                    out.push_str(&seq.to_string());
                    rest = after;
                } else if let Some(after) = tail.strip_prefix("{r}") {
                    out.push_str(&rcpt.to_string());
                    rest = after;
                } else {
                    out.push('{');
                    rest = &tail[1..];
                }
            }
            out + rest
        }
        for pattern in [
            "a@b",
            "{n}",
            "{r}",
            "{n}{r}",
            "{",
            "}",
            "{n",
            "{{n}}",
            "{x}{n}@{r}.",
            "a{r}b{n}c{",
            "{{{r}",
            "n}{r}{n}{",
            "{}",
        ] {
            let p = AddressPattern::new(pattern).unwrap();
            for (seq, rcpt) in [(0, 0), (7, 12), (u64::MAX, usize::MAX), (1_000_000, 9)] {
                let mut out = Output::default();
                p.write(seq, rcpt, &mut out);
                assert_eq!(
                    out.written(),
                    naive(pattern, seq, rcpt).as_bytes(),
                    "{pattern:?} {seq} {rcpt}"
                );
            }
        }
    }

    #[test]
    fn auth_responses_are_base64_lines() {
        let plain = Auth::new(AuthMech::Plain, "user", "p:ss");
        let mut out = Output::default();
        plain.write_command(&mut out);
        // base64("\0user\0p:ss")
        assert_eq!(out.written(), b"AUTH PLAIN AHVzZXIAcDpzcw==\r\n");
        assert_eq!(plain.challenges(), 0);
        let login = Auth::new(AuthMech::Login, "user", "pass");
        let mut out = Output::default();
        login.write_command(&mut out);
        login.write_response(0, &mut out);
        login.write_response(1, &mut out);
        assert_eq!(out.written(), b"AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n");
        assert!(!format!("{login:?}").contains("cGFzcw"));
    }

    #[test]
    fn seeded_sizes_repeat_and_stay_in_range() {
        let sizes = Sizes::Range(1000, 2000);
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let size = sizes.pick(&mut a);
            assert_eq!(size, sizes.pick(&mut b));
            assert!((1000..=2000).contains(&size));
        }
    }

    #[test]
    fn recipients_come_from_the_list_in_order_cycling() {
        let path = std::env::temp_dir().join(format!("loadgen-rcpts-{}", std::process::id()));
        std::fs::write(&path, "# test list\n a@x.test \n\nb@x.test\r\nc@x.test").unwrap();
        let list = RecipientList::read(&path).unwrap();
        assert_eq!(list.len(), 3);
        let mut w = Workload {
            recipients: Some(list),
            ..workload(Sizes::Fixed(100))
        };
        w.rcpts = 2;
        let mut out = Output::default();
        for seq in 0..3 {
            for rcpt in 0..2 {
                w.write_rcpt(seq, rcpt, &mut out);
            }
        }
        let text = String::from_utf8(out.written().to_vec()).unwrap();
        let sent: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches("RCPT TO:<").trim_end_matches('>'))
            .collect();
        assert_eq!(
            sent,
            ["a@x.test", "b@x.test", "c@x.test", "a@x.test", "b@x.test", "c@x.test"]
        );
        std::fs::write(&path, "ok@x.test\nnot an address\n").unwrap();
        let error = RecipientList::read(&path).unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(RecipientList::read(&path)
            .unwrap_err()
            .contains("no addresses"));
        let _ = std::fs::remove_file(&path);
    }
}
