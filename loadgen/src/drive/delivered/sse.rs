//! The server-sent event stream's format, sans I/O: octets in, events out.
//!
//! What it does: split the stream into lines (CR LF, LF or a lone CR end a line, also when
//! a CR and its LF arrive in different reads), read `field: value` lines (`event`, `data`,
//! `id`; `retry` and unknown fields ignored; a line starting with `:` is a comment, e.g.
//! fastsmtpd's `: heartbeat`), and hand over an event at each empty line, as the WHATWG HTML
//! standard's "event stream interpretation" (§9.2.6) describes it: `data` lines are joined
//! with LF, the type defaults to `message`, an event without data is not dispatched, and the
//! last event id persists across events (it is what a reconnect sends as `Last-Event-ID`).
//! Bounded: a line longer than [`MAX_LINE_BYTES`] or an event's data past
//! [`MAX_EVENT_BYTES`] is an error (the stream is not the one we expect), never unbounded
//! memory.
//!
//! What it does not do: HTTP (`http` undoes the framing), interpret the events' JSON (the
//! watcher), or sockets.

/// Longest line accepted, in octets.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most data octets in one event.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Its type (`message` when the stream named none).
    pub kind: &'a str,
    /// Its data, `data` lines joined with LF.
    pub data: &'a str,
    /// The last event id seen so far (this event's, or an earlier one's).
    pub last_id: Option<&'a str>,
}

/// The parser's state between reads.
#[derive(Debug, Clone, Default)]
pub struct SseParser {
    /// The incomplete line carried from the previous read.
    line: Vec<u8>,
    /// The previous read ended in a CR: an LF at the start of the next is part of it.
    pending_cr: bool,
    /// The event type so far (empty: `message`).
    kind: String,
    /// The data so far, each line followed by LF.
    data: String,
    /// Whether any `data` line was read for the coming event.
    has_data: bool,
    /// The last event id.
    last_id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// The last event id seen.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Reads `bytes`, calling `on_event` for each complete event.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), String> {
        if self.pending_cr && !bytes.is_empty() {
            self.pending_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\r', b'\n', bytes) {
            self.extend_line(&bytes[..end])?;
            let mut next = end + 1;
            if bytes[end] == b'\r' {
                match bytes.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            bytes = &bytes[next..];
            let line = std::mem::take(&mut self.line);
            self.on_line(&line, &mut on_event)?;
            self.line = line;
            self.line.clear();
        }
        self.extend_line(bytes)
    }

    /// Adds `part` to the carried line, within [`MAX_LINE_BYTES`].
    fn extend_line(&mut self, part: &[u8]) -> Result<(), String> {
        if self.line.len() + part.len() > MAX_LINE_BYTES {
            return Err(format!(
                "an event stream line longer than {MAX_LINE_BYTES} octets"
            ));
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    /// One complete line (without its end).
    fn on_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                let data = self.data.strip_suffix('\n').unwrap_or(&self.data);
                on_event(Event {
                    kind: if self.kind.is_empty() {
                        "message"
                    } else {
                        &self.kind
                    },
                    data,
                    last_id: self.last_id.as_deref(),
                });
            }
            self.kind.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.kind),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(format!(
                        "an event with more than {MAX_EVENT_BYTES} octets of data"
                    ));
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // §9.2.6: an id with a NUL is ignored.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, data, last id) of every event in `parts` fed in order.
    fn events(parts: &[&[u8]]) -> Result<Vec<(String, String, Option<String>)>, String> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            parser.feed(part, |e| {
                out.push((
                    e.kind.to_string(),
                    e.data.to_string(),
                    e.last_id.map(str::to_string),
                ))
            })?;
        }
        Ok(out)
    }

    /// What fastsmtpd's stream looks like: messages, a heartbeat, a lagged range, an event
    /// without an id, a reset.
    const STREAM: &[u8] = b": heartbeat\n\nid: 17\nevent: message\ndata: {\"seq\":17}\n\n\
        id: 42\r\nevent: lagged\r\ndata: {\"from\":30,\"to\":42}\r\n\r\n\
        event: gone\rdata: {\"id\":\"a\"}\r\r\
        event: reset\ndata: {\"from\":99,\r\ndata:\"head\":3}\n\n\
        data:no space\n\nid\ndata\n\n";

    fn expected() -> Vec<(String, String, Option<String>)> {
        let e = |k: &str, d: &str, id: Option<&str>| (k.into(), d.into(), id.map(Into::into));
        vec![
            e("message", "{\"seq\":17}", Some("17")),
            e("lagged", "{\"from\":30,\"to\":42}", Some("42")),
            e("gone", "{\"id\":\"a\"}", Some("42")),
            e("reset", "{\"from\":99,\n\"head\":3}", Some("42")),
            e("message", "no space", Some("42")),
            // `id` alone sets an empty id; `data` alone is an empty line of data.
            e("message", "", Some("")),
        ]
    }

    #[test]
    fn events_come_out_whole_at_every_split_point() {
        assert_eq!(events(&[STREAM]).unwrap(), expected());
        for split in 0..=STREAM.len() {
            assert_eq!(
                events(&[&STREAM[..split], &STREAM[split..]]).unwrap(),
                expected(),
                "split at {split}"
            );
        }
        for a in 0..STREAM.len() {
            for b in a..STREAM.len() {
                let parts = [&STREAM[..a], &STREAM[a..b], &STREAM[b..]];
                assert_eq!(events(&parts).unwrap(), expected(), "{a} {b}");
            }
        }
    }

    #[test]
    fn an_incomplete_event_waits_and_one_without_data_is_not_dispatched() {
        assert!(events(&[b"id: 1\nevent: message\ndata: x\n"])
            .unwrap()
            .is_empty());
        assert!(events(&[b"event: message\n\n: only a comment\n\n"])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn endless_lines_and_events_are_errors_not_memory() {
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(events(&[&long]).is_err());
        assert!(events(&[&long[..10], &long[10..]]).is_err());
        let line = format!("data: {}\n", "b".repeat(1000));
        let many = line.repeat(MAX_EVENT_BYTES / 1000 + 1);
        assert!(events(&[many.as_bytes()]).is_err());
        // Not UTF-8: replaced, not a panic.
        assert_eq!(events(&[b"data: \xff\n\n"]).unwrap()[0].1, "\u{fffd}");
    }
}
