//! Mailpit's search filters (`query=` of `/api/v1/search`, as Mailpit v1.30.5's
//! `tools.ArgsParser` and `storage.searchQueryBuilder` read them) translated term by term into
//! fastsmtpd's grammar ([`crate::capture::query`]), or refused with the term named.
//!
//! What it does not do: evaluate a search (the store and `crate::view` do), or parse
//! fastsmtpd's grammar (the translation is text, parsed by [`crate::capture::query::parse`]).

/// A value quoted for [`crate::capture::query`] (`"` and `\` escaped).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a Mailpit query as its `tools.ArgsParser` does: on spaces, double quotes grouping
/// a phrase (and then removed).
fn mailpit_terms(query: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut term = String::new();
    let mut in_quotes = false;
    for c in query.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => {
                if !term.is_empty() {
                    terms.push(std::mem::take(&mut term));
                }
            }
            c => term.push(c),
        }
    }
    if !term.is_empty() {
        terms.push(term);
    }
    terms
}

/// Translates a Mailpit search into fastsmtpd's grammar, term by term (all ANDed in both):
///
/// | Mailpit | fastsmtpd | note |
/// |---|---|---|
/// | `to:V` | `to~"V"` | the raw `To:` contains V |
/// | `from:V` | `header:from~"V"` | the `From:` field, not the envelope sender |
/// | `cc:V`, `reply-to:V` | `header:cc~"V"`, `header:reply-to~"V"` | |
/// | `subject:V` | `subject~"V"` | decoded subject contains V |
/// | `message-id:V` | `header:message-id~"V"` | |
/// | `after:W`, `before:W` | the same | W: RFC 3339, a date or a duration ago |
/// | `larger:N[k/m]`, `smaller:N[k/m]` | `size>N`, `size<N` | |
/// | a word or `"phrase"` | `"word"` | decoded subject or body text; Mailpit also looks in the address fields |
///
/// Everything matches case-insensitively, as a substring, as in Mailpit. Not translated
/// (an `Err` naming the term): negation (`-term`, `!term`), `is:`, `tag:`, `has:`, `bcc:`,
/// `addressed:`.
pub fn translate(query: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for term in mailpit_terms(query) {
        if term.starts_with('-') || term.starts_with('!') {
            return Err(format!(
                "search term {term:?}: negation is not supported by fastsmtpd's Mailpit compatibility"
            ));
        }
        let (key, value) = match term.split_once(':') {
            Some((key, value)) => (key.to_ascii_lowercase(), value),
            None => (String::new(), term.as_str()),
        };
        let translated = match key.as_str() {
            "to" => format!("to~{}", quoted(value)),
            "from" | "cc" | "reply-to" | "message-id" => {
                format!("header:{key}~{}", quoted(value))
            }
            "subject" => format!("subject~{}", quoted(value)),
            "after" | "before" => format!("{key}:{}", quoted(value)),
            "larger" | "smaller" => {
                let lower = value.to_ascii_lowercase();
                let number = lower.trim_end_matches('b');
                let op = if key == "larger" { '>' } else { '<' };
                format!("size{op}{}", number.to_ascii_uppercase())
            }
            "is" | "tag" | "has" | "bcc" | "addressed" => {
                return Err(format!(
                    "search term {term:?}: {key}: is not supported by fastsmtpd's Mailpit compatibility"
                ));
            }
            // Mailpit reads any other `word:word` as plain text.
            _ => quoted(&term),
        };
        out.push(translated);
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::query as grammar;
    use std::time::SystemTime;

    #[test]
    fn searches_translate_or_are_refused() {
        assert_eq!(
            translate("subject:Welcome to:jane@example.test").unwrap(),
            "subject~\"Welcome\" to~\"jane@example.test\""
        );
        assert_eq!(
            translate("from:\"Shop Team\" hello").unwrap(),
            "header:from~\"Shop Team\" \"hello\""
        );
        assert_eq!(translate("larger:10kb").unwrap(), "size>10K");
        assert_eq!(translate("odd:word").unwrap(), "\"odd:word\"");
        for bad in [
            "-subject:x",
            "!x",
            "is:read",
            "tag:a",
            "has:attachment",
            "bcc:x",
        ] {
            assert!(translate(bad).is_err(), "{bad}");
        }
        for ok in [
            "subject:Welcome",
            "to:a@b",
            "from:x cc:y reply-to:z message-id:abc@x",
            "\"a \\\"b\" c",
            "after:2026-01-01 before:5m larger:1m smaller:2k",
        ] {
            let translated = translate(ok).unwrap();
            assert!(
                grammar::parse(&translated, SystemTime::now()).is_ok(),
                "{ok} -> {translated}"
            );
        }
    }
}
