//! `eml:DIR`: one `<id>.eml` file per message, exactly the bytes received, with the envelope
//! in a `<id>.json` sidecar.
//!
//! What it does: for a batch, write both files of each message under temporary names
//! (`.<id>.*.tmp`), make them all durable together (one `syncfs`), rename the sidecar and
//! then the message into place, and `fsync` the directory once (group commit, the sequence
//! shared with Maildir in `commit`). The `.eml` rename is the commit point: a `.eml` that
//! exists is complete and has its sidecar. Failures remove what was written.
//!
//! What it does not do: add trace headers (the bytes are the client's, byte for byte).

use super::commit::{commit_batch, Staged};
use super::record::json_record;
use super::Job;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// An `.eml` directory target.
#[derive(Debug)]
pub struct EmlDir {
    dir: PathBuf,
}

impl EmlDir {
    /// Opens (creating if needed) the directory.
    pub fn open(dir: &Path) -> io::Result<EmlDir> {
        fs::create_dir_all(dir)?;
        Ok(EmlDir {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a message's two files under temporary names (not yet synced): the sidecar
    /// first, and the `.eml` last, so its rename is the commit point.
    fn stage(&self, job: &Job) -> io::Result<Vec<Staged>> {
        let id = &job.meta.id;
        let mut sidecar = json_record(&job.meta, &job.body).to_string();
        sidecar.push('\n');
        let json = Staged::write(
            self.dir.join(format!(".{id}.json.tmp")),
            self.dir.join(format!("{id}.json")),
            &[sidecar.as_bytes()],
        )?;
        let eml = Staged::write(
            self.dir.join(format!(".{id}.eml.tmp")),
            self.dir.join(format!("{id}.eml")),
            &[&job.body],
        );
        match eml {
            Ok(eml) => Ok(vec![json, eml]),
            Err(e) => {
                let _ = fs::remove_file(self.dir.join(format!(".{id}.json.tmp")));
                Err(e)
            }
        }
    }

    /// Stores a batch; clears `ok[i]` for each message that could not be made durable.
    /// Order (`commit_batch`): all temporary files written, their data synced together,
    /// renamed (sidecar first, the `.eml` last), then the directory synced once.
    pub fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        commit_batch(
            jobs,
            ok,
            &self.dir,
            |job| self.stage(job),
            |e| self.report(e),
        );
    }

    fn report(&self, error: &io::Error) {
        eprintln!("fastsmtpd: eml {}: {error}", self.dir.display());
    }
}
