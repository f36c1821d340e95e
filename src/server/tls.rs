//! TLS settings: the rustls server configuration the transports share.
//!
//! What it does: build one `rustls::ServerConfig` at start from PEM files (`--tls-cert`, a chain
//! is allowed, and `--tls-key`) or from a certificate made at start for the host name
//! (`--tls-self-signed`, with rcgen: for tests and quick starts, never for real senders that
//! verify). TLS 1.2 and 1.3 with rustls's default suites; the crypto provider is `ring`
//! (small, builds with a C compiler alone, no cmake or assembler toolchain, which keeps CI and
//! a fresh checkout simple). Session resumption is on both ways: a session cache (TLS 1.2 ids)
//! and stateless tickets.
//!
//! The certificate sits behind a resolver ([`Certificates`]) so that SIGHUP can swap in the
//! files' new contents for new connections ([`Certificates::reload`]) while the configuration,
//! its session cache and ticket keys stay: sessions resumed across a reload keep working.
//!
//! What it does not do: read or write sockets (the transport does, see
//! [`super::transport`]), or decide when TLS starts (implicit TLS listeners start it at accept,
//! plaintext ones at `STARTTLS`, RFC 3207).

use crate::config::TlsSource;
use crate::lock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The server's certificate and key, replaceable while the server runs.
#[derive(Debug)]
pub struct Certificates {
    /// Where they come from.
    source: TlsSource,
    /// The host name (for a self-signed certificate).
    hostname: String,
    /// The signing provider, to load keys.
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The certificate handed to new handshakes.
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads the certificate and key (or makes a self-signed pair).
    fn load(
        source: &TlsSource,
        hostname: &str,
        provider: &rustls::crypto::CryptoProvider,
    ) -> io::Result<CertifiedKey> {
        match source {
            TlsSource::Files { cert, key } => {
                let (chain, key_der) = (read_chain(cert)?, read_key(key)?);
                // A key that does not parse, or is not the certificate's: name both files (on
                // SIGHUP this is all the operator sees).
                CertifiedKey::from_der(chain, key_der, provider).map_err(|e| {
                    invalid(format!(
                        "--tls-cert {}, --tls-key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })
            }
            TlsSource::SelfSigned => {
                let (chain, key) = self_signed(hostname)?;
                CertifiedKey::from_der(chain, key, provider).map_err(invalid)
            }
        }
    }

    /// SIGHUP: reads the files again; new connections get the new certificate, connections
    /// open keep theirs. On error the old certificate stays. A self-signed certificate is
    /// kept (making a new one would only break clients that pinned it).
    pub fn reload(&self) -> io::Result<bool> {
        if self.source == TlsSource::SelfSigned {
            return Ok(false);
        }
        let fresh = Certificates::load(&self.source, &self.hostname, &self.provider)?;
        *lock::write(&self.current) = Arc::new(fresh);
        Ok(true)
    }

    /// The leaf certificate now in use (DER), for tests and reports.
    pub fn leaf(&self) -> CertificateDer<'static> {
        let current = lock::read(&self.current);
        current.cert[0].clone()
    }
}

impl rustls::server::ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&lock::read(&self.current)))
    }
}

/// The TLS settings the workers share: the configuration, and its reloadable certificate.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// What every TLS transport is made from.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate behind it (SIGHUP reloads it).
    pub certificates: Arc<Certificates>,
}

/// Builds the shared server configuration; an error names the file or says what is wrong.
pub fn server_config(source: &TlsSource, hostname: &str) -> io::Result<TlsSettings> {
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: preferred_suites(),
        ..rustls::crypto::ring::default_provider()
    });
    let certified = Certificates::load(source, hostname, &provider)?;
    let certificates = Arc::new(Certificates {
        source: source.clone(),
        hostname: hostname.to_string(),
        provider: Arc::clone(&provider),
        current: RwLock::new(Arc::new(certified)),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&certificates) as _);
    // Resumption: a session cache for TLS 1.2 session ids, tickets for both versions.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(invalid)?;
    // The server chooses the suite, in its own order (`preferred_suites`), as scanners such as
    // testssl.sh expect of a server ("cipher order"), instead of taking the client's first.
    config.ignore_client_order = true;
    Ok(TlsSettings {
        config: Arc::new(config),
        certificates,
    })
}

/// rustls's default suites (ring), in the order the server prefers them: AES-128-GCM with
/// SHA-256 first. All are AEAD with forward secrecy; AES-128 is TLS 1.3's mandatory suite and
/// strong, and it is the cheapest here: its key schedule is SHA-256 (which CPUs accelerate,
/// unlike SHA-384) and its cipher does 10 AES rounds instead of 14.
fn preferred_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The certificate of `--tls-self-signed`, written as PEM (RFC 7468 §5: a `CERTIFICATE`
/// block, base64 in lines of 64) beside `--tls-self-signed-out FILE` under a temporary name
/// and synced, but not yet in place: [`PendingCertificate::publish`] renames it over `FILE`
/// once the server's listeners are bound, so a start that fails (the address is in use by
/// another fastsmtpd) never replaces the certificate a running server's senders trust.
/// Dropped unpublished, the temporary file is removed.
#[derive(Debug)]
pub struct PendingCertificate {
    /// Where it is written now.
    temporary: std::path::PathBuf,
    /// `FILE`.
    path: std::path::PathBuf,
    /// The directory holding both (synced after the rename).
    dir: std::path::PathBuf,
    /// Renamed into place: nothing to remove.
    published: bool,
}

/// Writes `certificate` as PEM beside `path` (see [`PendingCertificate`]), so a sender that
/// verifies can be given it as its trust anchor (`--tls-self-signed-out`). Errors name the
/// flag and the path.
pub fn stage_certificate_pem(
    certificate: &CertificateDer<'_>,
    path: &Path,
) -> io::Result<PendingCertificate> {
    use base64::Engine as _;
    use std::io::Write as _;
    let shown = path.display();
    let name = path
        .file_name()
        .ok_or_else(|| invalid(format!("--tls-self-signed-out {shown}: not a file name")))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".tmp.{}", std::process::id()));
    let pending = PendingCertificate {
        temporary: dir.join(temporary_name),
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        published: false,
    };
    std::fs::File::create(&pending.temporary)
        .and_then(|mut file| {
            file.write_all(pem.as_bytes())?;
            file.sync_all()
        })
        .map_err(|e| io::Error::new(e.kind(), format!("--tls-self-signed-out {shown}: {e}")))?;
    Ok(pending)
}

impl PendingCertificate {
    /// Renames the certificate over `FILE` (atomic: a reader never sees half a file) and
    /// syncs the directory.
    pub fn publish(mut self) -> io::Result<()> {
        let published = std::fs::rename(&self.temporary, &self.path)
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
        self.published = published.is_ok();
        published.map_err(|e| {
            let shown = self.path.display();
            io::Error::new(e.kind(), format!("--tls-self-signed-out {shown}: {e}"))
        })
    }
}

impl Drop for PendingCertificate {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// The certificate chain in `path`, leaf first.
fn read_chain(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| io::Error::other(format!("--tls-cert {shown}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("--tls-cert {shown}: {e}")))?;
    if chain.is_empty() {
        return Err(io::Error::other(format!(
            "--tls-cert {shown}: no CERTIFICATE block in the file"
        )));
    }
    Ok(chain)
}

/// The private key in `path` (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| io::Error::other(format!("--tls-key {}: {e}", path.display())))
}

/// A certificate for `hostname`, signed by its own key.
fn self_signed(
    hostname: &str,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let made = rcgen::generate_simple_self_signed(vec![hostname.to_string()]).map_err(invalid)?;
    let key = PrivateKeyDer::try_from(made.key_pair.serialize_der()).map_err(invalid)?;
    Ok((vec![made.cert.der().clone()], key))
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_configuration_builds_and_bad_files_say_which() {
        assert!(server_config(&TlsSource::SelfSigned, "mx.test").is_ok());
        let missing = TlsSource::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let error = server_config(&missing, "mx.test").unwrap_err().to_string();
        assert!(
            error.contains("--tls-cert /nonexistent/cert.pem"),
            "{error}"
        );
    }

    #[test]
    fn the_self_signed_certificate_is_written_as_pem_that_reads_back() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-tls-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = server_config(&TlsSource::SelfSigned, "mx.test").unwrap();
        let path = dir.join("cert.pem");
        std::fs::write(&path, "old contents").unwrap();
        // Staged and dropped unpublished (the start failed): the old file stays, and no
        // temporary file is left.
        drop(stage_certificate_pem(&settings.certificates.leaf(), &path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old contents");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let staged = stage_certificate_pem(&settings.certificates.leaf(), &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old contents");
        staged.publish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
        assert!(text.lines().all(|line| line.len() <= 64));
        let read = read_chain(&path).unwrap();
        assert_eq!(read, [settings.certificates.leaf()]);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        let missing = dir.join("no/such/dir/cert.pem");
        let error = stage_certificate_pem(&settings.certificates.leaf(), &missing).unwrap_err();
        assert!(
            error.to_string().starts_with("--tls-self-signed-out "),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_names_both_files() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let one = rcgen::generate_simple_self_signed(vec!["mx.test".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["mx.test".into()]).unwrap();
        std::fs::write(&cert, one.cert.pem()).unwrap();
        std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
        let source = TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let error = server_config(&source, "mx.test").unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            error.starts_with(&format!(
                "TLS: --tls-cert {}, --tls-key {}: ",
                cert.display(),
                key.display()
            )),
            "{error}"
        );
    }
}
