//! The SMTP transcript of a connection's messages, recorded only when the capture store is on
//! (a connection without one has no recorder: no allocation, one branch per call into the
//! session).
//!
//! What it does: after every call into the session, the connection hands the recorder the
//! input the session consumed and the replies it wrote; the recorder frames the input as the
//! session does (command lines end only at `CR LF`, RFC 5321 §2.3.8; after `DATA` answered
//! `354` the content runs to its `CR LF . CR LF`, §4.1.1.4; after `BDAT n` come `n` octets,
//! RFC 3030 §2; after `AUTH` answered `334` a line is a SASL response, RFC 4954 §4; after
//! `STARTTLS` answered `220` the plaintext left is thrown away, RFC 3207 §4.2) and pairs each
//! command, SASL response or content end with the next reply, in order (RFC 2920 §3.1: replies
//! come in the order of the commands). So the transcript is the same however the client's
//! bytes were split into reads. Where DATA content ends it does not look for: the session
//! reports it through the sink ([`Marks::content_ends`]), so content is never scanned twice.
//! Content is not kept: it is one line `[content: N octets]`
//! (N as kept, after dot-unstuffing); AUTH secrets are not kept: `AUTH PLAIN ***` (after a
//! space or a tab), each SASL response `***`, and a base64-looking line right after an AUTH
//! the session refused (a client sending its password anyway); after a handshake a note
//! names the TLS version and cipher.
//!
//! When a message's final reply names it (`250 ... queued as ID`), its transcript goes to the
//! capture store with it ([`Capture::attach_transcript_at`], by the seq its insert gave,
//! [`Marks::kept`]), before that reply is written to
//! the socket: the whole session so far for the connection's first message; for a later one,
//! the session's preamble (greeting, `HELO`/`EHLO`, `STARTTLS`, AUTH) then its transaction
//! from its `MAIL` to its final reply, where the preamble is one piece rendered when it
//! last changed and shared by the connection's later messages ([`Transcript::preamble`]):
//! only the transaction's lines are written per message. Bounded: the preamble keeps at most
//! [`PREAMBLE_MAX`] octets and a transaction [`LOG_MAX`] (together with the notes within
//! [`TRANSCRIPT_MAX`]); past that the middle is left out, with a note saying how many lines
//! and octets.
//!
//! What it does not do: decide anything about the protocol (the session does; a line here is
//! only named by what the session answered), or keep anything after a message's transcript
//! was handed over but the preamble.

use crate::capture::transcript::{
    push_line_at, Dir, LineHead, Marks, Transcript, LINE_TEXT_MAX, TRANSCRIPT_MAX,
};
use crate::capture::Capture;
use crate::proto::command::{parse_command, Command};
use crate::proto::envelope::TlsInfo;
use crate::proto::sink::QueueId;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// The most octets of the session's preamble kept for a transcript.
pub const PREAMBLE_MAX: usize = 2 << 10;
/// The most octets of one transaction (or of a connection's first message) kept.
pub const LOG_MAX: usize = TRANSCRIPT_MAX - PREAMBLE_MAX - 2 * NOTE_MAX;
/// The longest SASL mechanism name kept (RFC 4422 §3.1: at most 20 characters).
const AUTH_NAME_MAX: usize = 20;
/// Room for one note that lines were left out.
const NOTE_MAX: usize = 96;

/// Lines kept under a bound: the first half of the bound from the start, then the latest
/// lines in the rest; what falls between is counted.
#[derive(Debug, Default)]
struct Log {
    /// The first lines.
    head: Vec<u8>,
    /// The latest lines after the head.
    tail: Vec<u8>,
    /// Lines and octets left out between.
    left_out: (u64, u64),
}

impl Log {
    /// Adds a line, keeping within `max` octets.
    fn push(&mut self, max: usize, dir: Dir, at: LineHead, text: &[u8]) {
        if self.tail.is_empty() && self.left_out.0 == 0 && self.head.len() < max / 2 {
            push_line_at(&mut self.head, dir, &at, text);
            return;
        }
        push_line_at(&mut self.tail, dir, &at, text);
        let room = max.saturating_sub(self.head.len());
        let mut cut = 0;
        while self.tail.len() - cut > room {
            let Some(end) = self.tail[cut..].iter().position(|&b| b == b'\n') else {
                break;
            };
            self.left_out.0 += 1;
            self.left_out.1 += (end + 1) as u64;
            cut += end + 1;
        }
        self.tail.drain(..cut);
    }

    /// The note that lines were left out, if any were.
    fn note(&self) -> Option<String> {
        (self.left_out.0 > 0).then(|| {
            format!(
                "[... {} lines, {} octets left out ...]",
                self.left_out.0, self.left_out.1
            )
        })
    }

    /// Octets [`Log::write`] appends, with `note` (its [`Log::note`]).
    fn written_len(&self, note: Option<&String>, at: LineHead) -> usize {
        let note_len = note.map_or(0, |note| at.octets() + note.len() + 1);
        self.head.len() + note_len + self.tail.len()
    }

    /// Appends the kept lines to `out`, with `note` (its [`Log::note`]) where lines were
    /// left out.
    fn write(&self, out: &mut Vec<u8>, note: Option<&String>, at: LineHead) {
        out.extend_from_slice(&self.head);
        if let Some(note) = note {
            push_line_at(out, Dir::Note, &at, note.as_bytes());
        }
        out.extend_from_slice(&self.tail);
    }

    /// Forgets every line (the buffers keep their room).
    fn clear(&mut self) {
        self.head.clear();
        self.tail.clear();
        self.left_out = (0, 0);
    }

    /// Octets it holds.
    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

/// Where the next input octets belong, as the session frames them.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Command lines.
    Command,
    /// A SASL response line (after `334`).
    SaslResponse,
    /// DATA content, up to its `CR LF . CR LF`, where the session reports it ends.
    Content,
    /// The octets of a BDAT chunk: how many are left, and the chunk's size.
    Chunk { left: u64, size: u64 },
    /// After `220` to STARTTLS: plaintext thrown away until the handshake.
    StartingTls,
    /// The session is over.
    Closed,
}

/// What a line (or content end) whose reply is awaited was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// `HELO`/`EHLO`: part of the preamble; the transaction ends.
    Greeting,
    /// `AUTH` or a SASL response: part of the preamble; `334` asks for another response.
    Auth,
    /// `STARTTLS`: part of the preamble; `220` starts the handshake.
    StartTls,
    /// `MAIL`: `250` opens a transaction.
    Mail,
    /// `DATA`: `354` starts the content.
    Data,
    /// `RSET`: the transaction ends.
    Rset,
    /// The end of DATA content or of a BDAT chunk: a reply naming a queue id ends a message.
    ContentEnd,
    /// Any other line.
    Other,
}

/// A connection's recorder (see the module doc).
#[derive(Debug)]
pub struct Recorder {
    /// Where transcripts go.
    capture: Arc<Capture>,
    /// When the connection opened: times are milliseconds since.
    opened: Instant,
    /// The last call's time (milliseconds) and the head of its lines.
    last_head: (u64, LineHead),
    /// The session's longest command line: a longer one is skipped by the session, so it is
    /// never a BDAT whose octets follow.
    max_line_len: usize,
    /// How the next input is framed.
    mode: Mode,
    /// A command line not complete yet (at most [`LINE_TEXT_MAX`] + 1 octets kept).
    line: Vec<u8>,
    /// The whole length of that line so far.
    line_len: usize,
    /// The partial line ended in a `CR`.
    line_cr: bool,
    /// A line (or content end) that waits for its reply.
    waiting: Option<Item>,
    /// The session's preamble: greeting, HELO/EHLO, STARTTLS, the TLS note, AUTH.
    preamble: Log,
    /// The preamble as handed to the store, shared by the connection's later messages:
    /// rendered at the first hand-over after it changed (after EHLO and AUTH, never again).
    shared: Option<Arc<[u8]>>,
    /// The connection's first message's lines (every line so far), or the current
    /// transaction's (from its `MAIL`).
    log: Log,
    /// No message was accepted on this connection yet.
    first: bool,
    /// A `MAIL` was accepted and its message has not ended.
    in_transaction: bool,
    /// The last client line was an `AUTH` (whatever its reply): a client that sends its
    /// credentials anyway, after a refusal, sends them on the next line.
    after_auth: bool,
    /// The transcripts handed over, by id (tests read them here).
    #[cfg(test)]
    handed: Vec<(QueueId, Bytes)>,
}

impl Recorder {
    /// A recorder for a connection opened at `opened`, whose session takes command lines of
    /// at most `max_line_len` octets, handing transcripts to `capture`.
    pub fn new(capture: Arc<Capture>, opened: Instant, max_line_len: usize) -> Recorder {
        Recorder {
            capture,
            opened,
            last_head: (0, LineHead::new(0)),
            max_line_len,
            mode: Mode::Command,
            line: Vec::new(),
            line_len: 0,
            line_cr: false,
            waiting: None,
            preamble: Log::default(),
            shared: None,
            log: Log::default(),
            first: true,
            in_transaction: false,
            after_auth: false,
            #[cfg(test)]
            handed: Vec::new(),
        }
    }

    /// The head of lines at `now`, in milliseconds from the connection's opening (made
    /// again only when the millisecond changed since the last call).
    fn at(&mut self, now: Instant) -> LineHead {
        let ms = u64::try_from(now.saturating_duration_since(self.opened).as_millis())
            .unwrap_or(u64::MAX);
        if self.last_head.0 != ms {
            self.last_head = (ms, LineHead::new(ms));
        }
        self.last_head.1
    }

    /// Records a line in the log, and in the preamble if it belongs there.
    fn record(&mut self, dir: Dir, at: LineHead, text: &[u8], preamble: bool) {
        if preamble {
            self.preamble.push(PREAMBLE_MAX, dir, at, text);
            self.shared = None;
        }
        self.log.push(LOG_MAX, dir, at, text);
    }

    /// One call into the session: the `input` it consumed and the `replies` it wrote, at
    /// `now`, and what the sink saw meanwhile (`marks`, cleared here once read).
    pub fn on_call(&mut self, input: &[u8], replies: &[u8], marks: &mut Marks, now: Instant) {
        self.take_call(input, replies, marks, now);
        marks.clear();
    }

    /// [`Recorder::on_call`], leaving `marks` as they were.
    fn take_call(&mut self, input: &[u8], replies: &[u8], marks: &Marks, now: Instant) {
        let at = self.at(now);
        let mut content_ends = marks.content_ends.iter();
        let mut replies = Replies {
            rest: replies,
            one_line: true,
        };
        if let Some(item) = self.waiting.take() {
            self.pair(item, &mut replies, marks, at);
        }
        let mut pos = 0;
        // The session takes no input behind a line whose reply is not out yet (a message
        // being stored, an AUTH being checked).
        while pos < input.len() && self.waiting.is_none() {
            let rest = &input[pos..];
            match self.mode {
                Mode::Command | Mode::SaslResponse => {
                    let (taken, line) = self.take_line(rest);
                    pos += taken;
                    let item = match line {
                        Taken::Partial => None,
                        // The common case: the whole line in this call's input, read there.
                        Taken::Whole => {
                            let text = trim_line(&rest[..taken.min(LINE_TEXT_MAX + 2)]);
                            self.classify(text, taken > self.max_line_len, at)
                        }
                        Taken::Buffered => self.on_line(at),
                    };
                    if let Some(item) = item {
                        self.pair(item, &mut replies, marks, at);
                    }
                }
                Mode::Content => match content_ends.find(|&&(end, _)| end > pos) {
                    Some(&(end, octets)) => {
                        pos = end.min(input.len());
                        self.mode = Mode::Command;
                        self.content_end(octets, &mut replies, marks, at);
                    }
                    // The content goes on in the next call.
                    None => pos = input.len(),
                },
                Mode::Chunk { left, size } => {
                    let taken = left.min(rest.len() as u64);
                    pos += taken as usize;
                    self.mode = Mode::Chunk {
                        left: left - taken,
                        size,
                    };
                    if taken == left {
                        self.mode = Mode::Command;
                        self.content_end(size, &mut replies, marks, at);
                    }
                }
                Mode::StartingTls | Mode::Closed => pos = input.len(),
            }
        }
        // Replies to no line of the client's: the greeting, a timeout's `421`.
        while let Some(reply) = replies.next() {
            let greeting = self.first && self.log.len() == 0;
            self.record_reply(reply, replies.one_line, at, greeting);
        }
    }

    /// The TLS handshake finished (after STARTTLS, or on an implicit TLS port): a note, and
    /// command lines again.
    pub fn on_tls(&mut self, info: &TlsInfo, now: Instant) {
        let at = self.at(now);
        let note = format!("[TLS: {} {}]", info.version, info.cipher);
        self.record(Dir::Note, at, note.as_bytes(), true);
        if matches!(self.mode, Mode::StartingTls) {
            self.mode = Mode::Command;
        }
        self.line.clear();
        self.line_len = 0;
        self.line_cr = false;
    }

    /// Records `reply`'s lines (`one_line`: it has one, as [`Replies`] found); a closing
    /// reply ends the session.
    fn record_reply(&mut self, reply: &[u8], one_line: bool, at: LineHead, preamble: bool) {
        if one_line {
            let line = trim_line(reply.strip_suffix(b"\n").unwrap_or(reply));
            if !line.is_empty() {
                self.record(Dir::Server, at, line, preamble);
            }
        } else {
            for line in reply_lines(reply) {
                self.record(Dir::Server, at, line, preamble);
            }
        }
        if closes(reply) {
            self.mode = Mode::Closed;
        }
    }

    /// Gives `item` the next reply, or lets it wait for one.
    fn pair(&mut self, item: Item, replies: &mut Replies<'_>, marks: &Marks, at: LineHead) {
        match replies.next() {
            Some(reply) => self.answer(item, reply, replies.one_line, marks, at),
            None => self.waiting = Some(item),
        }
    }

    /// `item` got `reply`: records it and follows what it means for the framing.
    fn answer(&mut self, item: Item, reply: &[u8], one_line: bool, marks: &Marks, at: LineHead) {
        let preamble = matches!(item, Item::Greeting | Item::Auth | Item::StartTls);
        self.record_reply(reply, one_line, at, preamble);
        let code = |c: &[u8]| reply.starts_with(c);
        match item {
            Item::Auth if code(b"334") => self.mode = Mode::SaslResponse,
            Item::Auth => self.mode = Mode::Command,
            Item::StartTls if code(b"220") => self.mode = Mode::StartingTls,
            Item::Mail if code(b"2") => self.in_transaction = true,
            Item::Data if code(b"354") => self.mode = Mode::Content,
            Item::Greeting | Item::Rset if code(b"2") => self.in_transaction = false,
            Item::ContentEnd => match named(reply, marks) {
                Some((id, seq)) if code(b"2") => self.hand_over(id, seq, at),
                // A BDAT chunk taken, more to come: the transaction goes on.
                None if code(b"2") => {}
                _ => self.in_transaction = false,
            },
            Item::Greeting
            | Item::Rset
            | Item::StartTls
            | Item::Mail
            | Item::Data
            | Item::Other => {}
        }
    }

    /// The content of DATA or of a BDAT chunk ended after `octets`: its line, then its reply.
    fn content_end(&mut self, octets: u64, replies: &mut Replies<'_>, marks: &Marks, at: LineHead) {
        let mut text = [0u8; 48];
        let mut len = 0;
        for piece in [
            &b"[content: "[..],
            itoa::Buffer::new().format(octets).as_bytes(),
            b" octets]",
        ] {
            text[len..len + piece.len()].copy_from_slice(piece);
            len += piece.len();
        }
        self.record(Dir::Client, at, &text[..len], false);
        self.pair(Item::ContentEnd, replies, marks, at);
    }

    /// The message named `id` was accepted: its transcript goes to the capture store (its own
    /// lines in one allocation of their exact size, the preamble shared), attached by the
    /// `seq` its insert gave when the sink saw the insert (always, but for a test's sink).
    fn hand_over(&mut self, id: QueueId, seq: Option<u64>, at: LineHead) {
        let preamble = if self.first {
            None
        } else {
            self.shared_preamble(at)
        };
        let note = self.log.note();
        let mut own = Vec::with_capacity(self.log.written_len(note.as_ref(), at));
        self.log.write(&mut own, note.as_ref(), at);
        debug_assert_eq!(own.len(), own.capacity());
        let transcript = Transcript {
            preamble,
            own: Bytes::from(own),
        };
        #[cfg(test)]
        self.handed.push((id, transcript.text()));
        match seq {
            Some(seq) => self.capture.attach_transcript_at(seq, transcript),
            None => self.capture.attach_transcript(&id, transcript),
        };
        self.first = false;
        self.in_transaction = false;
        self.log.clear();
    }

    /// The preamble as a later message's transcript starts with it (`None` if empty),
    /// rendered once while it does not change.
    fn shared_preamble(&mut self, at: LineHead) -> Option<Arc<[u8]>> {
        if let Some(shared) = &self.shared {
            return Some(Arc::clone(shared));
        }
        if self.preamble.len() == 0 {
            return None;
        }
        let note = self.preamble.note();
        let mut text = Vec::with_capacity(self.preamble.written_len(note.as_ref(), at));
        self.preamble.write(&mut text, note.as_ref(), at);
        let shared: Arc<[u8]> = Arc::from(text);
        // A note of lines left out carries the hand-over's time: such a preamble (over
        // PREAMBLE_MAX, rare) is rendered for each message, as before it was shared.
        if note.is_none() {
            self.shared = Some(Arc::clone(&shared));
        }
        Some(shared)
    }

    /// Takes the octets of a command line from `input`: the octets taken and whether the
    /// line is complete (at its `CR LF`: a bare LF does not end it, RFC 5321 §2.3.8): whole
    /// in `input` (its first octets taken, not copied), or in `self.line` (its text bounded)
    /// with what earlier calls left.
    fn take_line(&mut self, input: &[u8]) -> (usize, Taken) {
        let mut from = 0;
        while let Some(at) = memchr::memchr(b'\n', &input[from..]) {
            let lf = from + at;
            let after_cr = if lf > 0 {
                input[lf - 1] == b'\r'
            } else {
                self.line_cr
            };
            if after_cr {
                if self.line_len == 0 {
                    return (lf + 1, Taken::Whole);
                }
                self.keep_line_text(&input[..lf + 1]);
                let trimmed = trim_line(&self.line).len();
                self.line.truncate(trimmed);
                self.line_cr = false;
                return (lf + 1, Taken::Buffered);
            }
            from = lf + 1;
        }
        self.keep_line_text(input);
        self.line_cr = input.last().map_or(self.line_cr, |&b| b == b'\r');
        (input.len(), Taken::Partial)
    }

    /// Counts `piece` of the current line and keeps what fits of it.
    fn keep_line_text(&mut self, piece: &[u8]) {
        self.line_len += piece.len();
        let room = (LINE_TEXT_MAX + 2).saturating_sub(self.line.len());
        self.line.extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// A complete line in `self.line`: records it (AUTH secrets hidden) and says what it is;
    /// `None` for a BDAT line, whose reply comes after its chunk.
    fn on_line(&mut self, at: LineHead) -> Option<Item> {
        let line = std::mem::take(&mut self.line);
        let too_long = std::mem::take(&mut self.line_len) > self.max_line_len;
        let item = self.classify(&line, too_long, at);
        self.line = line;
        self.line.clear();
        item
    }

    /// Records `line` and says what it is (see [`Recorder::on_line`]).
    fn classify(&mut self, line: &[u8], too_long: bool, at: LineHead) -> Option<Item> {
        let after_auth = std::mem::take(&mut self.after_auth);
        if matches!(self.mode, Mode::SaslResponse) || (after_auth && looks_like_base64(line)) {
            // RFC 4954 §4: a response carries the credentials: never kept; nor a line that
            // looks like one right after an AUTH the session refused (a client that sends
            // its password anyway).
            self.record(Dir::Client, at, b"***", true);
            return Some(Item::Auth);
        }
        // Named by its verb alone (the reply says whether the session took it), except BDAT,
        // whose octets follow without a reply first: its line is parsed as the session does.
        let verb = match line.get(4) {
            // Most lines: a four-letter verb, then a space or the end.
            None | Some(b' ' | b'\t') => &line[..line.len().min(4)],
            Some(_) => {
                let end = line.iter().position(|&b| b == b' ' || b == b'\t');
                &line[..end.unwrap_or(line.len())]
            }
        };
        let word = verb_word(verb);
        let item = if word == VERB_AUTH {
            // RFC 4954 §4: an initial response carries the credentials: the mechanism's
            // name is kept, never what follows it (valid or not, overlong or not, after a
            // space or a tab).
            self.after_auth = true;
            let rest = line.get(5..).unwrap_or_default();
            let name_end = rest
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .unwrap_or(rest.len());
            let mut text = Vec::with_capacity(40);
            text.extend_from_slice(b"AUTH");
            if name_end > 0 {
                text.push(b' ');
                text.extend_from_slice(&rest[..name_end.min(AUTH_NAME_MAX)]);
            }
            if rest.len() > name_end || name_end > AUTH_NAME_MAX || too_long {
                text.extend_from_slice(b" ***");
            }
            self.record(Dir::Client, at, &text, true);
            return Some(Item::Auth);
        } else if too_long {
            Item::Other
        } else if word == VERB_HELO || word == VERB_EHLO {
            Item::Greeting
        } else if word == VERB_MAIL {
            if !self.first && !self.in_transaction {
                // A later message's transcript starts at its MAIL.
                self.log.clear();
            }
            Item::Mail
        } else if word == VERB_DATA {
            Item::Data
        } else if word == VERB_RSET {
            Item::Rset
        } else if word == VERB_BDAT {
            match parse_command(line) {
                Ok(Command::Bdat { size, .. }) => {
                    self.record(Dir::Client, at, line, false);
                    if size == 0 {
                        return Some(Item::ContentEnd);
                    }
                    // The chunk's octets follow the line whatever the reply (RFC 3030 §2).
                    self.mode = Mode::Chunk { left: size, size };
                    return None;
                }
                // A BDAT line the session cannot frame: it answers and closes.
                _ => Item::Other,
            }
        } else if verb.eq_ignore_ascii_case(b"STARTTLS") {
            Item::StartTls
        } else {
            Item::Other
        };
        let preamble = matches!(item, Item::Greeting | Item::StartTls);
        self.record(Dir::Client, at, line, preamble);
        Some(item)
    }
}

/// A four-letter verb as one number, its letters upper-cased (`0` for any other length):
/// clearing bit 5 makes a lower-case letter upper-case and nothing else a letter, so the
/// numbers of two verbs are equal exactly when they are, ignoring ASCII case.
fn verb_word(verb: &[u8]) -> u32 {
    match verb {
        &[a, b, c, d] => u32::from_le_bytes([a, b, c, d]) & 0xdfdf_dfdf,
        _ => 0,
    }
}

/// [`verb_word`] of an upper-case verb.
const fn word(verb: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*verb)
}

/// The verbs the recorder names a line by.
const VERB_AUTH: u32 = word(b"AUTH");
const VERB_HELO: u32 = word(b"HELO");
const VERB_EHLO: u32 = word(b"EHLO");
const VERB_MAIL: u32 = word(b"MAIL");
const VERB_DATA: u32 = word(b"DATA");
const VERB_RSET: u32 = word(b"RSET");
const VERB_BDAT: u32 = word(b"BDAT");

/// What [`Recorder::take_line`] took.
#[derive(Debug, Clone, Copy)]
enum Taken {
    /// Part of a line: it goes on in the next call.
    Partial,
    /// A whole line, the octets taken.
    Whole,
    /// The end of a line begun in an earlier call, now in `Recorder::line`.
    Buffered,
}

/// A line's text without its `CR LF` (or the `CR` of one cut short).
fn trim_line(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\r"))
        .unwrap_or(line)
}

/// Whether `line` could be a SASL response (RFC 4954 §4: base64, or `*` to cancel) rather
/// than a command: only base64 characters, and not a verb the session knows.
fn looks_like_base64(line: &[u8]) -> bool {
    const VERBS: [&[u8]; 14] = [
        b"HELO",
        b"EHLO",
        b"MAIL",
        b"RCPT",
        b"DATA",
        b"BDAT",
        b"RSET",
        b"NOOP",
        b"QUIT",
        b"VRFY",
        b"EXPN",
        b"HELP",
        b"AUTH",
        b"STARTTLS",
    ];
    !line.is_empty()
        && line
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'*'))
        && !VERBS.iter().any(|verb| line.eq_ignore_ascii_case(verb))
}

/// The complete replies of one call, one at a time.
struct Replies<'a> {
    /// What is left.
    rest: &'a [u8],
    /// The last reply given has one line.
    one_line: bool,
}

impl<'a> Iterator for Replies<'a> {
    type Item = &'a [u8];

    /// The next reply: lines up to one whose code is followed by a space (RFC 5321 §4.2.1).
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let mut end = 0;
        self.one_line = true;
        loop {
            let line_end =
                memchr::memchr(b'\n', &self.rest[end..]).map_or(self.rest.len(), |p| end + p + 1);
            let line = &self.rest[end..line_end];
            end = line_end;
            if line.get(3) != Some(&b'-') || end >= self.rest.len() {
                break;
            }
            self.one_line = false;
        }
        let (reply, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(reply)
    }
}

/// The lines of a reply, without their `CR LF`.
fn reply_lines(reply: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = reply;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |p| p + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            return Some(line);
        }
    })
}

/// Whether a reply ends the session (`221`, `421`: RFC 5321 §3.8, §4.1.1.10).
fn closes(reply: &[u8]) -> bool {
    reply.starts_with(b"221") || reply.starts_with(b"421")
}

/// The message a `250 ... queued as ID` names, and its seq if the sink saw it kept in this
/// call (an id the sink noted is taken as it is, not checked again octet by octet).
fn named(reply: &[u8], marks: &Marks) -> Option<(QueueId, Option<u64>)> {
    let id = queued_id(reply)?;
    match marks.kept.iter().find(|(kept, _)| kept.as_bytes() == id) {
        Some(&(kept, seq)) => Some((kept, Some(seq))),
        None => QueueId::new(id).map(|id| (id, None)),
    }
}

/// The text of the id a `250 ... queued as ID` names.
fn queued_id(reply: &[u8]) -> Option<&[u8]> {
    const QUEUED_AS: &[u8] = b"queued as ";
    // The id is the last word (it has no space), after `queued as `.
    let reply = reply.strip_suffix(b"\r\n").unwrap_or(reply);
    let space = memchr::memrchr(b' ', reply)?;
    let (before, id) = (&reply[..=space], &reply[space + 1..]);
    before.ends_with(QUEUED_AS).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::transcript::lines;
    use crate::capture::{Limits, OnFull};
    use crate::fault::FaultGate;
    use crate::proto::reply::{Banner, Replies, ReplyTally};
    use crate::proto::session::{
        AuthVerdict, BareLfPolicy, Resume, SecurityPolicy, Session, SessionConfig, Wait,
    };
    use crate::proto::testkit::RecordingSink;

    fn config() -> SessionConfig {
        SessionConfig {
            banner: Banner::new("mx.test", 10_000),
            max_line_len: 512,
            max_message_size: 10_000,
            max_recipients: 100,
            max_errors: 20,
            max_junk_commands: 100,
            bare_lf: BareLfPolicy::Keep,
            security: SecurityPolicy {
                auth: true,
                auth_plaintext: true,
                ..SecurityPolicy::default()
            },
            dsn: false,
        }
    }

    /// What the test sink saw during the last call, as the recorder takes it.
    fn marks(sink: &mut RecordingSink) -> Marks {
        Marks {
            content_ends: std::mem::take(&mut sink.content_ends),
            kept: Vec::new(),
        }
    }

    /// A real session fed `input` cut at `cuts` (unconsumed octets presented again, as the
    /// connection does; AUTH accepted), its calls shown to a recorder: the transcripts
    /// handed over, as `(id, "D: text" lines)`.
    fn drive(input: &[u8], cuts: &[usize]) -> Vec<(String, Vec<String>)> {
        let config = config();
        let capture = Arc::new(Capture::new(Limits::default(), OnFull::EvictOldest));
        let now = Instant::now();
        let mut recorder = Recorder::new(capture, now, config.max_line_len);
        let mut session = Session::new();
        let mut sink = RecordingSink {
            names_messages: true,
            ..RecordingSink::default()
        };
        let mut gate: Option<Box<FaultGate>> = None;
        let mut tally = ReplyTally::default();
        let mut out = Vec::new();
        session.on_connect(
            &config,
            &mut Replies::new(&mut out, &mut tally),
            &mut sink,
            &mut gate,
        );
        recorder.on_call(&[], &out, &mut marks(&mut sink), now);
        let mut carry: Vec<u8> = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
        ends.sort_unstable();
        ends.push(input.len());
        for end in ends {
            carry.extend_from_slice(&input[start.min(end)..end]);
            start = start.max(end);
            loop {
                let before = out.len();
                let progress = session.on_input(
                    &config,
                    &carry,
                    &mut Replies::new(&mut out, &mut tally),
                    &mut sink,
                    &mut gate,
                );
                recorder.on_call(
                    &carry[..progress.consumed],
                    &out[before..],
                    &mut marks(&mut sink),
                    now,
                );
                carry.drain(..progress.consumed);
                if progress.wait != Some(Wait::Credentials) {
                    break;
                }
                let before = out.len();
                session.resume(
                    &config,
                    Resume::Auth(AuthVerdict::Accepted),
                    &mut Replies::new(&mut out, &mut tally),
                    &mut sink,
                );
                recorder.on_call(&[], &out[before..], &mut marks(&mut sink), now);
            }
        }
        recorder
            .handed
            .iter()
            .map(|(id, transcript)| {
                let shown = lines(transcript)
                    .map(|l| {
                        let dir = l.dir.letter() as char;
                        format!("{dir}: {}", String::from_utf8_lossy(l.text))
                    })
                    .collect();
                (id.as_str().to_owned(), shown)
            })
            .collect()
    }

    /// The EHLO reply's lines as the transcript shows them.
    fn ehlo_lines() -> Vec<String> {
        String::from_utf8(config().banner.ehlo.to_vec())
            .unwrap()
            .lines()
            .map(|l| format!("S: {l}"))
            .collect()
    }

    const SESSION: &[u8] = b"EHLO client.test\r\n\
        AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n\
        MAIL FROM:<a@test>\r\nRCPT TO:<b@test>\r\nRCPT TO:<c@test>\r\nDATA\r\n\
        Subject: one\r\n\r\n..dot\r\nbody\r\n.\r\n\
        NOOP\r\n\
        MAIL FROM:<a@test>\r\nRCPT TO:<d@test>\r\nDATA\r\n\
        x\r\n.\r\n\
        QUIT\r\n";

    fn expected() -> Vec<(String, Vec<String>)> {
        let mut first = vec![
            "S: 220 mx.test ESMTP fastsmtpd".to_owned(),
            "C: EHLO client.test".into(),
        ];
        first.extend(ehlo_lines());
        let preamble = first.clone();
        let auth = [
            "C: AUTH PLAIN ***",
            "S: 235 2.7.0 Authentication successful",
        ];
        first.extend(auth.iter().map(|s| s.to_string()));
        first.extend(
            [
                "C: MAIL FROM:<a@test>",
                "S: 250 2.1.0 Ok",
                "C: RCPT TO:<b@test>",
                "S: 250 2.1.5 Ok",
                "C: RCPT TO:<c@test>",
                "S: 250 2.1.5 Ok",
                "C: DATA",
                "S: 354 End data with <CR><LF>.<CR><LF>",
                // "Subject: one\r\n\r\n.dot\r\nbody\r\n" as kept: 28 octets.
                "C: [content: 28 octets]",
                "S: 250 2.0.0 Ok: queued as Q1",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let mut second = preamble;
        second.extend(auth.iter().map(|s| s.to_string()));
        second.extend(
            [
                "C: MAIL FROM:<a@test>",
                "S: 250 2.1.0 Ok",
                "C: RCPT TO:<d@test>",
                "S: 250 2.1.5 Ok",
                "C: DATA",
                "S: 354 End data with <CR><LF>.<CR><LF>",
                "C: [content: 3 octets]",
                "S: 250 2.0.0 Ok: queued as Q2",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        vec![("Q1".into(), first), ("Q2".into(), second)]
    }

    #[test]
    fn a_pipelined_session_reads_the_same_at_every_split_point() {
        let want = expected();
        assert_eq!(drive(SESSION, &[]), want);
        for cut in 1..SESSION.len() {
            assert_eq!(drive(SESSION, &[cut]), want, "cut at {cut}");
        }
        let every: Vec<usize> = (1..SESSION.len()).collect();
        assert_eq!(drive(SESSION, &every), want, "byte by byte");
    }

    #[test]
    fn auth_secrets_are_never_kept() {
        let input = b"EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nczNjcmV0\r\n\
            MAIL FROM:<a@test>\r\nRCPT TO:<b@test>\r\nDATA\r\nx\r\n.\r\n";
        let handed = drive(input, &[]);
        let shown = handed[0].1.join("\n");
        assert!(
            shown.contains(
                "C: AUTH LOGIN\nS: 334 VXNlcm5hbWU6\nC: ***\nS: 334 UGFzc3dvcmQ6\nC: ***\nS: 235"
            ),
            "{shown}"
        );
        assert!(
            !shown.contains("YWxpY2U") && !shown.contains("czNjcmV0"),
            "{shown}"
        );
    }

    #[test]
    fn malformed_or_refused_auth_keeps_no_secret_either() {
        // A tab before the mechanism (the session refuses the line), an unknown mechanism
        // then the password sent anyway, and a line after AUTH that is a command (kept).
        let input = b"EHLO c\r\nAUTH\tPLAIN AGFsaWNlAHMzY3JldA==\r\nAUTH FOO\r\nczNjcmV0\r\n\
            AUTH BAR\r\nNOOP\r\nMAIL FROM:<a@test>\r\nRCPT TO:<b@test>\r\nDATA\r\nx\r\n.\r\n";
        let handed = drive(input, &[]);
        let shown = handed[0].1.join("\n");
        for secret in ["AGFsaWNl", "czNjcmV0"] {
            assert!(!shown.contains(secret), "{secret} in\n{shown}");
        }
        assert!(shown.contains("C: AUTH PLAIN ***"), "{shown}");
        assert!(shown.contains("C: AUTH FOO\n"), "{shown}");
        assert!(shown.contains("C: ***\n"), "{shown}");
        assert!(shown.contains("C: NOOP\n"), "{shown}");
    }

    #[test]
    fn bdat_chunks_are_one_line_each_and_refused_data_is_no_content() {
        let input = b"EHLO c\r\nMAIL FROM:<a@test>\r\nDATA\r\nRCPT TO:<b@test>\r\n\
            BDAT 5\r\nab\r\ncBDAT 3 LAST\r\nd\r\n";
        let handed = drive(input, &[]);
        assert_eq!(handed.len(), 1);
        let shown = &handed[0].1;
        let tail: Vec<&str> = shown[shown.len() - 10..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "C: DATA",
                "S: 503 5.5.1 Error: need RCPT command",
                "C: RCPT TO:<b@test>",
                "S: 250 2.1.5 Ok",
                "C: BDAT 5",
                "C: [content: 5 octets]",
                "S: 250 2.0.0 Ok: 5 octets received",
                "C: BDAT 3 LAST",
                "C: [content: 3 octets]",
                "S: 250 2.0.0 Ok: queued as Q1",
            ]
        );
    }

    #[test]
    fn a_long_transaction_is_cut_in_the_middle_with_a_note() {
        let mut input = b"EHLO c\r\nMAIL FROM:<a@test>\r\n".to_vec();
        for i in 0..300 {
            input.extend_from_slice(format!("RCPT TO:<recipient-number-{i}@test>\r\n").as_bytes());
        }
        input.extend_from_slice(b"DATA\r\nx\r\n.\r\n");
        let capture = drive(&input, &[]);
        let shown = &capture[0].1;
        let octets: usize = shown.iter().map(|l| l.len() + 4).sum();
        assert!(octets <= TRANSCRIPT_MAX, "{octets}");
        let note = shown
            .iter()
            .find(|l| l.starts_with("*: [... "))
            .expect("a note");
        assert!(note.ends_with("octets left out ...]"), "{note}");
        assert_eq!(shown.last().unwrap(), "S: 250 2.0.0 Ok: queued as Q1");
        assert!(shown
            .iter()
            .any(|l| l == "C: RCPT TO:<recipient-number-0@test>"));
        assert!(shown
            .iter()
            .any(|l| l == "C: RCPT TO:<recipient-number-299@test>"));
        assert!(!shown
            .iter()
            .any(|l| l == "C: RCPT TO:<recipient-number-150@test>"));
    }

    #[test]
    fn starttls_is_shown_then_the_tls_version_and_the_plaintext_behind_it_is_not() {
        let config = SessionConfig {
            security: SecurityPolicy {
                starttls: true,
                ..config().security
            },
            ..config()
        };
        let capture = Arc::new(Capture::new(Limits::default(), OnFull::EvictOldest));
        let now = Instant::now();
        let mut recorder = Recorder::new(capture, now, config.max_line_len);
        let mut session = Session::new();
        let mut sink = RecordingSink {
            names_messages: true,
            ..RecordingSink::default()
        };
        let mut gate: Option<Box<FaultGate>> = None;
        let mut tally = ReplyTally::default();
        let mut out = Vec::new();
        let mut call = |session: &mut Session, recorder: &mut Recorder, input: &[u8]| {
            let before = out.len();
            let progress = session.on_input(
                &config,
                input,
                &mut Replies::new(&mut out, &mut tally),
                &mut sink,
                &mut gate,
            );
            recorder.on_call(
                &input[..progress.consumed],
                &out[before..],
                &mut marks(&mut sink),
                now,
            );
            progress
        };
        call(&mut session, &mut recorder, b"");
        // Plaintext behind STARTTLS (an injection attempt) is thrown away, not shown.
        let progress = call(
            &mut session,
            &mut recorder,
            b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@test>\r\n",
        );
        assert_eq!(progress.wait, Some(Wait::StartTls));
        let info = TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            sni: None,
            resumed: false,
        };
        recorder.on_tls(&info, now);
        let mut out2 = Vec::new();
        session.resume(
            &config,
            Resume::TlsStarted(info),
            &mut Replies::new(&mut out2, &mut ReplyTally::default()),
            &mut RecordingSink::default(),
        );
        recorder.on_call(&[], &out2, &mut Marks::default(), now);
        call(
            &mut session,
            &mut recorder,
            b"EHLO c\r\nMAIL FROM:<a@test>\r\nRCPT TO:<b@test>\r\nDATA\r\nx\r\n.\r\n",
        );
        let (_, transcript) = &recorder.handed[0];
        let shown: Vec<String> = lines(transcript)
            .map(|l| {
                format!(
                    "{}: {}",
                    l.dir.letter() as char,
                    String::from_utf8_lossy(l.text)
                )
            })
            .collect();
        let at = shown.iter().position(|l| l == "C: STARTTLS").unwrap();
        assert_eq!(shown[at + 1], "S: 220 2.0.0 Ready to start TLS");
        assert_eq!(shown[at + 2], "*: [TLS: TLSv1.3 TLS_AES_128_GCM_SHA256]");
        assert_eq!(shown[at + 3], "C: EHLO c");
        assert!(!shown.iter().any(|l| l.contains("evil")), "{shown:?}");
    }

    #[test]
    fn later_messages_share_one_preamble_rendered_once() {
        let capture = Arc::new(Capture::new(Limits::default(), OnFull::EvictOldest));
        let now = Instant::now();
        let mut recorder = Recorder::new(capture, now, 512);
        let mut marks = Marks::default();
        recorder.on_call(b"", b"220 mx ESMTP\r\n", &mut marks, now);
        let ehlo_reply = b"250-mx\r\n250 PIPELINING\r\n";
        recorder.on_call(b"EHLO c\r\n", ehlo_reply, &mut marks, now);
        let mut shared = Vec::new();
        for n in 1..=3 {
            recorder.on_call(
                b"MAIL FROM:<a@t>\r\nRCPT TO:<b@t>\r\nDATA\r\n",
                b"250 Ok\r\n250 Ok\r\n354 Go\r\n",
                &mut marks,
                now,
            );
            let mut marks = Marks {
                content_ends: vec![(6, 3)],
                kept: Vec::new(),
            };
            let reply = format!("250 2.0.0 Ok: queued as Q{n}\r\n");
            recorder.on_call(b"x\r\n.\r\n", reply.as_bytes(), &mut marks, now);
            shared.push(recorder.shared.clone());
        }
        let preamble = b"S 0 220 mx ESMTP\nC 0 EHLO c\nS 0 250-mx\nS 0 250 PIPELINING\n";
        let transaction = |n: u32| {
            format!(
                "C 0 MAIL FROM:<a@t>\nS 0 250 Ok\nC 0 RCPT TO:<b@t>\nS 0 250 Ok\nC 0 DATA\n\
                 S 0 354 Go\nC 0 [content: 3 octets]\nS 0 250 2.0.0 Ok: queued as Q{n}\n"
            )
        };
        // The first message has the whole session; the later ones the preamble then their own.
        for (n, (_, text)) in (1..).zip(&recorder.handed) {
            let mut want = preamble.to_vec();
            want.extend_from_slice(transaction(n).as_bytes());
            assert_eq!(
                String::from_utf8_lossy(text),
                String::from_utf8_lossy(&want)
            );
        }
        // One piece for them: rendered at the second message, not again at the third.
        assert!(shared[0].is_none());
        let (second, third) = (shared[1].as_ref().unwrap(), shared[2].as_ref().unwrap());
        assert_eq!(&second[..], &preamble[..]);
        assert!(Arc::ptr_eq(second, third));
    }
}
