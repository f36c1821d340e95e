//! TLS settings of a run: one rustls `ClientConfig`, built once and shared by every
//! connection of every thread, and the name the server is asked for.
//!
//! What it does: build the configuration from `--tls-verify`, `--ca`, `--tls-resume` (rustls
//! with the `ring` provider, TLS 1.2 and 1.3, the same choice as the server crate); choose
//! the server name from `--sni` or the target's host (an IP target sends no SNI, as RFC 6066
//! §3 allows no literal addresses there); and, without `--tls-verify`, supply a certificate
//! verifier that accepts any certificate, for self-signed test servers. That verifier still
//! checks the handshake signatures with the provider's algorithms, so the handshake does all
//! the work a verifying client's does except the path to a trusted root: what is measured is
//! a real handshake. Every output says "certificate not verified" in that case.
//!
//! Resumption (`--tls-resume on`, the default): rustls's in-memory session store in the one
//! shared configuration, so a later connection resumes with a TLS 1.3 ticket or a TLS 1.2
//! session id or ticket from an earlier one, whichever thread made it; `off` makes every
//! handshake a full one.
//!
//! TLS failures are said in words ([`describe_error`]): rustls shows some of its error
//! values as Rust debug text (`UnknownIssuer`), which the output does not.
//!
//! What it does not do: read or write sockets, or drive handshakes (`transport`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// A TLS failure in words, for the output's error details: `invalid peer certificate:
/// unknown issuer (not signed by a root this run trusts: --ca FILE names one)`.
pub fn describe_error(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "invalid peer certificate: unknown issuer (not signed by a root this run trusts: \
             --ca FILE names one)"
                .to_string()
        }
        Error::InvalidCertificate(c) => {
            format!("invalid peer certificate: {}", words(&c.to_string()))
        }
        Error::AlertReceived(alert) => {
            format!("the server sent the alert {}", words(&format!("{alert:?}")))
        }
        other => words(&other.to_string()),
    }
}

/// Text with each CamelCase word (rustls's debug text of an enum value, `BadEncoding`) in
/// lower-case words (`bad encoding`); other text as it is.
fn words(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let camel = word.len() > 1
                && word.starts_with(|c: char| c.is_ascii_uppercase())
                && word.chars().all(|c| c.is_ascii_alphanumeric())
                && word.chars().skip(1).any(|c| c.is_ascii_uppercase())
                && word.chars().any(|c| c.is_ascii_lowercase());
            if !camel {
                return word.to_string();
            }
            let mut out = String::new();
            for (i, c) in word.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sessions the client keeps for resumption (per server name, rustls keeps a few TLS 1.3
/// tickets; one server name is all a run uses).
const SESSION_CACHE: usize = 256;

/// The TLS options of a run, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--tls-verify`: check the certificate chain and name against trusted roots.
    pub verify: bool,
    /// `--ca FILE`: the trusted roots (PEM); without it, the system's.
    pub ca: Option<std::path::PathBuf>,
    /// `--sni NAME`: the name asked for and verified; default: the target's host.
    pub sni: Option<String>,
    /// `--tls-resume`: resume earlier sessions.
    pub resume: bool,
}

/// What every connection needs to start TLS: the shared configuration and the server name.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The configuration every connection shares (and with it the session store).
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI (a DNS name) and verified (with `--tls-verify`).
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// Builds the configuration for `options` against the target `target` (`HOST:PORT`).
    pub fn new(options: &TlsOptions, target: &str) -> Result<TlsClient, String> {
        Ok(TlsClient {
            config: client_config(options)?,
            server_name: server_name(target, options.sni.as_deref())?,
        })
    }
}

/// The shared client configuration.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = if options.verify {
        builder
            .with_root_certificates(root_store(options.ca.as_deref())?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { algorithms }))
            .with_no_client_auth()
    };
    config.resumption = if options.resume {
        Resumption::in_memory_sessions(SESSION_CACHE)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// The trusted roots: the certificates of `ca` (PEM), or the system's.
fn root_store(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certificates = match ca {
        Some(path) => {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca {shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--ca {shown}: {e}"))?;
            if certificates.is_empty() {
                return Err(format!("--ca {shown}: no CERTIFICATE block in the file"));
            }
            certificates
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "--tls-verify: no trusted root certificates found on this system{}; give --ca FILE",
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
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(match ca {
            Some(path) => format!("--ca {}: no usable certificate", path.display()),
            None => "--tls-verify: none of the system's root certificates is usable".into(),
        });
    }
    Ok(roots)
}

/// The server name: `sni` if given, else the host of `target` (`HOST:PORT`, `[V6]:PORT`). A
/// DNS name is sent as SNI and verified; an IP address is verified (IP SANs) but not sent.
pub fn server_name(target: &str, sni: Option<&str>) -> Result<ServerName<'static>, String> {
    if let Some(name) = sni {
        return ServerName::try_from(name.to_string())
            .map_err(|_| format!("--sni {name:?} is not a DNS name or an IP address"));
    }
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("--target host {host:?} is not a DNS name; give --sni NAME"))
}

/// A name shown to people: the SNI sent, or that none is.
pub fn describe_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => format!("SNI {}", dns.as_ref()),
        _ => "no SNI".to_string(),
    }
}

/// Accepts any certificate (`--tls-verify` not given: self-signed test servers), but checks
/// the handshake's signatures with the provider's algorithms, so the server must hold the
/// key of the certificate it sent and the handshake costs what a verified one does, minus the
/// path building.
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

    #[test]
    fn tls_errors_are_words_not_debug_text() {
        use rustls::{AlertDescription, CertificateError, Error};
        assert_eq!(
            describe_error(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            "invalid peer certificate: unknown issuer (not signed by a root this run trusts: \
             --ca FILE names one)"
        );
        assert_eq!(
            describe_error(&Error::InvalidCertificate(CertificateError::BadEncoding)),
            "invalid peer certificate: bad encoding"
        );
        assert_eq!(
            describe_error(&Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            "invalid peer certificate: not valid for name"
        );
        assert_eq!(
            describe_error(&Error::AlertReceived(AlertDescription::HandshakeFailure)),
            "the server sent the alert handshake failure"
        );
    }

    #[test]
    fn server_names_come_from_sni_or_the_target_host() {
        let dns = |s: &str| ServerName::try_from(s.to_string()).unwrap();
        assert_eq!(server_name("mx.test:25", None).unwrap(), dns("mx.test"));
        assert_eq!(
            server_name("127.0.0.1:465", None).unwrap(),
            ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into())
        );
        assert!(matches!(
            server_name("[::1]:465", None).unwrap(),
            ServerName::IpAddress(_)
        ));
        assert_eq!(
            server_name("127.0.0.1:465", Some("mx.test")).unwrap(),
            dns("mx.test")
        );
        assert!(server_name("127.0.0.1:25", Some("bad name")).is_err());
        assert_eq!(describe_name(&dns("mx.test")), "SNI mx.test");
        assert_eq!(
            describe_name(&server_name("127.0.0.1:1", None).unwrap()),
            "no SNI"
        );
    }

    #[test]
    fn configurations_build_and_a_bad_ca_file_says_which() {
        for resume in [true, false] {
            let options = TlsOptions {
                verify: false,
                ca: None,
                sni: None,
                resume,
            };
            assert!(client_config(&options).is_ok());
        }
        let options = TlsOptions {
            verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            sni: None,
            resume: true,
        };
        let error = client_config(&options).unwrap_err();
        assert!(error.starts_with("--ca /nonexistent/ca.pem"), "{error}");
    }
}
