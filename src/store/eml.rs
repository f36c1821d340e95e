//! `eml:DIR`: one `<id>.eml` file per message, exactly the bytes received, with the envelope
//! in a `<id>.json` sidecar.
//!
//! What it does: as a message's content streams in, write it to `.<id>.eml.tmp`; when it is
//! complete, write the sidecar (size, SHA-256, Message-ID and Subject, computed as the
//! content went past) to `.<id>.json.tmp`. A batch of complete messages is made durable
//! together (one sync), the sidecar and then the message renamed into place, and the
//! directory synced once (group commit, the sequence shared with Maildir in `commit`). The
//! `.eml` rename is the commit point: a `.eml` that exists is complete and has its sidecar.
//! Failures, abandoned messages and messages another store refused remove what was written.
//!
//! What it does not do: add trace headers (the bytes are the client's, byte for byte), or
//! hold a message in memory (only the chunk being written).

use super::durable::Staged;
use super::record::MessageMeta;
use std::io;
use std::path::{Path, PathBuf};

/// An `.eml` directory target.
#[derive(Debug)]
pub struct EmlDir {
    dir: PathBuf,
}

impl EmlDir {
    /// Opens (creating if needed, with missing parents) the directory.
    pub fn open(dir: &Path) -> io::Result<EmlDir> {
        super::durable::create_dir_all_durably(dir)?;
        Ok(EmlDir {
            dir: dir.to_path_buf(),
        })
    }

    /// Starts a message's `.eml` file under its temporary name.
    pub(super) fn begin(&self, meta: &MessageMeta) -> io::Result<Staged> {
        let id = &meta.id;
        Staged::create(
            self.dir.join(format!(".{id}.eml.tmp")),
            self.dir.join(format!("{id}.eml")),
        )
    }

    /// The content is complete: writes the sidecar (`record`, a JSON line) under its
    /// temporary name. The files to commit, the `.eml` last so its rename is the commit
    /// point; on failure both are removed.
    pub(super) fn finish(
        &self,
        meta: &MessageMeta,
        eml: Staged,
        record: &[u8],
    ) -> io::Result<Vec<Staged>> {
        let id = &meta.id;
        let json = Staged::write(
            self.dir.join(format!(".{id}.json.tmp")),
            self.dir.join(format!("{id}.json")),
            &[record],
        );
        match json {
            Ok(json) => Ok(vec![json, eml]),
            Err(e) => {
                if let Err(removing) = eml.remove() {
                    self.report(&removing);
                }
                Err(e)
            }
        }
    }

    /// Where complete messages go (the directory itself), synced once per batch (`commit`).
    pub(super) fn final_dir(&self) -> &Path {
        &self.dir
    }

    /// Says what went wrong; the client sees only `451 4.3.0`.
    pub(super) fn report(&self, error: &io::Error) {
        crate::warn_line!("fastsmtpd: eml {}: {error}", self.dir.display());
    }
}
