//! `--log-sessions`: one line per message attempt on standard output, for test scripts and
//! people watching a sink.
//!
//! What it does: format a record of each message attempt when its final reply is known (time,
//! client, HELO, sender, recipients, size, transfer, the reply) and hand it to a writer thread,
//! so a slow terminal or pipe never stalls an event loop.
//!
//! What it does not do: log commands one by one, or rotate anything (redirect stdout).

use crate::sink::{Envelope, Transfer};
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
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After the workers are gone: writes what is queued and stops.
    pub fn finish(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The envelope part of a record: `helo=... from=<...> to=<...>,<...> transfer=...`.
pub fn envelope_text(envelope: &Envelope<'_>) -> String {
    let recipients: Vec<String> = envelope
        .recipients()
        .map(|r| format!("<{}>", String::from_utf8_lossy(r)))
        .collect();
    format!(
        "helo={} from=<{}> to={} transfer={}",
        String::from_utf8_lossy(envelope.helo),
        String::from_utf8_lossy(envelope.sender),
        recipients.join(","),
        match envelope.transfer {
            Transfer::Data => "DATA",
            Transfer::Bdat => "BDAT",
        }
    )
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
