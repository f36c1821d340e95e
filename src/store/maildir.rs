//! `maildir:DIR`: one file per message in a standard Maildir, readable by any mail client.
//!
//! What it does: write each message (with `Return-Path:` and `Received:` added on top) to
//! `tmp/` under a unique name as its content streams in; for a batch of complete messages,
//! make all their contents durable together (one sync), rename them into `new/`, and `fsync` `new/` once (group commit: two flushes
//! per batch instead of one per message). A message counts as stored only after all of that. Any
//! failure removes the file from `tmp/` (or `new/`, if only the directory sync failed), so
//! `new/` never holds a partial message.
//!
//! Names follow the Maildir convention `<seconds>.M<micros>P<pid>Q<sequence>.<host>,S=<size>`
//! (unique per process and delivery; `/` and `:` in the host name are escaped as the
//! convention asks).
//!
//! What it does not do: deliver to `cur/`, set flags, or split by recipient.

use super::commit::{commit_staged, Staged};
use super::record::{trace_headers, MessageMeta};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A Maildir target.
#[derive(Debug)]
pub struct Maildir {
    tmp: PathBuf,
    new: PathBuf,
    hostname: String,
    /// The host part of file names, escaped.
    name_host: String,
}

impl Maildir {
    /// Opens (creating if needed) the Maildir at `dir`.
    pub fn open(dir: &Path, hostname: &str) -> io::Result<Maildir> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let name_host = hostname.replace('/', "\\057").replace(':', "\\072");
        Ok(Maildir {
            tmp: dir.join("tmp"),
            new: dir.join("new"),
            hostname: hostname.to_string(),
            name_host,
        })
    }

    /// The message's name: `<seconds>.M<micros>P<pid>Q<sequence>.<host>`, with `,S=<size>`
    /// once the size is known.
    fn file_name(&self, meta: &MessageMeta, size: Option<u64>) -> String {
        let since = meta
            .received_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The id is <seconds>.<pid>.<sequence>; its last part makes the name unique.
        let sequence = meta.id.rsplit('.').next().unwrap_or("0");
        let mut name = format!(
            "{}.M{}P{}Q{sequence}.{}",
            since.as_secs(),
            since.subsec_micros(),
            std::process::id(),
            self.name_host
        );
        if let Some(size) = size {
            name.push_str(&format!(",S={size}"));
        }
        name
    }

    /// Starts a message's file in `tmp/`, with the trace headers on top.
    pub(super) fn begin(&self, meta: &MessageMeta) -> io::Result<Staged> {
        let headers = trace_headers(meta, &self.hostname);
        let name = self.file_name(meta, None);
        Staged::write(
            self.tmp.join(&name),
            self.new.join(&name),
            &[headers.as_bytes()],
        )
    }

    /// The content is complete: the file is bound for `new/` under its name with the size.
    pub(super) fn finish(&self, meta: &MessageMeta, mut file: Staged) -> Vec<Staged> {
        let name = self.file_name(meta, Some(file.len()));
        file.set_destination(self.new.join(name));
        vec![file]
    }

    /// Commits a batch; clears `ok[i]` for each message that could not be made durable.
    /// Order (`commit_staged`): every file already written to `tmp/`, their data synced
    /// together, then renamed into `new/`, then `new/` synced: a name in `new/` only ever
    /// points at complete, durable content.
    pub(super) fn commit(
        &self,
        staged: Vec<(usize, Vec<Staged>)>,
        ok: &mut [bool],
        whole_fs_sync: bool,
    ) {
        commit_staged(staged, ok, &self.new, whole_fs_sync, |e| self.report(e));
    }

    /// Says what went wrong; the client sees only `451 4.3.0`.
    pub(super) fn report(&self, error: &io::Error) {
        report_failure(&self.new, error);
    }
}

/// Says once per failure what went wrong; the client sees only `451 4.3.0`.
fn report_failure(path: &Path, error: &io::Error) {
    eprintln!("fastsmtpd: maildir {}: {error}", path.display());
}
