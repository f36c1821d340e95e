//! `fastsmtpd queue ...`: the queue tools' command side. Reaches the queue (a running
//! relay through its control socket, else the stopped spool directly), and prints the
//! answer as text (Postfix's `postqueue -p`, `qshape`) or JSON lines (`--json`).
//!
//! Exit codes: [`EXIT_OK`], [`EXIT_NOT_FOUND`] (no live message has that id),
//! [`EXIT_ERROR`] (usage, a missing spool, a directory that is not a spool, I/O; one line
//! on stderr says which).
//!
//! What it does not do: parse the command line (clap, in `main.rs`), or decide anything
//! about a message (the relay, or [`super::offline`], does).

use super::model::{MessageInfo, Reply};
use super::render::{self, Shape, ShapeBy};
use super::request::{parse_id, request_into, Request, Target};
use super::{offline, CONTROL_SOCKET};
use crate::relay::spool::is_spool_dir;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: no live message has the id given.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: a usage or I/O error.
pub const EXIT_ERROR: u8 = 2;

/// How long the tool waits for each read from a running relay (the relay drops an exchange
/// after 30 s itself).
pub const CONTROL_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueCommand {
    /// `list`.
    List,
    /// `show ID`.
    Show(String),
    /// `shape [--by domain|hop]`.
    Shape(ShapeBy),
    /// `retry ID`, or `retry --all` (`None`).
    Retry(Option<String>),
    /// `bounce ID`.
    Bounce(String),
    /// `delete ID`, or `delete --all` (`None`).
    Delete(Option<String>),
}

/// `fastsmtpd queue`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArgs {
    /// The spool directory (the server's `--spool`).
    pub spool: PathBuf,
    /// What to do.
    pub command: QueueCommand,
    /// JSON lines instead of text.
    pub json: bool,
}

/// Runs `fastsmtpd queue`; its exit code. The answer goes to `out`, errors to `err`.
pub fn run_queue(args: &QueueArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let request = match request_of(&args.command) {
        Ok(request) => request,
        Err(text) => return fail(err, &text),
    };
    let dir = &args.spool;
    if !dir.is_dir() {
        return fail(
            err,
            &format!("--spool {}: no such directory", dir.display()),
        );
    }
    if !is_spool_dir(dir) {
        return fail(
            err,
            &format!(
                "--spool {}: not a relay spool (no seg/ directory in it)",
                dir.display()
            ),
        );
    }
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let mut printer = Printer::new(&args.command, args.json, now_ms, out);
    let served =
        match UnixStream::connect(dir.join(CONTROL_SOCKET)) {
            Ok(stream) => exchange(stream, &request, &mut |reply| printer.on_reply(reply)).map_err(
                |e| match e.kind() {
                    io::ErrorKind::BrokenPipe => e, // our reader went away: quiet
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                        e.kind(),
                        format!(
                            "the relay did not answer on {} within {}s",
                            dir.join(CONTROL_SOCKET).display(),
                            CONTROL_READ_TIMEOUT.as_secs()
                        ),
                    ),
                    _ => io::Error::new(
                        e.kind(),
                        format!("{}: {e}", dir.join(CONTROL_SOCKET).display()),
                    ),
                },
            ),
            // No socket, or one a dead server left: the spool is stopped (its lock says so).
            Err(_) => offline::execute(dir, &request, now_ms, &mut |reply| printer.on_reply(reply))
                .map(|report| {
                    // Opening a stopped spool recovers it, as the next start would: say what
                    // that repaired or found damaged, never silently.
                    if let Some(repairs) = report.repairs() {
                        let _ = writeln!(err, "fastsmtpd queue: {}: {repairs}", dir.display());
                    }
                })
                .map_err(|e| spool_error(dir, e)),
        };
    match (served, printer.outcome) {
        (Err(e), _) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        (Err(e), _) => fail(err, &e.to_string()),
        (Ok(()), Some((code, message))) => {
            if let Some(message) = message {
                let _ = writeln!(err, "fastsmtpd queue: {message}");
            }
            code
        }
        (Ok(()), None) => fail(err, "the relay's answer ended before it was complete"),
    }
}

/// Says `text` on `err`; [`EXIT_ERROR`].
fn fail(err: &mut dyn Write, text: &str) -> u8 {
    let _ = writeln!(err, "fastsmtpd queue: {text}");
    EXIT_ERROR
}

/// A stopped spool's error, with what it means for a locked one.
fn spool_error(dir: &Path, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::other(format!(
            "{e}; its control socket {} does not answer (a server started without it, or \
             one still starting or stopping)",
            dir.join(CONTROL_SOCKET).display()
        ))
    } else {
        io::Error::new(e.kind(), format!("--spool {}: {e}", dir.display()))
    }
}

/// The request for `command` (the id read as the spool prints it).
fn request_of(command: &QueueCommand) -> Result<Request, String> {
    let id = |text: &str| {
        parse_id(text.as_bytes()).ok_or_else(|| {
            format!("{text:?} is not a spool id (up to 16 hexadecimal digits, as `queue list` prints them)")
        })
    };
    let target = |text: &Option<String>| match text {
        Some(text) => id(text).map(Target::One),
        None => Ok(Target::All),
    };
    Ok(match command {
        QueueCommand::List | QueueCommand::Shape(_) => Request::List,
        QueueCommand::Show(text) => Request::Show(id(text)?),
        QueueCommand::Retry(text) => Request::Retry(target(text)?),
        QueueCommand::Bounce(text) => Request::Bounce(id(text)?),
        QueueCommand::Delete(text) => Request::Delete(target(text)?),
    })
}

/// Sends `request` on `stream` and hands each answer line to `emit`.
fn exchange(
    mut stream: UnixStream,
    request: &Request,
    emit: &mut dyn FnMut(Reply) -> io::Result<()>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(CONTROL_READ_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_READ_TIMEOUT))?;
    let mut line = Vec::new();
    request_into(request, &mut line);
    // A socket error is never `BrokenPipe` to the caller, which takes that kind for its own
    // output closed (`| head`) and exits quietly: a relay that hangs up is an error.
    let hung_up = |e: io::Error| {
        if matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the relay closed the control connection before answering ({e})"),
            )
        } else {
            e
        }
    };
    // A busy relay answers with an error and closes at once, maybe before the request is
    // written: its answer is read all the same.
    let written = stream.write_all(&line).map_err(hung_up);
    if let Err(e) = &written {
        if e.kind() != io::ErrorKind::ConnectionAborted {
            return written;
        }
    }
    let mut reader = BufReader::new(stream);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line);
        if line.is_empty() || !line.ends_with(b"\n") {
            // Nothing (more) to read: the answer is whole only if its last line came.
            read.map_err(hung_up)?;
            return written;
        }
        let reply: Reply = serde_json::from_slice(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the relay answered something unreadable: {e}"),
            )
        })?;
        let last = !matches!(reply, Reply::Message(_));
        emit(reply)?;
        if last {
            return Ok(());
        }
    }
}

/// The row name of `queue shape --by hop` until the relay's next hops are known.
const HOPS_PENDING: &str = "\0next hops";

/// Prints the answer as it comes.
struct Printer<'a> {
    /// What was asked.
    command: QueueCommand,
    /// JSON lines instead of text.
    json: bool,
    /// Now, Unix milliseconds.
    now_ms: u64,
    /// Where the answer goes.
    out: &'a mut dyn Write,
    /// `list`'s header was printed.
    header_done: bool,
    /// `list`'s total size, bytes.
    bytes: u64,
    /// `shape`'s counts.
    shape: Option<Shape>,
    /// The exit code and a line for stderr, once the answer is whole.
    outcome: Option<(u8, Option<String>)>,
}

impl<'a> Printer<'a> {
    /// A printer for `command`'s answer.
    fn new(command: &QueueCommand, json: bool, now_ms: u64, out: &'a mut dyn Write) -> Self {
        let shape = match command {
            QueueCommand::Shape(by) => Some(Shape::new(*by, now_ms)),
            _ => None,
        };
        Printer {
            command: command.clone(),
            json,
            now_ms,
            out,
            header_done: false,
            bytes: 0,
            shape,
            outcome: None,
        }
    }

    /// One answer line.
    fn on_reply(&mut self, reply: Reply) -> io::Result<()> {
        match reply {
            Reply::Message(message) => self.on_message(&message),
            Reply::Done { count, next_hops } => {
                self.on_done(count, &next_hops)?;
                self.outcome = Some((EXIT_OK, None));
                Ok(())
            }
            Reply::NotFound { error } => {
                self.outcome = Some((EXIT_NOT_FOUND, Some(error)));
                Ok(())
            }
            Reply::Error { error } => {
                self.outcome = Some((EXIT_ERROR, Some(error)));
                Ok(())
            }
        }
    }

    /// A message: a `list` entry, a `show`, or counted into the shape.
    fn on_message(&mut self, message: &MessageInfo) -> io::Result<()> {
        if let Some(shape) = &mut self.shape {
            shape.add(message, HOPS_PENDING);
            return Ok(());
        }
        if self.json {
            let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
            line.push(b'\n');
            return self.out.write_all(&line);
        }
        let mut text = String::new();
        match self.command {
            QueueCommand::Show(_) => render::show_into(message, self.now_ms, &mut text),
            _ => {
                if !self.header_done {
                    self.header_done = true;
                    text.push_str(render::list_header());
                }
                self.bytes = self.bytes.saturating_add(message.size_bytes);
                render::list_entry_into(message, &mut text);
            }
        }
        self.out.write_all(text.as_bytes())
    }

    /// The end of the answer: `list`'s trailer, the shape, an action's count.
    fn on_done(&mut self, count: u64, next_hops: &[String]) -> io::Result<()> {
        let verb = match &self.command {
            QueueCommand::List => {
                if !self.json {
                    self.out
                        .write_all(render::list_trailer(count, self.bytes).as_bytes())?;
                }
                return Ok(());
            }
            QueueCommand::Show(_) => return Ok(()),
            QueueCommand::Shape(by) => {
                let Some(shape) = &self.shape else {
                    return Ok(());
                };
                let hops = if next_hops.is_empty() {
                    "(next hops: server stopped)".to_owned()
                } else {
                    next_hops.join(",")
                };
                let mut rows = shape.rows();
                for row in &mut rows {
                    if row.name == HOPS_PENDING {
                        row.name.clone_from(&hops);
                    }
                }
                let text = if self.json {
                    let by = match by {
                        ShapeBy::Domain => "domain",
                        ShapeBy::Hop => "hop",
                    };
                    let mut line = serde_json::to_vec(&serde_json::json!({
                        "by": by,
                        "bucket_minutes": render::SHAPE_BUCKET_MINUTES,
                        "rows": rows,
                    }))
                    .map_err(io::Error::other)?;
                    line.push(b'\n');
                    line
                } else {
                    render::shape_text(&rows).into_bytes()
                };
                return self.out.write_all(&text);
            }
            QueueCommand::Retry(_) => "retried",
            QueueCommand::Bounce(_) => "bounced",
            QueueCommand::Delete(_) => "deleted",
        };
        if self.json {
            writeln!(self.out, "{{\"{verb}\":{count}}}")
        } else {
            let plural = if count == 1 { "" } else { "s" };
            writeln!(self.out, "{verb} {count} message{plural}")
        }
    }
}
