//! Implicit TLS (RFC 8314) seen by real clients: Python's `ssl` + `smtplib` (TLS 1.3 and 1.2,
//! a pipelined batch read back through the TLS layer), `swaks --tls-on-connect`, a plaintext
//! client on a TLS port (an alert and a close, nothing hangs), and certificates from PEM files.
//! STARTTLS and AUTH with real clients are in `starttls_auth.rs`.

mod util;

use fastsmtpd::config::TlsSource;
use fastsmtpd::config::{Config, Tls};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use util::process::{run_bounded, CHILD_LIMIT, SWAKS};
use util::{test_config, TestServer, REPLY_WAIT};

/// A server with one plain and one implicit-TLS listener; returns it and the TLS address.
fn with_tls(source: TlsSource) -> (TestServer, SocketAddr) {
    let server = TestServer::start(Config {
        tls: Tls {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            source: Some(source),
            ..Tls::default()
        },
        ..test_config()
    });
    let tls_addr = server.handle().local_addrs()[1];
    (server, tls_addr)
}

/// Runs a Python snippet with `ssl`, `smtplib`, `socket` imported and `PORT` set.
fn python(addr: SocketAddr, body: &str) -> Vec<String> {
    let script = format!(
        "import smtplib, ssl, socket\nPORT = {}\nctx = ssl._create_unverified_context()\n{body}",
        addr.port()
    );
    util::process::run_python(&script)
}

#[test]
fn smtplib_delivers_over_tls_1_3_and_1_2() {
    let (server, tls) = with_tls(TlsSource::SelfSigned);
    let lines = python(
        tls,
        r#"
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    c = ssl._create_unverified_context()
    c.minimum_version = c.maximum_version = version
    s = smtplib.SMTP_SSL("127.0.0.1", PORT, context=c, timeout=10)
    code, _ = s.ehlo("client.example")
    refused = s.sendmail("a@b.example", ["c@d.example"], "Subject: tls\r\n\r\nsecret\r\n")
    print(code, refused, s.sock.version())
    s.quit()
"#,
    );
    assert_eq!(lines, ["250 {} TLSv1.3", "250 {} TLSv1.2"]);
    let stats = server.stop();
    assert_eq!(stats.messages, 2);
}

#[test]
fn a_pipelined_batch_comes_back_whole_through_tls() {
    let (server, tls) = with_tls(TlsSource::SelfSigned);
    // 200 transactions in one write; all 802 replies read back in order.
    let lines = python(
        tls,
        r#"
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT), timeout=10))
batch = b"EHLO c\r\n" + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nhello\r\n.\r\n" * 200 + b"QUIT\r\n"
s.sendall(batch)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.count(b"250 2.0.0 Ok: queued as "), data.startswith(b"220 mx.test ESMTP"), data.endswith(b"221 2.0.0 Bye\r\n"))
"#,
    );
    assert_eq!(lines, ["200 True True"]);
    assert_eq!(server.stop().messages, 200);
}

#[test]
fn swaks_delivers_with_tls_on_connect() {
    let (server, tls) = with_tls(TlsSource::SelfSigned);
    let mut command = SWAKS.command();
    command.args([
        "--server",
        "127.0.0.1",
        "--port",
        &tls.port().to_string(),
        "--tls-on-connect",
        "--from",
        "a@b.example",
        "--to",
        "c@d.example",
        "--silent",
        "2",
    ]);
    let output = run_bounded(command, None, CHILD_LIMIT);
    output.assert_success("swaks --tls-on-connect");
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn plaintext_on_a_tls_port_gets_an_alert_and_a_close() {
    let (server, tls) = with_tls(TlsSource::SelfSigned);
    let mut client = TcpStream::connect(tls).unwrap();
    client.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    client.write_all(b"EHLO plain.example\r\n").unwrap();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    // A TLS alert record (content type 21), never an SMTP reply, then the close.
    assert_eq!(got.first(), Some(&21), "{got:?}");
    // The plain listener of the same server still works.
    let mut plain = server.client();
    plain.send("EHLO client.test\r\n");
    // With a certificate configured, the plain listener offers STARTTLS (RFC 3207).
    assert!(plain.read_reply().contains("250-STARTTLS\r\n"));
    plain.roundtrip("QUIT\r\n", util::BYE);
    drop(server);
}

#[test]
fn certificates_come_from_pem_files() {
    let dir = util::scratch_dir("tls-files");
    let made = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let (server, tls) = with_tls(TlsSource::Files {
        cert: cert.clone(),
        key: key.clone(),
    });
    // The server presents exactly the certificate in the file.
    let lines = python(
        tls,
        r#"
import hashlib
s = smtplib.SMTP_SSL("127.0.0.1", PORT, context=ctx, timeout=10)
print(hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest())
print(s.noop()[0])
s.quit()
"#,
    );
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(made.cert.der())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(lines, [want, "250".to_string()]);
    drop(server);
    // A key that does not parse is a clear start-up error, naming the file.
    std::fs::write(&key, "not a key\n").unwrap();
    let error = fastsmtpd::server::start(&Config {
        tls: Tls {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            source: Some(TlsSource::Files { cert, key }),
            ..Tls::default()
        },
        ..test_config()
    })
    .expect_err("a bad key is refused");
    assert!(error.to_string().contains("--tls-key"), "{error}");
}

/// openssl's command-line tool (for `s_client`).
const OPENSSL: util::process::Tool = util::process::Tool {
    program: "openssl",
    probe: &["version"],
    install: "apt-get install -y openssl",
};

/// `openssl s_client` to `addr` for the name `mx.test`, verifying the chain (`-CAfile`,
/// when given) and the name, failing on any verification error; sends QUIT.
fn s_client_verifying(
    addr: SocketAddr,
    ca_file: Option<&std::path::Path>,
) -> util::process::Output {
    let mut command = OPENSSL.command();
    command.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        "mx.test",
        "-verify_hostname",
        "mx.test",
        "-verify_return_error",
        "-brief",
        "-crlf",
    ]);
    if let Some(ca_file) = ca_file {
        command.arg("-CAfile").arg(ca_file);
    }
    run_bounded(command, Some(b"QUIT\n"), CHILD_LIMIT)
}

/// Issue 16: a sender that verifies certificates could not be told to trust
/// `--tls-self-signed`'s certificate. `--tls-self-signed-out FILE` writes it (PEM); the start
/// line says where, and which listener is implicit TLS; with it as the trust anchor,
/// `openssl s_client -verify_return_error` and Python's default (verifying) context accept the
/// server as `mx.test`; without it, verification fails (it is real).
#[test]
fn tls_self_signed_out_writes_a_certificate_a_verifying_sender_trusts() {
    let dir = util::scratch_dir("self-signed-out");
    let cert = dir.join("fastsmtpd.pem");
    let (plain, tls) = (util::free_local_addr(), util::free_local_addr());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args(["--listen", &plain, "--listen-tls", &tls, "--threads", "1"]);
    command.args([
        "--hostname",
        "mx.test",
        "--tls-self-signed",
        "--tls-self-signed-out",
    ]);
    command.arg(&cert);
    let mut child = util::process::ChildGuard::spawn(command);
    let line = child.next_line(REPLY_WAIT);
    let want = format!(
        "fastsmtpd listening on {plain} (STARTTLS), {tls} (implicit TLS) with 1 worker; \
         TLS: self-signed for mx.test, certificate written to {}; AUTH: off; \
         stores: none (messages are discarded)\n",
        cert.display()
    );
    assert_eq!(line, want);
    let tls: SocketAddr = tls.parse().unwrap();
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");

    let verified = s_client_verifying(tls, Some(&cert));
    verified.assert_success("openssl s_client -verify_return_error -CAfile");
    assert!(
        verified.stderr.contains("Verification: OK"),
        "{}",
        verified.dump()
    );
    let unverified = s_client_verifying(tls, None);
    unverified.assert_failure("openssl s_client -verify_return_error without the CA file");

    let lines = util::process::run_python(&format!(
        r#"
import smtplib, ssl, socket
ctx = ssl.create_default_context(cafile={cert:?})
raw = socket.create_connection(("127.0.0.1", {port}), timeout=10)
tls = ctx.wrap_socket(raw, server_hostname="mx.test")
print(tls.getpeercert()["subjectAltName"])
s = smtplib.SMTP(timeout=10)
s.sock = tls
s.file = None
print(s.getreply()[0])
print(s.ehlo("client.example")[0])
print(s.sendmail("a@b.example", ["c@d.example"], "Subject: verified\r\n\r\nhi\r\n"))
s.quit()
"#,
        cert = cert.to_str().unwrap(),
        port = tls.port()
    ));
    assert_eq!(lines, ["(('DNS', 'mx.test'),)", "220", "250", "{}"]);
    drop(child);

    // Without --tls-self-signed there is no certificate to write: a clear error.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args([
        "--listen",
        &util::free_local_addr(),
        "--tls-self-signed-out",
    ]);
    command.arg(dir.join("other.pem"));
    let refused = run_bounded(command, None, CHILD_LIMIT);
    assert_eq!(refused.status.code(), Some(2), "{}", refused.dump());
    assert!(
        refused.stderr.contains("--tls-self-signed"),
        "{}",
        refused.dump()
    );
    assert!(!dir.join("other.pem").exists());
}

/// Review F5: a second start on an address in use failed (`Address already in use`), but had
/// first rewritten `--tls-self-signed-out FILE` with its own new certificate, so the running
/// server's senders, told to trust FILE, no longer verified it. Now the file is put in place
/// only after every listener is bound: the failed start leaves it (and the directory) as the
/// running server wrote it.
#[test]
fn a_failed_second_start_leaves_the_running_servers_certificate_file_alone() {
    let dir = util::scratch_dir("self-signed-out-twice");
    let cert = dir.join("fastsmtpd.pem");
    let (listen, listen_tls) = (util::free_local_addr(), util::free_local_addr());
    let start = |cert: &std::path::Path| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command.args([
            "--listen",
            &listen,
            "--listen-tls",
            &listen_tls,
            "--threads",
            "1",
        ]);
        command.args(["--hostname", "mx.test", "--tls-self-signed"]);
        command.arg("--tls-self-signed-out").arg(cert);
        command
    };
    let mut running = util::process::ChildGuard::spawn(start(&cert));
    let line = running.next_line(REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line}");
    let trusted = std::fs::read(&cert).unwrap();

    let second = run_bounded(start(&cert), None, CHILD_LIMIT);
    second.assert_failure("a second fastsmtpd on the same address");
    assert!(
        second.stderr.contains("ddress already in use"),
        "{}",
        second.dump()
    );
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        trusted,
        "the running server's certificate was replaced"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        [std::ffi::OsString::from("fastsmtpd.pem")],
        "no temporary file left"
    );
    // A sender that trusts the file still verifies the running server.
    let verified = s_client_verifying(listen_tls.parse().unwrap(), Some(&cert));
    verified.assert_success("openssl s_client -verify_return_error -CAfile FILE");
    assert!(
        verified.stderr.contains("Verification: OK"),
        "{}",
        verified.dump()
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}
