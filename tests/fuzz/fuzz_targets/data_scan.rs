//! `DataScanner` over arbitrary bytes, fed in fuzzer-chosen pieces, against a single-shot scan
//! and against the library's naive reference (`fastsmtpd::proto::data::reference`).
//!
//! Input: `[flags] [cut count] [cuts: u16 LE]... [splice: u8, u16 LE if flag bit 1] payload`.
//! Flag bit 0: also feed the payload one byte at a time. Flag bit 1: insert one of the
//! reference's SMTP smuggling vectors into the payload (see `fastsmtpd_fuzz::Splice`).
#![no_main]

use fastsmtpd::proto::data::reference::{self, Outcome};
use fastsmtpd::proto::data::DataScanner;
use fastsmtpd_fuzz::{cut_bounds, hex, Header, Splice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut header = Header::new(data);
    let flags = header.u8();
    let raw_cuts = header.cuts();
    let splice = (flags & 2 != 0).then(|| Splice::read(&mut header));
    let payload = header.rest();
    let spliced = splice.map(|s| s.apply(payload));
    let input = spliced.as_deref().unwrap_or(payload);

    let want = reference::scan(input);
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
            return Outcome {
                content,
                end: Some(start + scan.consumed),
                saw_bare_cr_or_lf: scanner.saw_bare_cr_or_lf(),
            };
        }
        assert_eq!(scan.consumed, piece.len(), "short consume without done");
        start = end;
    }
    Outcome {
        content,
        end: None,
        saw_bare_cr_or_lf: scanner.saw_bare_cr_or_lf(),
    }
}
