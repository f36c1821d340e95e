//! TLS toward the next hop (`--relay-tls`, `--relay-ca`): the rustls client configuration
//! every delivery connection shares, the name each next hop is verified against, and the
//! trusted roots.
//!
//! What it does: [`Connector::new`] builds one `rustls::ClientConfig` at start (the `ring`
//! provider, TLS 1.2 and 1.3, as the server side uses) for the policy:
//! - [`TlsPolicy::Required`]: rustls's WebPKI verifier, so a handshake succeeds only when
//!   the next hop's certificate chains to a trusted root (the `--relay-ca` bundle, or the
//!   system's roots read with `rustls-native-certs`) AND is valid for the next hop's name as
//!   `--relay-to` gave it: a DNS name against the certificate's DNS names, an IP literal
//!   against its IP addresses (RFC 6125 §6; RFC 7817 §3 for SMTP's use of the name the
//!   client was configured with, not one learnt from the server). The validity dates are
//!   checked too.
//! - [`TlsPolicy::Opportunistic`]: any certificate is taken (`AnyCertificate`), but the
//!   handshake's signatures are still checked, so the next hop must hold the key of the
//!   certificate it sent. Without a trusted name nothing binds that key to the next hop: this
//!   protects against a passive listener only, never an active attacker in the path (RFC 7435
//!   §1: opportunistic security); `required` is for that.
//! - [`TlsPolicy::Off`]: no configuration; the session never says `STARTTLS`.
//!
//! The name goes out as SNI when it is a DNS name (RFC 6066 §3 allows no literal address
//! there; rustls sends none for an IP). Sessions are kept for resumption (rustls's in-memory
//! store), so a later connection to a next hop that allows it skips the full handshake.
//!
//! What it does not do: read or write sockets, or drive a handshake (the connection does,
//! `super::conn`), or decide what a failure means for the messages (the loop does: a failed
//! handshake ends the session before it is ready, like a connection that failed, and under
//! `opportunistic` sends the next connection to that hop in plain text).

use crate::relay::client::session::TlsPolicy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The largest `--relay-ca` file read, in octets: a whole system bundle (Debian's
/// `ca-certificates.crt` is about 220 KiB) fits many times over.
pub const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// TLS sessions kept for resumption (rustls keeps a few tickets per server name; a relay
/// talks to a handful of next hops).
const SESSION_CACHE: usize = 256;

/// What every delivery connection needs to start TLS: the shared configuration and each
/// next hop's name.
#[derive(Debug, Clone)]
pub struct Connector {
    /// The configuration every connection shares (and with it the session store).
    config: Arc<ClientConfig>,
    /// The name of each next hop (by its index), sent as SNI and verified.
    names: Vec<ServerName<'static>>,
}

impl Connector {
    /// The connector for `policy` toward next hops named `names` (as `--relay-to` gave
    /// them: host names or IP literals), trusting `ca` (DER certificates) or, without it, the
    /// system's roots. `None` for [`TlsPolicy::Off`]. Errors are one line, for the start
    /// error.
    pub fn new(
        policy: TlsPolicy,
        ca: Option<&[CertificateDer<'static>]>,
        names: &[String],
    ) -> Result<Option<Connector>, String> {
        if policy == TlsPolicy::Off {
            return Ok(None);
        }
        let names = names
            .iter()
            .map(|name| server_name(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Connector {
            config: client_config(policy, ca)?,
            names,
        }))
    }

    /// A fresh client connection to next hop `hop` (its handshake not started). `None` for
    /// an index without a name (a configuration mistake: the connection then fails like
    /// one that could not be opened).
    pub fn connect(&self, hop: usize) -> Option<rustls::ClientConnection> {
        let name = self.names.get(hop)?.clone();
        rustls::ClientConnection::new(Arc::clone(&self.config), name).ok()
    }
}

/// The shared client configuration for `policy` (not [`TlsPolicy::Off`]).
fn client_config(
    policy: TlsPolicy,
    ca: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("--relay-tls: {e}"))?;
    let mut config = match policy {
        TlsPolicy::Required => builder
            .with_root_certificates(root_store(ca)?)
            .with_no_client_auth(),
        TlsPolicy::Opportunistic | TlsPolicy::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { algorithms }))
            .with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::in_memory_sessions(SESSION_CACHE);
    Ok(Arc::new(config))
}

/// The trusted roots: `ca`, or the system's (`rustls-native-certs`: the OpenSSL locations
/// on Linux, `SSL_CERT_FILE`/`SSL_CERT_DIR` when set).
fn root_store(ca: Option<&[CertificateDer<'static>]>) -> Result<RootCertStore, String> {
    let certificates = match ca {
        Some(certificates) => certificates.to_vec(),
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "--relay-tls required: no trusted root certificate found on this system{}; \
                     give --relay-ca FILE",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", why.join("; "))
                    }
                ));
            }
            found.certs
        }
    };
    let mut roots = RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(match ca {
            Some(_) => "--relay-ca: no usable certificate".to_string(),
            None => "--relay-tls required: none of the system's root certificates is usable; \
                     give --relay-ca FILE"
                .to_string(),
        });
    }
    Ok(roots)
}

/// Reads `--relay-ca FILE`: a PEM bundle of at most [`MAX_CA_FILE_BYTES`] with at least one
/// certificate, each usable as a trust anchor. Errors are one line naming the flag and file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let text = crate::named_file::read_text(
        path,
        MAX_CA_FILE_BYTES,
        "a bundle of trusted root certificates (PEM)",
    )
    .map_err(|e| format!("--relay-ca {shown}: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--relay-ca {shown}: not a PEM file ({e})"))?;
    if certificates.is_empty() {
        return Err(format!(
            "--relay-ca {shown}: no certificate in it (expected -----BEGIN CERTIFICATE----- blocks)"
        ));
    }
    for (index, certificate) in certificates.iter().enumerate() {
        if webpki_anchor(certificate).is_err() {
            return Err(format!(
                "--relay-ca {shown}: certificate {} of {} does not parse",
                index + 1,
                certificates.len()
            ));
        }
    }
    Ok(certificates)
}

/// Whether `certificate` can be a trust anchor (what [`RootCertStore::add`] checks).
fn webpki_anchor(certificate: &CertificateDer<'static>) -> Result<(), rustls::Error> {
    RootCertStore::empty().add(certificate.clone())
}

/// The name a next hop is verified against: an IP literal (`127.0.0.1`, `::1`, brackets
/// allowed) as an address, anything else as a DNS name.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let bare = name
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_string())
        .map_err(|_| format!("--relay-to: {name:?} is not a DNS name or an IP address (for TLS)"))
}

/// A TLS failure in words, for a deferred recipient's last reply (and so a notification's
/// `Diagnostic-Code`): rustls shows some of its values as Rust debug text (`UnknownIssuer`,
/// `Other(OtherError(CaUsedAsEndEntity))`), turned here into lower-case words.
pub fn describe_error(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate not verified: unknown issuer (not signed by a trusted root: \
             --relay-ca FILE names one)"
                .to_string()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "certificate not verified: not valid for the next hop's name".to_string()
        }
        // webpki's reason inside (its `Display` is its debug name: `CaUsedAsEndEntity`).
        Error::InvalidCertificate(CertificateError::Other(other)) => {
            format!("certificate not verified: {}", words(&other.to_string()))
        }
        Error::InvalidCertificate(other) => {
            format!("certificate not verified: {}", words(&other.to_string()))
        }
        Error::AlertReceived(alert) => {
            format!(
                "the next hop sent the alert {}",
                words(&format!("{alert:?}"))
            )
        }
        other => words(&other.to_string()),
    }
}

/// Text with Rust's debug output in words: each CamelCase word (`BadEncoding`,
/// `UnknownCA`) in lower-case words (`bad encoding`, `unknown ca`), and the brackets of
/// debug wrappers (`Other(OtherError(X))`, `Variant { field }`) dropped, spaces collapsed.
/// Words in one case (`TLS`, `expired`) stay as they are.
fn words(text: &str) -> String {
    let unwrapped: String = text
        .chars()
        .map(|c| {
            if matches!(c, '(' | ')' | '{' | '}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    unwrapped
        .split_whitespace()
        .map(|word| {
            let chars: Vec<char> = word.chars().collect();
            let camel = chars
                .windows(2)
                .any(|pair| pair[0].is_ascii_lowercase() && pair[1].is_ascii_uppercase())
                || (chars.first().is_some_and(char::is_ascii_uppercase)
                    && chars.iter().skip(1).all(char::is_ascii_lowercase)
                    && chars.len() > 1
                    && word.chars().all(|c| c.is_ascii_alphanumeric()));
            if !camel {
                return word.to_string();
            }
            let mut out = String::new();
            for (i, &c) in chars.iter().enumerate() {
                // A new word at an upper-case letter after a lower-case one or a digit
                // (`BadDer`), or at the last capital of a run before a lower-case letter
                // (`CAUsed`: `ca used`).
                let after_lower =
                    i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
                let ends_run = i > 0
                    && chars[i - 1].is_ascii_uppercase()
                    && chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
                if c.is_ascii_uppercase() && (after_lower || ends_run) {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--relay-tls opportunistic`'s verifier: accepts any certificate (a next hop's self-signed
/// or expired one, or one for another name, as most MTAs do for opportunistic TLS, RFC 7435),
/// but checks the handshake's signatures with the provider's algorithms, so the next hop
/// must hold the key of the certificate it sent. Protects against passive listeners only.
#[derive(Debug)]
struct AnyCertificate {
    /// The provider's signature verification algorithms.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a leaf it signed for `names`: (CA certificate, leaf chain, leaf key).
    fn ca_and_leaf(
        names: &[&str],
    ) -> (CertificateDer<'static>, rcgen::Certificate, rcgen::KeyPair) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // A name of its own: two CAs of one name would be told apart by signature only.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {n}"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        (ca.der().clone(), leaf, leaf_key)
    }

    /// A server configuration presenting `leaf`, signing with `key` (which need not be
    /// the leaf's: rustls's resolver does not check).
    fn server_config(leaf: &rcgen::Certificate, key: &rcgen::KeyPair) -> rustls::ServerConfig {
        /// Always the one certificate.
        #[derive(Debug)]
        struct One(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for One {
            fn resolve(
                &self,
                _hello: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(Arc::clone(&self.0))
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![leaf.der().clone()], signing);
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(One(Arc::new(certified))))
    }

    /// Runs a handshake in memory between a client of `connector` toward hop 0 and a server
    /// presenting `leaf` and signing with `key`: the client's error, if any.
    fn handshake(
        connector: &Connector,
        leaf: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> Result<(), rustls::Error> {
        let mut server = rustls::ServerConnection::new(Arc::new(server_config(leaf, key))).unwrap();
        let mut client = connector.connect(0).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let mut slice = wire.as_slice();
            while !slice.is_empty() {
                server.read_tls(&mut slice).unwrap();
            }
            // A server-side error sends an alert; the client's own error is what is checked.
            let _ = server.process_new_packets();
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            let mut slice = wire.as_slice();
            while !slice.is_empty() {
                client.read_tls(&mut slice).unwrap();
            }
            client.process_new_packets()?;
            if !client.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the in-memory handshake did not end");
    }

    #[test]
    fn required_verifies_the_chain_and_the_name_opportunistic_neither() {
        let (ca, leaf, key) = ca_and_leaf(&["mx.test", "127.0.0.1"]);
        let (other_ca, _, _) = ca_and_leaf(&["mx.test"]);
        let trusted = [ca];
        let wrong = [other_ca];
        let connector = |policy, ca: Option<&[CertificateDer<'static>]>, name: &str| {
            Connector::new(policy, ca, &[name.to_string()])
                .unwrap()
                .unwrap()
        };
        // The right CA, the name as --relay-to gave it: a DNS name or an IP literal.
        for name in ["mx.test", "127.0.0.1"] {
            let required = connector(TlsPolicy::Required, Some(&trusted), name);
            assert_eq!(handshake(&required, &leaf, &key), Ok(()), "{name}");
        }
        // Another CA: unknown issuer.
        let required = connector(TlsPolicy::Required, Some(&wrong), "mx.test");
        let error = handshake(&required, &leaf, &key).unwrap_err();
        assert_eq!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
        assert!(describe_error(&error).contains("unknown issuer"), "{error}");
        // The right CA, another name (or an IP the certificate does not name).
        for name in ["other.test", "127.0.0.2"] {
            let required = connector(TlsPolicy::Required, Some(&trusted), name);
            let error = handshake(&required, &leaf, &key).unwrap_err();
            assert!(
                matches!(
                    error,
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                            | rustls::CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{name}: {error:?}"
            );
            assert!(describe_error(&error).starts_with("certificate not verified"));
        }
        // Opportunistic takes them all: any issuer, any name.
        for name in ["mx.test", "other.test", "127.0.0.2"] {
            let any = connector(TlsPolicy::Opportunistic, None, name);
            assert_eq!(handshake(&any, &leaf, &key), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_self_signed_hop_certificate_can_be_its_own_trusted_root() {
        // `--relay-ca` naming the next hop's own self-signed (non-CA) certificate.
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["mx.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let trusted = [leaf.der().clone()];
        let required = Connector::new(TlsPolicy::Required, Some(&trusted), &["mx.test".into()])
            .unwrap()
            .unwrap();
        assert_eq!(handshake(&required, &leaf, &key), Ok(()));
        let other = Connector::new(TlsPolicy::Required, Some(&trusted), &["other.test".into()])
            .unwrap()
            .unwrap();
        assert!(handshake(&other, &leaf, &key).is_err());
    }

    #[test]
    fn opportunistic_still_checks_the_handshake_signature() {
        // Any certificate is taken, but not a handshake signed by another key than its own.
        let (_, leaf, _) = ca_and_leaf(&["mx.test"]);
        let (_, _, other_key) = ca_and_leaf(&["mx.test"]);
        let any = Connector::new(TlsPolicy::Opportunistic, None, &["mx.test".into()])
            .unwrap()
            .unwrap();
        let error = handshake(&any, &leaf, &other_key).unwrap_err();
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                    | rustls::Error::PeerMisbehaved(_)
            ),
            "{error:?}"
        );
    }

    #[test]
    fn off_builds_nothing_and_bad_names_are_refused() {
        assert!(Connector::new(TlsPolicy::Off, None, &["bad name".into()])
            .unwrap()
            .is_none());
        let error =
            Connector::new(TlsPolicy::Opportunistic, None, &["bad name".into()]).unwrap_err();
        assert!(error.contains("\"bad name\""), "{error}");
        assert_eq!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress("::1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            server_name("mx.test").unwrap(),
            ServerName::try_from("mx.test").unwrap()
        );
    }

    #[test]
    fn ca_files_are_read_and_bad_ones_named() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-relay-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, _, _) = ca_and_leaf(&["mx.test"]);
        let (ca2, _, _) = ca_and_leaf(&["mx.test"]);
        let pem = |der: &CertificateDer<'_>| {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in text.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(line).unwrap());
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
            out
        };
        let bundle = dir.join("bundle.pem");
        std::fs::write(&bundle, format!("# two roots\n{}{}", pem(&ca), pem(&ca2))).unwrap();
        assert_eq!(read_ca_file(&bundle).unwrap(), vec![ca.clone(), ca2]);
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = read_ca_file(&empty).unwrap_err();
        assert!(error.contains("no certificate in it"), "{error}");
        assert!(
            error.starts_with(&format!("--relay-ca {}", empty.display())),
            "{error}"
        );
        let missing = dir.join("missing.pem");
        let error = read_ca_file(&missing).unwrap_err();
        assert!(
            error.starts_with(&format!("--relay-ca {}: ", missing.display())),
            "{error}"
        );
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = read_ca_file(&garbage).unwrap_err();
        assert!(
            error.contains("certificate 1 of 1 does not parse"),
            "{error}"
        );
        let error = read_ca_file(&dir).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stand-in for webpki's error, whose `Display` is its debug name.
    #[derive(Debug)]
    struct DebugNamed(&'static str);

    impl std::fmt::Display for DebugNamed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for DebugNamed {}

    /// Every TLS failure that can become a kept reply is words: no Rust debug text (no
    /// CamelCase, no `(`-wrapped variants), whatever rustls's `Display` shows.
    #[test]
    fn tls_errors_reach_a_kept_reply_as_words_only() {
        use rustls::{
            AlertDescription, CertificateError, Error, InvalidMessage, OtherError,
            PeerIncompatible, PeerMisbehaved,
        };
        let other = |name: &'static str| OtherError(std::sync::Arc::new(DebugNamed(name)));
        let cases = [
            (
                Error::InvalidCertificate(CertificateError::Other(other("CaUsedAsEndEntity"))),
                "certificate not verified: ca used as end entity",
            ),
            (
                Error::InvalidCertificate(CertificateError::BadEncoding),
                "certificate not verified: bad encoding",
            ),
            (
                Error::InvalidCertificate(CertificateError::UnhandledCriticalExtension),
                "certificate not verified: unhandled critical extension",
            ),
            (
                Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
                "certificate not verified: application verification failure",
            ),
            (
                Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
                "peer misbehaved: illegal middlebox change cipher spec",
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
                "peer is incompatible: tls12 not offered",
            ),
            (
                Error::InvalidMessage(InvalidMessage::InvalidContentType),
                "received corrupt message of type invalid content type",
            ),
            (
                Error::Other(other("UnknownCAUsed")),
                "other error: unknown ca used",
            ),
            (
                Error::AlertReceived(AlertDescription::BadCertificate),
                "the next hop sent the alert bad certificate",
            ),
        ];
        for (error, want) in cases {
            let text = describe_error(&error);
            assert_eq!(text, want, "{error:?}");
            crate::relay::deliver::convert::assert_words(&text);
        }
    }

    #[test]
    fn tls_errors_are_words() {
        use rustls::{AlertDescription, CertificateError, Error};
        assert_eq!(
            describe_error(&Error::InvalidCertificate(CertificateError::Expired)),
            "certificate not verified: expired"
        );
        assert_eq!(
            describe_error(&Error::AlertReceived(AlertDescription::HandshakeFailure)),
            "the next hop sent the alert handshake failure"
        );
    }
}
