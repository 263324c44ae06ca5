//! Subject access: "who did you share my data with" (UK GDPR Art 15(1)(c)), answered from the
//! blind subject index without the ledger ever holding the NHS number. The lookup itself is
//! recorded in the ledger: who asked and when, not about whom.

use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use crate::ledger::{Event, EventKind, Ledger, LedgerError, Receipt, TransferStatus, ledger_time};
use crate::policy::agreement::LegalBasisView;
use crate::policy::keys::IndexKey;
use crate::policy::legal::LegalBasis;
use crate::policy::nhs_number::NhsNumber;

/// One disclosure about the person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Disclosure {
    pub transfer_id: Uuid,
    pub at: Timestamp,
    pub agreement_id: String,
    pub agreement_version: Option<String>,
    pub recipient: Option<String>,
    pub message_type: Option<String>,
    pub legal_bases: Vec<LegalBasisView>,
    pub data_classes: Vec<String>,
    pub status: TransferStatus,
}

/// The answer, and the ledger record of the lookup.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub lookup_id: Uuid,
    pub ledger_seq: i64,
    pub disclosures: Vec<Disclosure>,
}

/// Looks the person up and records that `user` (acting as DPO) through `system` did so.
pub async fn lookup(
    ledger: &dyn Ledger,
    index: &IndexKey,
    nhs_number: &NhsNumber,
    system: &str,
    user: &str,
    now: Timestamp,
) -> Result<Answer, LedgerError> {
    let found = ledger.disclosures(&index.index(nhs_number)).await?;
    let disclosures: Vec<Disclosure> = found
        .into_iter()
        .map(|(record, entry)| Disclosure {
            transfer_id: record.transfer_id,
            at: record.created_at,
            agreement_id: record.agreement_id,
            agreement_version: entry.event.agreement_version.clone(),
            recipient: record.recipient,
            message_type: record.message_type,
            legal_bases: entry
                .event
                .legal_bases
                .iter()
                .map(|code| match LegalBasis::parse(code) {
                    Ok(b) => LegalBasisView {
                        code: b.code(),
                        title: b.title(),
                        source: b.source(),
                    },
                    Err(_) => LegalBasisView {
                        code: code.clone(),
                        title: String::new(),
                        source: "",
                    },
                })
                .collect(),
            data_classes: entry.event.data_classes.clone(),
            status: record.status,
        })
        .collect();
    let lookup_id = Uuid::now_v7();
    let mut event = Event::new(
        ledger_time(now),
        lookup_id,
        EventKind::SubjectAccess,
        TransferStatus::Accepted,
        "subject-access",
        system,
    );
    event.user_sub = Some(user.to_owned());
    event.user_role = Some("dpo".into());
    event.detail = Some(format!("{} disclosure(s) found", disclosures.len()));
    let Receipt { seq, .. } = ledger.append(event).await?;
    Ok(Answer {
        lookup_id,
        ledger_seq: seq,
        disclosures,
    })
}
