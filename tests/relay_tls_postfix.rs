//! Postfix as the relay's TLS next hop: the relay (`--relay-tls required --relay-ca FILE`
//! toward `localhost:PORT`, the binary) hands a message to a private Postfix instance that
//! listens on loopback with STARTTLS (`smtpd_tls_security_level = may`, a certificate signed
//! by a CA made here), which relays it on to a fastsmtpd sink (plain). The sink's copy carries
//! the `Received:` line Postfix wrote for our connection: `with ESMTPS`, `using TLSv1.x`.
//! Postfix verified nothing of ours; the relay verified Postfix's certificate (chain to the
//! CA and the name `localhost`).
//!
//! The instance is built as tests/postfix_tls.rs builds its own (`postfix -c DIR`, its own
//! queue, log file and `master.cf`), here with one `inet` service, `smtpd`, on a loopback
//! port. It runs as root, as Postfix must. When Postfix is not installed the test says so
//! and passes without running (CI installs it).

mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::process::run_bounded;

/// Bound on Postfix's own commands.
const POSTFIX_WAIT: Duration = Duration::from_secs(30);
/// Bound on the wait for the message to arrive (a hang guard, not a timing assertion).
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// `postconf`, in `PATH` or where Postfix installs it; `None` when Postfix is not installed.
fn postconf_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("postconf"))
        .find(|candidate| candidate.is_file())
}

/// `master.cf`: `smtpd` on `listen`, and what it needs to take mail and relay it on.
fn master_cf(listen: &str) -> String {
    format!(
        "\
{listen} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
proxymap  unix  -       -       n       -       -       proxymap
scache    unix  -       -       n       -       1       scache
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

/// `main.cf`: take mail from loopback with STARTTLS offered, relay it all to `sink`.
fn main_cf(dir: &Path, cert: &Path, key: &Path, sink: SocketAddr) -> String {
    format!(
        "# A private instance for tests/relay_tls_postfix.rs: the relay's next hop.
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-hop.test
mydomain = hop.test
mydestination =
local_transport = error:local delivery is disabled in this instance
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
relayhost = [{ip}]:{port}
smtp_tls_security_level = none
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
",
        dir = dir.display(),
        cert = cert.display(),
        key = key.display(),
        ip = sink.ip(),
        port = sink.port(),
    )
}

/// A private Postfix instance, stopped when dropped.
struct Postfix {
    /// `postfix` (from `command_directory`).
    postfix: PathBuf,
    /// Its configuration directory (`-c`).
    config_dir: PathBuf,
    /// Its log file.
    maillog: PathBuf,
}

impl Postfix {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.postfix);
        command.arg("-c").arg(&self.config_dir).args(args);
        command
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_else(|e| format!("(no maillog: {e})"))
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- Postfix maillog ---\n{}", self.log());
        }
        let mut command = self.command(&["stop"]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        if let Ok(mut child) = command.spawn() {
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < POSTFIX_WAIT {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first `Received:` field of `text` (folded lines joined).
fn first_received(text: &str) -> String {
    let mut field = String::new();
    for line in text
        .lines()
        .skip_while(|line| !line.starts_with("Received:"))
    {
        if !field.is_empty() && !line.starts_with([' ', '\t']) {
            break;
        }
        field.push_str(line.trim());
        field.push(' ');
    }
    field
}

#[test]
fn the_relay_delivers_to_postfix_over_verified_starttls() {
    let Some(postconf) = postconf_program() else {
        println!(
            "skipped: Postfix is not installed (no postconf in PATH, /usr/sbin or \
             /usr/local/sbin); CI installs it"
        );
        return;
    };
    let dir = util::scratch_dir("relay-tls-postfix");
    // A CA and Postfix's certificate for localhost, signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "relay postfix test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (ca_file, cert_file, key_file) =
        (dir.join("ca.pem"), dir.join("hop.pem"), dir.join("hop.key"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    // The far end: a fastsmtpd sink keeping .eml files.
    let mail = dir.join("mail");
    let store = format!("eml:{}", mail.display());
    let (_sink, sink_addr) = util::start_binary(1, &["--store", &store]);

    // Postfix between the relay and the sink.
    let postfix_dir = dir.join("postfix");
    let config_dir = postfix_dir.join("etc");
    for sub in ["etc", "queue", "data"] {
        std::fs::create_dir_all(postfix_dir.join(sub)).unwrap();
    }
    let listen = util::free_local_addr();
    std::fs::write(
        config_dir.join("main.cf"),
        main_cf(&postfix_dir, &cert_file, &key_file, sink_addr),
    )
    .unwrap();
    std::fs::write(config_dir.join("master.cf"), master_cf(&listen)).unwrap();
    let mut query = Command::new(&postconf);
    query
        .arg("-c")
        .arg(&config_dir)
        .args(["-h", "command_directory", "mail_owner"]);
    let output = run_bounded(query, None, POSTFIX_WAIT);
    output.assert_success("postconf");
    let values = output.stdout_lines();
    let [commands, owner] = values.as_slice() else {
        panic!("postconf printed {values:?}");
    };
    let mut chown = Command::new("chown");
    chown.arg(owner).arg(postfix_dir.join("data"));
    run_bounded(chown, None, POSTFIX_WAIT)
        .assert_success("chown (a private Postfix instance must be started as root)");
    let postfix = Postfix {
        postfix: Path::new(commands).join("postfix"),
        config_dir,
        maillog: postfix_dir.join("maillog"),
    };
    run_bounded(postfix.command(&["check"]), None, POSTFIX_WAIT)
        .assert_success(&format!("postfix check\n{}", postfix.log()));
    run_bounded(postfix.command(&["start"]), None, POSTFIX_WAIT)
        .assert_success(&format!("postfix start\n{}", postfix.log()));
    // Wait (bounded) until Postfix's smtpd answers on its port.
    let start = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            start.elapsed() < POSTFIX_WAIT,
            "Postfix does not listen on {listen}\n{}",
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The relay, toward Postfix by name, TLS required and verified against our CA.
    let port = listen.rsplit_once(':').unwrap().1;
    let next_hop = format!("localhost:{port}");
    let spool = dir.join("spool");
    let (_relay, relay_addr) = util::start_binary(
        1,
        &[
            "--spool",
            spool.to_str().unwrap(),
            "--relay-to",
            &next_hop,
            "--relay-tls",
            "required",
            "--relay-ca",
            ca_file.to_str().unwrap(),
            "--retry",
            "500ms",
        ],
    );
    let mut client = util::Client::connect(relay_addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    assert!(client.read_reply().starts_with("250"));
    client.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n");
    assert!(client.read_reply().starts_with("250 "));
    assert!(client.read_reply().starts_with("250 "));
    assert!(client.read_reply().starts_with("354 "));
    client.send("Subject: via postfix\r\n\r\nover TLS\r\n.\r\n");
    assert!(client.read_reply().starts_with("250 "));
    client.send("QUIT\r\n");

    // The sink's copy: Postfix's Received: line on top says the relay came over TLS.
    let start = Instant::now();
    let text = loop {
        let found = std::fs::read_dir(&mail).ok().and_then(|entries| {
            entries.flatten().find_map(|entry| {
                let path = entry.path();
                let hidden = path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'));
                (path.extension().is_some_and(|ext| ext == "eml") && !hidden)
                    .then(|| std::fs::read_to_string(&path).ok())
                    .flatten()
            })
        });
        if let Some(text) = found {
            break text;
        }
        assert!(
            start.elapsed() < DELIVERY_WAIT,
            "nothing arrived at the sink\n{}",
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let received = first_received(&text);
    assert!(received.contains("by postfix-hop.test"), "{received}");
    assert!(received.contains("with ESMTPS"), "{received}");
    assert!(received.contains("using TLSv1."), "{received}");
    assert!(text.contains("Subject: via postfix"), "{text}");
    assert!(text.contains("over TLS"), "{text}");
}
