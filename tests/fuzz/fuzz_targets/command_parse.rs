//! `parse_command` on arbitrary bytes: never panics, borrows only from its input, refuses
//! CR/LF/NUL, and treats the verb case-insensitively. `STARTTLS` takes no argument (RFC 3207
//! §4); `AUTH` gives a SASL mechanism name (RFC 4422 §3.1: at most 20 of `A-Z 0-9 - _`, any
//! case here) and at most one initial-response word (RFC 4954 §4), both inside the line.
#![no_main]

use fastsmtpd::proto::command::{parse_command, Command, CommandError};
use fastsmtpd_fuzz::hex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let got = parse_command(line);
    // Deterministic.
    assert_eq!(got, parse_command(line));

    if line.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        assert_eq!(got, Err(CommandError::InvalidBytes), "{}", hex(line));
    }

    if let Ok(command) = got {
        // Accepted lines are UTF-8 (RFC 6531 §3.3).
        assert!(
            std::str::from_utf8(line).is_ok(),
            "accepted non-UTF-8: {}",
            hex(line)
        );
        match command {
            Command::Helo { domain } | Command::Ehlo { domain } => {
                assert_inside(domain, line);
                assert!(!domain.is_empty());
                assert!(
                    !matches!(domain.first(), Some(b' ' | b'\t')),
                    "{}",
                    hex(line)
                );
                assert!(
                    !matches!(domain.last(), Some(b' ' | b'\t')),
                    "{}",
                    hex(line)
                );
            }
            Command::Mail {
                path,
                params,
                envid,
            } => {
                assert_inside(path, line);
                if let Some(envid) = envid {
                    assert_inside(envid, line);
                    assert!(envid.len() <= 100, "{}", hex(line));
                }
                // `AUTH=` is flagged only when the line has one (RFC 4954 §5).
                if params.auth {
                    assert!(
                        line.to_ascii_uppercase().windows(5).any(|w| w == b"AUTH="),
                        "{}",
                        hex(line)
                    );
                }
            }
            Command::StartTls => {
                // Only the verb, with trailing blanks at most.
                assert!(
                    line.trim_ascii_end().eq_ignore_ascii_case(b"STARTTLS"),
                    "{}",
                    hex(line)
                );
            }
            Command::Auth { mechanism, initial } => {
                assert_inside(mechanism, line);
                assert!(
                    (1..=20).contains(&mechanism.len())
                        && mechanism
                            .iter()
                            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "not a SASL name: {}",
                    hex(line)
                );
                // Words of the line without its trailing blanks: the verb, the mechanism,
                // the initial response if any, and nothing more.
                let mut end = line.len();
                while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
                    end -= 1;
                }
                let words: Vec<&[u8]> = line[..end]
                    .split(|&b| b == b' ')
                    .filter(|w| !w.is_empty())
                    .collect();
                assert!(words[0].eq_ignore_ascii_case(b"AUTH"), "{}", hex(line));
                assert_eq!(words.get(1), Some(&mechanism), "{}", hex(line));
                assert_eq!(words.get(2).copied(), initial, "{}", hex(line));
                assert!(words.len() <= 3, "{}", hex(line));
                if let Some(initial) = initial {
                    assert_inside(initial, line);
                }
            }
            Command::Rcpt { path, params } => {
                assert_inside(path, line);
                if let Some(orcpt) = params.orcpt {
                    assert_inside(orcpt, line);
                    assert!(orcpt.len() <= 500, "{}", hex(line));
                }
                assert!(!path.is_empty(), "empty forward path: {}", hex(line));
            }
            Command::Data
            | Command::Bdat { .. }
            | Command::Rset
            | Command::Noop
            | Command::Vrfy
            | Command::Help
            | Command::Quit => {}
        }
    }

    // The verb (up to the first space) is case-insensitive (RFC 5321 §2.4).
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    for case in [u8::to_ascii_uppercase, u8::to_ascii_lowercase] {
        let mut changed = line.to_vec();
        changed[..verb_end].iter_mut().for_each(|b| *b = case(b));
        assert_eq!(
            parse_command(&changed),
            got,
            "verb case changed result: {}",
            hex(line)
        );
    }
});

/// `part` lies within `whole` (compared as address ranges).
fn assert_inside(part: &[u8], whole: &[u8]) {
    let start = whole.as_ptr() as usize;
    let end = start + whole.len();
    let p = part.as_ptr() as usize;
    assert!(
        p >= start && p + part.len() <= end,
        "slice outside input: {}",
        hex(whole)
    );
}
