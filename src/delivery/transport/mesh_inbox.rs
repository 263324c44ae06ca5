//! The gateway's own MESH inbox: every page of it, each message id checked before it goes into a
//! URL. Reports (non-delivery and other errors) are returned and acknowledged; data messages a
//! partner sent to the gateway's mailbox are returned whole, unacknowledged, for the worker to
//! quarantine and then [`MeshTransport::acknowledge`] — so they never starve the reports behind
//! them, and nothing is acknowledged before it is kept.

use super::{MeshTransport, Report, fail, header, message_id};
use crate::delivery::transport::TransportError;

/// A data message someone sent to the gateway's own mailbox. The gateway does not read it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataMessage {
    pub message_id: String,
    /// The sending mailbox and workflow, as MESH gave them (printable, bounded).
    pub from: Option<String>,
    pub workflow_id: Option<String>,
    /// Every chunk, in order, as received.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for DataMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataMessage")
            .field("message_id", &self.message_id)
            .field("from", &self.from)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// What one read of the inbox found.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Error reports, already acknowledged.
    pub reports: Vec<Report>,
    /// Data messages, not yet acknowledged.
    pub data: Vec<DataMessage>,
}

/// A header value from a partner, kept only if short and printable.
fn printable(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_graphic()))
}

impl MeshTransport {
    /// Every message id in the inbox, following `links.next` page by page.
    async fn inbox_ids(&self) -> Result<Vec<String>, TransportError> {
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
                ids.push(message_id(id.as_str().unwrap_or_default())?);
            }
            let next = v.pointer("/links/next").and_then(|n| n.as_str());
            let Some(next) = next else { return Ok(ids) };
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

    /// Reads every page of the inbox: reports are acknowledged and returned; data messages are
    /// downloaded whole and returned for the caller to keep, then acknowledge.
    pub async fn take_inbox(&self) -> Result<Inbound, TransportError> {
        self.handshake_if_due().await?;
        let mut inbound = Inbound::default();
        for id in self.inbox_ids().await? {
            let r = self
                .request(reqwest::Method::GET, &format!("/inbox/{id}"))
                .send()
                .await
                .map_err(fail("inbox read"))?;
            let status = r.status().as_u16();
            if !(status == 200 || status == 206) {
                tracing::warn!(message = %id, status, "a MESH inbox message could not be read; left for the next poll");
                continue;
            }
            let h = r.headers().clone();
            if header(&h, "mex-messagetype").as_deref() == Some("REPORT") {
                if header(&h, "mex-statussuccess").as_deref() == Some("ERROR") {
                    inbound.reports.push(Report {
                        report_id: id.clone(),
                        linked_message_id: header(&h, "mex-linkedmsgid"),
                        local_id: header(&h, "mex-localid"),
                        code: header(&h, "mex-statuscode"),
                        description: header(&h, "mex-statusdescription"),
                    });
                }
                self.acknowledge(&id).await?;
                continue;
            }
            let mut bytes = r.bytes().await.map_err(fail("inbox read"))?.to_vec();
            if status == 206 {
                let total = header(&h, "mex-chunk-range")
                    .and_then(|range| range.split_once(':').and_then(|(_, t)| t.parse::<u32>().ok()))
                    .filter(|t| (2..=10_000).contains(t))
                    .ok_or_else(|| TransportError::Mesh("a chunked inbox message has no chunk range".into()))?;
                for n in 2..=total {
                    let chunk = self
                        .request(reqwest::Method::GET, &format!("/inbox/{id}/{n}"))
                        .send()
                        .await
                        .map_err(fail("inbox chunk"))?;
                    if !chunk.status().is_success() {
                        return Err(TransportError::Mesh(format!(
                            "inbox chunk {n} answered {}",
                            chunk.status().as_u16()
                        )));
                    }
                    bytes.extend_from_slice(&chunk.bytes().await.map_err(fail("inbox chunk"))?);
                }
            }
            inbound.data.push(DataMessage {
                message_id: id,
                from: printable(header(&h, "mex-from")),
                workflow_id: printable(header(&h, "mex-workflowid")),
                bytes,
            });
        }
        Ok(inbound)
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
