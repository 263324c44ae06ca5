//! NHS MESH API v2: send through the gateway's mailbox, and read its inbox for non-delivery
//! reports.
//!
//! - Every request carries a fresh token: `NHSMESH <mailbox>:<nonce>:<nonce_count>:<UTC
//!   yyyyMMddHHmm>:<hex HMAC-SHA256(shared key, "mailbox:nonce:nc:password:timestamp")>`, with a
//!   new nonce each time (real MESH refuses a reused token).
//! - The mailbox is validated (handshake) before the first send and at least every 24 hours.
//! - A first `POST /outbox` is never repeated blindly, because MESH would accept a duplicate: a
//!   retry first asks tracking, by local id (= transfer id), whether the message already exists,
//!   and only sends if it does not.
//! - Large messages go in chunks, strictly in order; with `compress`, each chunk is gzipped.
//! - Mutual TLS with the gateway's MESH client certificate, trusting only the configured CA.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Parcel, Sent, TransportError};
use crate::platform::tls::{TlsError, read_secret};

const ACCEPT_V2: &str = "application/vnd.mesh.v2+json";
const CLIENT_VERSION: &str = concat!("isa-gateway==", env!("CARGO_PKG_VERSION"));
const HANDSHAKE_EVERY: Duration = Duration::from_secs(23 * 3600);

/// The MESH authorisation header value for one request.
pub fn token(
    mailbox: &str,
    password: &str,
    shared_key: &[u8],
    nonce: &str,
    nonce_count: u64,
    timestamp: &str,
) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(shared_key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{mailbox}:{nonce}:{nonce_count}:{password}:{timestamp}").as_bytes());
    let hash = hex::encode(mac.finalize().into_bytes());
    format!("NHSMESH {mailbox}:{nonce}:{nonce_count}:{timestamp}:{hash}")
}

/// A token for one request: a new random nonce every time, and the current UTC minute.
pub fn fresh_token(mailbox: &str, password: &str, shared_key: &[u8]) -> String {
    let nonce = uuid::Uuid::new_v4().to_string();
    let ts = crate::platform::clock::WallClock::now()
        .strftime("%Y%m%d%H%M")
        .to_string();
    token(mailbox, password, shared_key, &nonce, 0, &ts)
}

#[path = "mesh_inbox.rs"]
mod inbox;

pub use self::inbox::{DataMessage, Inbound, printable};

/// A non-delivery (or error) report found in the gateway's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub report_id: String,
    /// The MESH message id the report is about.
    pub linked_message_id: Option<String>,
    pub local_id: Option<String>,
    pub code: Option<String>,
    pub description: Option<String>,
}

pub struct MeshTransport {
    base: String,
    mailbox: String,
    to: String,
    workflow_id: String,
    password: Zeroizing<String>,
    shared_key: Zeroizing<Vec<u8>>,
    chunk_size: usize,
    compress: bool,
    inbox_page_size: u32,
    client: reqwest::Client,
    last_handshake: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for MeshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTransport")
            .field("base", &self.base)
            .field("mailbox", &self.mailbox)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

fn fail(what: &str) -> impl Fn(reqwest::Error) -> TransportError + '_ {
    move |e| {
        if e.is_timeout() {
            TransportError::Timeout
        } else if e.is_connect() {
            TransportError::Connect
        } else {
            TransportError::Mesh(format!("{what} failed"))
        }
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

/// Everything a MESH destination is configured with (`[[destinations]]`, `transport = "mesh"`).
#[derive(Debug, Clone, Copy)]
pub struct MeshSettings<'a> {
    pub url: &'a str,
    pub mailbox: &'a str,
    /// The recipient's mailbox.
    pub to: &'a str,
    pub workflow_id: &'a str,
    pub password_file: &'a Path,
    pub shared_key_file: &'a Path,
    /// The only CA trusted for the MESH server, and the gateway's client certificate for it.
    pub ca: &'a Path,
    pub client_cert: &'a Path,
    pub client_key: &'a Path,
    pub chunk_size: usize,
    pub compress: bool,
    pub timeout_secs: u64,
    pub inbox_page_size: u32,
}

impl MeshTransport {
    pub fn new(s: &MeshSettings<'_>) -> Result<Self, TlsError> {
        let client = super::https_client(s.ca, s.client_cert, s.client_key, s.timeout_secs)?;
        let shared_key = read_secret(s.shared_key_file, "a MESH secret")?;
        Ok(Self {
            base: s.url.trim_end_matches('/').to_owned(),
            mailbox: s.mailbox.to_owned(),
            to: s.to.to_owned(),
            workflow_id: s.workflow_id.to_owned(),
            password: read_secret(s.password_file, "a MESH secret")?,
            shared_key: Zeroizing::new(shared_key.as_bytes().to_vec()),
            chunk_size: s.chunk_size,
            compress: s.compress,
            inbox_page_size: s.inbox_page_size,
            client,
            last_handshake: Mutex::new(None),
        })
    }

    /// The workflow id this destination sends with.
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    fn authorization(&self) -> String {
        fresh_token(&self.mailbox, &self.password, &self.shared_key)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/messageexchange/{}{path}", self.base, self.mailbox))
            .header("authorization", self.authorization())
            .header("accept", ACCEPT_V2)
    }

    async fn handshake_if_due(&self) -> Result<(), TransportError> {
        let due = self
            .last_handshake
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() > HANDSHAKE_EVERY))
            .unwrap_or(true);
        if !due {
            return Ok(());
        }
        let r = self
            .request(reqwest::Method::POST, "")
            .header("mex-ClientVersion", CLIENT_VERSION)
            .header("mex-OSName", std::env::consts::OS)
            .header("mex-OSVersion", "n/a")
            .header("mex-OSArchitecture", std::env::consts::ARCH)
            .send()
            .await
            .map_err(fail("handshake"))?;
        if !r.status().is_success() {
            return Err(TransportError::Mesh(format!(
                "handshake answered {}",
                r.status().as_u16()
            )));
        }
        if let Ok(mut t) = self.last_handshake.lock() {
            *t = Some(Instant::now());
        }
        Ok(())
    }

    /// The MESH message id and status of the message we sent with this local id, if any.
    /// (MESH v2 tracks by message id only; the v1 route is the one that finds a local id.)
    async fn track_local_id(&self, local_id: &str) -> Result<Option<(String, String)>, TransportError> {
        let r = self
            .client
            .get(format!(
                "{}/messageexchange/{}/outbox/tracking/{local_id}",
                self.base, self.mailbox
            ))
            .header("authorization", self.authorization())
            .send()
            .await
            .map_err(fail("tracking"))?;
        match r.status().as_u16() {
            404 => Ok(None),
            200 => {
                let v: serde_json::Value = r
                    .json()
                    .await
                    .map_err(|_| TransportError::Mesh("tracking answer unreadable".into()))?;
                let id = v
                    .get("messageId")
                    .or_else(|| v.get("message_id"))
                    .and_then(|x| x.as_str())
                    .map(message_id)
                    .transpose()?;
                let status = v
                    .get("status")
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                Ok(id.map(|id| (id, status)))
            }
            code => Err(TransportError::Mesh(format!("tracking answered {code}"))),
        }
    }

    pub async fn send(&self, parcel: &Parcel) -> Result<Sent, TransportError> {
        self.handshake_if_due().await?;
        let local_id = parcel.transfer_id.to_string();
        let chunks: Vec<&[u8]> = parcel.bytes.chunks(self.chunk_size.max(1)).collect();
        let total = chunks.len().max(1);
        if parcel.attempt > 0
            && let Some((message_id, status)) = self.track_local_id(&local_id).await?
        {
            // A previous attempt reached MESH. Finish an interrupted chunked upload; otherwise done.
            if status == "uploading" {
                self.upload_chunks(&message_id, &chunks, true).await?;
            }
            return Ok(Sent {
                remote_ref: Some(message_id),
            });
        }
        let first = chunks.first().copied().unwrap_or_default();
        let mut request = self
            .request(reqwest::Method::POST, "/outbox")
            .header("mex-to", &self.to)
            .header("mex-workflowid", &self.workflow_id)
            .header("mex-localid", &local_id)
            .header("mex-filename", format!("{local_id}.json"))
            .header("mex-subject", format!("isa-gateway {}", parcel.message_type))
            .header("mex-content-type", "application/json")
            .header(
                "content-type",
                if total > 1 {
                    "application/octet-stream"
                } else {
                    "application/json"
                },
            );
        if total > 1 {
            request = request.header("mex-chunk-range", format!("1:{total}"));
        }
        let body = if self.compress {
            request = request
                .header("content-encoding", "gzip")
                .header("mex-content-compressed", "Y");
            gzip(first)
        } else {
            first.to_vec()
        };
        let r = request.body(body).send().await.map_err(fail("send"))?;
        if !r.status().is_success() {
            return Err(TransportError::Status(r.status().as_u16()));
        }
        let v: serde_json::Value = r
            .json()
            .await
            .map_err(|_| TransportError::Mesh("send answer unreadable".into()))?;
        let message_id = message_id(
            v.get("message_id")
                .and_then(|x| x.as_str())
                .ok_or_else(|| TransportError::Mesh("send answer has no message_id".into()))?,
        )?;
        self.upload_chunks(&message_id, &chunks, false).await?;
        Ok(Sent {
            remote_ref: Some(message_id),
        })
    }

    /// Uploads chunks 2..n in order. When resuming, a chunk MESH already has (423) is skipped.
    async fn upload_chunks(&self, message_id: &str, chunks: &[&[u8]], resuming: bool) -> Result<(), TransportError> {
        let total = chunks.len();
        for (i, chunk) in chunks.iter().enumerate().skip(1) {
            let n = i + 1;
            let mut request = self
                .request(reqwest::Method::POST, &format!("/outbox/{message_id}/{n}"))
                .header("content-type", "application/octet-stream")
                .header("mex-chunk-range", format!("{n}:{total}"));
            let body = if self.compress {
                request = request.header("content-encoding", "gzip");
                gzip(chunk)
            } else {
                chunk.to_vec()
            };
            let r = request.body(body).send().await.map_err(fail("chunk upload"))?;
            let code = r.status().as_u16();
            if !(r.status().is_success() || (resuming && code == 423)) {
                return Err(TransportError::Mesh(format!("chunk {n} of {total} answered {code}")));
            }
        }
        Ok(())
    }
}

fn message_id(id: &str) -> Result<String, TransportError> {
    let plausible =
        (1..=100).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plausible {
        Ok(id.to_owned())
    } else {
        Err(TransportError::Mesh("MESH answered with a malformed message id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_message_ids_are_taken() {
        assert!(message_id("20200529155357895317_3573F8").is_ok());
        for bad in ["", "a/b", "../inbox", "x\u{0}y", "id with space", &"9".repeat(101)] {
            assert!(message_id(bad).is_err(), "{bad:?}");
        }
    }

    /// The test vectors in the MESH reference, checked there against the sandbox and mesh-client.
    #[test]
    fn token_vectors() {
        assert_eq!(
            token(
                "X26ABC1",
                "password",
                b"TestKey",
                "2c001608-5f09-4840-9611-bea43e666a30",
                1,
                "201511201038"
            ),
            "NHSMESH X26ABC1:2c001608-5f09-4840-9611-bea43e666a30:1:201511201038:9712e9dd1aa836431fa50134c333fceda28dc7e380675d9b0d359477f56d034a"
        );
        assert_eq!(
            token(
                "X26ABC2",
                "password",
                b"TestKey",
                "00000000-0000-0000-0000-000000000000",
                0,
                "202601011200"
            ),
            "NHSMESH X26ABC2:00000000-0000-0000-0000-000000000000:0:202601011200:f2835e2655d9af0c850c617cbcbde39f8d67fd3b242eaa94dd729adca9a26d85"
        );
        assert!(
            token(
                "X26ABC1",
                "password",
                b"Banana",
                "2c001608-5f09-4840-9611-bea43e666a30",
                1,
                "201511201038"
            )
            .ends_with(":9a0b393d339b7fcdc84696a4545d91800684e8c30dc72bf590538ea99ce43171")
        );
    }

    #[test]
    fn every_request_gets_a_fresh_nonce_and_the_utc_minute() {
        let a = fresh_token("X26ABC1", "password", b"TestKey");
        let b = fresh_token("X26ABC1", "password", b"TestKey");
        let parts = |t: &str| {
            t.trim_start_matches("NHSMESH ")
                .split(':')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let (pa, pb) = (parts(&a), parts(&b));
        assert_eq!(pa.len(), 5);
        assert_eq!(pa[0], "X26ABC1");
        assert_ne!(pa[1], pb[1], "nonce reused");
        assert_ne!(pa[4], pb[4]);
        assert_eq!(pa[3].len(), 12);
        let now = crate::platform::clock::WallClock::now()
            .strftime("%Y%m%d%H")
            .to_string();
        assert!(pa[3].starts_with(&now), "UTC timestamp: {}", pa[3]);
        assert!(!a.contains("password"), "the password is only inside the HMAC");
    }
}
