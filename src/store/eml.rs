//! `eml:DIR`: one `<id>.eml` file per message, exactly the bytes received, with the envelope
//! in a `<id>.json` sidecar.
//!
//! What it does: write both files under temporary names (`.<id>.*.tmp`), `fdatasync` them,
//! rename the sidecar and then the message into place, and `fsync` the directory once per
//! batch (group commit). The `.eml` rename is the commit point: a `.eml` that exists is
//! complete and has its sidecar. Failures remove what was written.
//!
//! What it does not do: add trace headers (the bytes are the client's, byte for byte).

use super::record::json_record;
use super::{sync_dir, Job};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
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

    fn write_synced(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
            for part in parts {
                file.write_all(part)?;
            }
            file.sync_data()
        })();
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }

    fn store_one(&self, job: &Job) -> io::Result<PathBuf> {
        let id = &job.meta.id;
        let json_tmp = self.dir.join(format!(".{id}.json.tmp"));
        let eml_tmp = self.dir.join(format!(".{id}.eml.tmp"));
        let json_path = self.dir.join(format!("{id}.json"));
        let eml_path = self.dir.join(format!("{id}.eml"));
        let mut sidecar = json_record(&job.meta, &job.body).to_string();
        sidecar.push('\n');
        let result = (|| {
            Self::write_synced(&json_tmp, &[sidecar.as_bytes()])?;
            Self::write_synced(&eml_tmp, &[&job.body])?;
            fs::rename(&json_tmp, &json_path)?;
            fs::rename(&eml_tmp, &eml_path)
        })();
        match result {
            Ok(()) => Ok(eml_path),
            Err(e) => {
                for path in [&json_tmp, &eml_tmp, &json_path] {
                    let _ = fs::remove_file(path);
                }
                Err(e)
            }
        }
    }

    /// Stores a batch; clears `ok[i]` for each message that could not be made durable.
    pub fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        let mut stored: Vec<(usize, PathBuf)> = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            if !ok[i] {
                continue;
            }
            match self.store_one(job) {
                Ok(path) => stored.push((i, path)),
                Err(e) => {
                    eprintln!("fastsmtpd: eml {}: {e}", self.dir.display());
                    ok[i] = false;
                }
            }
        }
        if stored.is_empty() {
            return;
        }
        if let Err(e) = sync_dir(&self.dir) {
            eprintln!("fastsmtpd: eml {}: {e}", self.dir.display());
            for (i, eml) in stored {
                let _ = fs::remove_file(&eml);
                let _ = fs::remove_file(eml.with_extension("json"));
                ok[i] = false;
            }
        }
    }
}
