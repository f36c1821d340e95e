//! A corpus message's wire form, made as its bytes stream past in pieces of any size.
//!
//! What it does, in one pass with a few bits of state carried between pieces:
//! * line ends: CR LF stays; a bare LF becomes CR LF (RFC 5321 §2.3.8: lines end in CR LF
//!   only). A bare CR (one not followed by LF) is left as it is and counted: it is not a line
//!   end in the files this reads (Unix mbox and `.eml` files), and turning it into one would
//!   change the message; a strict server refuses such a message (fastsmtpd does, with
//!   `550 5.5.2`), which is then what the run measures.
//! * the end: a message whose last line has no line end gets CR LF (a message ending in a bare
//!   CR gets the LF that makes it CR LF), since DATA content is lines (RFC 5321 §4.1.1.4) and
//!   the stored form should be the same by DATA and by BDAT.
//! * mboxrd un-quoting (`mboxrd` only): a line that starts with one or more `>` followed by
//!   `From ` loses one `>` (the quoting the mbox writer added).
//! * DATA only: dot-stuffing (RFC 5321 §4.5.2: a line starting with `.` gets one more) and the
//!   terminating `.` line. BDAT (RFC 3030) sends the same bytes without either.
//!
//! [`Encoder::stored`] counts the bytes the server keeps (no stuffing, no terminator): the
//! message size the index announces in `BDAT n LAST` and the statistics use.
//!
//! What it does not do: read files or find messages (`corpus`, `mbox`).

use memchr::{memchr, memchr_iter};

/// The mboxrd quoted-line prefix after its `>`s.
const FROM: &[u8] = b"From ";

/// How the content travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// DATA: dot-stuffed, ended by the `.` line.
    Data,
    /// BDAT: the octets as they are (after the line-end normalisation).
    Bdat,
}

/// Where encoded bytes go.
pub trait Emit {
    /// Takes the next bytes.
    fn emit(&mut self, bytes: &[u8]);
}

impl Emit for Vec<u8> {
    fn emit(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes and keeps none (indexing).
#[derive(Debug, Default)]
pub struct Discard;

impl Emit for Discard {
    fn emit(&mut self, _bytes: &[u8]) {}
}

/// What the encoder changed or noticed in one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Notes {
    /// Bare LFs turned into CR LF.
    pub bare_lf: u64,
    /// Bare CRs left as they are.
    pub bare_cr: u64,
    /// A line end was added at the end (the last line had none).
    pub final_line_end: bool,
    /// mboxrd: `>From ` lines un-quoted.
    pub unquoted: u64,
    /// Octets above 127 (the message is sent with `BODY=8BITMIME` where offered, RFC 6152).
    pub eight_bit: bool,
}

/// A `>`... `From ` prefix being matched at a line start (mboxrd).
#[derive(Debug, Default, Clone, Copy)]
struct Quote {
    /// `>`s seen.
    gts: u32,
    /// Bytes of `From ` matched after them.
    from: usize,
}

/// The streaming encoder of one message.
#[derive(Debug)]
pub struct Encoder {
    /// DATA or BDAT.
    form: Form,
    /// Un-quote mboxrd `>From ` lines.
    mboxrd: bool,
    /// The next byte begins a line.
    line_start: bool,
    /// The last byte taken was a CR (already emitted): an LF next completes CR LF.
    prev_cr: bool,
    /// A quoted-line prefix being matched (its bytes not emitted yet).
    quote: Option<Quote>,
    /// Bytes of the message as stored (no stuffing, no terminator).
    stored: u64,
    /// What was changed or noticed.
    notes: Notes,
}

impl Encoder {
    /// An encoder for one message.
    pub fn new(form: Form, mboxrd: bool) -> Encoder {
        Encoder {
            form,
            mboxrd,
            line_start: true,
            prev_cr: false,
            quote: None,
            stored: 0,
            notes: Notes::default(),
        }
    }

    /// Bytes of the message as the server stores it, so far.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// What was changed or noticed, so far.
    pub fn notes(&self) -> Notes {
        self.notes
    }

    /// Message bytes: emitted as they are stored.
    fn put(&mut self, out: &mut impl Emit, bytes: &[u8]) {
        self.stored += bytes.len() as u64;
        self.notes.eight_bit |= !bytes.is_ascii();
        out.emit(bytes);
    }

    /// `n` times `>`.
    fn put_gts(&mut self, out: &mut impl Emit, n: u32) {
        for _ in 0..n {
            self.put(out, b">");
        }
    }

    /// Takes the next piece of the raw message.
    pub fn encode(&mut self, mut input: &[u8], out: &mut impl Emit) {
        if self.prev_cr && input.first().is_some_and(|&b| b != b'\n') {
            // The CR that ended the last piece was not followed by LF.
            self.notes.bare_cr += 1;
            self.prev_cr = false;
        }
        while !input.is_empty() {
            if self.line_start {
                self.line_start = false;
                match input[0] {
                    // RFC 5321 §4.5.2: the stuffed dot is not part of the message.
                    b'.' if self.form == Form::Data => out.emit(b"."),
                    b'>' if self.mboxrd => self.quote = Some(Quote::default()),
                    _ => {}
                }
            }
            if let Some(mut quote) = self.quote.take() {
                let mut used = 0;
                let mut resolved = false;
                for &b in input {
                    if quote.from == 0 && b == b'>' {
                        quote.gts += 1;
                    } else if b == FROM[quote.from] {
                        quote.from += 1;
                        if quote.from == FROM.len() {
                            used += 1;
                            // mboxrd: one `>` less.
                            self.put_gts(out, quote.gts - 1);
                            self.put(out, FROM);
                            self.notes.unquoted += 1;
                            resolved = true;
                            break;
                        }
                    } else {
                        // Not a quoted From line: its bytes as they were.
                        self.put_gts(out, quote.gts);
                        self.put(out, &FROM[..quote.from]);
                        resolved = true;
                        break;
                    }
                    used += 1;
                }
                input = &input[used..];
                if !resolved {
                    // The piece ended inside the prefix.
                    self.quote = Some(quote);
                    return;
                }
                continue;
            }
            match memchr(b'\n', input) {
                Some(at) => {
                    let line = &input[..at];
                    let cr_before = match line.last() {
                        Some(&b) => b == b'\r',
                        None => self.prev_cr,
                    };
                    let crs = memchr_iter(b'\r', line).count();
                    self.notes.bare_cr += (crs - usize::from(cr_before && at > 0)) as u64;
                    self.put(out, line);
                    if cr_before {
                        self.put(out, b"\n");
                    } else {
                        self.put(out, b"\r\n");
                        self.notes.bare_lf += 1;
                    }
                    self.prev_cr = false;
                    self.line_start = true;
                    input = &input[at + 1..];
                }
                None => {
                    let ends_cr = input.last() == Some(&b'\r');
                    let crs = memchr_iter(b'\r', input).count();
                    self.notes.bare_cr += (crs - usize::from(ends_cr)) as u64;
                    self.put(out, input);
                    self.prev_cr = ends_cr;
                    input = &[];
                }
            }
        }
    }

    /// The message ended: completes its last line, and for DATA writes the `.` line.
    pub fn finish(&mut self, out: &mut impl Emit) {
        if let Some(quote) = self.quote.take() {
            self.put_gts(out, quote.gts);
            self.put(out, &FROM[..quote.from]);
        }
        if self.prev_cr {
            self.put(out, b"\n");
            self.notes.final_line_end = true;
        } else if !self.line_start {
            self.put(out, b"\r\n");
            self.notes.final_line_end = true;
        }
        self.prev_cr = false;
        self.line_start = true;
        if self.form == Form::Data {
            out.emit(b".\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::workload::Rng;

    /// The rules, one line at a time over the whole message: the reference the streaming
    /// encoder must match at every split.
    fn reference(message: &[u8], form: Form, mboxrd: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pieces: Vec<&[u8]> = message.split(|&b| b == b'\n').collect();
        // The piece after the last LF is the unterminated last line (empty: there is none).
        let tail = pieces.pop().unwrap_or(b"");
        let line = |text: &[u8], out: &mut Vec<u8>| {
            let mut text = text;
            let quoted = mboxrd && {
                let rest = &text[text.iter().take_while(|&&b| b == b'>').count()..];
                text.first() == Some(&b'>') && rest.starts_with(b"From ")
            };
            if quoted {
                text = &text[1..];
            }
            if form == Form::Data && text.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(text);
        };
        for piece in pieces {
            line(piece.strip_suffix(b"\r").unwrap_or(piece), &mut out);
            out.extend_from_slice(b"\r\n");
        }
        if !tail.is_empty() {
            match tail.strip_suffix(b"\r") {
                Some(text) => {
                    line(text, &mut out);
                    out.extend_from_slice(b"\r\n");
                }
                None => {
                    line(tail, &mut out);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        if form == Form::Data {
            out.extend_from_slice(b".\r\n");
        }
        out
    }

    /// Encodes `message` cut at `cuts` (offsets, ascending).
    fn encode(message: &[u8], cuts: &[usize], form: Form, mboxrd: bool) -> (Vec<u8>, Encoder) {
        let mut encoder = Encoder::new(form, mboxrd);
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&message.len()]) {
            encoder.encode(&message[from..cut], &mut out);
            from = cut;
        }
        encoder.finish(&mut out);
        (out, encoder)
    }

    #[test]
    fn a_table_of_messages() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            // (raw, DATA wire, BDAT wire), mboxrd
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n", b"a\r\nb\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n.\r\n", b"a\r\nb\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n", b"a\r\nb\r\n"),
            (b"a\r\nb\r", b"a\r\nb\r\n.\r\n", b"a\r\nb\r\n"),
            (b".\n..x\n", b"..\r\n...x\r\n.\r\n", b".\r\n..x\r\n"),
            (b"x\n.", b"x\r\n..\r\n.\r\n", b"x\r\n.\r\n"),
            (b"a\rb\n", b"a\rb\r\n.\r\n", b"a\rb\r\n"),
            (b">From x\n", b"From x\r\n.\r\n", b"From x\r\n"),
            (b">>From x\n", b">From x\r\n.\r\n", b">From x\r\n"),
            (
                b">Fro\n>From",
                b">Fro\r\n>From\r\n.\r\n",
                b">Fro\r\n>From\r\n",
            ),
            (b"a >From\n", b"a >From\r\n.\r\n", b"a >From\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        ];
        for &(raw, data, bdat) in cases {
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(encode(raw, &[], Form::Data, true).0, data, "{shown:?}");
            let (out, encoder) = encode(raw, &[], Form::Bdat, true);
            assert_eq!(out, bdat, "{shown:?}");
            assert_eq!(encoder.stored(), bdat.len() as u64, "{shown:?}");
        }
    }

    #[test]
    fn notes_count_what_changed() {
        let (_, e) = encode(b"a\nb\r\nc\rd\n>From x\ne", &[], Form::Data, true);
        assert_eq!(
            e.notes(),
            Notes {
                bare_lf: 3,
                bare_cr: 1,
                final_line_end: true,
                unquoted: 1,
                eight_bit: false,
            }
        );
        let (_, e) = encode("Subject: café\n".as_bytes(), &[], Form::Data, false);
        assert!(e.notes().eight_bit);
        // A CR at the end of one piece and the LF at the start of the next make CR LF.
        let (out, e) = encode(b"a\r\nb\rc", &[2, 5], Form::Bdat, false);
        assert_eq!(out, b"a\r\nb\rc\r\n");
        assert_eq!(e.notes().bare_cr, 1);
        assert_eq!(e.notes().bare_lf, 0);
        // Without mboxrd, quoted lines stay quoted.
        assert_eq!(
            encode(b">From x\n", &[], Form::Bdat, false).0,
            b">From x\r\n"
        );
    }

    #[test]
    fn every_split_point_matches_the_reference() {
        let message: &[u8] = b">From a\n.\r\n..b\n>>From c\r\n\rx\r\n>Fr\n.\xe9\xc3\xa9\n>\n>From";
        for form in [Form::Data, Form::Bdat] {
            for mboxrd in [false, true] {
                let expected = reference(message, form, mboxrd);
                for a in 0..=message.len() {
                    for b in a..=message.len() {
                        let (out, _) = encode(message, &[a, b], form, mboxrd);
                        assert_eq!(out, expected, "cuts {a} {b} {form:?} mboxrd {mboxrd}");
                    }
                }
            }
        }
    }

    #[test]
    fn random_messages_match_the_reference_cut_anywhere() {
        let alphabet = b"\r\n.>From ax\xe9";
        let mut rng = Rng::new(42);
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 40) as usize;
            let message: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize])
                .collect();
            let mut cuts: Vec<usize> = (0..(rng.next_u64() % 4))
                .map(|_| (rng.next_u64() % (len as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            let form = if rng.next_u64() % 2 == 0 {
                Form::Data
            } else {
                Form::Bdat
            };
            let mboxrd = rng.next_u64() % 2 == 0;
            let (out, encoder) = encode(&message, &cuts, form, mboxrd);
            assert_eq!(
                out,
                reference(&message, form, mboxrd),
                "{:?} cut at {cuts:?}, {form:?}, mboxrd {mboxrd}",
                String::from_utf8_lossy(&message)
            );
            let stored = reference(&message, Form::Bdat, mboxrd).len() as u64;
            assert_eq!(encoder.stored(), stored);
            // DATA content never holds an early end of data, and has no bare LF.
            if form == Form::Data {
                let body = &out[..out.len() - 3];
                assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
                assert!(!(body.starts_with(b".\r\n")));
            }
            for (i, &b) in out.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(out[i - 1], b'\r');
                }
            }
        }
    }
}
