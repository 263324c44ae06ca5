//! TLS set-up: the mutual-TLS server configuration, the outbound client configuration, and
//! reading who is calling from a verified client certificate.
//!
//! One crypto backend (aws-lc-rs), passed explicitly everywhere; TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use crate::app::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {kind} from {path}: {reason}")]
    Read {
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no {kind}")]
    Empty { kind: &'static str, path: PathBuf },
    #[error("{0}")]
    NotPrivate(String),
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// The process's one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process default so no library can pick another. Idempotent.
pub fn install_default_provider() {
    // An error only means a provider is installed already, which is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| read_error("certificates", path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            kind: "certificate",
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    crate::platform::fs::ensure_private(path).map_err(TlsError::NotPrivate)?;
    // The error text from the PEM reader never contains key material, only its shape.
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_error("a private key", path, &e))
}

/// A secret kept in a file (a MESH password, a sign-in client secret): refused when others can
/// read the file; the text without its trailing newline, zeroised when dropped.
pub fn read_secret(path: &Path, kind: &'static str) -> Result<zeroize::Zeroizing<String>, TlsError> {
    crate::platform::fs::ensure_private(path).map_err(TlsError::NotPrivate)?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| TlsError::Read {
        kind,
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })?);
    Ok(zeroize::Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned()))
}

pub fn read_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        let found = CertificateRevocationListDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| read_error("CRLs", path, &e))?;
        if found.is_empty() {
            return Err(TlsError::Empty {
                kind: "CRL",
                path: path.clone(),
            });
        }
        crls.extend(found);
    }
    Ok(crls)
}

fn read_error(kind: &'static str, path: &Path, e: &rustls_pki_types::pem::Error) -> TlsError {
    TlsError::Read {
        kind,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn roots(certs: Vec<CertificateDer<'static>>, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| TlsError::Read {
            kind: "a CA certificate",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The client-certificate verifier, rebuilt when a CRL file changes, without a restart.
///
/// rustls asks it about every handshake; it hands each question to the verifier built from the
/// CRLs as last read. A CRL that cannot be read or parsed is not swapped in: the last good one
/// stays, and it fails closed once its next-update time passes.
#[derive(Debug)]
pub struct ClientVerifier {
    current: std::sync::RwLock<Arc<dyn ClientCertVerifier>>,
    /// The CA's subjects, offered to clients; the roots never change while running.
    hints: Vec<DistinguishedName>,
    client_ca: PathBuf,
    crls: Vec<PathBuf>,
    /// What the CRL files held when last read (by digest: a modification time can miss a change
    /// made within its resolution).
    read_at: std::sync::Mutex<Vec<Option<[u8; 32]>>>,
    /// Each CRL in use (by file name) and its next-update time (Unix seconds).
    next_updates: std::sync::Mutex<Vec<(String, i64)>>,
}

/// Each CRL's file name and next-update time (Unix seconds); a CRL without one is left out.
fn next_updates(paths: &[PathBuf]) -> Vec<(String, i64)> {
    use x509_parser::prelude::FromDer as _;
    let mut out = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for der in CertificateRevocationListDer::pem_file_iter(path)
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok((_, crl)) = x509_parser::revocation_list::CertificateRevocationList::from_der(der.as_ref())
                && let Some(next) = crl.next_update()
            {
                out.push((name.clone(), next.timestamp()));
            }
        }
    }
    out
}

/// How long before a CRL's next update the gateway starts warning.
const CRL_WARN_SECS: i64 = 24 * 3600;

fn modified(paths: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    use sha2::Digest as _;
    paths
        .iter()
        .map(|p| std::fs::read(p).ok().map(|b| sha2::Sha256::digest(b).into()))
        .collect()
}

fn build_verifier(client_ca: &Path, crl_paths: &[PathBuf]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let client_roots = roots(read_certs(client_ca)?, client_ca)?;
    let crls = read_crls(crl_paths)?;
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider());
    if !crls.is_empty() {
        verifier = verifier.with_crls(crls).enforce_revocation_expiration();
    }
    verifier.build().map_err(|e| TlsError::Rustls(e.to_string()))
}

impl ClientVerifier {
    pub fn new(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        let read_at = modified(&settings.crls);
        let verifier = build_verifier(&settings.client_ca, &settings.crls)?;
        Ok(Arc::new(Self {
            hints: verifier.root_hint_subjects().to_vec(),
            current: std::sync::RwLock::new(verifier),
            client_ca: settings.client_ca.clone(),
            crls: settings.crls.clone(),
            read_at: std::sync::Mutex::new(read_at),
            next_updates: std::sync::Mutex::new(next_updates(&settings.crls)),
        }))
    }

    /// Each CRL in use (by file name) and its next-update time (Unix seconds).
    pub fn next_updates(&self) -> Vec<(String, i64)> {
        self.next_updates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Warns before a CRL's next update passes, and says loudly when one has: from then on every
    /// client is refused until a fresh CRL is in place.
    fn warn_if_stale(&self) {
        let now = crate::platform::clock::WallClock::now().as_second();
        for (crl, next) in self.next_updates() {
            if next <= now {
                tracing::error!(%crl, "ALERT: a CRL is past its next update; every client certificate is refused until it is refreshed");
            } else if next - now <= CRL_WARN_SECS {
                tracing::warn!(%crl, hours_left = (next - now) / 3600, "a CRL's next update is near; refresh it");
            }
        }
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the CRLs again if any file changed since the last read (or always, with `force`:
    /// SIGHUP). Returns whether a new verifier is in use.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = modified(&self.crls);
        {
            let read_at = self.read_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !force && *read_at == now {
                return Ok(false);
            }
        }
        let verifier = build_verifier(&self.client_ca, &self.crls)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
        *self.read_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        *self
            .next_updates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next_updates(&self.crls);
        Ok(true)
    }

    /// Watches the CRL files every `every`, and reloads on SIGHUP. Runs until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: std::time::Duration) {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        loop {
            let force = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            match self.reload(force) {
                Ok(true) => tracing::info!(crls = self.crls.len(), "CRLs reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "CRLs could not be reloaded; the last ones read stay in use"),
            }
            self.warn_if_stale();
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// The server side of mutual TLS: a client certificate is required and must chain to the client
/// CA bundle; revoked certificates (per the CRLs) are refused, and so is every certificate when
/// a CRL has passed its next-update time (fail closed). `verifier` rereads the CRLs when they
/// change.
pub fn server_config(settings: &TlsSettings, verifier: Arc<ClientVerifier>) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let chain = read_certs(&settings.server_cert)?;
    let key = read_key(&settings.server_key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    // Every connection proves its certificate: no session resumption, which would skip the client
    // certificate's chain, dates and revocation (no session cache, no TLS 1.3 tickets, and no
    // TLS 1.2 tickets: the builder's ticketer never produces one).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The console's server side: the same versions and provider, no client certificate (people sign
/// in with their identity provider instead).
pub fn console_server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// The client side for an identity provider (the console's sign-in): Mozilla's roots, or only
/// the given CA.
pub fn public_client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(ca) => roots(read_certs(ca)?, ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The client side for an outbound destination: trusts only that destination's CA and presents
/// the gateway's client certificate.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    let roots = roots(read_certs(ca)?, ca)?;
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// The URI subject alternative names of a certificate: how a caller is identified.
///
/// We use the URI SAN rather than the subject common name because SANs are typed and
/// unambiguous (a CN is free text and may occur more than once), and because a URI namespace
/// (`urn:isa-gateway:system:…`) cannot be confused with a host name.
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

/// The subject common names of a PEM certificate file (for the production profile's check that
/// no development CA is in use).
pub fn common_names(path: &Path) -> Result<Vec<String>, TlsError> {
    let mut names = Vec::new();
    for cert in read_certs(path)? {
        if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) {
            names.extend(
                parsed
                    .subject()
                    .iter_common_name()
                    .filter_map(|a| a.as_str().ok().map(str::to_owned)),
            );
            names.extend(
                parsed
                    .issuer()
                    .iter_common_name()
                    .filter_map(|a| a.as_str().ok().map(str::to_owned)),
            );
        }
    }
    Ok(names)
}
