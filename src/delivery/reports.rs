//! The gateway's own MESH inboxes: non-delivery reports applied to the transfers they name (only a
//! transfer sent to that destination, in a state a report can change), and data messages partners
//! sent to the gateway's mailbox kept unread in a quarantine folder, noted in the ledger (digest and
//! size, never the content), then acknowledged.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::Delivery;
use crate::delivery::transport::mesh::{DataMessage, Report};
use crate::ledger::{Event, EventKind, OutboxItem, TransferStatus, ledger_time};
use crate::policy::decision::sha256_hex;

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

    /// One read of a MESH destination's inbox: every page, every message.
    pub async fn read_inbox(&self, destination: &str) {
        let Some(mesh) = self
            .transports
            .mesh()
            .find(|(id, _)| *id == destination)
            .map(|(_, m)| m)
        else {
            return;
        };
        let inbound = match mesh.take_inbox().await {
            Ok(inbound) => inbound,
            Err(e) => {
                tracing::warn!(%destination, error = %e, "cannot read the MESH inbox; will retry");
                return;
            }
        };
        for report in inbound.reports {
            self.non_delivery(destination, report).await;
        }
        for message in inbound.data {
            if self.quarantine(destination, &message).await
                && let Err(e) = mesh.acknowledge(&message.message_id).await
            {
                tracing::warn!(%destination, message = %message.message_id, error = %e,
                    "a quarantined MESH message could not be acknowledged; it will be read again");
            }
        }
    }

    /// Keeps a data message unread (0600) and notes it in the ledger; `true` once both are done.
    async fn quarantine(&self, destination: &str, message: &DataMessage) -> bool {
        let Some(folder) = self.destinations.get(destination).and_then(|d| d.quarantine.clone()) else {
            return false;
        };
        let path = folder.join(&message.message_id);
        if let Err(e) = crate::platform::fs::write_file(&path, &message.bytes, true) {
            tracing::error!(%destination, message = %message.message_id, error = %e.kind(),
                "cannot quarantine a MESH data message; it stays in the inbox");
            return false;
        }
        let mut e = Event::new(
            ledger_time(self.clock.now()),
            Uuid::now_v7(),
            EventKind::Inbound,
            TransferStatus::Refused,
            "mesh-inbox",
            destination,
        );
        e.received_sha256 = Some(sha256_hex(&message.bytes));
        e.destination = Some(destination.to_owned());
        e.gateway = Some(self.gateway_id.clone());
        e.detail = Some(format!(
            "MESH data message {} from {} (workflow {}), {} bytes, quarantined unread",
            message.message_id,
            message.from.as_deref().unwrap_or("?"),
            message.workflow_id.as_deref().unwrap_or("?"),
            message.bytes.len()
        ));
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

    async fn non_delivery(&self, destination: &str, report: Report) {
        let by_ref = match &report.linked_message_id {
            Some(m) => self.ledger.transfer_by_remote_ref(destination, m).await.ok().flatten(),
            None => None,
        };
        let Some(id) = by_ref.or_else(|| report.local_id.as_deref().and_then(|l| Uuid::parse_str(l).ok())) else {
            tracing::warn!(%destination, report = %report.report_id, "a MESH report names no transfer of ours");
            return;
        };
        let Ok(Some(record)) = self.ledger.transfer(id).await else {
            tracing::warn!(%destination, transfer_id = %id, "a MESH report names an unknown transfer");
            return;
        };
        // A report changes only a transfer sent to this destination, in a state it can change:
        // not one that was refused, is held, or is already undeliverable.
        let ours = self
            .agreements
            .get(&record.agreement_id)
            .is_some_and(|a| a.terms().recipient.destination == destination);
        let changeable = matches!(
            record.status,
            TransferStatus::Accepted | TransferStatus::Retrying | TransferStatus::Delivered
        );
        if !(ours && changeable) {
            tracing::warn!(%destination, transfer_id = %id, status = record.status.as_str(),
                "a MESH report names a transfer it cannot change; ignored");
            return;
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
        match self.ledger.append(event).await {
            Ok(r) => {
                tracing::error!(transfer_id = %id, %destination, seq = r.seq, %why, "UNDELIVERABLE: MESH reported non-delivery")
            }
            Err(e) => tracing::error!(transfer_id = %id, error = %e, "could not record a MESH non-delivery report"),
        }
    }
}
