//! Transports: the only code that sends anything out of the gateway.
//!
//! A transport is given a [`Parcel`] (bytes already decided and recorded) and either delivers it
//! or says why not, in words that never include the payload.

mod dir;
mod https;
pub mod mesh;

use std::collections::HashMap;

use uuid::Uuid;

pub use dir::DirTransport;
pub use https::HttpsTransport;
pub use mesh::MeshTransport;

use crate::app::config::DestinationConfig;
use crate::platform::tls::TlsError;

/// What leaves: the outbound document and what the recipient needs to de-duplicate it.
#[derive(Debug, Clone)]
pub struct Parcel {
    pub transfer_id: Uuid,
    pub agreement_id: String,
    pub message_type: String,
    pub bytes: Vec<u8>,
    /// Attempts made before this one (0 on the first).
    pub attempt: u32,
}

/// A successful hand-over, with the partner's reference for it where there is one (the MESH
/// message id), which later reports refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub remote_ref: Option<String>,
}

/// Why a delivery failed. `Display` is safe to record and log: no payload, no secrets.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("drop folder: {0}")]
    Io(std::io::ErrorKind),
    #[error("https: could not connect")]
    Connect,
    #[error("https: timed out")]
    Timeout,
    #[error("https: the receiver answered {0}")]
    Status(u16),
    #[error("https: request failed")]
    Request,
    #[error("mesh: {0}")]
    Mesh(String),
}

/// The outbound HTTPS client every partner transport uses: mutual TLS with the gateway's
/// certificate for that partner, trusting only that partner's CA; HTTPS only, no redirects, no
/// proxy, bounded connect and request time.
pub(crate) fn https_client(
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    timeout_secs: u64,
) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::platform::tls::client_config(ca, cert, key)?)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(timeout_secs.min(10)))
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .build()
        .map_err(|e| TlsError::Rustls(format!("cannot build the HTTPS client: {e}")))
}

impl TransportError {
    /// The partner refused this message itself (a 4xx other than 408 or 429): trying again would
    /// only repeat the refusal.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Status(code) if (400..500).contains(code) && *code != 408 && *code != 429)
    }
}

#[derive(Debug)]
pub enum Transport {
    Dir(DirTransport),
    Https(HttpsTransport),
    Mesh(MeshTransport),
}

impl Transport {
    pub fn from_config(d: &DestinationConfig) -> Result<Self, TlsError> {
        Ok(match d {
            DestinationConfig::Dir { path, .. } => Self::Dir(DirTransport::new(path.clone())),
            DestinationConfig::Https {
                url,
                ca,
                client_cert,
                client_key,
                timeout_secs,
                ..
            } => Self::Https(HttpsTransport::new(url, ca, client_cert, client_key, *timeout_secs)?),
            DestinationConfig::Mesh {
                url,
                mailbox,
                to,
                workflow_id,
                password_file,
                shared_key_file,
                ca,
                client_cert,
                client_key,
                chunk_size,
                compress,
                timeout_secs,
                inbox_page_size,
                ..
            } => Self::Mesh(MeshTransport::new(&mesh::MeshSettings {
                url,
                mailbox,
                to,
                workflow_id,
                password_file,
                shared_key_file,
                ca,
                client_cert,
                client_key,
                chunk_size: *chunk_size,
                compress: *compress,
                timeout_secs: *timeout_secs,
                inbox_page_size: *inbox_page_size,
            })?),
        })
    }

    pub async fn send(&self, parcel: &Parcel) -> Result<Sent, TransportError> {
        match self {
            Self::Dir(t) => t.send(parcel).await.map(|()| Sent::default()),
            Self::Https(t) => t.send(parcel).await.map(|()| Sent::default()),
            Self::Mesh(t) => t.send(parcel).await,
        }
    }
}

/// Every configured destination's transport, built once at start-up.
#[derive(Debug, Default)]
pub struct Transports {
    by_id: HashMap<String, Transport>,
}

impl Transports {
    pub fn build(destinations: &[DestinationConfig]) -> Result<Self, (String, TlsError)> {
        let mut by_id = HashMap::new();
        for d in destinations {
            let t = Transport::from_config(d).map_err(|e| (d.id().to_owned(), e))?;
            by_id.insert(d.id().to_owned(), t);
        }
        Ok(Self { by_id })
    }

    pub fn get(&self, id: &str) -> Option<&Transport> {
        self.by_id.get(id)
    }

    /// The MESH destinations, whose inboxes must be read for reports.
    pub fn mesh(&self) -> impl Iterator<Item = (&str, &MeshTransport)> {
        self.by_id.iter().filter_map(|(id, t)| match t {
            Transport::Mesh(m) => Some((id.as_str(), m)),
            _ => None,
        })
    }
}
