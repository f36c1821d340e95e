//! `maildir:DIR`: one file per message in a standard Maildir, readable by any mail client.
//!
//! What it does: write each message (with `Return-Path:` and `Received:` added on top) to
//! `tmp/` under a unique name, `fdatasync` it, rename it into `new/`, and `fsync` `new/` once
//! for the whole batch (group commit: the directory entry of every message in the batch
//! becomes durable with one call). A message counts as stored only after all of that. Any
//! failure removes the file from `tmp/` (or `new/`, if only the directory sync failed), so
//! `new/` never holds a partial message.
//!
//! Names follow the Maildir convention `<seconds>.M<micros>P<pid>Q<sequence>.<host>,S=<size>`
//! (unique per process and delivery; `/` and `:` in the host name are escaped as the
//! convention asks).
//!
//! What it does not do: deliver to `cur/`, set flags, or split by recipient.

use super::record::{trace_headers, MessageMeta};
use super::{sync_dir, Job};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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

    /// Writes one message into `tmp/` and syncs it; returns its name.
    fn write_tmp(&self, job: &Job) -> io::Result<String> {
        let headers = trace_headers(&job.meta, &self.hostname);
        let name = self.file_name(&job.meta, headers.len() + job.body.len());
        let path = self.tmp.join(&name);
        let result = (|| {
            let mut file: File = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all(headers.as_bytes())?;
            file.write_all(&job.body)?;
            file.sync_data()
        })();
        match result {
            Ok(()) => Ok(name),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Stores a batch; clears `ok[i]` for each message that could not be made durable.
    pub fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        let mut moved: Vec<(usize, PathBuf)> = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            if !ok[i] {
                continue;
            }
            let name = match self.write_tmp(job) {
                Ok(name) => name,
                Err(e) => {
                    report_failure(&self.tmp, &e);
                    ok[i] = false;
                    continue;
                }
            };
            let target = self.new.join(&name);
            match fs::rename(self.tmp.join(&name), &target) {
                Ok(()) => moved.push((i, target)),
                Err(e) => {
                    report_failure(&self.new, &e);
                    let _ = fs::remove_file(self.tmp.join(&name));
                    ok[i] = false;
                }
            }
        }
        if moved.is_empty() {
            return;
        }
        if let Err(e) = sync_dir(&self.new) {
            // The entries may not survive a crash: take none of them (the client retries).
            report_failure(&self.new, &e);
            for (i, path) in moved {
                let _ = fs::remove_file(path);
                ok[i] = false;
            }
        }
    }
}

/// Says once per failure what went wrong; the client sees only `451 4.3.0`.
fn report_failure(path: &Path, error: &io::Error) {
    eprintln!("fastsmtpd: maildir {}: {error}", path.display());
}
