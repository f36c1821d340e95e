//! A kept message's SMTP transcript, in the form the capture store keeps it: one line per
//! client line, server reply line or note, each `D AT TEXT\n` where `D` is `C` (client), `S`
//! (server) or `*` (a note: the TLS version after STARTTLS, lines left out), `AT` the
//! milliseconds since the connection opened, in decimal, and `TEXT` the line without its
//! `CR LF`, control characters shown as `?`.
//!
//! A message's transcript is two pieces ([`Transcript`]): the session's preamble (greeting,
//! `EHLO`, `STARTTLS`, AUTH), shared by every later message of its connection, then the
//! message's own lines; read back, they are one text, the preamble first.
//!
//! What it does: the limits ([`TRANSCRIPT_MAX`], [`TRANSCRIPT_OVERHEAD`]), writing one line
//! ([`push_line`]), reading lines back ([`lines`]), and the store's side table of kept
//! transcripts ([`Kept`]), which charges a shared preamble once, however many messages point
//! to it. The recording (which line is a command, a content, an AUTH secret) is the server's
//! connection's job; rendering as text or JSON is the API's.

use crate::proto::sink::QueueId;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// The most octets a transcript keeps for one message: past it the middle is left out, with
/// a note saying how many lines and octets.
pub const TRANSCRIPT_MAX: usize = 8 << 10;

/// What the budget charges for a transcript beyond its octets: its slot in the store's side
/// table (a 16-octet `Bytes` handle and 8-octet key at a hash table's load, ~40) and the
/// allocation's header (8).
pub const TRANSCRIPT_OVERHEAD: usize = 48;

/// What the budget charges for a shared preamble beyond its octets, once for all the
/// transcripts pointing to it: its allocation with the reference counts (16 + 8) and its slot
/// in [`Kept`]'s table of preambles (~24 at a hash table's load).
pub const PREAMBLE_OVERHEAD: usize = 48;

/// The longest text of one line kept (a command line is at most 512 octets, RFC 5321
/// §4.5.3.1.4, plus extensions' 36; a reply line 512): longer text is cut, ending `...`.
pub const LINE_TEXT_MAX: usize = 600;

/// What a connection's sink saw during one call into the session that its transcript
/// recorder needs, taken by the recorder after each call (so it holds one call's worth):
/// where DATA content ended (the recorder never scans content) and which messages went into
/// the capture store under which seq (the transcript is attached by seq, no id lookup).
#[derive(Debug, Default)]
pub struct Marks {
    /// Each end of DATA content in the call: the offset in the call's input just past its
    /// end line, and the content octets as kept.
    pub content_ends: Vec<(usize, u64)>,
    /// Each message inserted during the call: its id and seq.
    pub kept: Vec<(QueueId, u64)>,
}

impl Marks {
    /// Forgets the call's marks (the buffers keep their room).
    pub fn clear(&mut self) {
        self.content_ends.clear();
        self.kept.clear();
    }
}

/// Who said a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The client.
    Client,
    /// The server.
    Server,
    /// Neither: a note (TLS negotiated, lines left out).
    Note,
}

impl Dir {
    /// Its letter: `C`, `S` or `*`.
    pub fn letter(self) -> u8 {
        match self {
            Dir::Client => b'C',
            Dir::Server => b'S',
            Dir::Note => b'*',
        }
    }

    /// The direction of a letter.
    fn from_letter(letter: u8) -> Option<Dir> {
        match letter {
            b'C' => Some(Dir::Client),
            b'S' => Some(Dir::Server),
            b'*' => Some(Dir::Note),
            _ => None,
        }
    }
}

/// One line read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Who said it.
    pub dir: Dir,
    /// Milliseconds since the connection opened.
    pub at_ms: u64,
    /// The text (no control characters).
    pub text: &'a [u8],
}

/// The start of a line, `D AT `, made once for the lines of one time (a recorder writes
/// several lines with one time) and copied whole into each line: a copy of a fixed size, no
/// call, its letter set after.
#[derive(Debug, Clone, Copy)]
pub struct LineHead {
    /// `? AT ` and spaces after.
    bytes: [u8; 24],
    /// How many of them are the head.
    len: u8,
}

impl LineHead {
    /// The head of lines at `at_ms`.
    pub fn new(at_ms: u64) -> LineHead {
        let mut bytes = [b' '; 24];
        let mut buffer = itoa::Buffer::new();
        // At most 20 digits: a u64.
        let digits = buffer.format(at_ms).as_bytes();
        bytes[2..2 + digits.len()].copy_from_slice(digits);
        LineHead {
            bytes,
            len: (3 + digits.len()) as u8,
        }
    }

    /// The time in decimal.
    pub fn at(&self) -> &[u8] {
        &self.bytes[2..usize::from(self.len) - 1]
    }

    /// Its octets in a line.
    pub fn octets(&self) -> usize {
        usize::from(self.len)
    }
}

/// Appends one line: `text` cut to [`LINE_TEXT_MAX`] octets, a client's control characters
/// as `?` (the server's replies and notes have none). The octets appended.
pub fn push_line(out: &mut Vec<u8>, dir: Dir, at_ms: u64, text: &[u8]) -> usize {
    push_line_at(out, dir, &LineHead::new(at_ms), text)
}

/// [`push_line`] with the head made already (`head`: see [`LineHead`]).
#[inline]
pub fn push_line_at(out: &mut Vec<u8>, dir: Dir, head: &LineHead, text: &[u8]) -> usize {
    let (kept, cut) = if text.len() > LINE_TEXT_MAX {
        (&text[..LINE_TEXT_MAX], true)
    } else {
        (text, false)
    };
    let len = head.octets() + kept.len() + if cut { 3 } else { 0 } + 1;
    // One growth check for the line, not one per piece (with room for the whole head).
    out.reserve(len + head.bytes.len());
    let start = out.len();
    out.extend_from_slice(&head.bytes);
    out[start] = dir.letter();
    out.truncate(start + head.octets());
    let start_text = out.len();
    out.extend_from_slice(kept);
    // Replies and notes are the server's own text; a client's line may hold anything.
    if dir == Dir::Client && has_control(kept) {
        for b in &mut out[start_text..] {
            if *b < 0x20 || *b == 0x7f {
                *b = b'?';
            }
        }
    }
    if cut {
        out.extend_from_slice(b"...");
    }
    out.push(b'\n');
    len
}

/// Whether `text` holds a control character (below `0x20`, or `0x7f`), eight octets at a
/// time: a command line almost never does, so the per-octet replacement runs only when it
/// must.
fn has_control(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let mut octets = [0; 8];
        octets.copy_from_slice(word);
        let x = u64::from_ne_bytes(octets);
        // An octet below 0x20 (`x - 0x20` borrows into its high bit where `x`'s is clear),
        // or one equal to 0x7f (zero after `^ 0x7f`): exact as a test of any octet.
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let del = x ^ (ONES * 0x7f);
        let del = del.wrapping_sub(ONES) & !del;
        if (below | del) & HIGH != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// A message's transcript as handed to the store: the connection's preamble, if the message
/// shares it (a connection's later messages), then the message's own lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The session's preamble, shared by the connection's messages.
    pub preamble: Option<Arc<[u8]>>,
    /// The message's own lines (for a connection's first message, the whole session).
    pub own: Bytes,
}

impl From<Bytes> for Transcript {
    /// A transcript all of its own.
    fn from(own: Bytes) -> Transcript {
        Transcript {
            preamble: None,
            own,
        }
    }
}

impl Transcript {
    /// The whole text, preamble first (a copy only when there is a preamble).
    pub fn text(&self) -> Bytes {
        match &self.preamble {
            None => self.own.clone(),
            Some(preamble) => {
                let mut text = Vec::with_capacity(preamble.len() + self.own.len());
                text.extend_from_slice(preamble);
                text.extend_from_slice(&self.own);
                Bytes::from(text)
            }
        }
    }

    /// What the budget charges for its own octets (the preamble is charged by [`Kept`]).
    fn own_charge(&self) -> u64 {
        (self.own.len() + TRANSCRIPT_OVERHEAD) as u64
    }
}

/// The store's kept transcripts, by the seq of their message (a side table: a message without
/// one, every message when nothing records them, costs nothing here), and the preambles they
/// share, each charged once: when the first transcript pointing to it comes, given back when
/// the last one goes.
#[derive(Debug, Default)]
pub struct Kept {
    /// Seq -> transcript.
    by_seq: HashMap<u64, Transcript, BuildHasherDefault<SeqHasher>>,
    /// A preamble's address -> how many kept transcripts point to it.
    preambles: HashMap<u64, u32, BuildHasherDefault<SeqHasher>>,
}

/// A hasher for keys that are seqs or a preamble's address (the store's own numbers, never
/// a sender's): one multiplication spreads them over the table's buckets and control bytes
/// (Fibonacci hashing), where SipHash would cost ~20 times as much per insert and removal.
#[derive(Debug, Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A preamble's key in [`Kept`]: its address (unique while a transcript, so the table, holds
/// it).
fn preamble_key(preamble: &Arc<[u8]>) -> u64 {
    Arc::as_ptr(preamble).cast::<u8>() as usize as u64
}

/// What the budget charges for a preamble.
fn preamble_charge(preamble: &Arc<[u8]>) -> u64 {
    (preamble.len() + PREAMBLE_OVERHEAD) as u64
}

impl Kept {
    /// Whether the message numbered `seq` has a transcript kept.
    pub fn contains(&self, seq: u64) -> bool {
        self.by_seq.contains_key(&seq)
    }

    /// What keeping `transcript` would charge now: its own octets, and its preamble's if no
    /// kept transcript points to that yet.
    pub fn charge_of(&self, transcript: &Transcript) -> u64 {
        let preamble = transcript
            .preamble
            .as_ref()
            .filter(|preamble| !self.preambles.contains_key(&preamble_key(preamble)));
        transcript.own_charge() + preamble.map_or(0, preamble_charge)
    }

    /// Keeps `transcript` for `seq` (which has none); what it was charged
    /// ([`Kept::charge_of`] just before).
    pub fn insert(&mut self, seq: u64, transcript: Transcript) -> u64 {
        let mut charge = transcript.own_charge();
        if let Some(preamble) = &transcript.preamble {
            let holders = self.preambles.entry(preamble_key(preamble)).or_insert(0);
            if *holders == 0 {
                charge += preamble_charge(preamble);
            }
            *holders += 1;
        }
        self.by_seq.insert(seq, transcript);
        charge
    }

    /// Drops the transcript of `seq`, if kept; what is given back to the budget.
    pub fn remove(&mut self, seq: u64) -> u64 {
        let Some(transcript) = self.by_seq.remove(&seq) else {
            return 0;
        };
        let mut charge = transcript.own_charge();
        if let Some(preamble) = &transcript.preamble {
            let key = preamble_key(preamble);
            if let Some(holders) = self.preambles.get_mut(&key) {
                *holders -= 1;
                if *holders == 0 {
                    self.preambles.remove(&key);
                    charge += preamble_charge(preamble);
                }
            }
        }
        charge
    }

    /// The text of `seq`'s transcript, if kept (see [`Transcript::text`]).
    pub fn text(&self, seq: u64) -> Option<Bytes> {
        self.by_seq.get(&seq).map(Transcript::text)
    }

    /// The seqs with a transcript.
    #[cfg(test)]
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_seq.keys().copied()
    }

    /// What they are charged together, counted again, and whether the table of preambles
    /// agrees with the transcripts.
    #[cfg(test)]
    pub fn charged(&self) -> Result<u64, String> {
        let mut holders: HashMap<u64, u32> = HashMap::new();
        let mut charge = 0;
        for transcript in self.by_seq.values() {
            charge += transcript.own_charge();
            if let Some(preamble) = &transcript.preamble {
                let count = holders.entry(preamble_key(preamble)).or_insert(0);
                if *count == 0 {
                    charge += preamble_charge(preamble);
                }
                *count += 1;
            }
        }
        let table: HashMap<u64, u32> = self.preambles.iter().map(|(&k, &v)| (k, v)).collect();
        if holders != table {
            return Err(format!("preamble holders {holders:?}, table {table:?}"));
        }
        Ok(charge)
    }
}

/// The lines of a kept transcript, in order (a malformed line is skipped).
pub fn lines(kept: &[u8]) -> impl Iterator<Item = Line<'_>> {
    kept.split(|&b| b == b'\n').filter_map(|line| {
        let (&letter, rest) = line.split_first()?;
        let dir = Dir::from_letter(letter)?;
        let rest = rest.strip_prefix(b" ")?;
        let space = rest.iter().position(|&b| b == b' ')?;
        let at_ms = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        Some(Line {
            dir,
            at_ms,
            text: &rest[space + 1..],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_wherever_they_are() {
        let plain: Vec<u8> = (0x20..0x7f).chain(0x80..=0xff).collect();
        assert!(!has_control(&plain));
        for len in 0..20 {
            for at in 0..len {
                for bad in (0..0x20).chain([0x7f]) {
                    let mut text = vec![b'a'; len];
                    text[at] = bad;
                    assert!(has_control(&text), "{bad:#x} at {at} of {len}");
                }
            }
            assert!(!has_control(&vec![0xff; len]));
            assert!(!has_control(&vec![0x80; len]));
            assert!(!has_control(&vec![b' '; len]));
        }
    }

    #[test]
    fn lines_read_back_as_written() {
        let mut kept = Vec::new();
        push_line(&mut kept, Dir::Server, 0, b"220 mx.test ESMTP");
        push_line(&mut kept, Dir::Client, 12, b"EHLO a b\r\x00");
        push_line(&mut kept, Dir::Note, 13, b"");
        let long = vec![b'x'; LINE_TEXT_MAX + 10];
        push_line(&mut kept, Dir::Client, 14, &long);
        let read: Vec<Line<'_>> = lines(&kept).collect();
        assert_eq!(read.len(), 4);
        assert_eq!(read[0].text, b"220 mx.test ESMTP");
        assert_eq!((read[1].dir, read[1].at_ms), (Dir::Client, 12));
        assert_eq!(read[1].text, b"EHLO a b??");
        assert_eq!((read[2].dir, read[2].text), (Dir::Note, &b""[..]));
        assert_eq!(read[3].text.len(), LINE_TEXT_MAX + 3);
        assert!(read[3].text.ends_with(b"x..."));
    }
}
