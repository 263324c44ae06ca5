//! The gateway's own MESH inbox: every page of it, each message id checked before it goes into a
//! URL, each message handled on its own. A report is returned for the worker to record, and only
//! then acknowledged; a data message a partner sent to the gateway's mailbox is streamed unread
//! into a quarantine file (0600, with a size cap), returned as its digest and size for the worker
//! to note, and only then acknowledged. One bad message does not hold up the others.

use std::path::Path;

use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::{MeshTransport, Report, fail, header, message_id};
use crate::delivery::transport::TransportError;

/// A data message someone sent to the gateway's own mailbox, kept unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMessage {
    pub message_id: String,
    /// The sending mailbox and workflow, as MESH gave them (printable, bounded).
    pub from: Option<String>,
    pub workflow_id: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// Larger than the cap: not kept (the quarantine file is removed).
    pub too_large: bool,
}

/// One message read from the inbox, not yet acknowledged.
#[derive(Debug)]
pub enum Inbound {
    /// An error report (non-delivery and others).
    Report(Report),
    /// A report of success: nothing to record.
    Receipt,
    Data(DataMessage),
}

/// A header value from a partner, kept only if short and printable.
pub fn printable(value: Option<String>, max: usize) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= max && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
}

impl MeshTransport {
    /// Every message id in the inbox, following `links.next` page by page.
    pub async fn inbox_ids(&self) -> Result<Vec<String>, TransportError> {
        self.handshake_if_due().await?;
        let mut ids = Vec::new();
        let mut path = format!("/inbox?max_results={}", self.inbox_page_size);
        // A bound on pages, against a server that links to itself for ever.
        for _ in 0..1000 {
            let r = self
                .request(reqwest::Method::GET, &path)
                .send()
                .await
                .map_err(fail("inbox"))?;
            if !r.status().is_success() {
                return Err(TransportError::Mesh(format!("inbox answered {}", r.status().as_u16())));
            }
            let v: serde_json::Value = r
                .json()
                .await
                .map_err(|_| TransportError::Mesh("inbox answer unreadable".into()))?;
            for id in v.get("messages").and_then(|m| m.as_array()).into_iter().flatten() {
                match message_id(id.as_str().unwrap_or_default()) {
                    Ok(id) => ids.push(id),
                    Err(_) => tracing::warn!("the MESH inbox listed a malformed message id; skipped"),
                }
            }
            let Some(next) = v.pointer("/links/next").and_then(|n| n.as_str()) else {
                return Ok(ids);
            };
            // Only a next page of this mailbox's inbox, on this server.
            let prefix = format!("/messageexchange/{}/inbox?", self.mailbox);
            let Some(query) = next.strip_prefix(&prefix) else {
                return Err(TransportError::Mesh("inbox answered with a foreign next link".into()));
            };
            if !query
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=&_-.%".contains(&b))
            {
                return Err(TransportError::Mesh("inbox answered with a malformed next link".into()));
            }
            path = format!("/inbox?{query}");
        }
        Err(TransportError::Mesh("inbox pages did not end".into()))
    }

    /// Reads one message. A data message is streamed into `quarantine` (no more than `max_bytes`
    /// kept); nothing is acknowledged here.
    pub async fn read_message(&self, id: &str, quarantine: &Path, max_bytes: u64) -> Result<Inbound, TransportError> {
        let id = message_id(id)?;
        let r = self
            .request(reqwest::Method::GET, &format!("/inbox/{id}"))
            .send()
            .await
            .map_err(fail("inbox read"))?;
        let status = r.status().as_u16();
        if !(status == 200 || status == 206) {
            return Err(TransportError::Mesh(format!("inbox message answered {status}")));
        }
        let h = r.headers().clone();
        if header(&h, "mex-messagetype").as_deref() == Some("REPORT") {
            if header(&h, "mex-statussuccess").as_deref() != Some("ERROR") {
                return Ok(Inbound::Receipt);
            }
            return Ok(Inbound::Report(Report {
                report_id: id,
                linked_message_id: header(&h, "mex-linkedmsgid"),
                local_id: header(&h, "mex-localid"),
                code: printable(header(&h, "mex-statuscode"), 16),
                description: printable(header(&h, "mex-statusdescription"), 200),
            }));
        }
        let total = if status == 206 {
            header(&h, "mex-chunk-range")
                .and_then(|range| range.split_once(':').and_then(|(_, t)| t.parse::<u32>().ok()))
                .filter(|t| (2..=10_000).contains(t))
                .ok_or_else(|| TransportError::Mesh("a chunked inbox message has no chunk range".into()))?
        } else {
            1
        };
        let write_err = |_| TransportError::Mesh("cannot write the quarantine file".into());
        if let Some(parent) = quarantine.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(write_err)?;
        }
        // Written under a temporary name and renamed into place once whole: the quarantine
        // folder never shows half a message.
        let partial = quarantine.with_file_name(format!(".{id}.partial"));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .await
            .map_err(write_err)?;
        let mut digest = sha2::Sha256::new();
        let mut size: u64 = 0;
        let mut too_large = false;
        let mut response = Some(r);
        'chunks: for n in 1..=total {
            let mut part = match response.take() {
                Some(r) => r,
                None => {
                    let r = self
                        .request(reqwest::Method::GET, &format!("/inbox/{id}/{n}"))
                        .send()
                        .await
                        .map_err(fail("inbox chunk"))?;
                    if !r.status().is_success() {
                        return Err(TransportError::Mesh(format!(
                            "inbox chunk {n} answered {}",
                            r.status().as_u16()
                        )));
                    }
                    r
                }
            };
            while let Some(bytes) = part.chunk().await.map_err(fail("inbox read"))? {
                size += bytes.len() as u64;
                if size > max_bytes {
                    too_large = true;
                    break 'chunks;
                }
                digest.update(&bytes);
                file.write_all(&bytes).await.map_err(write_err)?;
            }
        }
        file.sync_all().await.map_err(write_err)?;
        drop(file);
        if too_large {
            let _ = tokio::fs::remove_file(&partial).await;
        } else {
            tokio::fs::rename(&partial, quarantine).await.map_err(write_err)?;
        }
        Ok(Inbound::Data(DataMessage {
            message_id: id,
            from: printable(header(&h, "mex-from"), 20),
            workflow_id: printable(header(&h, "mex-workflowid"), 100),
            size,
            sha256: hex::encode(digest.finalize()),
            too_large,
        }))
    }

    /// Acknowledges (removes from the inbox) one message, by a checked id.
    pub async fn acknowledge(&self, id: &str) -> Result<(), TransportError> {
        let id = message_id(id)?;
        let ack = self
            .request(reqwest::Method::PUT, &format!("/inbox/{id}/status/acknowledged"))
            .send()
            .await
            .map_err(fail("acknowledge"))?;
        if ack.status().is_success() {
            Ok(())
        } else {
            Err(TransportError::Mesh(format!(
                "acknowledge answered {}",
                ack.status().as_u16()
            )))
        }
    }
}
