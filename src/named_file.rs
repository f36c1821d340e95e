//! Reading a file a flag names (`--fault-file FILE`, `--auth file:PATH`) into memory, at
//! start and on SIGHUP: only a regular file, and at most a bound the caller states.
//!
//! Why: such a file is read whole before the server starts (or while it runs, on SIGHUP). A
//! device (`/dev/zero`) would fill memory without end and a FIFO with no writer would hang the
//! start, so anything but a regular file is refused; the size is bounded too, and the read
//! itself stops one octet past the bound, so a file that grows meanwhile cannot get past it.
//!
//! What it does not do: parse the text (each caller does), or name the flag in its errors
//! (the caller prefixes `--flag PATH: `).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The text of `path`, a regular file of at most `bound` octets of UTF-8. The errors are one
/// line without the flag: `not a regular file (...)`, `larger than ...: why`, or the system's.
/// `why` says what the bound is for, for the error.
pub fn read_text(path: &Path, bound: u64, why: &str) -> Result<String, String> {
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for
    // one (it is then refused below); a regular file's reads ignore the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    // The type of what was opened, not of what the path named a moment before.
    let file_type = file.metadata().map_err(|e| e.to_string())?.file_type();
    if !file_type.is_file() {
        return Err(
            "not a regular file (a directory, FIFO, socket or device is not read at start)".into(),
        );
    }
    let mut bytes = Vec::new();
    file.take(bound + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > bound {
        return Err(format!("larger than {}: {why}", shown_bound(bound)));
    }
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".into())
}

/// `bound` in the largest binary unit that divides it (`1 MiB`), else in octets.
fn shown_bound(bound: u64) -> String {
    for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bound >= size && bound % size == 0 {
            return format!("{} {unit}", bound / size);
        }
    }
    format!("{bound} octets")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-named-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_regular_file_within_the_bound_is_read() {
        let path = scratch("small");
        std::fs::write(&path, "seed = 1\n").unwrap();
        assert_eq!(read_text(&path, 9, "why").unwrap(), "seed = 1\n");
    }

    /// Before: `read_to_string` on `/dev/zero` grew memory without end.
    #[test]
    fn a_device_is_refused() {
        let error = read_text(Path::new("/dev/zero"), 1 << 20, "why").unwrap_err();
        assert!(error.starts_with("not a regular file"), "{error}");
    }

    /// Before: opening a FIFO with no writer hung the start. (If this regresses, the test
    /// hangs rather than fails: no timed assertion on a noisy machine.)
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let path = scratch("fifo");
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
        let error = read_text(&path, 1 << 20, "why").unwrap_err();
        assert!(error.starts_with("not a regular file"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_over_the_bound_is_refused_with_the_reason() {
        let path = scratch("large");
        std::fs::write(&path, vec![b'#'; 1025]).unwrap();
        assert_eq!(
            read_text(&path, 1024, "it is read whole").unwrap_err(),
            "larger than 1 KiB: it is read whole"
        );
        assert!(read_text(&path, 1025, "why").is_ok());
    }
}
