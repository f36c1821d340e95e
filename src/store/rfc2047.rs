//! Decoding an unstructured header field (`Subject:`) for the JSON record: unfolding
//! (RFC 5322 §2.2.3) and RFC 2047 encoded-words, faithfully.
//!
//! What it does, in order:
//! 1. Unfolds: a line break (CR LF, or a bare LF) followed by white space is removed; the
//!    white space stays, as it is (a tab stays a tab, two spaces stay two). Then the value is
//!    trimmed at both ends (the space after the colon is not part of what a reader shows).
//! 2. Splits the value into white-space runs and the words between them. A word is an
//!    encoded-word only when the whole word is `=?charset[*language]?B|Q?text?=` (RFC 2047
//!    §2, with RFC 2231 §5's language suffix) and decodes: B is base64 (RFC 2047 §4.1), Q is
//!    `_` for a space and `=XX` for a byte (§4.2), the charset one this module knows. An
//!    encoded-word glued to other text (`(=?...?=)`, `"=?...?="`, `=?...?=x`) is text: RFC
//!    2047 §5 (1) requires white space around it in `*text`, and §5 (3) forbids one inside a
//!    quoted string, so quotes around one are no exception.
//! 3. Drops the white space between two adjacent encoded-words (§6.2), and only that: every
//!    other run of white space is kept as it is. Adjacent encoded-words of the same charset
//!    are decoded as one byte string, so a character split across two of them (as some
//!    senders split UTF-8) comes out whole, as Python's `email.header` does.
//! 4. A word that does not decode (unknown charset, bad base64, a bad `=XX`) stays as it is,
//!    white space around it included. Bytes that are not valid in the named charset become
//!    U+FFFD.
//!
//! Charsets: UTF-8 here; every other (ISO-8859-*, Windows-125x, KOI8, ISO-2022-JP, GB18030,
//! Big5, Shift_JIS, UTF-16, UTF-7...) through mail-parser's charset tables
//! (`mail_parser::decoders::charsets::map::charset_decoder`), the part of mail-parser that is
//! right; its unstructured-field parser is not used, as it inserted spaces around an
//! encoded-word inside quotes, collapsed white space and decoded unknown charsets.
//!
//! Compared with Python 3's `email.policy.default` (the unit tests run Python on a table of
//! cases): the same result, except that Python decodes an encoded-word glued to text
//! or quotes and one in an unknown charset (both left as they are here, by RFC 2047 §5 and
//! §6.2), and keeps trailing white space.
//!
//! What it does not do: structured fields (addresses, comments), RFC 2231 parameter values,
//! or enforce the 75-character limit of an encoded-word (long ones decode, as every reader
//! does).

use base64::Engine as _;

/// An unstructured field body as a reader shows it (see the module docs).
pub fn decode_unstructured(raw: &[u8]) -> String {
    let unfolded = unfold(raw);
    let value = unfolded.trim_ascii();
    if memchr::memmem::find(value, b"=?").is_none() {
        // No encoded-word (most subjects): the value as it is, invalid UTF-8 replaced; the
        // same text the word-by-word walk below gives, in a tenth of its instructions.
        return String::from_utf8_lossy(value).into_owned();
    }
    let mut out = Decoded::default();
    let mut pos = 0;
    while pos < value.len() {
        let white = value[pos..].iter().take_while(|b| is_wsp(**b)).count();
        let word_start = pos + white;
        let word_len = value[word_start..]
            .iter()
            .take_while(|b| !is_wsp(**b))
            .count();
        let space = &value[pos..word_start];
        let word = &value[word_start..word_start + word_len];
        pos = word_start + word_len;
        match encoded_word(word) {
            Some((charset, bytes)) => out.push_encoded(space, charset, bytes),
            None => out.push_text(space, word),
        }
    }
    out.finish()
}

/// The field body without its folding line breaks (RFC 5322 §2.2.3: unfolding removes the
/// CR LF only; the white space after it stays).
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => i += 2,
            b'\n' => i += 1,
            byte => {
                value.push(byte);
                i += 1;
            }
        }
    }
    value
}

/// Space or horizontal tab (RFC 5234 WSP).
fn is_wsp(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The output being built: text so far, and the bytes of a run of adjacent encoded-words in
/// one charset not yet decoded.
#[derive(Default)]
struct Decoded {
    /// Decoded text so far.
    text: String,
    /// The charset of `pending` (lowercase), if any is pending.
    charset: Option<String>,
    /// Bytes of adjacent encoded-words in `charset`, decoded together.
    pending: Vec<u8>,
    /// The last thing pushed was an encoded-word.
    after_encoded: bool,
}

impl Decoded {
    /// `space` then an encoded-word: the space goes only if the previous word was not
    /// encoded (RFC 2047 §6.2).
    fn push_encoded(&mut self, space: &[u8], charset: String, bytes: Vec<u8>) {
        if !self.after_encoded {
            self.flush();
            self.text.push_str(&String::from_utf8_lossy(space));
        } else if self.charset.as_deref() != Some(charset.as_str()) {
            self.flush();
        }
        self.charset = Some(charset);
        self.pending.extend_from_slice(&bytes);
        self.after_encoded = true;
    }

    /// `space` then a word of text, both as they are.
    fn push_text(&mut self, space: &[u8], word: &[u8]) {
        self.flush();
        self.text.push_str(&String::from_utf8_lossy(space));
        self.text.push_str(&String::from_utf8_lossy(word));
        self.after_encoded = false;
    }

    /// Decodes the pending bytes into the text.
    fn flush(&mut self) {
        if let Some(charset) = self.charset.take() {
            if let Some(decoded) = decode_charset(&charset, &self.pending) {
                self.text.push_str(&decoded);
            }
            self.pending.clear();
        }
    }

    fn finish(mut self) -> String {
        self.flush();
        self.text
    }
}

/// If `word` is a whole encoded-word that decodes: its charset (lowercase, without a
/// language) and its bytes.
fn encoded_word(word: &[u8]) -> Option<(String, Vec<u8>)> {
    let inner = word.strip_prefix(b"=?")?.strip_suffix(b"?=")?;
    let mut parts = inner.splitn(3, |&b| b == b'?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let text = parts.next()?;
    if text.contains(&b'?') {
        return None;
    }
    // RFC 2231 §5: `charset*language`.
    let charset = charset.split(|&b| b == b'*').next()?;
    if charset.is_empty() || !charset.iter().all(|&b| b.is_ascii_graphic()) {
        return None;
    }
    let charset = String::from_utf8_lossy(charset).to_ascii_lowercase();
    // Known before decoding, so a word in an unknown charset stays as it is.
    decode_charset(&charset, b"")?;
    let bytes = match encoding {
        b"B" | b"b" => B_ENCODING.decode(text).ok()?,
        b"Q" | b"q" => decode_q(text)?,
        _ => return None,
    };
    Some((charset, bytes))
}

/// RFC 2047 §4.1's B encoding: base64, padding optional (senders drop it; every reader,
/// Python's included, accepts that).
const B_ENCODING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// RFC 2047 §4.2: `_` is a space, `=XX` a byte, anything else itself.
fn decode_q(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = text.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    Some(out)
}

/// `bytes` in `charset` (lowercase) as text, or `None` for a charset not known here.
fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
    match charset {
        "utf-8" | "utf8" => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes())
            .map(|decode| decode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python 3's `email.policy.default` gives the same for each of these (checked against
    /// Python itself below).
    const AS_PYTHON: &[(&str, &str)] = &[
        (
            "=?utf-8?q?a?= =?utf-8?q?b?=  plain  =?utf-8?q?c?=",
            "ab  plain  c",
        ),
        ("multi\r\n\tline\r\n  fold", "multi\tline  fold"),
        ("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Caf\u{e9} cr\u{e8}me"),
        ("=?UTF-8?B?w6l0w6k=?=", "\u{e9}t\u{e9}"),
        ("Hello\r\n =?UTF-8?Q?W=C3=B6rld?=", "Hello W\u{f6}rld"),
        ("=?windows-1252?Q?=80_5?=", "\u{20ac} 5"),
        ("plain words", "plain words"),
        ("=?bogus?X?abc?=", "=?bogus?X?abc?="),
        ("a  b\t c", "a  b\t c"),
        ("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"),
        ("=?utf-8?q?a?=\t \t=?utf-8?q?b?=", "ab"),
        ("x =?utf-8?q?a_b?= y", "x a b y"),
        ("=?utf-8*en?q?lang?=", "lang"),
        ("=?UTF-8?B?w6k?= =?UTF-8?B?w6k?=", "\u{e9}\u{e9}"),
        // One character split across two words.
        ("=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9?=", "\u{e9}"),
        (
            "=?ISO-2022-JP?B?GyRCJEskWyRzGyhC?=",
            "\u{306b}\u{307b}\u{3093}",
        ),
    ];

    /// Where this decoder keeps to RFC 2047 and Python's `email.policy.default` does not.
    const BY_THE_RFC: &[(&str, &str, &str)] = &[
        // §5 (3): no encoded-word inside a quoted string (nor glued to text, §5 (1)).
        (
            "\"=?UTF-8?Q?quoted?=\"",
            "\"=?UTF-8?Q?quoted?=\"",
            "\"quoted\"",
        ),
        ("(=?utf-8?q?a?=)", "(=?utf-8?q?a?=)", "(a)"),
        ("=?utf-8?q?a?=b", "=?utf-8?q?a?=b", "ab"),
        // An unknown charset: the word stays, with the white space around it.
        (
            "=?x-unknown?Q?abc?= tail",
            "=?x-unknown?Q?abc?= tail",
            "abc tail",
        ),
        (
            "=?utf-8?Q?with=20space?= =?x-unknown?q?z?= =?utf-8?q?c?=",
            "with space =?x-unknown?q?z?= c",
            "with spacezc",
        ),
        // Bad base64: the word stays.
        ("=?utf-8?b?!!!?=", "=?utf-8?b?!!!?=", ""),
    ];

    #[test]
    fn decodes_as_python_does_where_python_keeps_to_the_rfc() {
        for (raw, want) in AS_PYTHON {
            assert_eq!(decode_unstructured(raw.as_bytes()), *want, "{raw:?}");
        }
    }

    #[test]
    fn keeps_to_rfc_2047_where_python_is_lenient() {
        for (raw, want, _python) in BY_THE_RFC {
            assert_eq!(decode_unstructured(raw.as_bytes()), *want, "{raw:?}");
        }
    }

    /// The tables' claims about Python, checked against Python 3 itself (`python3` is a test
    /// prerequisite): `email.message_from_string(..., policy=email.policy.default)`.
    #[test]
    fn the_tables_say_what_python_does() {
        let mut cases: Vec<(&str, &str)> = AS_PYTHON.to_vec();
        cases.extend(BY_THE_RFC.iter().map(|(raw, _, python)| (*raw, *python)));
        let input = serde_json::to_string(&cases.iter().map(|c| c.0).collect::<Vec<_>>()).unwrap();
        let script = "import email, email.policy, json, sys\n\
            for raw in json.load(sys.stdin):\n\
            \x20   m = email.message_from_string('Subject: ' + raw + '\\r\\n\\r\\nbody\\r\\n', policy=email.policy.default)\n\
            \x20   print(json.dumps(str(m['Subject'])))\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (a test prerequisite)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let said: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(said.len(), cases.len());
        for ((raw, python), said) in cases.iter().zip(&said) {
            assert_eq!(said, python, "Python on {raw:?}");
        }
    }

    #[test]
    fn bad_q_escapes_and_odd_shapes_stay_as_they_are() {
        for raw in [
            "=?utf-8?q?a=ZZ?=",
            "=?utf-8?q?a=4?=",
            "=??q?a?=",
            "=?utf-8?x?a?=",
            "=?=",
        ] {
            assert_eq!(decode_unstructured(raw.as_bytes()), raw, "{raw:?}");
        }
        assert_eq!(decode_unstructured(b"  "), "");
        assert_eq!(decode_unstructured(b""), "");
        // Invalid UTF-8 in a UTF-8 word: U+FFFD, the rest decoded.
        assert_eq!(decode_unstructured(b"=?utf-8?q?a=FFb?="), "a\u{fffd}b");
        // Without an encoded-word (the fast path): unfolded, trimmed, white space kept,
        // invalid UTF-8 replaced, as the word-by-word walk gives it.
        assert_eq!(
            decode_unstructured(b"  Hello,\r\n\t world \xff\xfe! "),
            "Hello,\t world \u{fffd}\u{fffd}!"
        );
        // A fold between `=` and `?` still makes an encoded-word once unfolded.
        assert_eq!(decode_unstructured(b"=\r\n?utf-8?q?x?="), "x");
    }
}
