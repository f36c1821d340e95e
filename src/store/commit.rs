//! The commit sequence shared by the one-file-per-message stores (Maildir and `.eml`):
//! write under temporary names, sync the contents, rename into place, sync the directory.
//!
//! What it does: [`commit_batch`] takes a batch of jobs and a function that stages each job's
//! files ([`Staged`]: written under a temporary name, not yet synced), then makes the batch
//! durable together (group commit): one [`sync_files`] for every staged file's contents,
//! the renames (each job's files in the order staged: its last file is its commit point), and
//! one `fsync` of the directory for the new names. A job counts as stored only after all of
//! that. Any failure removes what that job wrote (or every job's files, for a failed sync), so
//! a final name only ever points at complete, durable content, and a client that was not told
//! `250` finds nothing half-kept.
//!
//! What it does not do: decide names or contents (the stores do), or retry (a failed job is
//! `451 4.3.0` and the client retries).

use super::{sync_dir, sync_files, Job};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One file written for a job under a temporary name, waiting to be committed.
#[derive(Debug)]
pub(super) struct Staged {
    /// The open file (for the batch's sync).
    file: File,
    /// Where it was written.
    temporary: PathBuf,
    /// Where it goes once durable.
    destination: PathBuf,
}

impl Staged {
    /// Creates `temporary` (which must not exist), writes `parts` into it one after another,
    /// and remembers `destination`. On failure nothing stays behind.
    pub(super) fn write(
        temporary: PathBuf,
        destination: PathBuf,
        parts: &[&[u8]],
    ) -> io::Result<Staged> {
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)?;
            for part in parts {
                file.write_all(part)?;
            }
            Ok(file)
        })();
        match written {
            Ok(file) => Ok(Staged {
                file,
                temporary,
                destination,
            }),
            Err(e) => {
                let _ = fs::remove_file(&temporary);
                Err(e)
            }
        }
    }
}

/// Removes every staged file of a job, under either name.
fn remove_all(staged: &[Staged]) {
    for file in staged {
        let _ = fs::remove_file(&file.temporary);
        let _ = fs::remove_file(&file.destination);
    }
}

/// Commits a batch: `stage` writes one job's files (on error it leaves nothing behind); the
/// staged files are synced together, renamed into place, and `dir` (where the final names
/// are) is synced once. Clears `ok[i]` for each job that is not durably stored; `report` is
/// told each failure.
pub(super) fn commit_batch(
    jobs: &[Job],
    ok: &mut [bool],
    dir: &Path,
    mut stage: impl FnMut(&Job) -> io::Result<Vec<Staged>>,
    report: impl Fn(&io::Error),
) {
    let mut staged: Vec<(usize, Vec<Staged>)> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        if !ok[i] {
            continue;
        }
        match stage(job) {
            Ok(files) => staged.push((i, files)),
            Err(e) => {
                report(&e);
                ok[i] = false;
            }
        }
    }
    if staged.is_empty() {
        return;
    }
    let synced = {
        let files: Vec<&File> = staged
            .iter()
            .flat_map(|(_, files)| files.iter().map(|s| &s.file))
            .collect();
        sync_files(&files)
    };
    if let Err(e) = synced {
        report(&e);
        for (i, files) in &staged {
            remove_all(files);
            ok[*i] = false;
        }
        return;
    }
    let mut renamed: Vec<(usize, Vec<Staged>)> = Vec::with_capacity(staged.len());
    for (i, files) in staged {
        let moved = files
            .iter()
            .try_for_each(|s| fs::rename(&s.temporary, &s.destination));
        match moved {
            Ok(()) => renamed.push((i, files)),
            Err(e) => {
                report(&e);
                remove_all(&files);
                ok[i] = false;
            }
        }
    }
    if renamed.is_empty() {
        return;
    }
    if let Err(e) = sync_dir(dir) {
        // The names may not survive a crash: take none of them (the clients retry).
        report(&e);
        for (i, files) in &renamed {
            remove_all(files);
            ok[*i] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::command::MailParams;
    use crate::proto::envelope::Transfer;
    use crate::store::record::MessageMeta;
    use crate::store::{Completions, Notify};
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    fn jobs(n: usize) -> (mio::Poll, Vec<Job>) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let completions = Arc::new(Completions::new(waker));
        let jobs = (0..n)
            .map(|i| Job {
                meta: MessageMeta {
                    id: format!("job{i}"),
                    received_at: SystemTime::now(),
                    client: "127.0.0.1:25".parse().unwrap(),
                    helo: b"c".to_vec(),
                    esmtp: true,
                    sender: b"a@b".to_vec(),
                    params: MailParams::default(),
                    recipients: vec![b"c@d".to_vec()],
                    transfer: Transfer::Data,
                },
                body: format!("message {i}\r\n").into_bytes(),
                notify: Notify {
                    completions: Arc::clone(&completions),
                    key: i,
                    id: i as u64,
                },
                submitted: Instant::now(),
            })
            .collect();
        (poll, jobs)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_job_that_fails_to_stage_is_refused_alone_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-commit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (_poll, jobs) = jobs(3);
        let mut ok = [true; 3];
        let failures = std::cell::Cell::new(0);
        commit_batch(
            &jobs,
            &mut ok,
            &dir,
            |job| {
                let id = &job.meta.id;
                let first = Staged::write(
                    dir.join(format!(".{id}.a")),
                    dir.join(format!("{id}.a")),
                    &[b"side"],
                )?;
                if id == "job1" {
                    let _ = fs::remove_file(dir.join(".job1.a"));
                    return Err(io::Error::other("disk full"));
                }
                let second = Staged::write(
                    dir.join(format!(".{id}.b")),
                    dir.join(format!("{id}.b")),
                    &[b"head ", &job.body],
                )?;
                Ok(vec![first, second])
            },
            |_| failures.set(failures.get() + 1),
        );
        assert_eq!(ok, [true, false, true]);
        assert_eq!(failures.get(), 1);
        assert_eq!(names(&dir), ["job0.a", "job0.b", "job2.a", "job2.b"]);
        assert_eq!(fs::read(dir.join("job2.b")).unwrap(), b"head message 2\r\n");
        // A directory that cannot be synced: no job counts as stored, nothing stays.
        let mut ok = [true; 3];
        commit_batch(
            &jobs,
            &mut ok,
            &dir.join("missing"),
            |job| {
                let id = &job.meta.id;
                Ok(vec![Staged::write(
                    dir.join(format!(".{id}.c")),
                    dir.join(format!("{id}.c")),
                    &[&job.body],
                )?])
            },
            |_| {},
        );
        assert_eq!(ok, [false; 3]);
        assert_eq!(names(&dir), ["job0.a", "job0.b", "job2.a", "job2.b"]);
        // A job already refused is not staged at all.
        let mut ok = [false, true, false];
        let mut staged = Vec::new();
        commit_batch(
            &jobs,
            &mut ok,
            &dir,
            |job| {
                staged.push(job.meta.id.clone());
                Ok(Vec::new())
            },
            |_| {},
        );
        assert_eq!(staged, ["job1"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
