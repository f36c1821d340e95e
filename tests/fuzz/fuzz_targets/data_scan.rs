//! `DataScanner` over arbitrary bytes, fed in fuzzer-chosen pieces, against a single-shot scan
//! and against a naive reference written here.
//!
//! Input: `[flags] [cut count] [cuts: u16 LE]... payload`. Flag bit 0: also feed the payload
//! one byte at a time.
#![no_main]

use fastsmtpd::proto::data::DataScanner;
use fastsmtpd_fuzz::{cut_bounds, hex, naive_first_crlf, Header};
use libfuzzer_sys::fuzz_target;

/// (content, bytes consumed when the terminator was found, bare CR/LF seen).
type Outcome = (Vec<u8>, Option<usize>, bool);

fuzz_target!(|data: &[u8]| {
    let mut header = Header::new(data);
    let flags = header.u8();
    let raw_cuts = header.cuts();
    let input = header.rest();

    let want = reference(input);
    let whole = scan_pieces(input, &[input.len()]);
    assert_eq!(whole, want, "single shot vs reference: {}", hex(input));
    let split = scan_pieces(input, &cut_bounds(&raw_cuts, input.len()));
    assert_eq!(
        split,
        want,
        "split {raw_cuts:?} vs reference: {}",
        hex(input)
    );
    if flags & 1 == 1 {
        let every: Vec<usize> = (0..=input.len()).collect();
        assert_eq!(scan_pieces(input, &every), want, "bytewise: {}", hex(input));
    }
});

/// Feeds `input[prev..end]` for each `end` in `ends` (ascending, last = len) to one scanner.
fn scan_pieces(input: &[u8], ends: &[usize]) -> Outcome {
    let mut scanner = DataScanner::new();
    let mut content = Vec::new();
    let mut start = 0;
    for &end in ends {
        let piece = &input[start..end];
        let scan = scanner.scan(piece, |p| content.extend_from_slice(p));
        assert!(scan.consumed <= piece.len());
        if scan.done {
            assert!(scan.consumed >= 1);
            return (
                content,
                Some(start + scan.consumed),
                scanner.saw_bare_cr_or_lf(),
            );
        }
        assert_eq!(scan.consumed, piece.len(), "short consume without done");
        start = end;
    }
    (content, None, scanner.saw_bare_cr_or_lf())
}

/// The rules of RFC 5321 §4.1.1.4 / §4.5.2 applied the obvious way, independently of the
/// scanner's state machine.
fn reference(input: &[u8]) -> Outcome {
    // The CR LF of the DATA command line precedes the input.
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let end = framed
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|p| p + 5 - 2);

    // Content: whole lines before the terminating "." line, each without a leading dot.
    let body = match end {
        Some(e) => &input[..e - 3], // up to the "." of the terminator
        None => input,
    };
    let mut content = Vec::new();
    let mut rest = body;
    while let Some(p) = naive_first_crlf(rest) {
        let line = &rest[..p];
        content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        content.extend_from_slice(b"\r\n");
        rest = &rest[p + 2..];
    }
    match end {
        Some(_) => assert!(rest.is_empty()),
        None => {
            // An unfinished last line: what might still become the terminator (".", ".\r")
            // is held back; otherwise it goes out, minus a leading dot.
            if rest != b".\r" {
                content.extend_from_slice(rest.strip_prefix(b".").unwrap_or(rest));
            }
        }
    }

    // Bare CR / bare LF among the bytes looked at; a CR at the very end is undecided.
    let seen = &input[..end.unwrap_or(input.len())];
    let bare = (0..seen.len()).any(|i| match seen[i] {
        b'\n' => i == 0 || seen[i - 1] != b'\r',
        b'\r' => i + 1 < seen.len() && seen[i + 1] != b'\n',
        _ => false,
    });
    (content, end, bare)
}
