//! At start, the messages an `eml:DIR` already holds, put into the capture store: a restarted
//! sink answers for its earlier mail (issue 18: "the API also works over the durable stores").
//!
//! What it does: lists `DIR` once; takes each committed message (`<id>.eml` with its
//! `<id>.json` sidecar, as [`super::eml`] writes them; the `.eml` rename is the commit point)
//! whose id [`super::record::next_queue_id`] made, in the order the messages began (the id
//! starts with the time, to the microsecond); keeps the newest that fit the capture's
//! [`Limits`] (age, count, then budget: what eviction at insert would have left, without
//! evicting or tombstoning anything), and inserts them oldest first, so seqs follow arrival.
//! Each is read as the live path keeps it: the envelope from the sidecar, the header block
//! from the `.eml` (read in 4 KiB steps up to its empty line, at most
//! [`HEADER_SCAN_MAX`] octets), the body left in the file ([`Arrival::in_file`]). So the time
//! is bounded by the number of files, not their size.
//!
//! What it skips, counted in [`Reindexed`] (the server says so in one warning line, and
//! starts): a sidecar without its `.eml` (a crash between the two renames: that message
//! never got its `250`), an `.eml` without its sidecar, a sidecar that is torn, unparseable,
//! larger than [`SIDECAR_MAX`] or names another id, an `.eml` whose length is not the
//! sidecar's `size`, and names that are not ids of this server. Temporary files
//! (`.<id>.eml.tmp`, `.<id>.json.tmp`: a message not committed) are ignored.
//!
//! Ids: every id found moves this process's id sequence past it ([`record::reserve_past`]),
//! so a restart can never name a new message as an indexed one. Seqs and cursors are the
//! capture's and start from 1 again: a cursor does not survive a restart, an id does.
//!
//! What it does not do: write, rename or remove anything in `DIR`; read a message body; read
//! the envelope's fields the sidecar does not keep (`AUTH=` of `MAIL FROM`, a TLS session's
//! SNI), or bytes of an envelope that were not UTF-8 (the sidecar holds them as U+FFFD).

use super::record::{self, QueueIdParts};
use crate::capture::envelope::{mail_params_text, EnvelopeParts};
use crate::capture::headers::HEADER_SCAN_MAX;
use crate::capture::{Arrival, Capture, Limits};
use crate::proto::command::{Body as BodyParam, MailParams};
use crate::proto::sink::QueueId;
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// The largest sidecar read (a record with thousands of recipients is far smaller).
pub const SIDECAR_MAX: u64 = 1 << 20;

/// What [`reindex`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Messages put into the capture.
    pub indexed: usize,
    /// Committed messages left out because they were older than what fits the limits.
    pub over_limits: usize,
    /// Sidecars without their `.eml`.
    pub without_eml: usize,
    /// `.eml` files without their sidecar.
    pub without_sidecar: usize,
    /// Sidecars that could not be read or parsed, or that name another id.
    pub bad_sidecars: usize,
    /// `.eml` files whose length is not their sidecar's `size` (or that could not be read).
    pub bad_files: usize,
    /// Files whose names are not ids this server makes.
    pub unknown_names: usize,
    /// How long it took.
    pub elapsed: Duration,
}

impl Reindexed {
    /// Files skipped as damaged or foreign (not those left out by the limits).
    pub fn skipped(&self) -> usize {
        self.without_eml
            + self.without_sidecar
            + self.bad_sidecars
            + self.bad_files
            + self.unknown_names
    }

    /// The one line that says what was skipped and why; `None` if nothing was.
    pub fn warning(&self, dir: &Path) -> Option<String> {
        let reasons: Vec<String> = [
            (
                self.without_eml,
                "sidecar without its .eml",
                "sidecars without their .eml",
            ),
            (
                self.without_sidecar,
                ".eml without its sidecar",
                ".eml files without their sidecar",
            ),
            (
                self.bad_sidecars,
                "sidecar torn or unreadable",
                "sidecars torn or unreadable",
            ),
            (
                self.bad_files,
                ".eml whose length is not its sidecar's size",
                ".eml files whose length is not their sidecar's size",
            ),
            (
                self.unknown_names,
                "file not named by this server",
                "files not named by this server",
            ),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        (!reasons.is_empty()).then(|| {
            format!(
                "fastsmtpd: warning: {}: {} not indexed for the API ({})",
                dir.display(),
                self.skipped(),
                reasons.join(", ")
            )
        })
    }

    /// The line that says what was indexed.
    pub fn line(&self, dir: &Path) -> String {
        let left_out = match self.over_limits {
            0 => String::new(),
            n => format!("; {n} older left out by the capture limits"),
        };
        format!(
            "fastsmtpd: indexed {} message{} from {} in {:.2} s{left_out}",
            self.indexed,
            if self.indexed == 1 { "" } else { "s" },
            dir.display(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// A committed message found in the directory.
struct Found {
    /// Its id, read.
    parts: QueueIdParts,
    /// Its id.
    id: QueueId,
}

/// Puts the messages of `dir` (an `eml:DIR` store's directory) into `capture`, whose limits
/// are `limits`, before any message arrives (see the module doc). Never fails: a directory
/// that cannot be listed indexes nothing and is counted as one unreadable entry.
pub fn reindex(capture: &Capture, dir: &Path, limits: Limits) -> Reindexed {
    let started = Instant::now();
    let mut report = Reindexed::default();
    let mut found = list(dir, &mut report);
    found.sort_unstable_by_key(|f| f.parts);
    // The newest that fit, newest first, as eviction at insert would have left them.
    let cutoff = limits
        .max_age
        .and_then(|age| SystemTime::now().checked_sub(age));
    let mut kept: Vec<Arrival> = Vec::new();
    let mut bytes = 0u64;
    while let Some(next) = found.last() {
        if kept.len() >= limits.max_messages
            || cutoff.is_some_and(|cutoff| next.parts.began() < cutoff)
        {
            break;
        }
        let Some(next) = found.pop() else { break };
        let arrival = match read(dir, &next) {
            Ok(arrival) => arrival,
            Err(Skip::Sidecar) => {
                report.bad_sidecars += 1;
                continue;
            }
            Err(Skip::File) => {
                report.bad_files += 1;
                continue;
            }
        };
        if bytes + arrival.charge() > limits.max_bytes {
            found.push(next);
            break;
        }
        bytes += arrival.charge();
        kept.push(arrival);
    }
    report.over_limits = found.len();
    for arrival in kept.into_iter().rev() {
        match capture.insert(arrival) {
            Ok(_) => report.indexed += 1,
            // Not expected (the store is empty and the set fits); counted, never fatal.
            Err(_) => report.bad_files += 1,
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// The committed messages of `dir`, each id reserved ([`record::reserve_past`]); the rest
/// counted in `report`.
fn list(dir: &Path, report: &mut Reindexed) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        report.bad_files += 1;
        return Vec::new();
    };
    let mut emls = std::collections::HashSet::new();
    let mut sidecars = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            report.unknown_names += 1;
            continue;
        };
        if name.starts_with('.') {
            // Temporary files of messages not committed, and anything hidden.
            continue;
        }
        let (stem, is_eml) = match (name.strip_suffix(".eml"), name.strip_suffix(".json")) {
            (Some(stem), _) => (stem, true),
            (None, Some(stem)) => (stem, false),
            (None, None) => {
                report.unknown_names += 1;
                continue;
            }
        };
        let (Some(parts), Some(id)) = (QueueIdParts::parse(stem), QueueId::new(stem.as_bytes()))
        else {
            report.unknown_names += 1;
            continue;
        };
        record::reserve_past(&parts);
        if is_eml {
            emls.insert(stem.to_owned());
        } else {
            sidecars.push(Found { parts, id });
        }
    }
    let found: Vec<Found> = sidecars
        .into_iter()
        .filter(|f| {
            let committed = emls.remove(f.id.as_str());
            report.without_eml += usize::from(!committed);
            committed
        })
        .collect();
    report.without_sidecar += emls.len();
    found
}

/// Why a message was skipped.
enum Skip {
    /// Its sidecar is torn, unreadable or names another id.
    Sidecar,
    /// Its `.eml` cannot be read or is not the sidecar's length.
    File,
}

/// The message `found` as the capture keeps it (see the module doc).
fn read(dir: &Path, found: &Found) -> Result<Arrival, Skip> {
    let id = found.id.as_str();
    let sidecar =
        read_bounded(&dir.join(format!("{id}.json")), SIDECAR_MAX).map_err(|_| Skip::Sidecar)?;
    let record: serde_json::Value = serde_json::from_slice(&sidecar).map_err(|_| Skip::Sidecar)?;
    let text = |key: &str| record.get(key).and_then(serde_json::Value::as_str);
    let (Some(true), Some(size), Some(sender), Some(recipients)) = (
        text("id").map(|named| named == id),
        record.get("size").and_then(serde_json::Value::as_u64),
        text("mail_from"),
        record.get("rcpt_to").and_then(serde_json::Value::as_array),
    ) else {
        return Err(Skip::Sidecar);
    };
    let recipients: Option<Vec<&[u8]>> = recipients
        .iter()
        .map(|r| r.as_str().map(str::as_bytes))
        .collect();
    let recipients = recipients.filter(|r| !r.is_empty()).ok_or(Skip::Sidecar)?;
    let params = record.get("mail_params");
    let param = |key: &str| params.and_then(|p| p.get(key));
    let body = match param("body").and_then(serde_json::Value::as_str) {
        Some("7BIT") => Some(BodyParam::SevenBit),
        Some("8BITMIME") => Some(BodyParam::EightBitMime),
        Some("BINARYMIME") => Some(BodyParam::BinaryMime),
        _ => None,
    };
    let params = MailParams {
        size: param("size").and_then(serde_json::Value::as_u64),
        body,
        smtputf8: param("smtputf8").and_then(serde_json::Value::as_bool) == Some(true),
        ..MailParams::default()
    };
    let params = mail_params_text(&params);
    let tls = record
        .get("tls")
        .and_then(|tls| Some((tls.get("version")?.as_str()?, tls.get("cipher")?.as_str()?)));
    let parts = EnvelopeParts {
        sender: sender.as_bytes(),
        params: params.as_bytes(),
        helo: text("helo").unwrap_or_default().as_bytes(),
        client: text("client").and_then(|c| c.parse().ok()),
        tls,
        auth_user: text("auth_user").map(str::as_bytes),
    };
    let path = dir.join(format!("{id}.eml"));
    let head = read_header_block(&path, size).map_err(|_| Skip::File)?;
    Ok(Arrival::new(
        found.id,
        found.parts.began(),
        Bytes::from(head),
        &parts,
        recipients.iter().copied(),
    )
    .in_file(path, size))
}

/// The whole of the file at `path`, if it is at most `max` octets.
fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other("too large"));
    }
    Ok(bytes)
}

/// The start of the message file at `path`, which must be `size` octets long: read in 4 KiB
/// steps until its header block's empty line (RFC 5322 §2.1) or [`HEADER_SCAN_MAX`] octets.
fn read_header_block(path: &Path, size: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    if file.metadata()?.len() != size {
        return Err(io::Error::other("not the sidecar's size"));
    }
    let mut head = Vec::new();
    let mut step = [0u8; 4096];
    while head.len() < HEADER_SCAN_MAX {
        let n = file.read(&mut step)?;
        if n == 0 {
            break;
        }
        // The empty line may straddle two steps: look again from two octets back.
        let from = head.len().saturating_sub(2);
        head.extend_from_slice(&step[..n]);
        let ended = head.starts_with(b"\n")
            || head.starts_with(b"\r\n")
            || memchr::memmem::find(&head[from..], b"\n\n").is_some()
            || memchr::memmem::find(&head[from..], b"\n\r\n").is_some();
        if ended {
            break;
        }
    }
    head.truncate(HEADER_SCAN_MAX);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header block is read up to its empty line wherever the 4 KiB steps cut it, and
    /// a file of another length than the sidecar's is refused.
    #[test]
    fn the_header_block_is_read_up_to_its_empty_line_and_the_length_checked() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-reindex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.eml");
        for pad in 4060..4090 {
            let mut message = format!("X-Pad: {}\r\n", "p".repeat(pad)).into_bytes();
            message.extend_from_slice(b"Subject: s\r\n\r\n");
            let header = message.len();
            message.extend_from_slice(&vec![b'b'; 50_000]);
            std::fs::write(&path, &message).unwrap();
            let head = read_header_block(&path, message.len() as u64).unwrap();
            assert!(head.len() >= header && head.len() < header + 4096, "{pad}");
            assert!(read_header_block(&path, message.len() as u64 + 1).is_err());
        }
        // No empty line: at most the bound.
        std::fs::write(&path, vec![b'h'; 3 * HEADER_SCAN_MAX]).unwrap();
        let head = read_header_block(&path, 3 * HEADER_SCAN_MAX as u64).unwrap();
        assert_eq!(head.len(), HEADER_SCAN_MAX);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lines_say_what_was_indexed_and_skipped() {
        let dir = Path::new("/var/mail/sink");
        let mut report = Reindexed {
            indexed: 1,
            ..Reindexed::default()
        };
        assert_eq!(report.warning(dir), None);
        assert_eq!(
            report.line(dir),
            "fastsmtpd: indexed 1 message from /var/mail/sink in 0.00 s"
        );
        report.over_limits = 4;
        report.bad_sidecars = 2;
        assert!(report
            .line(dir)
            .ends_with("; 4 older left out by the capture limits"));
        assert_eq!(
            report.warning(dir).unwrap(),
            "fastsmtpd: warning: /var/mail/sink: 2 not indexed for the API (2 sidecars torn or unreadable)"
        );
    }
}
