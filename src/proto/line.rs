//! Command-line framing: find the next `CR LF`-terminated line in a byte buffer.
//!
//! What it does: given the bytes received so far, say whether they start with a complete
//! command line (and where it ends), or are still incomplete, or are already longer than the
//! configured limit without a line end.
//!
//! What it does not do: interpret the line (see [`super::command`]), or look for the end of
//! message data (see [`super::data`]).
//!
//! RFC 5321 §2.3.8: a line ends only at the two octets `CR LF`. A bare `LF` or bare `CR` is
//! ordinary (if invalid) content of the line, so `NOOP\nNOOP\r\n` is *one* line; the command
//! parser then rejects it because of the bare `LF`. Treating bare `LF` as a line end is how
//! SMTP smuggling starts, so this module never does.

use memchr::memchr;

/// The outcome of looking for one line at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// A complete line: `line` excludes the terminating `CR LF`; `consumed` includes it.
    Complete {
        /// The line's bytes without the final `CR LF`.
        line: T,
        /// How many bytes of the buffer the line occupies, `CR LF` included.
        consumed: usize,
    },
    /// No `CR LF` yet and the bytes so far are within the limit: wait for more input.
    Partial,
}

/// Why framing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// `max_len` bytes arrived without a `CR LF` inside them.
    TooLong,
}

/// Finds the first `CR LF`-terminated line at the start of `buf`.
///
/// `max_len` counts the whole line including its `CR LF` (RFC 5321 §4.5.3.1.4 counts the same
/// way: 512 octets "including the command word and the `<CRLF>`"). Only the first `max_len`
/// bytes are examined, so the cost is bounded whatever the client sends.
pub fn next_line(buf: &[u8], max_len: usize) -> Result<Status<&[u8]>, LineError> {
    let window = &buf[..buf.len().min(max_len)];
    let mut from = 0;
    while let Some(offset) = memchr(b'\n', &window[from..]) {
        let lf = from + offset;
        if lf > 0 && window[lf - 1] == b'\r' {
            return Ok(Status::Complete {
                line: &buf[..lf - 1],
                consumed: lf + 1,
            });
        }
        // A bare LF is content, not a line end (RFC 5321 §2.3.8).
        from = lf + 1;
    }
    if buf.len() >= max_len {
        Err(LineError::TooLong)
    } else {
        Ok(Status::Partial)
    }
}

/// Finds the end of an overlong line that is being skipped.
///
/// `saw_cr` says whether the byte just before `buf` was a `CR` (the `CR LF` may straddle two
/// reads). Returns the number of bytes up to and including the `LF` that ends the line, or
/// `None` when `buf` holds no line end (all of it is skipped).
pub fn find_line_end(buf: &[u8], saw_cr: bool) -> Option<usize> {
    if saw_cr && buf.first() == Some(&b'\n') {
        return Some(1);
    }
    let mut from = 0;
    while let Some(offset) = memchr(b'\n', &buf[from..]) {
        let lf = from + offset;
        if lf > 0 && buf[lf - 1] == b'\r' {
            return Some(lf + 1);
        }
        from = lf + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64;

    #[test]
    fn complete_lines() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"NOOP\r\n", b"NOOP", 6),
            (b"\r\n", b"", 2),
            (b"NOOP\r\nQUIT\r\n", b"NOOP", 6),
            // A bare LF does not end a line: the whole thing is one line.
            (b"NOOP\nNOOP\r\n", b"NOOP\nNOOP", 11),
            (b"\nX\r\n", b"\nX", 4),
            // A bare CR neither.
            (b"NO\rOP\r\n", b"NO\rOP", 7),
            (b"\r\r\n", b"\r", 3),
        ];
        for &(input, line, consumed) in cases {
            assert_eq!(
                next_line(input, MAX),
                Ok(Status::Complete { line, consumed }),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn every_proper_prefix_is_partial() {
        let input = b"MAIL FROM:<someone@example.org> SIZE=1000\r\n";
        for end in 0..input.len() {
            assert_eq!(
                next_line(&input[..end], MAX),
                Ok(Status::Partial),
                "prefix of {end} bytes"
            );
        }
        assert!(matches!(next_line(input, MAX), Ok(Status::Complete { .. })));
    }

    #[test]
    fn limit_counts_crlf() {
        let mut exact = vec![b'a'; MAX - 2];
        exact.extend_from_slice(b"\r\n");
        assert_eq!(
            next_line(&exact, MAX),
            Ok(Status::Complete {
                line: &exact[..MAX - 2],
                consumed: MAX
            })
        );
        let mut over = vec![b'a'; MAX - 1];
        over.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&over, MAX), Err(LineError::TooLong));
        assert_eq!(next_line(&over[..MAX - 1], MAX), Ok(Status::Partial));
        assert_eq!(next_line(&[b'x'; 10_000], MAX), Err(LineError::TooLong));
    }

    #[test]
    fn line_end_of_skipped_line() {
        assert_eq!(find_line_end(b"abc", false), None);
        assert_eq!(find_line_end(b"abc\r", false), None);
        assert_eq!(find_line_end(b"\nNOOP", true), Some(1));
        assert_eq!(find_line_end(b"\nNOOP", false), None);
        assert_eq!(find_line_end(b"a\nb\r\nc", false), Some(5));
        assert_eq!(find_line_end(b"\r\n", false), Some(2));
    }
}
