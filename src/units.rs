//! The grammar of durations and sizes, one for every flag and fault rule (and the same as
//! `smtp-loadgen`'s, which keeps its own copy of it).
//!
//! What it does: parse text into a [`Duration`] ([`parse_duration`]) or a byte count
//! ([`parse_bytes`], and [`parse_data_rate`] for bytes per second), exactly (no floating
//! point), refusing with a message that says what was wrong: a negative value, something
//! that is not a number, an unknown unit, a value too large to represent. The refusals read
//! the same in both binaries (smtp-loadgen's copy uses these texts):
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
//! [`parse_count`] reads whole numbers within bounds the caller gives, saying them as
//! "between 1 and 64" (never Rust's `1..=64`).
//!
//! ```text
//! duration = number [unit]    number = digits ["." digits] | "." digits
//!                             unit   = ns | us | µs | ms | s | m | h | d   (bare: seconds)
//! size     = digits [unit]    unit   = B | K | KB | KiB | M | MB | MiB | G | GB | GiB
//!                                      (any case; all powers of 1024; bare: bytes)
//! rate     = size ["/s"]      (bytes per second)
//! count    = digits           (a whole number, between the flag's bounds)
//! ```
//!
//! Surrounding blanks are ignored; nothing may separate the number from its unit.
//!
//! What it does not do: bounds of durations and sizes. Each flag has its own (an idle timeout of at least a second,
//! a message size of at least one byte), checked where the value is used
//! ([`crate::config::Config::validate`], the fault rules).

use std::time::Duration;

/// What a duration grammar error shows as an example.
const DURATION_EXAMPLE: &str =
    "a number and a unit: 30s, 1.5m, 200ms, 2h; a bare number is seconds";
/// What a size grammar error shows as an example.
const SIZE_EXAMPLE: &str = "a whole number and a unit: 512K, 10M, 1GiB; a bare number is bytes";

/// The units of a duration, with their length in nanoseconds. Microseconds are `us`, or `µs`
/// with MICRO SIGN (U+00B5, what a keyboard's AltGr+m types) or GREEK SMALL LETTER MU
/// (U+03BC, what many input methods and Unicode normalization (NFKC) give).
const DURATION_UNITS: [(&str, u128); 10] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("", NANOS_PER_SECOND),
    ("s", NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("h", 3600 * NANOS_PER_SECOND),
    ("d", 86_400 * NANOS_PER_SECOND),
];

/// Nanoseconds in a second.
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Fraction digits that count: beyond 18, a digit is worth less than a nanosecond even in
/// days (10^-18 d < 10^-4 ns), so later ones are dropped rather than overflow.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a duration: a decimal number (a fraction allowed) and an optional unit (`ns`, `us`
/// or `µs`, `ms`, `s`, `m`, `h`, `d`); a bare number is seconds. `30s`, `1.5m`, `200ms`,
/// `0.25` (250 ms). Exact to the nanosecond (digits below one are dropped).
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
    let Some(&(_, per_unit)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "{text:?}: unknown unit {unit:?} (ns, us, µs, ms, s, m, h, d)"
        ));
    };
    let too_large = || format!("{text:?}: too large a duration");
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| too_large())?,
    };
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let fraction_nanos = match fraction {
        "" => 0,
        digits => {
            // At most 18 digits: fits in u128 with room for the multiplication below.
            let value: u128 = digits.parse().map_err(|_| too_large())?;
            value * per_unit / 10u128.pow(digits.len() as u32)
        }
    };
    let nanos = whole
        .checked_mul(per_unit)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_large)?;
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| too_large())?;
    Ok(Duration::new(seconds, (nanos % NANOS_PER_SECOND) as u32))
}

/// Shows a duration in the grammar [`parse_duration`] reads, in the largest unit that
/// divides it exactly: `1d`, `90s`, `1500ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (name, per_unit) in [
        ("d", 86_400 * NANOS_PER_SECOND),
        ("h", 3600 * NANOS_PER_SECOND),
        ("m", 60 * NANOS_PER_SECOND),
        ("s", NANOS_PER_SECOND),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos % per_unit == 0 {
            return format!("{}{name}", nanos / per_unit);
        }
    }
    format!("{nanos}ns")
}

/// Parses a byte count: a whole number and an optional unit, case-insensitive: `B`, `K`/`KB`/
/// `KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, all powers of 1024 (`10M` is 10 MiB, as `SIZE` and
/// Postfix's `message_size_limit` count in bytes and a user means mebibytes); a bare number
/// is bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("{text:?}: a size cannot be negative"));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if unit.starts_with('.') {
        return Err(format!(
            "{text:?}: a size is a whole number (use a smaller unit: 1536K, not 1.5M)"
        ));
    }
    if digits.is_empty() {
        return Err(format!("{text:?} is not a size ({SIZE_EXAMPLE})"));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (B, K, KB, KiB, M, MB, MiB, G, GB, GiB)"
            ))
        }
    };
    let too_large = || format!("{text:?}: too large a size");
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    number.checked_mul(1 << shift).ok_or_else(too_large)
}

/// Parses a whole number from `min` to `max` (a count: connections, threads, errors). The
/// refusal names the bounds in words: `"0": must be between 1 and 64`.
pub fn parse_count(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let text = text.trim();
    let bounds = format!("between {min} and {max}");
    if text.starts_with('-') {
        return Err(format!(
            "{text:?}: cannot be negative (a whole number {bounds})"
        ));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a whole number ({bounds})"));
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{text:?}: must be {bounds}")),
    }
}

/// Parses a data rate in bytes per second: a size ([`parse_bytes`]), optionally followed by
/// `/s`: `500`, `1K`, `2MiB/s`.
pub fn parse_data_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    parse_bytes(text.strip_suffix("/s").unwrap_or(text))
        .map_err(|e| format!("{e} (a data rate is bytes per second: 500, 1K, 2M/s)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1.5m", Duration::from_secs(90)),
            ("1.5", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            (".25", Duration::from_millis(250)),
            ("2.", Duration::from_secs(2)),
            ("200ms", Duration::from_millis(200)),
            ("250us", Duration::from_micros(250)),
            ("250\u{b5}s", Duration::from_micros(250)),
            ("250\u{3bc}s", Duration::from_micros(250)),
            ("800ns", Duration::from_nanos(800)),
            ("1.5ns", Duration::from_nanos(1)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("0.000000001", Duration::from_nanos(1)),
            // Digits past a nanosecond are dropped, however many.
            ("1.0000000000000000000000000001s", Duration::from_secs(1)),
            (" 10s ", Duration::from_secs(10)),
            ("18446744073709551615", Duration::from_secs(u64::MAX)),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        let bad = [
            ("", "not a duration"),
            ("s", "not a duration"),
            (".", "not a duration"),
            ("-1s", "negative"),
            ("-0", "negative"),
            ("1.2.3s", "not a duration"),
            ("NaN", "not a duration"),
            ("inf", "not a duration"),
            ("1e3", "unknown unit"),
            ("5 s", "unknown unit"),
            ("5S", "unknown unit"),
            ("5min", "unknown unit"),
            ("5sec", "unknown unit"),
            ("18446744073709551616", "too large"),
            ("213503982334602d", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
        ];
        for (text, needle) in bad {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    /// Reviewer A, D2: the refusals read exactly as smtp-loadgen's (which copies these
    /// texts), without Rust syntax.
    #[test]
    fn refusals_read_as_documented() {
        for (text, message) in [
            ("-1s", r#""-1s": a duration cannot be negative"#),
            (
                "5min",
                r#""5min": unknown unit "min" (ns, us, µs, ms, s, m, h, d)"#,
            ),
            (
                "99999999999999999999d",
                r#""99999999999999999999d": too large a duration"#,
            ),
            (
                "x",
                r#""x" is not a duration (a number and a unit: 30s, 1.5m, 200ms, 2h; a bare number is seconds)"#,
            ),
        ] {
            assert_eq!(parse_duration(text).unwrap_err(), message);
        }
        for (text, message) in [
            ("-1", r#""-1": a size cannot be negative"#),
            (
                "10T",
                r#""10T": unknown unit "T" (B, K, KB, KiB, M, MB, MiB, G, GB, GiB)"#,
            ),
            (
                "18446744073709551616",
                r#""18446744073709551616": too large a size"#,
            ),
            (
                "1.5M",
                r#""1.5M": a size is a whole number (use a smaller unit: 1536K, not 1.5M)"#,
            ),
            (
                "K",
                r#""K" is not a size (a whole number and a unit: 512K, 10M, 1GiB; a bare number is bytes)"#,
            ),
        ] {
            assert_eq!(parse_bytes(text).unwrap_err(), message);
        }
    }

    #[test]
    fn counts_say_their_bounds_in_words() {
        assert_eq!(parse_count("7", 1, 64), Ok(7));
        assert_eq!(parse_count(" 64 ", 1, 64), Ok(64));
        assert_eq!(parse_count("0", 0, 10), Ok(0));
        for (text, message) in [
            ("0", r#""0": must be between 1 and 64"#),
            ("65", r#""65": must be between 1 and 64"#),
            (
                "99999999999999999999",
                r#""99999999999999999999": must be between 1 and 64"#,
            ),
            (
                "-1",
                r#""-1": cannot be negative (a whole number between 1 and 64)"#,
            ),
            ("1.5", r#""1.5" is not a whole number (between 1 and 64)"#),
            ("", r#""" is not a whole number (between 1 and 64)"#),
            ("+3", r#""+3" is not a whole number (between 1 and 64)"#),
        ] {
            assert_eq!(parse_count(text, 1, 64).unwrap_err(), message);
        }
    }

    #[test]
    fn formatted_durations_read_back() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(250), "250us"),
            (Duration::from_nanos(1_000_001), "1000001ns"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("1024", 1024),
            ("1024B", 1024),
            ("1024b", 1024),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KB", 64 << 10),
            ("64kib", 64 << 10),
            ("64KiB", 64 << 10),
            ("10M", 10 << 20),
            ("10MB", 10 << 20),
            ("10MiB", 10 << 20),
            ("10mb", 10 << 20),
            ("2G", 2 << 30),
            ("2GB", 2 << 30),
            ("2GiB", 2 << 30),
            (" 7 ", 7),
            ("18446744073709551615", u64::MAX),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_bytes(text), Ok(expected), "{text}");
        }
        let bad = [
            ("", "not a size"),
            ("K", "not a size"),
            ("-1", "negative"),
            ("1.5M", "whole number"),
            ("10 M", "unknown unit"),
            ("10T", "unknown unit"),
            ("10Mi", "unknown unit"),
            ("10MBs", "unknown unit"),
            ("18446744073709551616", "too large"),
            ("17179869184G", "too large"),
        ];
        for (text, needle) in bad {
            let error = parse_bytes(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn data_rates() {
        assert_eq!(parse_data_rate("500"), Ok(500));
        assert_eq!(parse_data_rate("1K"), Ok(1024));
        assert_eq!(parse_data_rate("2MiB/s"), Ok(2 << 20));
        assert_eq!(parse_data_rate("0"), Ok(0));
        let error = parse_data_rate("1K/m").unwrap_err();
        assert!(error.contains("bytes per second"), "{error}");
    }
}
