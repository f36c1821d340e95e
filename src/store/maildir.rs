//! `maildir:DIR`: one file per message in a standard Maildir, readable by any mail client.
//!
//! What it does: write each message to `tmp/` under a unique name as its content streams in,
//! in the form Maildir readers expect (Postfix's `local`, Dovecot, qmail, mutt, Python's
//! `mailbox`): lines end in LF, not the CR LF of the wire (RFC 5321 §2.3.8 ends SMTP lines in
//! CR LF; a Maildir file is a local file, and readers show a CR left in it as `^M`). On top,
//! the lines a delivery adds: `Return-Path:` (RFC 5321 §4.4), one `X-Original-To:` per
//! accepted recipient in RCPT order (as Postfix's `local` writes it), and `Received:`. For a
//! batch of complete messages, make all their contents durable together (one sync), rename
//! them into `new/`, and `fsync` `new/` once (group commit: two flushes per batch instead of
//! one per message; the sequence, shared with the other stores, is in `commit`). A message
//! counts as stored only after all of that, in every store. Any failure removes the file from
//! `tmp/` (or from `new/`, if a later step or another store refused the message), so `new/`
//! never holds a partial message, nor one the client was told `451` for.
//!
//! Line ends: `LfConverter` turns every CR LF of the content into LF as the chunks go past
//! (a CR at the end of a chunk waits for the next one's first byte), so nothing is held but
//! one chunk. A CR or LF on its own (only kept with `--bare-lf keep`) stays as it came. The
//! `.eml` store keeps the wire's bytes exactly; the records' `size` and `sha256` describe
//! those bytes, not this file.
//!
//! One file per message, not one per recipient: every recipient of the transaction is in
//! the one file's `X-Original-To:` lines, so a test finds a BCC recipient (one that no `To:`
//! or `Cc:` shows) there and in the JSON record's `rcpt_to`. One copy per recipient, each
//! with its own `Delivered-To:` as Postfix's `local` writes into each mailbox, would store
//! the message N times in the one directory (1000 recipients of a 10 MB message: 10 GB
//! written and synced), and `link(2)` cannot share the body between the copies since each
//! file's header differs. `Delivered-To:` is not written: it marks a final delivery, and
//! Postfix refuses a message that comes back to an address it names (a mail loop), so a kept
//! message could not be sent again to the same recipients through Postfix.
//!
//! Names follow the Maildir convention `<seconds>.M<micros>P<pid>Q<sequence>.<host>,S=<size>`:
//! the part before the host is the message's id (the one the `250` names), `S=` the file's
//! size (Dovecot reads it), and `/` and `:` in the host name are escaped as the convention
//! asks.
//!
//! What it does not do: deliver to `cur/`, set flags, or split by recipient.

use super::durable::Staged;
use super::record::{trace_headers, MessageMeta};

use std::io;
use std::path::{Path, PathBuf};

/// A Maildir target.
#[derive(Debug)]
pub struct Maildir {
    /// `DIR/tmp`: files being written.
    tmp: PathBuf,
    /// `DIR/new`: complete, durable messages.
    new: PathBuf,
    /// The server's name, for `Received:`.
    hostname: String,
    /// The host part of file names, escaped.
    name_host: String,
}

impl Maildir {
    /// Opens (creating if needed, with missing parents) the Maildir at `dir`.
    pub fn open(dir: &Path, hostname: &str) -> io::Result<Maildir> {
        for sub in ["tmp", "new", "cur"] {
            super::durable::create_dir_all_durably(&dir.join(sub))?;
        }
        let name_host = hostname.replace('/', "\\057").replace(':', "\\072");
        Ok(Maildir {
            tmp: dir.join("tmp"),
            new: dir.join("new"),
            hostname: hostname.to_string(),
            name_host,
        })
    }

    /// The message's name: `<id>.<host>`, with `,S=<size>` once the size is known.
    fn file_name(&self, meta: &MessageMeta, size: Option<u64>) -> String {
        match size {
            Some(size) => format!("{}.{},S={size}", meta.id, self.name_host),
            None => format!("{}.{}", meta.id, self.name_host),
        }
    }

    /// Starts a message's file in `tmp/`, with the delivery's lines on top.
    pub(super) fn begin(&self, meta: &MessageMeta) -> io::Result<Staged> {
        let name = self.file_name(meta, None);
        Staged::write(
            self.tmp.join(&name),
            self.new.join(&name),
            &[delivery_headers(meta, &self.hostname).as_bytes()],
        )
    }

    /// The content is complete: the file is bound for `new/` under its name with the size.
    pub(super) fn finish(&self, meta: &MessageMeta, mut file: Staged) -> Vec<Staged> {
        let name = self.file_name(meta, Some(file.len()));
        file.set_destination(self.new.join(name));
        vec![file]
    }

    /// Where complete messages go: `new/`. A batch is committed there (`commit`): every
    /// file already written to `tmp/`, their data synced together, then renamed into `new/`,
    /// then `new/` synced, so a name in `new/` only ever points at complete, durable content.
    pub(super) fn final_dir(&self) -> &Path {
        &self.new
    }

    /// Says what went wrong; the client sees only `451 4.3.0`.
    pub(super) fn report(&self, error: &io::Error) {
        report_failure(&self.new, error);
    }
}

/// The lines a Maildir delivery adds on top of the message, LF-terminated: `Return-Path:`,
/// one `X-Original-To:` per recipient (in RCPT order), `Received:`.
fn delivery_headers(meta: &MessageMeta, hostname: &str) -> String {
    let trace = trace_headers(meta, hostname, "\n");
    // `Return-Path:` first (RFC 5321 §4.4: the final delivery puts it at the top), then the
    // recipients, then `Received:`, the order Postfix's `local` writes them in.
    let (return_path, received) = trace.split_at(trace.find('\n').map_or(0, |at| at + 1));
    let mut out = String::with_capacity(trace.len() + meta.recipients.len() * 40);
    out.push_str(return_path);
    for recipient in &meta.recipients {
        // The session admits no control character in a path (RFC 5321 §4.1.2), so a
        // recipient cannot end this line early; `from_utf8_lossy` keeps it one line of text.
        out.push_str("X-Original-To: ");
        out.push_str(&String::from_utf8_lossy(recipient));
        out.push('\n');
    }
    out.push_str(received);
    out
}

/// Turns the CR LF line ends of content that streams past in pieces into LF, as Maildir
/// readers expect. Only a CR directly followed by LF is dropped: a CR or LF on its own stays.
/// A CR that ends a piece is held until the next piece shows what follows it (and written by
/// [`LfConverter::finish`] if nothing does).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LfConverter {
    /// The last piece ended in a CR that was not written yet.
    held_cr: bool,
}

impl LfConverter {
    /// Writes `piece` with its CR LF pairs as LF into `out` (cleared first).
    pub(super) fn convert(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if piece.is_empty() {
            return;
        }
        let mut rest = piece;
        if std::mem::take(&mut self.held_cr) && rest[0] != b'\n' {
            out.push(b'\r'); // the held CR was a CR on its own
        }
        while let Some(at) = memchr::memchr(b'\r', rest) {
            out.extend_from_slice(&rest[..at]);
            match rest.get(at + 1) {
                Some(b'\n') => {} // dropped: its LF is copied with the next stretch
                Some(_) => out.push(b'\r'),
                None => self.held_cr = true,
            }
            rest = &rest[at + 1..];
        }
        out.extend_from_slice(rest);
    }

    /// The content is complete: what is still held (a CR that ended it), to write last.
    pub(super) fn finish(&mut self) -> &'static [u8] {
        if std::mem::take(&mut self.held_cr) {
            b"\r"
        } else {
            b""
        }
    }
}

/// Says once per failure what went wrong; the client sees only `451 4.3.0`.
fn report_failure(path: &Path, error: &io::Error) {
    crate::warn_line!("fastsmtpd: maildir {}: {error}", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the whole content at once.
    fn naive(content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < content.len() {
            if content[i] == b'\r' && content.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            out.push(content[i]);
            i += 1;
        }
        out
    }

    #[test]
    fn crlf_becomes_lf_at_every_split_and_lone_crs_and_lfs_stay() {
        let content: &[u8] =
            b"Subject: a\r\nX: b\r\n\r\nline\r\nbare\rcr\nbare lf\r\r\n\r\rend\r\n\r";
        for step in 1..=content.len() {
            for first in 0..=content.len() {
                let mut converter = LfConverter::default();
                let (mut out, mut scratch) = (Vec::new(), Vec::new());
                let (a, b) = content.split_at(first);
                for piece in a.chunks(step).chain(b.chunks(step)) {
                    converter.convert(piece, &mut scratch);
                    out.extend_from_slice(&scratch);
                }
                out.extend_from_slice(converter.finish());
                assert_eq!(out, naive(content), "step {step}, split {first}");
            }
        }
        assert_eq!(
            naive(content),
            b"Subject: a\nX: b\n\nline\nbare\rcr\nbare lf\r\n\r\rend\n\r"
        );
    }
}
