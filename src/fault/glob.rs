//! The `from=` / `to=` patterns of fault rules: `*` matches any run of bytes, case-insensitively
//! (addresses compare without regard to case in practice, RFC 5321 §2.4 notwithstanding).
//!
//! What it does not do: character classes, `?`, or escaping: addresses rarely need them.

/// Case-insensitive match of `text` against `pattern`, where `*` matches any run of bytes.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point (linear in practice).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*@bad.example", b"x@BAD.example"));
        assert!(glob(b"spam*@*", b"spam42@host"));
        assert!(!glob(b"spam*@*", b"ham@host"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"exact", b"EXACT"));
    }
}
