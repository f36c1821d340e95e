//! `eml:DIR`: one `<id>.eml` file per message, exactly the bytes received, with the envelope
//! in a `<id>.json` sidecar.
//!
//! What it does: for a batch, write both files of each message under temporary names
//! (`.<id>.*.tmp`), make them all durable together (one `syncfs`), rename the sidecar and
//! then the message into place, and `fsync` the directory once (group commit). The `.eml` rename is the commit point: a `.eml` that exists is
//! complete and has its sidecar. Failures remove what was written.
//!
//! What it does not do: add trace headers (the bytes are the client's, byte for byte).

use super::record::json_record;
use super::{sync_dir, sync_files, Job};
use std::fs::{self, File, OpenOptions};
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

    /// Writes a new file (not yet synced).
    fn write_new(path: &Path, bytes: &[u8]) -> io::Result<File> {
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
            file.write_all(bytes)?;
            Ok(file)
        })();
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }

    /// Writes a message's two temporary files; returns them open.
    fn write_tmp(&self, job: &Job) -> io::Result<[File; 2]> {
        let (json_tmp, eml_tmp) = self.tmp_paths(&job.meta.id);
        let mut sidecar = json_record(&job.meta, &job.body).to_string();
        sidecar.push('\n');
        let json = Self::write_new(&json_tmp, sidecar.as_bytes())?;
        match Self::write_new(&eml_tmp, &job.body) {
            Ok(eml) => Ok([json, eml]),
            Err(e) => {
                let _ = fs::remove_file(&json_tmp);
                Err(e)
            }
        }
    }

    fn tmp_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!(".{id}.json.tmp")),
            self.dir.join(format!(".{id}.eml.tmp")),
        )
    }

    fn final_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{id}.json")),
            self.dir.join(format!("{id}.eml")),
        )
    }

    /// Stores a batch; clears `ok[i]` for each message that could not be made durable.
    /// Order: all temporary files written, their data synced together, renamed (sidecar
    /// first, the `.eml` last), then the directory synced once.
    pub fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        let mut written: Vec<usize> = Vec::with_capacity(jobs.len());
        let mut files: Vec<File> = Vec::with_capacity(2 * jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            if !ok[i] {
                continue;
            }
            match self.write_tmp(job) {
                Ok(pair) => {
                    written.push(i);
                    files.extend(pair);
                }
                Err(e) => {
                    self.report(&e);
                    ok[i] = false;
                }
            }
        }
        let remove_tmp = |i: usize| {
            let (json_tmp, eml_tmp) = self.tmp_paths(&jobs[i].meta.id);
            let _ = fs::remove_file(json_tmp);
            let _ = fs::remove_file(eml_tmp);
        };
        if let Err(e) = sync_files(&files) {
            self.report(&e);
            for &i in &written {
                remove_tmp(i);
                ok[i] = false;
            }
            return;
        }
        drop(files);
        let mut stored: Vec<usize> = Vec::with_capacity(written.len());
        for i in written {
            let id = &jobs[i].meta.id;
            let (json_tmp, eml_tmp) = self.tmp_paths(id);
            let (json_path, eml_path) = self.final_paths(id);
            let renamed =
                fs::rename(&json_tmp, &json_path).and_then(|()| fs::rename(&eml_tmp, &eml_path));
            match renamed {
                Ok(()) => stored.push(i),
                Err(e) => {
                    self.report(&e);
                    remove_tmp(i);
                    let _ = fs::remove_file(json_path);
                    ok[i] = false;
                }
            }
        }
        if stored.is_empty() {
            return;
        }
        if let Err(e) = sync_dir(&self.dir) {
            self.report(&e);
            for i in stored {
                let (json_path, eml_path) = self.final_paths(&jobs[i].meta.id);
                let _ = fs::remove_file(eml_path);
                let _ = fs::remove_file(json_path);
                ok[i] = false;
            }
        }
    }

    fn report(&self, error: &io::Error) {
        eprintln!("fastsmtpd: eml {}: {error}", self.dir.display());
    }
}
