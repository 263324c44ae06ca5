//! Delivery v1: after the decision is recorded, hand the outbound document to the agreement's
//! destination and record the outcome as a ledger event.
//!
//! Not yet durable across a crash (the durable outbox and retries come in a later change): a
//! transfer recorded as accepted whose delivery never ran stays `accepted`, visibly.

use std::sync::Arc;

use crate::clock::Clock;
use crate::ledger::{Event, EventKind, Ledger, TransferStatus, ledger_time};
use crate::transport::{Parcel, Transports};

pub struct Delivery {
    transports: Transports,
    ledger: Arc<dyn Ledger>,
    clock: Clock,
}

impl Delivery {
    pub fn new(transports: Transports, ledger: Arc<dyn Ledger>, clock: Clock) -> Self {
        Self {
            transports,
            ledger,
            clock,
        }
    }

    /// Starts delivery of an accepted transfer in the background. `decision` is the recorded
    /// decision event; the outcome event repeats its identifying fields.
    pub fn dispatch(self: &Arc<Self>, decision: Event, outbound: Vec<u8>, destination: String) {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.deliver(decision, outbound, destination).await });
    }

    async fn deliver(&self, decision: Event, outbound: Vec<u8>, destination: String) {
        let parcel = Parcel {
            transfer_id: decision.transfer_id,
            agreement_id: decision.agreement_id.clone(),
            message_type: decision.message_type.clone().unwrap_or_default(),
            bytes: outbound,
        };
        let outcome = match self.transports.get(&destination) {
            Some(t) => t.send(&parcel).await.map_err(|e| e.to_string()),
            None => Err(format!("no transport for destination {destination}")),
        };
        let (status, detail) = match &outcome {
            Ok(()) => (TransferStatus::Delivered, None),
            Err(why) => (TransferStatus::DeliveryFailed, Some(why.clone())),
        };
        let event = Event {
            at: ledger_time(self.clock.now()),
            kind: EventKind::Delivery,
            status,
            decision: None,
            reason_code: outcome.as_ref().err().map(|_| "delivery_failed".to_owned()),
            received_sha256: None,
            detail,
            ..decision
        };
        match self.ledger.append(event).await {
            Ok(r) => match outcome {
                Ok(()) => {
                    tracing::info!(transfer_id = %parcel.transfer_id, %destination, seq = r.seq, "delivered")
                }
                Err(why) => {
                    tracing::warn!(transfer_id = %parcel.transfer_id, %destination, seq = r.seq, %why, "delivery failed")
                }
            },
            Err(e) => {
                tracing::error!(transfer_id = %parcel.transfer_id, error = %e, "could not record the delivery outcome")
            }
        }
    }
}
