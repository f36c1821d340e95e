//! Durations and sizes with units: the grammar every smtp-loadgen flag takes, the same as
//! fastsmtpd's (`fastsmtpd::config::parse_duration` / `parse_bytes`; each crate keeps its
//! own code, and both are checked against the table in `units/cases.rs`).
//!
//! * **Duration**: a decimal number (a fraction allowed: `1.5`, `.5`, `5.`) and an optional
//!   unit, `ns`, `us` (or `µs`, with MICRO SIGN U+00B5 or GREEK SMALL LETTER MU U+03BC),
//!   `ms`, `s`, `m` (minutes), `h`, `d` (24 h), with nothing
//!   between them. A bare number is in the flag's historical unit (seconds for every
//!   smtp-loadgen flag). The value is computed exactly in nanoseconds (fractions of a
//!   nanosecond are dropped), so `800ns` is 800 ns and `1.5ms` 1 500 000 ns. Negative
//!   numbers, `NaN`, `inf`, exponents and values past `Duration::MAX` are refused.
//! * **Size**: a whole number and an optional unit, case-insensitive: `B`, `K`/`KB`/`KiB`,
//!   `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, all binary multiples (1024), as Postfix's and most
//!   mail servers' size limits are meant (`10M` is 10 485 760 bytes). Fractions are refused
//!   (write `1536K`, not `1.5M`), as are values past `u64::MAX`.
//!
//! Surrounding white space is ignored; white space inside is not allowed.
//!
//! Refusals read word for word as fastsmtpd's (`fastsmtpd::units`):
//!
//! ```text
//! "-1s": a duration cannot be negative          "-1": a size cannot be negative
//! "x" is not a duration (a number and a unit: 30s, 1.5m, 200ms, 2h; a bare number is seconds)
//! "5min": unknown unit "min" (ns, us, µs, ms, s, m, h, d)
//! "99999999999999999999d": too large a duration
//! "K" is not a size (a whole number and a unit: 512K, 10M, 1GiB; a bare number is bytes)
//! "1.5M": a size is a whole number (use a smaller unit: 1536K, not 1.5M)
//! "10T": unknown unit "T" (B, K, KB, KiB, M, MB, MiB, G, GB, GiB)
//! "18446744073709551616": too large a size
//! ```
//!
//! Sizes are also written back for people: [`bytes_text`] (`64 KiB`, as `--size` reads it).
//!
//! What it does not do: decide a flag's range (a message size of at least 32 bytes, ...):
//! the caller checks the value.

#[cfg(test)]
pub mod cases;

use std::time::Duration;

/// What a duration grammar error shows as an example.
const DURATION_EXAMPLE: &str =
    "a number and a unit: 30s, 1.5m, 200ms, 2h; a bare number is seconds";
/// What a size grammar error shows as an example.
const SIZE_EXAMPLE: &str = "a whole number and a unit: 512K, 10M, 1GiB; a bare number is bytes";

/// The units a duration may have, with their length in nanoseconds. Microseconds are `us`,
/// or `µs` with MICRO SIGN (U+00B5, what a keyboard's AltGr+m types) or GREEK SMALL LETTER
/// MU (U+03BC, what many input methods and Unicode normalization (NFKC) give).
const DURATION_UNITS: [(&str, u128); 10] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("", 1_000_000_000),
];

/// The units a size may have (matched case-insensitively), with their multiple.
const SIZE_UNITS: [(&str, u64); 10] = [
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
];

/// `GiB` (kept apart: [`SIZE_UNITS`] is a fixed-size table of the others).
const GIB: (&str, u64) = ("gib", 1 << 30);

/// Nanoseconds in a second.
const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Fraction digits of a duration that are read (the rest are far below a nanosecond).
const MAX_FRACTION_DIGITS: usize = 24;

/// Parses a duration: a decimal number with an optional unit (see the module docs); a bare
/// number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!("{text:?} is not a duration ({DURATION_EXAMPLE})"));
    }
    let Some(&(_, unit_nanos)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "{text:?}: unknown unit {unit:?} (ns, us, µs, ms, s, m, h, d)"
        ));
    };
    let too_large = || format!("{text:?}: too large a duration");
    // Exact: whole * unit + fraction * unit / 10^digits, in nanoseconds.
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    // Digits past the 24th are worth less than 10^-10 ns: dropped (and 10^24 * unit still
    // fits in a u128).
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let numerator: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| too_large())?
    };
    let fraction_nanos = numerator * unit_nanos / 10u128.pow(fraction.len() as u32);
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// Parses a size in bytes: a whole number with an optional binary unit (see the module docs).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("{text:?}: a size cannot be negative"));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if unit.starts_with('.') {
        return Err(format!(
            "{text:?}: a size is a whole number (use a smaller unit: 1536K, not 1.5M)"
        ));
    }
    if number.is_empty() {
        return Err(format!("{text:?} is not a size ({SIZE_EXAMPLE})"));
    }
    let lower = unit.to_ascii_lowercase();
    let Some(&(_, multiple)) = SIZE_UNITS
        .iter()
        .chain([&GIB])
        .find(|(name, _)| *name == lower)
    else {
        return Err(format!(
            "{text:?}: unknown unit {unit:?} (B, K, KB, KiB, M, MB, MiB, G, GB, GiB)"
        ));
    };
    let too_large = || format!("{text:?}: too large a size");
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(multiple).ok_or_else(too_large)
}

/// A byte count in the largest binary unit that divides it (as `--size` reads them: `64k`
/// is 64 KiB), else in bytes.
pub fn bytes_text(n: usize) -> String {
    const MIB: usize = 1 << 20;
    const KIB: usize = 1 << 10;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else if n == 1 {
        "1 byte".to_string()
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::cases::{DURATION_CASES, SIZE_CASES};
    use super::*;

    #[test]
    fn durations_follow_the_shared_table() {
        for &(text, expected) in DURATION_CASES {
            let got = parse_duration(text);
            match expected {
                Some((secs, nanos)) => {
                    assert_eq!(got, Ok(Duration::new(secs, nanos)), "{text:?}")
                }
                None => assert!(got.is_err(), "{text:?} was accepted as {got:?}"),
            }
        }
    }

    #[test]
    fn sizes_follow_the_shared_table() {
        for &(text, expected) in SIZE_CASES {
            let got = parse_bytes(text);
            match expected {
                Some(bytes) => assert_eq!(got, Ok(bytes), "{text:?}"),
                None => assert!(got.is_err(), "{text:?} was accepted as {got:?}"),
            }
        }
    }

    #[test]
    fn errors_read_as_fastsmtpd_s() {
        // Word for word the texts of fastsmtpd::units (the module docs list them).
        let cases: [(&str, Result<Duration, String>); 6] = [
            ("-1s", Err("\"-1s\": a duration cannot be negative".into())),
            (
                "x",
                Err(
                    "\"x\" is not a duration (a number and a unit: 30s, 1.5m, 200ms, 2h; a \
                     bare number is seconds)"
                        .into(),
                ),
            ),
            (
                "5min",
                Err("\"5min\": unknown unit \"min\" (ns, us, µs, ms, s, m, h, d)".into()),
            ),
            (
                "99999999999999999999d",
                Err("\"99999999999999999999d\": too large a duration".into()),
            ),
            // Both micro signs.
            ("250\u{b5}s", Ok(Duration::from_micros(250))),
            ("250\u{3bc}s", Ok(Duration::from_micros(250))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), expected, "{text:?}");
        }
        let cases = [
            ("-1", "\"-1\": a size cannot be negative"),
            (
                "K",
                "\"K\" is not a size (a whole number and a unit: 512K, 10M, 1GiB; a bare \
                 number is bytes)",
            ),
            (
                "1.5M",
                "\"1.5M\": a size is a whole number (use a smaller unit: 1536K, not 1.5M)",
            ),
            (
                "10T",
                "\"10T\": unknown unit \"T\" (B, K, KB, KiB, M, MB, MiB, G, GB, GiB)",
            ),
            (
                "18446744073709551616",
                "\"18446744073709551616\": too large a size",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_bytes(text), Err(expected.to_string()), "{text:?}");
        }
    }
}
