//! `next_line` and `find_line_end` against a naive search, on arbitrary bytes.
//!
//! Input: `[max_len byte] [saw_cr byte] buf...`. `max_len` is small (0..=255) so the limit is
//! hit often.
#![no_main]

use fastsmtpd::proto::line::{find_line_end, next_line, LineError, Status};
use fastsmtpd_fuzz::{hex, naive_first_crlf, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut header = Header::new(data);
    let max = header.u8() as usize;
    let saw_cr = header.u8() & 1 == 1;
    let buf = header.rest();
    check_next_line(buf, max);
    check_find_line_end(buf, saw_cr);
});

fn check_next_line(buf: &[u8], max: usize) {
    let got = next_line(buf, max);
    let first = naive_first_crlf(buf);
    match got {
        Ok(Status::Complete { line, consumed }) => {
            assert!(
                consumed <= max,
                "consumed {consumed} > max {max}: {}",
                hex(buf)
            );
            assert!(consumed >= 2 && consumed <= buf.len());
            assert_eq!(&buf[consumed - 2..consumed], b"\r\n", "{}", hex(buf));
            // `line` is the start of `buf`, right up to the CR LF.
            assert_eq!(line.as_ptr(), buf.as_ptr());
            assert_eq!(line.len(), consumed - 2);
            assert!(
                naive_first_crlf(line).is_none(),
                "CRLF inside line: {}",
                hex(buf)
            );
            assert_eq!(
                first,
                Some(consumed - 2),
                "not the first CRLF: {}",
                hex(buf)
            );
        }
        Ok(Status::Partial) => {
            assert!(buf.len() < max, "Partial at len {} max {max}", buf.len());
            assert_eq!(first, None, "Partial with a CRLF in buf: {}", hex(buf));
        }
        Err(LineError::TooLong) => {
            assert!(buf.len() >= max, "TooLong at len {} max {max}", buf.len());
            // No CR LF ends within the first `max` bytes.
            if let Some(p) = first {
                assert!(
                    p + 2 > max,
                    "TooLong but CRLF ends at {}: {}",
                    p + 2,
                    hex(buf)
                );
            }
        }
    }
    // The naive definition, in full.
    let want = match first {
        Some(p) if p + 2 <= max => Ok(Status::Complete {
            line: &buf[..p],
            consumed: p + 2,
        }),
        _ if buf.len() >= max => Err(LineError::TooLong),
        _ => Ok(Status::Partial),
    };
    assert_eq!(got, want, "max {max} buf {}", hex(buf));
    // Framing looks only at the first `max` bytes: what follows them changes nothing.
    if buf.len() > max {
        assert_eq!(
            next_line(&buf[..max], max),
            got,
            "max {max} buf {}",
            hex(buf)
        );
    }
}

fn check_find_line_end(buf: &[u8], saw_cr: bool) {
    let got = find_line_end(buf, saw_cr);
    // Naive: put the byte before in front and search for the first CR LF.
    let mut framed = Vec::with_capacity(buf.len() + 1);
    framed.push(if saw_cr { b'\r' } else { b'x' });
    framed.extend_from_slice(buf);
    let want = naive_first_crlf(&framed).map(|p| p + 1);
    assert_eq!(got, want, "saw_cr {saw_cr} buf {}", hex(buf));
    if let Some(end) = got {
        assert!(end >= 1 && end <= buf.len());
        assert_eq!(buf[end - 1], b'\n');
        // Cut anywhere before the end, the two halves find the same line end.
        for cut in [0, end / 2, end - 1] {
            let (a, b) = buf.split_at(cut);
            assert_eq!(find_line_end(a, saw_cr), None, "cut {cut}: {}", hex(buf));
            let carried = match a.last() {
                Some(&last) => last == b'\r',
                None => saw_cr,
            };
            assert_eq!(
                find_line_end(b, carried).map(|e| e + cut),
                Some(end),
                "cut {cut} saw_cr {saw_cr}: {}",
                hex(buf)
            );
        }
    }
}
