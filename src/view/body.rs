//! A kept message's whole content for a reader: the bytes the capture store holds, or the
//! message's file read back (`--store eml:DIR`: the store keeps only the header block of
//! such a message, see "Memory" in `crate::capture`).
//!
//! What it does: give the whole message ([`content`]) or its view through the cache
//! ([`view`]: a cached view needs no read), or open its file for streaming ([`open`]); tell
//! a file that is gone or changed behind the server's back ([`Unreadable`]) from a message
//! that reads.
//!
//! What it does not do: run on an SMTP event loop (its callers are the API's blocking
//! threads: every read here is blocking file I/O), write or remove files, or convert a
//! file's bytes: an `.eml` file holds exactly the bytes received (`crate::store::eml`), so
//! what is read back is byte-exact. A file whose length is no longer the one written is
//! [`Unreadable::Changed`], never served.

use super::cache::ViewCache;
use super::MessageView;
use crate::capture::{Body, FileBody, Snapshot};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

/// Why a kept message's file could not be read.
#[derive(Debug)]
pub enum Unreadable {
    /// The file is not there any more (removed behind the server's back).
    Missing,
    /// The file's length is not the one written (changed behind the server's back).
    Changed {
        /// The length written.
        written: u64,
        /// The length now.
        now: u64,
    },
    /// Reading it failed.
    Failed(io::Error),
}

impl Unreadable {
    /// A short machine-readable word: `file_missing`, `file_changed`, `file_unreadable`.
    pub fn reason(&self) -> &'static str {
        match self {
            Unreadable::Missing => "file_missing",
            Unreadable::Changed { .. } => "file_changed",
            Unreadable::Failed(_) => "file_unreadable",
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Missing => f.write_str("the message's file was removed"),
            Unreadable::Changed { written, now } => write!(
                f,
                "the message's file changed: {now} octets, {written} were written"
            ),
            Unreadable::Failed(e) => write!(f, "the message's file could not be read: {e}"),
        }
    }
}

impl From<io::Error> for Unreadable {
    fn from(e: io::Error) -> Unreadable {
        if e.kind() == io::ErrorKind::NotFound {
            Unreadable::Missing
        } else {
            Unreadable::Failed(e)
        }
    }
}

/// Opens the file of `file`, checking that it still has the length written (blocking).
pub fn open(file: &FileBody) -> Result<File, Unreadable> {
    let opened = File::open(file.path())?;
    let now = opened.metadata()?.len();
    if now != file.len() {
        return Err(Unreadable::Changed {
            written: file.len(),
            now,
        });
    }
    Ok(opened)
}

/// The whole message (shared when in memory; read from its file otherwise: blocking, the
/// whole file in memory).
pub fn content(snapshot: &Snapshot) -> Result<Bytes, Unreadable> {
    match &snapshot.body {
        Body::Memory(raw) => Ok(raw.clone()),
        Body::File(file) => {
            let opened = open(file)?;
            let len = usize::try_from(file.len()).map_err(|_| Unreadable::Changed {
                written: file.len(),
                now: file.len(),
            })?;
            let mut bytes = Vec::with_capacity(len);
            opened.take(file.len()).read_to_end(&mut bytes)?;
            if bytes.len() != len {
                return Err(Unreadable::Changed {
                    written: file.len(),
                    now: bytes.len() as u64,
                });
            }
            Ok(Bytes::from(bytes))
        }
    }
}

/// The view of `snapshot` from `cache`, parsed now (reading its file, if it has one) when
/// not cached.
pub fn view(cache: &ViewCache, snapshot: &Snapshot) -> Result<Arc<MessageView>, Unreadable> {
    if let Body::Memory(raw) = &snapshot.body {
        return Ok(cache.get_or_parse(snapshot.seq, raw));
    }
    if let Some(view) = cache.get(snapshot.seq) {
        return Ok(view);
    }
    let raw = content(snapshot)?;
    Ok(cache.insert(snapshot.seq, Arc::new(MessageView::parse(&raw))))
}
