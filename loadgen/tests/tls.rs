//! smtp-loadgen's TLS and AUTH over real sockets: implicit TLS against fastsmtpd's TLS
//! listener (pipelined, one message per connection with and without resumption, certificates
//! verified against a CA the test makes, a wrong CA and a wrong name failing clearly), and
//! STARTTLS with AUTH PLAIN and LOGIN against the scripted stub (whose TLS is rustls with a
//! self-signed certificate), including every way the setup can be refused.
//!
//! No assertion is about speed; every run is bounded (see `common::RUN_LIMIT`).

mod common;

use common::{loadgen, scratch, Run, Stub, StubScript};
use fastsmtpd::config::Config;
use fastsmtpd::server::tls::TlsSource;
use fastsmtpd::server::{self, ServerHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// fastsmtpd with a plain and an implicit-TLS listener; returns it and the TLS address.
fn tls_server(source: TlsSource) -> (ServerHandle, SocketAddr) {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        listen_tls: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(source),
        threads: 1,
        hostname: "mx.test".into(),
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    };
    let server = server::start(&config).expect("fastsmtpd starts");
    let tls = server.local_addrs()[1];
    (server, tls)
}

/// `totals.tls_handshakes.<kind>`.
#[track_caller]
fn handshakes(run: &Run, kind: &str) -> u64 {
    run.json()["totals"]["tls_handshakes"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no tls_handshakes.{kind}: {:#}", run.json()["totals"]))
}

#[test]
fn implicit_tls_pipelined_against_fastsmtpd() {
    let (server, tls) = tls_server(TlsSource::SelfSigned);
    let run = loadgen(
        tls,
        &["--tls", "-c", "4", "-n", "2000", "--pipelining", "on"],
    );
    let stats = server.stop().expect("fastsmtpd stops");
    run.assert_clean();
    assert_eq!(run.total("accepted"), 2000, "{}", run.stdout);
    assert_eq!(stats.messages, 2000);
    assert_eq!(run.total("bytes"), stats.bytes);
    assert_eq!(stats.connections, 4);
    // One handshake per connection, timed under `tls`; the greeting came inside TLS.
    assert_eq!(handshakes(&run, "full") + handshakes(&run, "resumed"), 4);
    assert_eq!(run.json()["latency"]["tls"]["count"], 4);
    assert_eq!(run.code_count("greeting", 220), 4);
    assert_eq!(
        run.code_count("tls", 220),
        0,
        "no STARTTLS with implicit TLS"
    );
    // Said plainly: the certificate was not checked.
    assert!(
        run.stdout
            .contains("implicit TLS (certificate not verified, no SNI, resumption on)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.json()["config"]["tls"]["certificate"],
        "certificate not verified"
    );
    assert!(run.stdout.contains("tls handshakes: 4 ("), "{}", run.stdout);
}

#[test]
fn one_message_per_connection_measures_handshakes_resumed_or_not() {
    let (server, tls) = tls_server(TlsSource::SelfSigned);
    let on = loadgen(
        tls,
        &["--tls", "-c", "2", "-n", "60", "--msgs-per-conn", "1"],
    );
    on.assert_clean();
    assert_eq!(on.total("accepted"), 60);
    assert_eq!(handshakes(&on, "full") + handshakes(&on, "resumed"), 60);
    // The shared session store lets later connections resume (TLS 1.3 tickets).
    assert!(handshakes(&on, "resumed") > 0, "{}", on.stdout);
    assert!(handshakes(&on, "full") >= 1);
    let off = loadgen(
        tls,
        &[
            "--tls",
            "-c",
            "2",
            "-n",
            "60",
            "--msgs-per-conn",
            "1",
            "--tls-resume",
            "off",
        ],
    );
    off.assert_clean();
    assert_eq!(handshakes(&off, "resumed"), 0, "{}", off.stdout);
    assert_eq!(handshakes(&off, "full"), 60);
    assert!(off.stdout.contains("60 full"), "{}", off.stdout);
    assert_eq!(off.json()["config"]["tls"]["resumption"], false);
    let stats = server.stop().unwrap();
    assert_eq!(stats.connections, 120);
    assert_eq!(stats.messages, 120);
}

/// PEM files: a CA, a certificate for `mx.test` and 127.0.0.1 it signed with its key, and an
/// unrelated CA. Returns (ca, other ca, cert, key).
fn certificates() -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let make_ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca, ca_key) = make_ca("smtp-loadgen test CA");
    let (other, _) = make_ca("some other CA");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["mx.test".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let files = (
        scratch("ca.pem"),
        scratch("other-ca.pem"),
        scratch("cert.pem"),
        scratch("key.pem"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, other.pem()).unwrap();
    std::fs::write(&files.2, leaf.pem()).unwrap();
    std::fs::write(&files.3, leaf_key.serialize_pem()).unwrap();
    files
}

#[test]
fn certificates_verified_against_a_ca_and_a_wrong_one_fails_clearly() {
    let (ca, other_ca, cert, key) = certificates();
    let (server, tls) = tls_server(TlsSource::Files { cert, key });
    let ca = ca.to_str().unwrap();
    let other_ca = other_ca.to_str().unwrap();

    // The right CA, by name (SNI sent) and by the IP address the certificate also names.
    for sni in [&["--sni", "mx.test"][..], &[]] {
        let mut args = vec!["--tls", "--ca", ca, "-c", "2", "-n", "100"];
        args.extend_from_slice(sni);
        let run = loadgen(tls, &args);
        run.assert_clean();
        assert_eq!(run.total("accepted"), 100);
        assert_eq!(run.json()["config"]["tls"]["verified"], true);
        assert!(
            run.stdout
                .contains(&format!("certificate verified against {ca}")),
            "{}",
            run.stdout
        );
    }

    // A CA that did not sign it, or a name it does not carry: no message, a clear reason,
    // and the run ends by itself (exit 1, not a hang).
    for (args, reason) in [
        (
            vec!["--tls", "--ca", other_ca, "--sni", "mx.test"],
            "TLS: invalid peer certificate: UnknownIssuer",
        ),
        (
            vec!["--tls", "--ca", ca, "--sni", "other.test"],
            "TLS: invalid peer certificate: certificate not valid for name",
        ),
    ] {
        let mut all = args.clone();
        all.extend_from_slice(&["-c", "2", "-n", "10"]);
        let run = loadgen(tls, &all);
        assert_eq!(run.code, 1, "{run:#?}");
        assert_eq!(run.total("accepted"), 0);
        assert!(run.errors("tls") > 0, "{}", run.stdout);
        assert!(
            run.stdout.contains(&format!("error detail: {reason}")),
            "{args:?}: {}",
            run.stdout
        );
        assert!(run.stderr.contains(reason), "{args:?}: {}", run.stderr);
        let details = run.json()["totals"]["error_details"].as_object().unwrap();
        assert!(details.keys().any(|k| k.starts_with(reason)), "{details:?}");
    }
    server.stop().unwrap();
}

/// A stub that offers STARTTLS and AUTH PLAIN LOGIN (inside TLS), with `change` applied.
fn tls_stub(change: impl FnOnce(&mut StubScript)) -> Stub {
    let mut script = StubScript {
        starttls: true,
        auth: Some("PLAIN LOGIN"),
        ..StubScript::default()
    };
    change(&mut script);
    Stub::start(script)
}

#[test]
fn starttls_and_auth_plain_and_login_against_the_stub() {
    for (mech, pipelining) in [("plain", "on"), ("login", "off")] {
        let stub = tls_stub(|_| {});
        let hlog = scratch("tls.hlog");
        let run = loadgen(
            stub.addr,
            &[
                "--starttls",
                "--auth",
                "user:pass",
                "--auth-mech",
                mech,
                "--pipelining",
                pipelining,
                "-c",
                "3",
                "-n",
                "150",
                "--hdr-log",
                hlog.to_str().unwrap(),
                "--slo",
                "tls:p99<60s",
                "--slo",
                "auth:max<60s",
            ],
        );
        run.assert_clean();
        assert_eq!(run.total("accepted"), 150, "{}", run.stdout);
        assert_eq!(stub.messages(), 150, "the stub refuses MAIL before AUTH");
        assert_eq!(stub.counts.tls_sessions.load(Ordering::SeqCst), 3);
        assert_eq!(stub.counts.auths.load(Ordering::SeqCst), 3);
        // Both EHLOs, the 220 to STARTTLS (counted), the handshakes and AUTH (timed).
        assert_eq!(run.code_count("ehlo", 250), 6, "{mech}");
        assert_eq!(run.code_count("tls", 220), 3);
        assert_eq!(run.code_count("auth", 235), 3);
        let challenges = if mech == "login" { 6 } else { 0 };
        assert_eq!(run.code_count("auth", 334), challenges);
        assert_eq!(handshakes(&run, "full") + handshakes(&run, "resumed"), 3);
        assert_eq!(run.json()["latency"]["tls"]["count"], 3);
        assert_eq!(run.json()["latency"]["auth"]["count"], 3);
        // Every output carries the new stages.
        assert!(run.stdout.contains("SLO ok: tls:p99<60s"), "{}", run.stdout);
        assert!(
            run.stdout.contains("SLO ok: auth:max<60s"),
            "{}",
            run.stdout
        );
        let table = run.stdout.lines().map(|l| l.split_whitespace().next());
        let rows: Vec<&str> = table.flatten().collect();
        assert!(
            rows.contains(&"tls") && rows.contains(&"auth"),
            "{}",
            run.stdout
        );
        let log = std::fs::read_to_string(&hlog).unwrap();
        assert!(
            log.contains("Tag=tls,") && log.contains("Tag=auth,"),
            "{log}"
        );
        assert!(
            run.stdout.contains(&format!(
                "STARTTLS (certificate not verified, no SNI, resumption on), AUTH {} as user",
                mech.to_uppercase()
            )),
            "{}",
            run.stdout
        );
        assert!(!run.stdout.contains("user:pass") && !run.stderr.contains("user:pass"));
    }
}

#[test]
fn a_refused_setup_ends_the_run_and_says_why() {
    // (stub script change, extra flags, error kind, code counted, description)
    type Case = (
        fn(&mut StubScript),
        &'static [&'static str],
        &'static str,
        Option<(&'static str, u16)>,
        &'static str,
    );
    let cases: [Case; 5] = [
        (
            |s| s.password = "other",
            &["--starttls", "--auth", "user:pass"],
            "rejected",
            Some(("auth", 535)),
            "AUTH PLAIN refused: 535 5.7.8 Authentication credentials invalid",
        ),
        (
            |s| {
                s.starttls_refusal = Some("454 4.7.0 TLS not available due to temporary reason\r\n")
            },
            &["--starttls"],
            "rejected",
            Some(("tls", 454)),
            "STARTTLS refused: 454 4.7.0 TLS not available due to temporary reason",
        ),
        (
            |s| s.starttls = false,
            &["--starttls"],
            "rejected",
            None,
            "the server does not offer STARTTLS in its EHLO reply",
        ),
        (
            |s| s.auth = Some("LOGIN"),
            &["--starttls", "--auth", "user:pass", "--auth-mech", "plain"],
            "rejected",
            None,
            "the server does not offer AUTH PLAIN (it offers AUTH LOGIN)",
        ),
        (
            |s| s.after_starttls = Some("250 2.0.0 injected\r\n"),
            &["--starttls"],
            "desync",
            Some(("tls", 220)),
            "bytes after the 220 to STARTTLS, before the TLS handshake",
        ),
    ];
    for (change, flags, kind, code, description) in cases {
        let stub = tls_stub(change);
        let mut args = flags.to_vec();
        args.extend_from_slice(&["-c", "2", "-n", "10"]);
        let run = loadgen(stub.addr, &args);
        assert_eq!(run.code, 1, "{flags:?}: {run:#?}");
        assert_eq!(run.total("accepted"), 0, "{flags:?}");
        assert_eq!(stub.messages(), 0);
        assert!(run.errors(kind) > 0, "{flags:?}: {}", run.stdout);
        if let Some((stage, code)) = code {
            assert!(run.code_count(stage, code) > 0, "{flags:?}: {}", run.stdout);
        }
        assert!(
            run.stdout.contains(&format!("error detail: {description}")),
            "{flags:?}: {}",
            run.stdout
        );
        assert!(
            run.stderr.contains(description),
            "{flags:?}: {}",
            run.stderr
        );
        if kind == "desync" {
            // The injected bytes were never taken as a reply inside TLS: no TLS session.
            assert_eq!(stub.counts.tls_sessions.load(Ordering::SeqCst), 0);
        }
    }
}
