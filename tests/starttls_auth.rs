//! STARTTLS (RFC 3207) and AUTH (RFC 4954) seen by real clients nobody here wrote, over real
//! sockets: `openssl s_client -starttls smtp`, swaks `--tls` / `--tls-on-connect` with
//! `--auth`, curl `--ssl-reqd smtp://` and `smtps://` with `--user`, Python's smtplib
//! (`starttls()` + `login()`, `SMTP_SSL` + `login()`), lettre with rustls; then the attacks:
//! plaintext injected behind STARTTLS (CVE-2011-0411), a handshake that never comes, garbage
//! instead of a handshake; and the policies (`--require-tls`, `--auth-required`, `538` on
//! plaintext, `--auth file:` with Argon2, bcrypt and `{PLAIN}` entries, SIGHUP reloads).

mod util;

use fastsmtpd::auth::AuthSource;
use fastsmtpd::config::TlsSource;
use fastsmtpd::config::{Auth, Config, Tls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use util::process::{run_bounded, Tool, CHILD_LIMIT, CURL, SWAKS};
use util::{test_config, TestServer};

/// openssl's command-line tool (for `s_client`).
const OPENSSL: Tool = Tool {
    program: "openssl",
    probe: &["version"],
    install: "apt-get install -y openssl",
};

/// A password file with one user per kind of entry: `alice` (Argon2id), `bob` (bcrypt),
/// `carol` (`{PLAIN}`), all with the password `s3cret`.
fn password_file() -> PathBuf {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let dir = util::scratch_dir("auth");
    let argon = argon2::Argon2::default()
        .hash_password(b"s3cret", &SaltString::encode_b64(b"a test salt!").unwrap())
        .unwrap()
        .to_string();
    let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
    let path = dir.join("users");
    std::fs::write(
        &path,
        format!("# test users\nalice:{argon}\nbob:{bcrypt}\ncarol:{{PLAIN}}s3cret\n"),
    )
    .unwrap();
    path
}

/// A server with STARTTLS on its plain listener and an implicit-TLS listener, AUTH from a
/// password file; returns it and the implicit-TLS address.
fn secure_server(adjust: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let mut config = Config {
        tls: Tls {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            source: Some(TlsSource::SelfSigned),
            ..Tls::default()
        },
        auth: Auth {
            source: Some(AuthSource::File(password_file())),
            ..Auth::default()
        },
        ..test_config()
    };
    adjust(&mut config);
    let server = TestServer::start(config);
    let tls = server.handle().local_addrs()[1];
    (server, tls)
}

fn plain_addr(server: &TestServer) -> SocketAddr {
    server.handle().local_addrs()[0]
}

/// Runs a Python snippet with `smtplib`, `ssl`, `socket` imported, `PLAIN` and `TLS` ports
/// set and `ctx` an unverified client context; returns its output lines.
fn python(server: &TestServer, tls: SocketAddr, body: &str) -> Vec<String> {
    let script = format!(
        "import smtplib, ssl, socket, base64\nPLAIN = {}\nTLS = {}\nctx = ssl._create_unverified_context()\n{body}",
        plain_addr(server).port(),
        tls.port()
    );
    util::process::run_python(&script)
}

#[test]
fn smtplib_starttls_login_and_smtp_ssl_login_for_every_kind_of_entry() {
    let (server, tls) = secure_server(|_| {});
    let lines = python(
        &server,
        tls,
        r#"
for user in ("alice", "bob", "carol"):
    s = smtplib.SMTP("127.0.0.1", PLAIN, timeout=10)
    s.ehlo("client.example")
    before = s.has_extn("starttls"), s.has_extn("auth")
    s.starttls(context=ctx)
    s.ehlo("client.example")
    after = s.has_extn("starttls"), s.has_extn("auth")
    code = s.login(user, "s3cret")[0]
    s.sendmail("a@b.example", ["c@d.example"], "Subject: hi\r\n\r\nbody\r\n")
    s.quit()
    print(user, before, after, code)
s = smtplib.SMTP_SSL("127.0.0.1", TLS, context=ctx, timeout=10)
s.login("carol", "s3cret")
s.sendmail("a@b.example", ["c@d.example"], "Subject: hi\r\n\r\nbody\r\n")
try:
    s2 = smtplib.SMTP_SSL("127.0.0.1", TLS, context=ctx, timeout=10)
    s2.login("alice", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
s.quit()
"#,
    );
    assert_eq!(
        lines,
        [
            "alice (True, False) (False, True) 235",
            "bob (True, False) (False, True) 235",
            "carol (True, False) (False, True) 235",
            "refused 535 5.7.8 Error: authentication failed",
        ]
    );
    let stats = server.stop();
    assert_eq!(stats.messages, 4);
    assert_eq!(stats.security.auth_successes, 4);
    // smtplib tries each mechanism offered before giving up: PLAIN, then LOGIN.
    assert_eq!(stats.security.auth_failures, 2);
    assert_eq!(stats.security.starttls, 3);
    let handshakes: u64 = stats.security.handshakes.iter().flatten().sum();
    assert_eq!(handshakes, 5);
}

#[test]
fn openssl_s_client_starttls_sees_a_new_ehlo_without_starttls() {
    let (server, _) = secure_server(|_| {});
    let mut command = OPENSSL.command();
    command.args([
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        &plain_addr(&server).to_string(),
        "-crlf",
        "-quiet",
        "-ign_eof",
    ]);
    let output = run_bounded(command, Some(b"EHLO client.example\nQUIT\n"), CHILD_LIMIT);
    let stdout = output.stdout_lines().join("\n");
    // s_client ate the plaintext EHLO and the 220; what it prints is the session inside TLS.
    assert!(stdout.contains("250-AUTH PLAIN LOGIN"), "{stdout}");
    assert!(!stdout.contains("STARTTLS"), "{stdout}");
    assert!(stdout.ends_with("221 2.0.0 Bye"), "{stdout}");
    let stats = server.stop();
    assert_eq!(stats.security.starttls, 1);
}

#[test]
fn swaks_tls_and_tls_on_connect_with_auth_plain_and_login() {
    let (server, tls) = secure_server(|_| {});
    let port = plain_addr(&server).port().to_string();
    let tls_port = tls.port().to_string();
    for (port, mode, mechanism) in [
        (&port, "--tls", "PLAIN"),
        (&port, "--tls", "LOGIN"),
        (&tls_port, "--tls-on-connect", "PLAIN"),
        (&tls_port, "--tls-on-connect", "LOGIN"),
    ] {
        let mut command = SWAKS.command();
        command.args([
            "--server",
            "127.0.0.1",
            "--port",
            port,
            mode,
            "--auth",
            mechanism,
            "--auth-user",
            "bob",
            "--auth-password",
            "s3cret",
            "--from",
            "a@b.example",
            "--to",
            "c@d.example",
            "--silent",
            "2",
        ]);
        run_bounded(command, None, CHILD_LIMIT)
            .assert_success(&format!("swaks {mode} {mechanism}"));
    }
    // A wrong password: swaks reports the 535 (its exit status 28: AUTH failed).
    let mut command = SWAKS.command();
    command.args([
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob",
        "--auth-password",
        "nope",
        "--from",
        "a@b.example",
        "--to",
        "c@d.example",
    ]);
    let output = run_bounded(command, None, CHILD_LIMIT);
    let all = output.stdout_lines().join("\n");
    assert!(all.contains("535 5.7.8"), "{all}");
    assert!(!all.contains("250 2.0.0 Ok: queued"));
    assert_eq!(server.stop().messages, 4);
}

#[test]
fn curl_ssl_reqd_and_smtps_with_user() {
    let (server, tls) = secure_server(|config| config.auth.required = true);
    let dir = util::scratch_dir("curl-tls");
    let body = dir.join("message.txt");
    std::fs::write(&body, "Subject: curl\r\n\r\nhello\r\n").unwrap();
    for url in [
        format!("smtp://{}", plain_addr(&server)),
        format!("smtps://{tls}"),
    ] {
        let mut command = CURL.command();
        command.args(["-sS", "--insecure", "--ssl-reqd", "--url", &url]);
        command.args(["--user", "carol:s3cret", "--mail-from", "a@b.example"]);
        command.args(["--mail-rcpt", "c@d.example", "--upload-file"]);
        command.arg(&body);
        run_bounded(command, None, CHILD_LIMIT).assert_success(&format!("curl {url}"));
    }
    // Without --user, --auth-required refuses the MAIL: curl fails, nothing is accepted.
    let mut command = CURL.command();
    command.args(["-sS", "--insecure", "--ssl-reqd", "--url"]);
    command.arg(format!("smtp://{}", plain_addr(&server)));
    command.args([
        "--mail-from",
        "a@b.example",
        "--mail-rcpt",
        "c@d.example",
        "--upload-file",
    ]);
    command.arg(&body);
    let output = run_bounded(command, None, CHILD_LIMIT);
    assert!(!output.status.success());
    let stats = server.stop();
    assert_eq!(stats.messages, 2);
}

#[test]
fn lettre_with_rustls_over_starttls_and_implicit_tls() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};
    let (server, tls) = secure_server(|_| {});
    let parameters = || {
        TlsParameters::builder("mx.test".into())
            .dangerous_accept_invalid_certs(true)
            .build_rustls()
            .unwrap()
    };
    let email = Message::builder()
        .from("a@b.example".parse().unwrap())
        .to("c@d.example".parse().unwrap())
        .subject("lettre")
        .body("hello\r\n".to_string())
        .unwrap();
    for (port, mode, mechanism) in [
        (
            plain_addr(&server).port(),
            Tls::Required(parameters()),
            Mechanism::Plain,
        ),
        (tls.port(), Tls::Wrapper(parameters()), Mechanism::Login),
    ] {
        let mailer = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(mode)
            .credentials(Credentials::new("alice".into(), "s3cret".into()))
            .authentication(vec![mechanism])
            .timeout(Some(Duration::from_secs(10)))
            .build();
        mailer.send(&email).expect("lettre delivers");
    }
    assert_eq!(server.stop().messages, 2);
}

#[test]
fn plaintext_injected_behind_starttls_is_never_run_inside_tls() {
    let (server, tls) = secure_server(|_| {});
    let lines = python(
        &server,
        tls,
        r#"
s = socket.create_connection(("127.0.0.1", PLAIN), timeout=10)
f = s.makefile("rb")
def reply(f):
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if line[3:4] == b" ":
            return b"".join(lines)
reply(f)
s.sendall(b"EHLO c\r\n"); reply(f)
# CVE-2011-0411: the RSET and MAIL ride in the same write as STARTTLS.
s.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n")
print(reply(f).decode().strip())
t = ctx.wrap_socket(s, server_hostname="mx.test")
t.sendall(b"NOOP\r\n")
g = t.makefile("rb")
print(reply(g).decode().strip())
t.sendall(b"MAIL FROM:<a@b>\r\n")
print(reply(g).decode().strip())
"#,
    );
    // Inside TLS the first reply is NOOP's: nothing injected ran; MAIL needs a new EHLO.
    assert_eq!(
        lines,
        [
            "220 2.0.0 Ready to start TLS",
            "250 2.0.0 Ok",
            "503 5.5.1 Error: send HELO/EHLO first",
        ]
    );
    let stats = server.stop();
    assert_eq!(stats.security.starttls_discarded, 1);
}

#[test]
fn a_stalled_or_garbage_handshake_closes_only_that_connection() {
    let (server, tls) = secure_server(|config| {
        config.tls.handshake_timeout = Duration::from_secs(1);
    });
    // Implicit TLS, nothing sent: closed after the handshake deadline.
    let mut silent = util::Client::connect(tls);
    silent.read_to_close();
    // STARTTLS, then plaintext instead of a ClientHello: an alert, then the close.
    let mut garbage = server.client();
    garbage.send("EHLO c\r\n");
    garbage.read_reply();
    garbage.roundtrip("STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n");
    garbage.send("EHLO still-plaintext\r\n");
    let rest = garbage.read_to_close();
    assert_eq!(rest.first(), Some(&21), "a TLS alert record: {rest:?}");
    // The server still serves others.
    let mut other = server.client();
    other.send("EHLO c\r\n");
    other.read_reply();
    other.roundtrip("QUIT\r\n", util::BYE);
    let stats = server.stop();
    let failures = stats.security.handshake_failures;
    assert_eq!(failures[0], 1, "one timeout: {failures:?}");
    assert_eq!(failures[4], 1, "one garbage: {failures:?}");
}

#[test]
fn policies_on_plaintext_require_tls_538_and_auth_required() {
    let (server, _) = secure_server(|config| config.tls.require = true);
    let mut client = server.client();
    client.send("EHLO c\r\n");
    let ehlo = client.read_reply();
    assert!(
        ehlo.contains("250-STARTTLS\r\n") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    client.roundtrip(
        "MAIL FROM:<a@b>\r\n",
        "530 5.7.0 Must issue a STARTTLS command first\r\n",
    );
    client.roundtrip(
        "AUTH PLAIN AGNhcm9sAHMzY3JldA==\r\n",
        "530 5.7.0 Must issue a STARTTLS command first\r\n",
    );
    drop(client);
    drop(server);
    // AUTH offered only inside TLS: on plaintext it is 538, and not advertised.
    let (server, _) = secure_server(|_| {});
    let mut client = server.client();
    client.send("EHLO c\r\n");
    assert!(!client.read_reply().contains("AUTH"));
    client.roundtrip(
        "AUTH PLAIN AGNhcm9sAHMzY3JldA==\r\n",
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
    );
    drop(client);
    drop(server);
    // --auth-plaintext --auth-required: AUTH works on plaintext and MAIL needs it.
    let (server, _) = secure_server(|config| {
        config.auth.plaintext = true;
        config.auth.required = true;
    });
    let mut client = server.client();
    client.send("EHLO c\r\n");
    assert!(client.read_reply().contains("250-AUTH PLAIN LOGIN\r\n"));
    client.roundtrip(
        "MAIL FROM:<a@b>\r\n",
        "530 5.7.0 Error: authentication required\r\n",
    );
    client.roundtrip("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
    client.roundtrip("Y2Fyb2w=\r\n", "334 UGFzc3dvcmQ6\r\n");
    client.roundtrip("czNjcmV0\r\n", "235 2.7.0 Authentication successful\r\n");
    client.roundtrip("MAIL FROM:<a@b> AUTH=<>\r\n", "250 2.1.0 Ok\r\n");
    drop(client);
    drop(server);
}

#[test]
fn repeated_failures_are_answered_in_order_and_hit_the_error_cap() {
    let (server, _) = secure_server(|config| {
        config.auth.plaintext = true;
        config.limits.max_errors = 3;
    });
    let mut client = server.client();
    client.send("EHLO c\r\n");
    client.read_reply();
    // Three wrong hashed passwords pipelined in one write: each 535 comes, then the error cap
    // closes the session. No reply is lost or reordered while the verifier threads work.
    let wrong = "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"; // \0alice\0wrong
    client.send(wrong.repeat(3));
    let rest = String::from_utf8(client.read_to_close()).unwrap();
    assert_eq!(
        rest,
        "535 5.7.8 Error: authentication failed\r\n".repeat(3)
            + "421 4.7.0 Error: too many errors, closing connection\r\n"
    );
    let stats = server.stop();
    assert_eq!(stats.security.auth_failures, 3);
}

#[test]
fn tls_and_auth_counters_reach_the_metrics_endpoint() {
    let (server, tls) = secure_server(|config| {
        config.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    python(
        &server,
        tls,
        r#"
s = smtplib.SMTP("127.0.0.1", PLAIN, timeout=10)
s.starttls(context=ctx)
s.login("carol", "s3cret")
s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", TLS, context=ctx, timeout=10)
try:
    s.login("carol", "nope")
except smtplib.SMTPAuthenticationError:
    pass
"#,
    );
    server.wait_for_stats(|s| s.open_connections == 0);
    let addr = server.handle().metrics_addr().unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    for line in [
        "fastsmtpd_starttls_total 1\n",
        "fastsmtpd_auth_attempts_total{result=\"success\"} 1\n",
        // smtplib tries PLAIN, then LOGIN.
        "fastsmtpd_auth_attempts_total{result=\"failure\"} 2\n",
        "fastsmtpd_tls_handshake_failures_total{reason=\"garbage\"} 0\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    let handshakes: u64 = text
        .lines()
        .filter(|l| l.starts_with("fastsmtpd_tls_handshakes_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(handshakes, 2, "{text}");
    server.stop();
}
