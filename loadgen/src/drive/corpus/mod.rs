//! Real messages to send: a directory of `.eml` files (`--message-dir`) or an mbox file
//! (`--mbox`), indexed once at start and read again, in pieces, as each message is sent.
//!
//! What it does: [`Corpus::open_dir`] and [`Corpus::open_mbox`] read the whole corpus once,
//! in pieces of at most [`mbox::BUFFER`] bytes, and keep per message only where it is and how
//! big (24 bytes, plus the file name for a directory): the corpus may be far bigger than
//! memory. The same pass runs each message through the wire encoder ([`wire`]) to learn its
//! size as the server will store it (line ends normalised, mboxrd quoting undone), which is
//! what `BDAT n LAST` announces and what the statistics count, and what it changed (bare LFs,
//! a missing final line end, bare CRs left), which the run reports. An empty file is
//! refused with its name; an empty message in an mbox is skipped and counted (the mbox is
//! refused only when no message is left). There is no size cap: messages are streamed, never held whole.
//!
//! Sending: each engine thread has a [`CorpusReader`]; [`CorpusReader::open`] starts a
//! message ([`BodyStream`]) and [`CorpusReader::fill`] appends its wire form in pieces of at
//! most [`RAW_PIECE`] raw bytes to a connection's output as the socket takes it (`pread`:
//! threads share nothing). A message whose file changed since it was indexed is an error of
//! that connection, not a wrong `BDAT` count.
//!
//! Layout: [`wire`] (the streaming encoder: line ends, dot-stuffing, mboxrd un-quoting) and
//! [`mbox`] (finding messages in an mbox as it streams past).
//!
//! What it does not do: choose which message a transaction sends (`workload`), or write to
//! sockets (`engine`).

pub mod mbox;
pub mod wire;

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wire::{Discard, Encoder, Form, Notes};

/// Raw bytes read from a corpus file per [`CorpusReader::fill`].
pub const RAW_PIECE: usize = 16 * 1024;

/// Which kind of corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory of `*.eml` files, one message each.
    Dir,
    /// One mbox file (mboxrd).
    Mbox,
}

/// Where one message is and how big.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Mbox: the file offset of its first byte; directory: 0.
    offset: u64,
    /// Its raw length in the file (mbox: without the separating empty line).
    len: u64,
    /// Its size as stored (see [`wire::Encoder::stored`]).
    size: u64,
    /// Whether it holds octets above 127 (`BODY=8BITMIME`, RFC 6152).
    eight_bit: bool,
}

/// What the corpus holds, for the output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages.
    pub messages: u64,
    /// Bytes of all messages as stored.
    pub bytes: u64,
    /// Smallest message as stored.
    pub min: u64,
    /// Median message size (the lower middle of an even count).
    pub median: u64,
    /// Largest message as stored.
    pub max: u64,
    /// Messages with bare LFs converted to CR LF.
    pub bare_lf: u64,
    /// Messages that got a line end at their end.
    pub final_line_end: u64,
    /// Messages with bare CRs (sent as they are).
    pub bare_cr: u64,
    /// Mbox: messages with `>From ` lines un-quoted.
    pub unquoted: u64,
    /// Mbox: empty messages (a separator line followed by nothing but the separating empty
    /// line) left out.
    pub empty_skipped: u64,
}

/// An indexed corpus, shared read-only by every thread.
#[derive(Debug)]
pub struct Corpus {
    /// The directory or mbox file as given.
    pub path: PathBuf,
    /// Directory or mbox.
    pub kind: Kind,
    /// One entry per message, in order (directory: sorted by file name).
    entries: Vec<Entry>,
    /// Directory: every file name, one after another.
    names: Vec<u8>,
    /// Directory: where each entry's name ends in `names`.
    name_ends: Vec<usize>,
    /// What the corpus holds.
    pub summary: Summary,
}

/// Folds one message's sizes and notes into running totals.
#[derive(Debug, Default)]
struct Tally {
    /// Sizes as stored, to sort for the median at the end.
    sizes: Vec<u64>,
    /// The summary so far (sizes filled in at the end).
    summary: Summary,
}

impl Tally {
    /// Counts a message.
    fn add(&mut self, size: u64, notes: Notes) {
        self.sizes.push(size);
        let s = &mut self.summary;
        s.messages += 1;
        s.bytes += size;
        s.bare_lf += u64::from(notes.bare_lf > 0);
        s.final_line_end += u64::from(notes.final_line_end);
        s.bare_cr += u64::from(notes.bare_cr > 0);
        s.unquoted += u64::from(notes.unquoted > 0);
    }

    /// The summary, with min, median and max.
    fn finish(mut self) -> Summary {
        self.sizes.sort_unstable();
        let s = &mut self.summary;
        s.min = self.sizes.first().copied().unwrap_or(0);
        s.max = self.sizes.last().copied().unwrap_or(0);
        s.median = self
            .sizes
            .get(self.sizes.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0);
        self.summary
    }
}

impl Corpus {
    /// Indexes the `*.eml` files of `dir` (not its subdirectories), sorted by name.
    pub fn open_dir(dir: &Path) -> Result<Corpus, String> {
        let shown = |e: &dyn std::fmt::Display| format!("--message-dir {}: {e}", dir.display());
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| shown(&e))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| shown(&e))?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|ext| ext == "eml") && p.is_file())
            .collect();
        files.sort_unstable_by(|a, b| a.file_name().cmp(&b.file_name()));
        if files.is_empty() {
            return Err(shown(&"no *.eml files"));
        }
        if files.len() > u32::MAX as usize {
            return Err(shown(&"more than 2^32 messages"));
        }
        let mut entries = Vec::with_capacity(files.len());
        let mut names = Vec::new();
        let mut name_ends = Vec::with_capacity(files.len());
        let mut tally = Tally::default();
        let mut buf = vec![0u8; mbox::BUFFER];
        for path in &files {
            let file_error = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
            let mut file = File::open(path).map_err(|e| file_error(&e))?;
            let mut encoder = Encoder::new(Form::Bdat, false);
            let mut len = 0u64;
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        encoder.encode(&buf[..n], &mut Discard);
                        len += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(file_error(&e)),
                }
            }
            if len == 0 {
                return Err(file_error(&"the message is empty"));
            }
            encoder.finish(&mut Discard);
            tally.add(encoder.stored(), encoder.notes());
            entries.push(Entry {
                offset: 0,
                len,
                size: encoder.stored(),
                eight_bit: encoder.notes().eight_bit,
            });
            names.extend_from_slice(path.file_name().unwrap_or_default().as_bytes());
            name_ends.push(names.len());
        }
        Ok(Corpus {
            path: dir.to_path_buf(),
            kind: Kind::Dir,
            entries,
            names,
            name_ends,
            summary: tally.finish(),
        })
    }

    /// Indexes the messages of the mbox file `path` (mboxrd, see [`mbox`]).
    pub fn open_mbox(path: &Path) -> Result<Corpus, String> {
        let shown = |e: &dyn std::fmt::Display| format!("--mbox {}: {e}", path.display());
        let mut file = File::open(path).map_err(|e| shown(&e))?;
        let mut indexer = MboxIndexer::default();
        mbox::split(&mut file, &mut indexer).map_err(|e| shown(&e))?;
        if indexer.entries.len() > u32::MAX as usize {
            return Err(shown(&"more than 2^32 messages"));
        }
        if indexer.entries.is_empty() {
            return Err(shown(&format!(
                "no message to send: every message is empty ({} skipped)",
                indexer.empty
            )));
        }
        let mut summary = indexer.tally.finish();
        summary.empty_skipped = indexer.empty;
        Ok(Corpus {
            path: path.to_path_buf(),
            kind: Kind::Mbox,
            entries: indexer.entries,
            names: Vec::new(),
            name_ends: Vec::new(),
            summary,
        })
    }

    /// Messages in the corpus.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the corpus has no message (never: opening refuses that).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Message `index`'s size as stored.
    pub fn size(&self, index: u32) -> u64 {
        self.entries[index as usize].size
    }

    /// Whether message `index` holds octets above 127.
    pub fn is_eight_bit(&self, index: u32) -> bool {
        self.entries[index as usize].eight_bit
    }

    /// Directory: the file of message `index`.
    fn file_path(&self, index: usize) -> PathBuf {
        let start = if index == 0 {
            0
        } else {
            self.name_ends[index - 1]
        };
        let name = std::ffi::OsStr::from_bytes(&self.names[start..self.name_ends[index]]);
        self.path.join(name)
    }

    /// Message `index` named for people: its file, or the mbox and the message's number and
    /// offset.
    pub fn describe_message(&self, index: u32) -> String {
        let i = index as usize;
        match self.kind {
            Kind::Dir => self.file_path(i).display().to_string(),
            Kind::Mbox => format!(
                "{} message {} (offset {})",
                self.path.display(),
                i + 1,
                self.entries[i].offset
            ),
        }
    }

    /// The kind as the output names it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Dir => "message-dir",
            Kind::Mbox => "mbox (mboxrd)",
        }
    }

    /// One line about the corpus for the output: where, how many, sizes, what was changed.
    pub fn description(&self) -> String {
        let s = &self.summary;
        let mut line = format!(
            "corpus: {} {}: {} messages, {} bytes, size min {} median {} max {}",
            self.kind_name(),
            self.path.display(),
            s.messages,
            s.bytes,
            s.min,
            s.median,
            s.max
        );
        line.push_str(&format!(
            "; bare LF converted to CR LF in {}, line end added at the end of {}",
            s.bare_lf, s.final_line_end
        ));
        if s.bare_cr > 0 {
            line.push_str(&format!(
                ", bare CR (sent as is; strict servers refuse it) in {}",
                s.bare_cr
            ));
        }
        if self.kind == Kind::Mbox {
            line.push_str(&format!(", >From un-quoted in {}", s.unquoted));
            match s.empty_skipped {
                0 => {}
                1 => line.push_str("; 1 empty message skipped"),
                n => line.push_str(&format!("; {n} empty messages skipped")),
            }
        }
        line
    }

    /// The corpus in `--json`'s `config`.
    pub fn json(&self) -> serde_json::Value {
        let s = &self.summary;
        serde_json::json!({
            "path": self.path.display().to_string(),
            "kind": match self.kind { Kind::Dir => "message-dir", Kind::Mbox => "mbox" },
            "mbox_variant": (self.kind == Kind::Mbox).then_some("mboxrd"),
            "messages": s.messages,
            "bytes": s.bytes,
            "size_min": s.min,
            "size_median": s.median,
            "size_max": s.max,
            "bare_lf_converted": s.bare_lf,
            "final_line_end_added": s.final_line_end,
            "bare_cr_kept": s.bare_cr,
            "from_unquoted": s.unquoted,
            "empty_skipped": s.empty_skipped,
        })
    }
}

/// Builds the index of an mbox as [`mbox::split`] finds its messages.
#[derive(Debug, Default)]
struct MboxIndexer {
    /// The entries so far.
    entries: Vec<Entry>,
    /// Sizes and notes so far.
    tally: Tally,
    /// The current message's start.
    start: u64,
    /// The current message's encoder (fed all but its last two bytes, which may be the
    /// separating empty line).
    encoder: Option<Encoder>,
    /// The current message's last bytes, not yet fed.
    held: Vec<u8>,
    /// The current message's last three bytes (fewer at its start).
    last: Vec<u8>,
    /// Empty messages left out so far.
    empty: u64,
}

impl mbox::MboxSink for MboxIndexer {
    fn start(&mut self, at: u64) {
        self.start = at;
        self.encoder = Some(Encoder::new(Form::Bdat, true));
        self.held.clear();
        self.last.clear();
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let Some(encoder) = self.encoder.as_mut() else {
            return;
        };
        self.last
            .extend_from_slice(&bytes[bytes.len().saturating_sub(3)..]);
        let cut = self.last.len().saturating_sub(3);
        self.last.drain(..cut);
        // Feed everything but the last two bytes of the message so far: they may be the
        // separating empty line.
        if bytes.len() >= 2 {
            encoder.encode(&self.held, &mut Discard);
            encoder.encode(&bytes[..bytes.len() - 2], &mut Discard);
            self.held.clear();
            self.held.extend_from_slice(&bytes[bytes.len() - 2..]);
        } else {
            self.held.extend_from_slice(bytes);
            let feed = self.held.len().saturating_sub(2);
            encoder.encode(&self.held[..feed], &mut Discard);
            self.held.drain(..feed);
        }
    }

    fn end(&mut self, at: u64) -> io::Result<()> {
        let Some(mut encoder) = self.encoder.take() else {
            return Ok(());
        };
        let strip = mbox::trailing_empty_line(&self.last).min(self.held.len());
        encoder.encode(&self.held[..self.held.len() - strip], &mut Discard);
        encoder.finish(&mut Discard);
        let len = at - self.start - strip as u64;
        // Empty: nothing, or only the empty line that separates it from the next message
        // (`From a\n\nFrom b`: a line end alone is the separator, not a message).
        let raw = at - self.start;
        if len == 0 || (raw <= 2 && (self.last == b"\n" || self.last == b"\r\n")) {
            self.empty += 1;
            return Ok(());
        }
        self.tally.add(encoder.stored(), encoder.notes());
        self.entries.push(Entry {
            offset: self.start,
            len,
            size: encoder.stored(),
            eight_bit: encoder.notes().eight_bit,
        });
        Ok(())
    }
}

/// One message being sent: where the next raw bytes are, and the encoder's state.
#[derive(Debug)]
pub struct BodyStream {
    /// The message's number.
    index: u32,
    /// Directory: the message's own file (mbox: the reader's).
    file: Option<File>,
    /// Next file offset to read.
    pos: u64,
    /// File offset where the message ends.
    end: u64,
    /// The wire encoder.
    encoder: Encoder,
}

/// A thread's access to the corpus files.
#[derive(Debug)]
pub struct CorpusReader {
    /// The index.
    corpus: Arc<Corpus>,
    /// Mbox: the file, opened once per thread (read with `pread`).
    mbox: Option<File>,
    /// Raw bytes read ([`RAW_PIECE`]).
    raw: Vec<u8>,
}

impl CorpusReader {
    /// A reader of `corpus` (opens the mbox file).
    pub fn new(corpus: Arc<Corpus>) -> io::Result<CorpusReader> {
        let mbox = match corpus.kind {
            Kind::Mbox => Some(File::open(&corpus.path)?),
            Kind::Dir => None,
        };
        Ok(CorpusReader {
            corpus,
            mbox,
            raw: vec![0; RAW_PIECE],
        })
    }

    /// An error about message `index`.
    fn error(&self, index: u32, what: impl std::fmt::Display) -> io::Error {
        io::Error::other(format!("{}: {what}", self.corpus.describe_message(index)))
    }

    /// Starts sending message `index` as `form`.
    pub fn open(&self, index: u32, form: Form) -> io::Result<BodyStream> {
        let entry = self.corpus.entries[index as usize];
        let file = match self.corpus.kind {
            Kind::Mbox => None,
            Kind::Dir => {
                let file = File::open(self.corpus.file_path(index as usize))
                    .map_err(|e| self.error(index, e))?;
                let len = file.metadata().map_err(|e| self.error(index, e))?.len();
                if len != entry.len {
                    return Err(self.error(
                        index,
                        format!(
                            "changed since it was indexed ({} bytes, now {len})",
                            entry.len
                        ),
                    ));
                }
                Some(file)
            }
        };
        Ok(BodyStream {
            index,
            file,
            pos: entry.offset,
            end: entry.offset + entry.len,
            encoder: Encoder::new(form, self.corpus.kind == Kind::Mbox),
        })
    }

    /// Appends the next piece of `stream`'s wire form to `out`: at most `room` raw bytes (and
    /// at least one), or the end. Returns true once the message is complete (the `.` line
    /// written for DATA).
    pub fn fill(
        &mut self,
        stream: &mut BodyStream,
        out: &mut Vec<u8>,
        room: usize,
    ) -> io::Result<bool> {
        let left = stream.end - stream.pos;
        if left > 0 {
            let want = (left.min(self.raw.len() as u64) as usize).min(room.max(1));
            let file = match (&stream.file, &self.mbox) {
                (Some(file), _) | (None, Some(file)) => file,
                (None, None) => return Err(self.error(stream.index, "no file")),
            };
            let n = loop {
                match file.read_at(&mut self.raw[..want], stream.pos) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.error(stream.index, e)),
                }
            };
            if n == 0 {
                return Err(self.error(stream.index, "shorter than when it was indexed"));
            }
            stream.encoder.encode(&self.raw[..n], out);
            stream.pos += n as u64;
            if stream.pos < stream.end {
                return Ok(false);
            }
        }
        stream.encoder.finish(out);
        let expected = self.corpus.entries[stream.index as usize].size;
        if stream.encoder.stored() != expected {
            return Err(self.error(
                stream.index,
                format!(
                    "changed since it was indexed ({expected} bytes as sent, now {})",
                    stream.encoder.stored()
                ),
            ));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("smtp-loadgen-corpus-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Every message of `corpus` as `form`, read in pieces of `room` raw bytes.
    fn send_all(corpus: Corpus, form: Form, room: usize) -> Vec<Vec<u8>> {
        let n = corpus.len() as u32;
        let mut reader = CorpusReader::new(Arc::new(corpus)).unwrap();
        (0..n)
            .map(|i| {
                let mut stream = reader.open(i, form).unwrap();
                let mut out = Vec::new();
                while !reader.fill(&mut stream, &mut out, room).unwrap() {}
                out
            })
            .collect()
    }

    #[test]
    fn a_directory_is_indexed_in_name_order_and_sent_exactly() {
        let dir = scratch("dir");
        std::fs::write(dir.join("b.eml"), b"Subject: b\n\n.\nbody").unwrap();
        std::fs::write(dir.join("a.eml"), b"Subject: a\r\n\r\nbody\r\n").unwrap();
        std::fs::write(dir.join("c.txt"), b"not a message").unwrap();
        let corpus = Corpus::open_dir(&dir).unwrap();
        assert_eq!(corpus.len(), 2);
        let s = corpus.summary.clone();
        assert_eq!((s.messages, s.bare_lf, s.final_line_end), (2, 1, 1));
        assert_eq!((s.min, s.max, s.bytes), (20, 23, 43));
        assert_eq!(corpus.size(0), 20);
        assert!(corpus.describe_message(1).ends_with("b.eml"));
        assert!(corpus.description().contains("2 messages, 43 bytes"));
        for room in [1, 3, 1000] {
            let sent = send_all(Corpus::open_dir(&dir).unwrap(), Form::Data, room);
            assert_eq!(sent[0], b"Subject: a\r\n\r\nbody\r\n.\r\n");
            assert_eq!(sent[1], b"Subject: b\r\n\r\n..\r\nbody\r\n.\r\n");
        }
        let sent = send_all(Corpus::open_dir(&dir).unwrap(), Form::Bdat, 5);
        assert_eq!(sent[1], b"Subject: b\r\n\r\n.\r\nbody\r\n");
        // An empty message is refused with its name; so is a directory without messages.
        std::fs::write(dir.join("d.eml"), b"").unwrap();
        let error = Corpus::open_dir(&dir).unwrap_err();
        assert!(error.contains("d.eml: the message is empty"), "{error}");
        let error = Corpus::open_dir(&scratch("empty")).unwrap_err();
        assert!(error.contains("no *.eml files"), "{error}");
    }

    #[test]
    fn an_mbox_is_split_unquoted_and_sent_exactly() {
        let dir = scratch("mbox");
        let path = dir.join("box");
        std::fs::write(
            &path,
            b"From a Sat Jan  1 00:00:00 2000\nSubject: 1\n\n>From x\n>>From y\n\n\
              From b Sat Jan  1 00:00:00 2000\nSubject: 2\n\nlast",
        )
        .unwrap();
        let corpus = Corpus::open_mbox(&path).unwrap();
        assert_eq!(corpus.len(), 2);
        assert_eq!(corpus.summary.unquoted, 1);
        let expected: [&[u8]; 2] = [
            b"Subject: 1\r\n\r\nFrom x\r\n>From y\r\n",
            b"Subject: 2\r\n\r\nlast\r\n",
        ];
        assert_eq!(corpus.size(0), expected[0].len() as u64);
        assert_eq!(corpus.size(1), expected[1].len() as u64);
        for room in [1, 2, 7, 1 << 20] {
            let sent = send_all(Corpus::open_mbox(&path).unwrap(), Form::Bdat, room);
            assert_eq!(sent, expected, "room {room}");
        }
        // A changed file is noticed, not sent with a wrong size.
        let corpus = Corpus::open_mbox(&path).unwrap();
        std::fs::write(
            &path,
            b"From a Sat Jan  1 00:00:00 2000\nSubject: 1\n\nFrom",
        )
        .unwrap();
        let mut reader = CorpusReader::new(Arc::new(corpus)).unwrap();
        let mut stream = reader.open(1, Form::Bdat).unwrap();
        let error = loop {
            match reader.fill(&mut stream, &mut Vec::new(), 1000) {
                Ok(false) => {}
                Ok(true) => panic!("a changed message was sent"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(error.contains("message 2"), "{error}");
        std::fs::write(&path, b"From a\n").unwrap();
        let error = Corpus::open_mbox(&path).unwrap_err();
        assert!(
            error.contains("every message is empty (1 skipped)"),
            "{error}"
        );
        std::fs::write(&path, b"From a\n\nFrom b\n\n").unwrap();
        let error = Corpus::open_mbox(&path).unwrap_err();
        assert!(error.contains("(2 skipped)"), "{error}");
        // An empty message among others is skipped and counted, not sent as 2 bytes.
        for text in [
            &b"From a\n\nFrom b\nSubject: b\n\nbody\n"[..],
            b"From a\r\n\r\nFrom b\nSubject: b\n\nbody\n",
            b"From a\nFrom b\nSubject: b\n\nbody\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let corpus = Corpus::open_mbox(&path).unwrap();
            assert_eq!(corpus.len(), 1, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(corpus.summary.empty_skipped, 1);
            assert!(corpus.description().ends_with("; 1 empty message skipped"));
            assert_eq!(corpus.json()["empty_skipped"], 1);
            let sent = send_all(corpus, Form::Bdat, 100);
            assert_eq!(sent, [b"Subject: b\r\n\r\nbody\r\n"]);
        }
    }

    #[test]
    fn the_indexer_holds_back_the_separating_line_whatever_the_pieces() {
        use mbox::MboxSink;
        let message: &[u8] = b"a\n>From b\r\n\n";
        for cut in 0..=message.len() {
            for second in cut..=message.len() {
                let mut indexer = MboxIndexer::default();
                indexer.start(10);
                indexer.bytes(&message[..cut]);
                indexer.bytes(&message[cut..second]);
                indexer.bytes(&message[second..]);
                indexer.end(10 + message.len() as u64).unwrap();
                let entry = indexer.entries[0];
                assert_eq!(entry.len, message.len() as u64 - 1);
                assert_eq!(
                    entry.size,
                    b"a\r\nFrom b\r\n".len() as u64,
                    "{cut} {second}"
                );
            }
        }
    }
}
