//! Finding the messages of an mbox file as it streams past (RFC 4155's "default" format).
//!
//! A message starts after a separator line, a line beginning with `From ` (the first line of
//! the file must be one), and runs to the next separator or the end of the file. RFC 4155
//! §2 ends each message with an empty line, which belongs to the format, not to the message:
//! when a message ends in a line end followed by an empty line (`\n\n`, or `\n\r\n`), that
//! empty line is left out.
//!
//! Which variant: mboxrd. Writers of both mboxo and mboxrd quote a body line `From ` as
//! `>From `; mboxrd also quotes lines already quoted (`>From ` -> `>>From `), so un-quoting
//! one `>` from every `>`...`From ` line gives the message back exactly. In an mboxo file the
//! same un-quoting is right for every quoted line and wrong only for a line that was
//! `>From ` in the original message (it loses its `>`): rare, and there is no way to tell it
//! apart in mboxo. The un-quoting itself is the wire encoder's job (`wire`, `mboxrd`). The
//! `Content-Length:` of mboxcl files is not used.
//!
//! What it does: call [`MboxSink`] with each message's start, its bytes in pieces, and its
//! end, reading the file in pieces of [`BUFFER`] bytes: the memory used does not depend on
//! the file's or a message's size.
//!
//! What it does not do: keep any message, or encode it (`wire`).

use memchr::{memchr, memmem};
use std::io::{self, Read};

/// Bytes read from the file at a time.
pub const BUFFER: usize = 1 << 20;

/// What a separator line starts with.
const SEPARATOR: &[u8] = b"From ";

/// Receives the messages of an mbox in order.
pub trait MboxSink {
    /// A message starts at file offset `at` (after its separator line).
    fn start(&mut self, at: u64);
    /// The next bytes of the current message (the separating empty line included: the sink
    /// leaves it out at [`MboxSink::end`], see [`trailing_empty_line`]).
    fn bytes(&mut self, bytes: &[u8]);
    /// The current message ends at file offset `at` (exclusive).
    fn end(&mut self, at: u64) -> io::Result<()>;
}

/// How many bytes at the end of a message that ends in `last` (its last three bytes or
/// fewer) are the empty line that separates it from the next: 2 for `\n\r\n`, 1 for `\n\n`,
/// else 0.
pub fn trailing_empty_line(last: &[u8]) -> usize {
    if last.ends_with(b"\n\r\n") {
        2
    } else if last.ends_with(b"\n\n") {
        1
    } else {
        0
    }
}

/// Reads `input` to its end, telling `sink` where each message is.
pub fn split(input: &mut impl Read, sink: &mut impl MboxSink) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    // Bytes held in `buf` (a few carried over from the last read at its front).
    let mut filled = 0;
    // File offset of `buf[0]`.
    let mut base: u64 = 0;
    // The next byte starts a line.
    let mut line_start = true;
    // Inside a separator line.
    let mut in_separator = false;
    // Inside a message.
    let mut in_message = false;
    loop {
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let eof = n == 0;
        filled += n;
        let data = &buf[..filled];
        let mut i = 0;
        while i < data.len() {
            if in_separator {
                match memchr(b'\n', &data[i..]) {
                    Some(k) => {
                        i += k + 1;
                        in_separator = false;
                        line_start = true;
                        in_message = true;
                        sink.start(base + i as u64);
                    }
                    None => i = data.len(),
                }
                continue;
            }
            let rest = &data[i..];
            if line_start {
                if rest.len() < SEPARATOR.len() && !eof && !SEPARATOR.starts_with(rest) {
                    // Cannot be a separator whatever follows.
                } else if rest.len() < SEPARATOR.len() && !eof {
                    break; // decide with more bytes
                } else if rest.starts_with(SEPARATOR) {
                    if in_message {
                        sink.end(base + i as u64)?;
                        in_message = false;
                    }
                    in_separator = true;
                    line_start = false;
                    i += SEPARATOR.len();
                    continue;
                }
                if !in_message {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not an mbox file: it does not begin with a \"From \" line",
                    ));
                }
                line_start = false;
            }
            // Inside a message, not at a line start: everything up to the next line that
            // starts with `From `, or all but the last few bytes (which may begin one).
            match memmem::find(rest, b"\nFrom ") {
                Some(k) => {
                    sink.bytes(&rest[..k + 1]);
                    i += k + 1;
                    line_start = true;
                }
                None if eof => {
                    sink.bytes(rest);
                    i = data.len();
                }
                None => {
                    let take = rest.len().saturating_sub(SEPARATOR.len());
                    if take == 0 {
                        break;
                    }
                    sink.bytes(&rest[..take]);
                    line_start = rest[take - 1] == b'\n';
                    i += take;
                }
            }
        }
        if eof {
            let end = base + filled as u64;
            if in_separator {
                // A separator line with no message after it: an empty message.
                sink.start(end);
                in_message = true;
            }
            if in_message {
                sink.end(end)?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an mbox file: it is empty",
                ));
            }
            return Ok(());
        }
        // Carry the undecided bytes (fewer than a separator's length) to the front.
        buf.copy_within(i..filled, 0);
        base += i as u64;
        filled -= i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects messages as `(start, end, bytes)`.
    #[derive(Default)]
    struct Collect {
        messages: Vec<(u64, u64, Vec<u8>)>,
        current: Vec<u8>,
        start: u64,
    }

    impl MboxSink for Collect {
        fn start(&mut self, at: u64) {
            self.start = at;
            self.current.clear();
        }
        fn bytes(&mut self, bytes: &[u8]) {
            self.current.extend_from_slice(bytes);
        }
        fn end(&mut self, at: u64) -> io::Result<()> {
            assert_eq!(at - self.start, self.current.len() as u64);
            self.messages
                .push((self.start, at, std::mem::take(&mut self.current)));
            Ok(())
        }
    }

    /// A reader that returns at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn split_all(mbox: &[u8], step: usize) -> io::Result<Vec<(u64, u64, Vec<u8>)>> {
        let mut sink = Collect::default();
        split(&mut Trickle { data: mbox, step }, &mut sink)?;
        Ok(sink.messages)
    }

    #[test]
    fn messages_are_found_at_any_read_size() {
        let mbox: &[u8] =
            b"From a@b Sat Jan  1 00:00:00 2000\nSubject: one\n\n>From here\nFrom: x\n\n\
            From c@d Sat Jan  1 00:00:00 2000\r\nSubject: two\r\n\r\nbody\r\n\r\n\
            From e@f Sat Jan  1 00:00:00 2000\nno blank line at the end";
        for step in [1, 2, 3, 4, 5, 6, 7, 64, 1 << 20] {
            let messages = split_all(mbox, step).unwrap();
            let bodies: Vec<&[u8]> = messages.iter().map(|m| m.2.as_slice()).collect();
            assert_eq!(
                bodies,
                [
                    &b"Subject: one\n\n>From here\nFrom: x\n\n"[..],
                    b"Subject: two\r\n\r\nbody\r\n\r\n",
                    b"no blank line at the end",
                ],
                "step {step}"
            );
            assert_eq!(messages[0].0, 34);
            assert_eq!(&mbox[messages[1].0 as usize..][..7], b"Subject");
        }
    }

    #[test]
    fn the_separating_empty_line_is_recognised() {
        assert_eq!(trailing_empty_line(b"x\n\n"), 1);
        assert_eq!(trailing_empty_line(b"\n\r\n"), 2);
        assert_eq!(trailing_empty_line(b"x\r\n"), 0);
        assert_eq!(trailing_empty_line(b"\n"), 0);
        assert_eq!(trailing_empty_line(b""), 0);
    }

    #[test]
    fn a_file_that_is_not_an_mbox_is_refused() {
        assert!(split_all(b"Subject: x\n\nbody\n", 64).is_err());
        assert!(split_all(b"", 64).is_err());
        assert!(split_all(b"Fro", 64).is_err());
        // A separator with nothing after it is an empty message (the caller refuses it).
        let messages = split_all(b"From x\n", 3).unwrap();
        assert_eq!(messages, [(7, 7, Vec::new())]);
    }
}
