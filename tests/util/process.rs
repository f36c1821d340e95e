//! Child processes for integration tests, always with a deadline.
//!
//! Two shapes, one rule: no test waits on a child without a bound.
//! * [`run_bounded`] runs a program to completion (a client such as `python3`, `curl`,
//!   `swaks`, or the server binary refusing to start) and returns its [`Output`]; past the
//!   deadline it kills the child and fails the test, naming the program and its stderr.
//! * [`ChildGuard`] holds a long-running child (the server binary): its standard output is
//!   read line by line with a deadline per line, [`ChildGuard::wait`] bounds the wait for its
//!   exit, and dropping the guard kills it, so a failing test leaves no server behind.
//!
//! Programs the tests need from the system are [`Tool`]s: a missing one fails the test with
//! the command that installs it (nothing is skipped silently).
//!
//! Deadlines are hang guards, never timing assertions: they are generous on purpose.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A default bound for one external client run (a hang guard on a shared, slow machine).
pub const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// What a finished program left behind.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output (lossy UTF-8).
    pub stdout: String,
    /// Its standard error (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Everything it printed, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Asserts a zero exit status.
    #[track_caller]
    pub fn assert_success(&self, what: &str) {
        assert!(self.status.success(), "{what} failed\n{}", self.dump());
    }

    /// Asserts a non-zero exit status (and that the program did run to an exit).
    #[track_caller]
    pub fn assert_failure(&self, what: &str) {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "{what} should have failed with a non-zero exit status\n{}",
            self.dump()
        );
    }

    /// The lines of standard output.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_string).collect()
    }
}

/// Runs `script` with `python3 -c` within [`CHILD_LIMIT`], fails the test unless it exits 0,
/// and returns its standard output lines.
#[track_caller]
#[allow(dead_code)] // not every test file runs Python
pub fn run_python(script: &str) -> Vec<String> {
    let mut command = PYTHON3.command();
    command.args(["-c", script]);
    let output = run_bounded(command, None, CHILD_LIMIT);
    output.assert_success("python");
    output.stdout_lines()
}

/// `command` as a short human-readable line for failure messages: the program and its
/// arguments, each long argument (a Python script, say) cut short.
pub fn describe(command: &Command) -> String {
    let mut shown = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        let short: String = if arg.chars().count() > 60 {
            arg.chars().take(57).chain("...".chars()).collect()
        } else {
            arg.into_owned()
        };
        shown.push(' ');
        if short.is_empty() || short.contains(|c: char| c.is_whitespace() || c == '"') {
            // Quoted (and escaped) so the arguments' boundaries show.
            shown.push_str(&format!("{short:?}"));
        } else {
            shown.push_str(&short);
        }
    }
    shown
}

/// Starts a thread that reads `pipe` to its end into a shared buffer (so a chatty child never
/// blocks on a full pipe, and what it said so far can be shown when it hangs).
fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&buffer);
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
    });
    (buffer, handle)
}

/// The text collected so far in `buffer`.
fn text(buffer: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// Waits for `child` to exit, at most `deadline`; past it, kills and reaps it and returns
/// `None`.
fn wait_or_kill(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` to completion, feeding it `stdin` (or nothing: stdin is null), and returns
/// what it printed. Past `deadline` the child is killed and the test fails with a message
/// naming the program and showing its output so far. A program that cannot be started fails
/// the test too (use [`Tool::command`] for programs that may be missing, to say how to
/// install them).
#[track_caller]
pub fn run_bounded(mut command: Command, stdin: Option<&[u8]>, deadline: Duration) -> Output {
    let program = describe(&command);
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("could not start `{program}`: {e}"));
    let feeder = child.stdin.take().map(|mut pipe| {
        let input = stdin.unwrap_or_default().to_vec();
        std::thread::spawn(move || {
            // A client that refuses early may close its stdin; that is its business.
            let _ = pipe.write_all(&input);
        })
    });
    let (stdout, stdout_reader) = collect(child.stdout.take().expect("piped stdout"));
    let (stderr, stderr_reader) = collect(child.stderr.take().expect("piped stderr"));
    let Some(status) = wait_or_kill(&mut child, deadline) else {
        // The pipes may be held open by the child's own children: do not wait for them.
        panic!(
            "`{program}` did not finish within {deadline:?} and was killed\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            text(&stdout),
            text(&stderr)
        );
    };
    // The pipes end with the child, unless a grandchild still holds them: wait a little for
    // the threads, never without a bound (a thread left behind ends with the test process).
    let threads = [Some(&stdout_reader), Some(&stderr_reader), feeder.as_ref()];
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && threads.iter().flatten().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(2));
    }
    Output {
        status,
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

/// A program the tests need from the system.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The program's name, looked up in `PATH`.
    pub program: &'static str,
    /// Arguments for a quick run that succeeds when the tool is usable.
    pub probe: &'static [&'static str],
    /// How to install it, quoted in the failure message.
    pub install: &'static str,
}

/// Python 3 with its standard library's `smtplib` and `email`.
pub const PYTHON3: Tool = Tool {
    program: "python3",
    probe: &["-c", "import smtplib, email.message"],
    install: "apt-get install -y python3",
};

/// curl (with SMTP support).
pub const CURL: Tool = Tool {
    program: "curl",
    probe: &["--version"],
    install: "apt-get install -y curl",
};

/// swaks, the Swiss Army Knife for SMTP.
pub const SWAKS: Tool = Tool {
    program: "swaks",
    probe: &["--version"],
    install: "apt-get install -y swaks",
};

/// How long probing a tool may take.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

impl Tool {
    /// Fails the test, naming the package to install, unless the tool can be started.
    #[track_caller]
    pub fn require(&self) {
        let Tool {
            program,
            probe,
            install,
        } = *self;
        let mut command = Command::new(program);
        command.args(probe);
        // Probed here rather than through `run_bounded`, to turn "cannot start" into advice.
        let mut child = match command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!(
                "`{program}` could not be started ({e}): these tests need it; \
                 install it with: {install}"
            ),
        };
        let Some(status) = wait_or_kill(&mut child, PROBE_LIMIT) else {
            panic!("`{program} {}` hung for {PROBE_LIMIT:?}", probe.join(" "));
        };
        assert!(
            status.success(),
            "`{program} {}` exited with {status}: these tests need a working `{program}`; \
             install it with: {install}",
            probe.join(" ")
        );
    }

    /// A command for the tool, after checking that it is installed ([`Tool::require`]).
    #[track_caller]
    pub fn command(&self) -> Command {
        self.require();
        Command::new(self.program)
    }
}

/// A long-running child (the server binary) that is killed when dropped.
///
/// Its standard output is read on a thread and handed out line by line
/// ([`ChildGuard::next_line`], with a deadline); its standard error is collected and shown in
/// every failure message. Stdin is null.
pub struct ChildGuard {
    /// The child; `None` once it has been reaped.
    child: Option<Child>,
    /// The command line, for messages.
    program: String,
    /// Lines of standard output (each with its `\n`), as they come.
    lines: Receiver<String>,
    /// Standard error so far.
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Whether a failure message of this guard already showed the stderr.
    stderr_shown: bool,
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr piped.
    #[track_caller]
    pub fn spawn(mut command: Command) -> ChildGuard {
        let program = describe(&command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start `{program}`: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            loop {
                let mut line = String::new();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if sender.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let (stderr, _) = collect(child.stderr.take().expect("piped stderr"));
        ChildGuard {
            child: Some(child),
            program,
            lines,
            stderr,
            stderr_shown: false,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("child not reaped yet").id()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Sends `signal` to the child.
    #[track_caller]
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.id()).unwrap();
        // SAFETY: kill(2) takes two integers and touches no memory of ours; the pid is our
        // own child, not yet reaped (the guard reaps it only when it exits or is dropped).
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
    }

    /// The next line of standard output, or `None` if none comes within `deadline` or the
    /// output ends (the caller decides what that means).
    pub fn try_next_line(&mut self, deadline: Duration) -> Option<String> {
        self.lines.recv_timeout(deadline).ok()
    }

    /// The next line of standard output (with its `\n`), waiting at most `deadline`. Fails
    /// the test if none comes in time or the output ends.
    #[track_caller]
    pub fn next_line(&mut self, deadline: Duration) -> String {
        let received = self.lines.recv_timeout(deadline);
        self.stderr_shown = received.is_err();
        match received {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "`{}` printed no line within {deadline:?}\n--- stderr ---\n{}",
                self.program,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "`{}` closed its standard output (exit: {:?})\n--- stderr ---\n{}",
                self.program,
                self.child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten()),
                self.stderr()
            ),
        }
    }

    /// Waits for the child to exit by itself within `deadline`, then returns its status and
    /// the standard output it printed since the last [`ChildGuard::next_line`]. Past the
    /// deadline it is killed and the test fails, naming the program and its stderr.
    #[track_caller]
    pub fn wait(mut self, deadline: Duration) -> Output {
        let mut child = self.child.take().expect("child not reaped yet");
        let Some(status) = wait_or_kill(&mut child, deadline) else {
            self.stderr_shown = true;
            panic!(
                "`{}` did not exit within {deadline:?} and was killed\n--- stderr ---\n{}",
                self.program,
                self.stderr()
            );
        };
        // The reader thread ends at end of file, which follows the exit (bounded anyway, in
        // case a grandchild holds the pipe).
        let mut stdout = String::new();
        let until = Instant::now() + Duration::from_secs(5);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => stdout.push_str(&line),
                Err(_) => break,
            }
        }
        Output {
            status,
            stdout,
            stderr: self.stderr(),
        }
    }

    /// Kills the child now (SIGKILL: no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill the child");
            child.wait().expect("reap the killed child");
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.stderr_shown {
            // The test failed while the child ran: what it said may explain why.
            eprintln!("--- stderr of `{}` ---\n{}", self.program, self.stderr());
        }
    }
}
