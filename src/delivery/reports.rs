//! The gateway's own MESH inboxes: non-delivery reports applied to the transfers they name (only a
//! transfer sent to that destination, in a state a report can change), and data messages partners
//! sent to the gateway's mailbox kept unread in a quarantine folder (for as long as dead letters),
//! noted in the ledger (digest and size, never the content). Each is acknowledged only once
//! recorded.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::Delivery;
use crate::delivery::transport::mesh::{DataMessage, Inbound, Report};

/// The most of one data message kept in quarantine; larger ones are noted and not kept.
const QUARANTINE_MAX_BYTES: u64 = 100 * 1024 * 1024;
use crate::ledger::{Event, EventKind, OutboxItem, TransferStatus, ledger_time};

impl Delivery {
    /// Reads each MESH destination's inbox, at its own interval, until the process ends.
    pub async fn watch_reports(self: Arc<Self>) {
        let watchers: Vec<_> = self
            .transports
            .mesh()
            .map(|(id, _)| {
                let this = Arc::clone(&self);
                let id = id.to_owned();
                tokio::spawn(async move { this.watch_mesh(id).await })
            })
            .collect();
        for w in watchers {
            let _ = w.await;
        }
    }

    async fn watch_mesh(&self, destination: String) {
        let every = self
            .destinations
            .get(&destination)
            .map_or(Duration::from_secs(300), |d| d.inbox_poll);
        loop {
            self.read_inbox(&destination).await;
            tokio::time::sleep(every).await;
        }
    }

    /// One read of a MESH destination's inbox: every page, each message on its own, each
    /// acknowledged only once what it asks of the gateway is recorded.
    pub async fn read_inbox(&self, destination: &str) {
        let Some(mesh) = self
            .transports
            .mesh()
            .find(|(id, _)| *id == destination)
            .map(|(_, m)| m)
        else {
            return;
        };
        let Some(folder) = self.destinations.get(destination).and_then(|d| d.quarantine.clone()) else {
            return;
        };
        let ids = match mesh.inbox_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(%destination, error = %e, "cannot read the MESH inbox; will retry");
                return;
            }
        };
        for id in ids {
            let handled = match mesh.read_message(&id, &folder.join(&id), QUARANTINE_MAX_BYTES).await {
                Ok(Inbound::Report(report)) => self.non_delivery(destination, report).await,
                Ok(Inbound::Receipt) => true,
                Ok(Inbound::Data(message)) => self.quarantined(destination, mesh.workflow_id(), &message).await,
                Err(e) => {
                    tracing::warn!(%destination, message = %id, error = %e,
                        "a MESH inbox message could not be read; left for the next poll");
                    false
                }
            };
            if handled && let Err(e) = mesh.acknowledge(&id).await {
                tracing::warn!(%destination, message = %id, error = %e,
                    "a MESH inbox message could not be acknowledged; it will be read again");
            }
        }
    }

    /// Notes a quarantined data message in the ledger; `true` once it is recorded.
    async fn quarantined(&self, destination: &str, workflow: &str, message: &DataMessage) -> bool {
        let mut e = Event::new(
            ledger_time(self.clock.now()),
            Uuid::now_v7(),
            EventKind::Inbound,
            TransferStatus::Refused,
            "mesh-inbox",
            destination,
        );
        e.received_sha256 = Some(message.sha256.clone());
        e.destination = Some(destination.to_owned());
        e.gateway = Some(self.gateway_id.clone());
        // Only the configured workflow is named: the sender chooses this header.
        let their_workflow = if message.workflow_id.as_deref() == Some(workflow) {
            workflow
        } else {
            "another"
        };
        let from = message.from.as_deref().unwrap_or("?");
        e.detail = Some(if message.too_large {
            format!(
                "MESH data message {} from {from} (workflow {their_workflow}) over {QUARANTINE_MAX_BYTES} bytes: not kept",
                message.message_id
            )
        } else {
            format!(
                "MESH data message {} from {from} (workflow {their_workflow}), {} bytes, quarantined unread",
                message.message_id, message.size
            )
        });
        match self.ledger.append(e).await {
            Ok(r) => {
                tracing::warn!(%destination, message = %message.message_id, seq = r.seq,
                    "a partner sent a data message to the gateway's own MESH mailbox; quarantined unread");
                true
            }
            Err(e) => {
                tracing::error!(%destination, error = %e, "cannot record a quarantined MESH message; it stays in the inbox");
                false
            }
        }
    }

    /// Deletes quarantined MESH messages older than `older_than`. Returns how many.
    pub(super) fn expire_quarantine(&self, older_than: Duration) -> usize {
        let mut removed = 0;
        for folder in self.destinations.values().filter_map(|d| d.quarantine.as_ref()) {
            for file in std::fs::read_dir(folder).into_iter().flatten().flatten() {
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= older_than));
                if old && std::fs::remove_file(file.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Applies a non-delivery report; `true` once there is nothing more to do with it (recorded,
    /// or not ours to apply), `false` if it could not be recorded (read it again).
    async fn non_delivery(&self, destination: &str, report: Report) -> bool {
        let by_ref = match &report.linked_message_id {
            Some(m) => self.ledger.transfer_by_remote_ref(destination, m).await.ok().flatten(),
            None => None,
        };
        let Some(id) = by_ref.or_else(|| report.local_id.as_deref().and_then(|l| Uuid::parse_str(l).ok())) else {
            tracing::warn!(%destination, report = %report.report_id, "a MESH report names no transfer of ours");
            return true;
        };
        let record = match self.ledger.transfer(id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::warn!(%destination, transfer_id = %id, "a MESH report names an unknown transfer");
                return true;
            }
            Err(e) => {
                tracing::error!(%destination, error = %e, "cannot read the transfer a MESH report names; will retry");
                return false;
            }
        };
        // A report changes only a transfer sent to this destination, in a state it can change:
        // not one that was refused, is held, or is already undeliverable.
        let ours = self
            .agreements
            .get(&record.agreement_id)
            .is_some_and(|a| a.offers_destination(destination));
        let changeable = matches!(
            record.status,
            TransferStatus::Accepted | TransferStatus::Retrying | TransferStatus::Delivered
        );
        if !(ours && changeable) {
            tracing::warn!(%destination, transfer_id = %id, status = record.status.as_str(),
                "a MESH report names a transfer it cannot change; ignored");
            return true;
        }
        let why = format!(
            "MESH non-delivery report {}: {}",
            report.code.as_deref().unwrap_or("?"),
            report.description.as_deref().unwrap_or("no description")
        );
        let item = OutboxItem {
            transfer_id: id,
            destination: destination.to_owned(),
            agreement_id: record.agreement_id,
            message_type: record.message_type.unwrap_or_default(),
            sender_system: record.sender_system,
            recipient: record.recipient,
            body: Vec::new(),
            attempts: 0,
            created_at: record.created_at,
        };
        let mut event = self.event(
            &item,
            TransferStatus::Undeliverable,
            Some("mesh_non_delivery"),
            Some(why.clone()),
        );
        event.sent_sha256 = None;
        // A dead letter: a pending outbox entry (accepted or retrying) stops being sent.
        match self.ledger.dead_letter(event).await {
            Ok(r) => {
                tracing::error!(transfer_id = %id, %destination, seq = r.seq, %why, "UNDELIVERABLE: MESH reported non-delivery");
                true
            }
            Err(e) => {
                tracing::error!(transfer_id = %id, error = %e, "could not record a MESH non-delivery report; will retry");
                false
            }
        }
    }
}
