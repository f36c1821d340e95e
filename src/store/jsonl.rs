//! `jsonl:FILE`: one JSON line per accepted message (time, client, HELO, envelope, size,
//! SHA-256 of the body, Message-ID, Subject). With discard it is a verifiable record of
//! everything accepted, at full speed.
//!
//! What it does: append a whole batch's lines with one write and make them durable with one
//! `fdatasync` (group commit). Storage threads share the file behind a lock, so lines never
//! interleave. If the write or the sync fails, the file is cut back to where the batch began:
//! no torn line stays behind, and no message of the batch counts as stored.
//!
//! What it does not do: rotate or compress the file.

use super::record::json_record;
use super::Job;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A JSON-lines target.
#[derive(Debug)]
pub struct JsonLines {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLines {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> io::Result<JsonLines> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Stores a batch; clears `ok[i]` for each message whose line is not durable.
    pub fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        let mut lines = Vec::with_capacity(jobs.len() * 400);
        for (job, _) in jobs.iter().zip(ok.iter()).filter(|(_, ok)| **ok) {
            let record = json_record(&job.meta, &job.body);
            // serde_json writes into a Vec without failing.
            let _ = serde_json::to_writer(&mut lines, &record);
            lines.push(b'\n');
        }
        if lines.is_empty() {
            return;
        }
        let file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = (|| {
            let start = file.metadata()?.len();
            let written = (&*file).write_all(&lines).and_then(|()| file.sync_data());
            if written.is_err() {
                // Cut a torn batch off, so every line in the file stays a whole record.
                let _ = file.set_len(start);
            }
            written
        })();
        if let Err(e) = result {
            eprintln!("fastsmtpd: jsonl {}: {e}", self.path.display());
            ok.iter_mut().for_each(|ok| *ok = false);
        }
    }
}
