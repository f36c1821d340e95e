//! `maildir:DIR`: one file per message in a standard Maildir, readable by any mail client.
//!
//! What it does: write each message of a batch (with `Return-Path:` and `Received:` added on
//! top) to `tmp/` under a unique name, make all their contents durable together (one
//! `syncfs`), rename them into `new/`, and `fsync` `new/` once (group commit: two flushes
//! per batch instead of one per message). A message counts as stored only after all of that. Any
//! failure removes the file from `tmp/` (or `new/`, if only the directory sync failed), so
//! `new/` never holds a partial message.
//!
//! Names follow the Maildir convention `<seconds>.M<micros>P<pid>Q<sequence>.<host>,S=<size>`
//! (unique per process and delivery; `/` and `:` in the host name are escaped as the
//! convention asks).
//!
//! What it does not do: deliver to `cur/`, set flags, or split by recipient.

use super::commit::{commit_batch, Staged};
use super::record::{trace_headers, MessageMeta};
use super::Job;
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

    fn file_name(&self, meta: &MessageMeta, size: usize) -> String {
        let since = meta
            .received_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The id is <seconds>.<pid>.<sequence>; its last part makes the name unique.
        let sequence = meta.id.rsplit('.').next().unwrap_or("0");
        format!(
            "{}.M{}P{}Q{sequence}.{},S={size}",
            since.as_secs(),
            since.subsec_micros(),
            std::process::id(),
            self.name_host
        )
    }

    /// Writes one message into `tmp/` (not yet synced), headers on top, bound for `new/`.
    fn stage(&self, job: &Job) -> io::Result<Vec<Staged>> {
        let headers = trace_headers(&job.meta, &self.hostname);
        let name = self.file_name(&job.meta, headers.len() + job.body.len());
        let staged = Staged::write(
            self.tmp.join(&name),
            self.new.join(&name),
            &[headers.as_bytes(), &job.body],
        )?;
        Ok(vec![staged])
    }

    /// Stores a batch; clears `ok[i]` for each message that could not be made durable.
    /// Order (`commit_batch`): every file written to `tmp/`, their data synced together,
    /// then renamed into `new/`, then `new/` synced: a name in `new/` only ever points at
    /// complete, durable content.
    pub fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        commit_batch(
            jobs,
            ok,
            &self.new,
            |job| self.stage(job),
            |e| report_failure(&self.new, e),
        );
    }
}

/// Says once per failure what went wrong; the client sees only `451 4.3.0`.
fn report_failure(path: &Path, error: &io::Error) {
    eprintln!("fastsmtpd: maildir {}: {error}", path.display());
}
