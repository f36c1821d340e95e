//! Writing a notification's lines safely: untrusted text made printable and bounded, fields
//! folded under the line limit, RFC 5322 dates and RFC 6533 `utf-8` addresses.
//!
//! What it does: turn bytes nobody vouches for (the next hop's reply text, addresses, the
//! original's header lines) into text that cannot break the notification's structure: no CR,
//! LF or NUL survives, runs of any length are cut at a named bound, and every line written is
//! at most [`MAX_LINE_LEN`] octets (RFC 5322 §2.1.1), folded at spaces where there are some.
//!
//! What it does not do: decide which fields a notification has (the parent module does), or
//! read a clock: dates are formatted from seconds the caller passes.

/// The longest line this module writes, CR LF not counted (RFC 5322 §2.1.1: "MUST be no more
/// than 998 characters").
pub const MAX_LINE_LEN: usize = 998;

/// Where a field or a line of the human-readable text is folded when it can be, in octets
/// (RFC 5322 §2.1.1: "SHOULD be no more than 78 characters").
pub const FOLD_LEN: usize = 78;

/// The longest run without a space kept on one line, in octets; a longer run is broken into
/// pieces of this size (a space is inserted where the line is folded). Short enough that a
/// prefix or an indent plus one piece stays under [`MAX_LINE_LEN`].
pub const MAX_WORD_LEN: usize = 900;

/// What replaces a character that may not appear where it stands (a control character, a
/// byte that is not UTF-8, or non-ASCII in an ASCII-only place).
const REPLACEMENT: char = '?';

/// Text of at most `max` octets made from `bytes` for one line: CR, LF, TAB and runs of spaces
/// become one space, other control characters (NUL, DEL, C1) and bytes that are not UTF-8
/// become `?`, non-ASCII characters become `?` unless `allow_utf8`, the ends are trimmed, and
/// text longer than `max` is cut at a character boundary and ends in `...`.
pub fn one_line_text(bytes: &[u8], allow_utf8: bool, max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 4);
    let mut space_pending = false;
    'chunks: for chunk in bytes.utf8_chunks() {
        let invalid = (!chunk.invalid().is_empty()).then_some(REPLACEMENT);
        for c in chunk.valid().chars().chain(invalid) {
            let c = match c {
                ' ' | '\r' | '\n' | '\t' => {
                    space_pending = !out.is_empty();
                    continue;
                }
                c if c.is_control() => REPLACEMENT,
                c if !c.is_ascii() && !allow_utf8 => REPLACEMENT,
                c => c,
            };
            if space_pending {
                out.push(' ');
                space_pending = false;
            }
            out.push(c);
            if out.len() > max {
                break 'chunks;
            }
        }
    }
    if out.len() > max {
        let mut end = max.saturating_sub(3);
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.truncate(out.trim_end().len());
        out.push_str("...");
    }
    out
}

/// An address for a field or a header, at most `max` octets: every control character (CR,
/// LF, NUL, TAB included) and every byte that is not UTF-8 becomes `?`; spaces (possible in a
/// quoted local part) are kept as they are. A longer address is cut and ends in `...`.
pub fn address_text(address: &str, max: usize) -> String {
    let mut out = String::with_capacity(address.len().min(max));
    for c in address.chars() {
        let c = if c.is_control() { REPLACEMENT } else { c };
        if out.len() + c.len_utf8() > max.saturating_sub(3) {
            out.push_str("...");
            break;
        }
        out.push(c);
    }
    out
}

/// `address` in RFC 6533 §3's `utf-8-addr-unitext` form, for a `utf-8` address type inside a
/// `message/global-delivery-status`: non-ASCII characters as they are; `\`, `+`, `=`, space and
/// control characters as `\x{HEX}` (they are outside `QUCHAR`).
pub fn unitext(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        if matches!(c, '\\' | '+' | '=' | ' ') || c.is_control() {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `prefix` then the words of `value` (split at single spaces, so runs of spaces are
/// kept), breaking the line before a word that would pass [`FOLD_LEN`]: the break is CR LF and
/// `indent` in place of the space. With `indent = " "` that is RFC 5322 §2.2.3 folding, and
/// unfolding gives `value` back; with a longer indent it wraps prose. A word over
/// [`MAX_WORD_LEN`] octets is broken into pieces on character boundaries (the one change
/// unfolding does not undo). Ends with CR LF. `prefix` and `indent` must be short (under 90
/// octets) so every line stays under [`MAX_LINE_LEN`]; a line is never only white space.
pub fn folded_into(out: &mut Vec<u8>, prefix: &str, value: &str, indent: &str) {
    debug_assert!(prefix.len() < 90 && indent.len() < 90);
    out.extend_from_slice(prefix.as_bytes());
    let mut column = prefix.len();
    let mut first = true;
    for word in value.split(' ') {
        let mut pieces = word_pieces(word).peekable();
        let piece = pieces.next().unwrap_or("");
        if !first {
            if !piece.is_empty() && column + 1 + piece.len() > FOLD_LEN && column > indent.len() {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(indent.as_bytes());
                column = indent.len();
            } else {
                out.push(b' ');
                column += 1;
            }
        }
        first = false;
        out.extend_from_slice(piece.as_bytes());
        column += piece.len();
        for piece in pieces {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(indent.as_bytes());
            out.extend_from_slice(piece.as_bytes());
            column = indent.len() + piece.len();
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `word` in pieces of at most [`MAX_WORD_LEN`] octets, each ending on a character boundary
/// (one empty piece for an empty word).
fn word_pieces(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(word);
    std::iter::from_fn(move || {
        let text = rest?;
        if text.len() <= MAX_WORD_LEN {
            rest = None;
            return Some(text);
        }
        let mut end = MAX_WORD_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        rest = Some(&text[end..]);
        Some(&text[..end])
    })
}

/// Writes `seconds` since the Unix epoch as an RFC 5322 §3.3 date in UTC, e.g. `Mon, 7 Dec
/// 2026 06:20:10 +0000`.
pub fn date_into(out: &mut Vec<u8>, seconds: u64) {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[((days + 4) % 7) as usize];
    let month = MONTHS[(month - 1) as usize];
    let text = format!(
        "{weekday}, {day} {month} {year} {:02}:{:02}:{:02} +0000",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    out.extend_from_slice(text.as_bytes());
}

/// The date text of [`date_into`] as a `String`.
pub fn date(seconds: u64) -> String {
    let mut out = Vec::with_capacity(32);
    date_into(&mut out, seconds);
    String::from_utf8_lossy(&out).into_owned()
}

/// Year, month (1–12) and day (1–31) of the day `days` after 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
