//! `--log-sessions`: one line per message attempt on standard output, for test scripts and
//! people watching a sink.
//!
//! What it does: format a record of each message attempt when its final reply is known (time,
//! client, HELO, sender, recipients, size, transfer, the reply) and hand it to a writer thread,
//! so a slow terminal or pipe never stalls an event loop.
//!
//! [`Logged`] adds the log to a connection's sink: it passes every call through to the sink
//! it wraps and writes a record when the session reports a message attempt's outcome.
//!
//! What it does not do: log commands one by one, or rotate anything (redirect stdout).

use crate::lock::lock;
use crate::proto::command::is_unsafe_char;
use crate::proto::envelope::{Envelope, Transfer};
use crate::proto::sink::{MessageSink, Verdict};
use crate::store::record::rfc3339;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::SystemTime;

/// The writer thread.
#[derive(Debug)]
pub struct TxLog {
    sender: Mutex<Option<Sender<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl TxLog {
    /// Starts the writer thread (lines go to standard output).
    pub fn start() -> io::Result<TxLog> {
        let (sender, lines) = mpsc::channel::<String>();
        let thread = std::thread::Builder::new()
            .name("fastsmtpd-log".into())
            .spawn(move || {
                let mut batch = String::new();
                while let Ok(line) = lines.recv() {
                    batch.push_str(&line);
                    // Write once the queue is drained: batches under load, prompt when idle.
                    while let Ok(line) = lines.try_recv() {
                        batch.push_str(&line);
                    }
                    // Locked per batch only: the server's own messages share stdout.
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(batch.as_bytes());
                    let _ = out.flush();
                    batch.clear();
                }
            })?;
        Ok(TxLog {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A sender for one connection (`None` once finishing).
    pub fn sender(&self) -> Option<Sender<String>> {
        lock(&self.sender).clone()
    }

    /// After the workers are gone: writes what is queued and stops.
    pub fn finish(&self) {
        lock(&self.sender).take();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// The envelope part of a record: `helo=... from=<...> to=<...>,<...> transfer=...`. Every
/// client-supplied value is written as a logfmt value ([`logfmt_value`]): a HELO such as
/// `x from=<ceo@bank.example>` cannot forge a field, and no control byte reaches a terminal.
pub fn envelope_text(envelope: &Envelope<'_>) -> String {
    let mut recipients = Vec::new();
    for (i, recipient) in envelope.recipients().enumerate() {
        if i > 0 {
            recipients.push(b',');
        }
        recipients.push(b'<');
        recipients.extend_from_slice(recipient);
        recipients.push(b'>');
    }
    let mut sender = Vec::with_capacity(envelope.sender.len() + 2);
    sender.push(b'<');
    sender.extend_from_slice(envelope.sender);
    sender.push(b'>');
    let mut text = format!(
        "helo={} from={} to={} transfer={}",
        logfmt_value(envelope.helo),
        logfmt_value(&sender),
        logfmt_value(&recipients),
        match envelope.transfer {
            Transfer::Data => "DATA",
            Transfer::Bdat => "BDAT",
        }
    );
    // TLS parameters are the library's names (no client bytes) but for SNI, a DNS name the
    // TLS library checked; the user is the client's and is quoted like the rest.
    if let Some(tls) = envelope.tls {
        text.push_str(&format!(" tls={} cipher={}", tls.version, tls.cipher));
        if let Some(sni) = &tls.sni {
            text.push_str(&format!(" sni={}", logfmt_value(sni.as_bytes())));
        }
    }
    if let Some(user) = envelope.auth_user {
        text.push_str(&format!(" auth={}", logfmt_value(user)));
    }
    text
}

/// `bytes` as a logfmt value: as they are when they are printable and hold no space, `"`,
/// `=` or `\`; otherwise in double quotes, with `"` and `\` escaped by a backslash, control
/// characters as `\n`, `\t` or `\xNN`, and octets that are not UTF-8 as `\xNN`.
pub fn logfmt_value(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let plain = !bytes.is_empty()
        && matches!(text, std::borrow::Cow::Borrowed(_))
        && text
            .chars()
            .all(|c| !is_unsafe_char(c) && !matches!(c, ' ' | '"' | '=' | '\\'));
    if plain {
        return text.into_owned();
    }
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('"');
    out
}

/// A whole record line.
pub fn record_line(client: SocketAddr, envelope: &str, size: u64, reply: &[u8]) -> String {
    let reply = String::from_utf8_lossy(reply);
    format!(
        "{} client={client} {envelope} size={size} reply=\"{}\"\n",
        rfc3339(SystemTime::now()),
        reply.trim_end()
    )
}

/// A connection's sink with `--log-sessions` records added: every call goes through to
/// `inner`; outcomes also become log lines. Without a log it costs one pointer.
#[derive(Debug)]
pub struct Logged<S> {
    /// The sink that keeps (or discards) the messages.
    inner: S,
    /// The log, when asked for.
    log: Option<Box<ConnLog>>,
}

/// What a logging connection keeps.
#[derive(Debug)]
struct ConnLog {
    /// The writer thread's queue.
    lines: Sender<String>,
    /// The client's address.
    client: SocketAddr,
    /// The envelope of the message whose store is pending (its outcome comes later).
    pending_envelope: String,
}

impl<S> Logged<S> {
    /// Wraps `inner`; with `log`, records each message attempt of the connection from
    /// `client`.
    pub fn new(inner: S, log: Option<&TxLog>, client: SocketAddr) -> Logged<S> {
        let log = log.and_then(TxLog::sender).map(|lines| {
            Box::new(ConnLog {
                lines,
                client,
                pending_envelope: String::new(),
            })
        });
        Logged { inner, log }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped sink, to tell it what happened outside the session (the stores' word).
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: MessageSink> MessageSink for Logged<S> {
    fn on_message_start(&mut self, envelope: &Envelope<'_>) {
        self.inner.on_message_start(envelope);
    }

    fn on_message_data(&mut self, piece: &[u8]) {
        self.inner.on_message_data(piece);
    }

    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
        if let Some(log) = &mut self.log {
            // Kept for the record written when a pending store reports.
            log.pending_envelope = envelope_text(envelope);
        }
        self.inner.on_message_end(envelope)
    }

    fn on_message_abort(&mut self) {
        self.inner.on_message_abort();
    }

    fn on_content_end(&mut self, input_end: usize, octets: u64) {
        self.inner.on_content_end(input_end, octets);
    }

    fn queue_id(&self) -> Option<crate::proto::sink::QueueId> {
        self.inner.queue_id()
    }

    fn on_outcome(&mut self, envelope: Option<&Envelope<'_>>, size: u64, reply: &[u8]) {
        self.inner.on_outcome(envelope, size, reply);
        let Some(log) = &mut self.log else {
            return;
        };
        let envelope = match envelope {
            Some(envelope) => envelope_text(envelope),
            None => std::mem::take(&mut log.pending_envelope),
        };
        let line = record_line(log.client, &envelope, size, reply);
        // The writer is gone only while shutting down; a lost line is all that happens.
        let _ = log.lines.send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_cannot_forge_fields_or_carry_control_bytes() {
        assert_eq!(logfmt_value(b"mx.example"), "mx.example");
        assert_eq!(logfmt_value(b"<a@b.example>"), "<a@b.example>");
        assert_eq!(logfmt_value(b""), "\"\"");
        assert_eq!(
            logfmt_value(b"evil.example\x1b]0;x\x07 from=<ceo@bank.example>"),
            "\"evil.example\\x1b]0;x\\x07 from=<ceo@bank.example>\""
        );
        assert_eq!(logfmt_value(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            logfmt_value(b"j\xc3\xb6rg"),
            "j\u{f6}rg",
            "printable UTF-8 stays"
        );
        assert_eq!(logfmt_value(b"\xff"), "\"\\xff\"");
        assert_eq!(logfmt_value(b"a\tb"), "\"a\\tb\"");
        assert_eq!(
            logfmt_value("a\u{202e}b".as_bytes()),
            "\"a\\u{202e}b\"",
            "a text-direction override is spelled out"
        );
    }
}
