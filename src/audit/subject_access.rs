//! Subject access: "who did you share my data with" (UK GDPR Art 15(1)(c)), answered from the
//! blind subject index without the ledger ever holding the NHS number. The person's keyed hash is
//! asked under every live subject-index key, read from disk at the time of asking: a year whose
//! key retention destroyed is no longer found. The lookup itself is recorded in the ledger: who
//! asked and when, not about whom.

use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use crate::app::keystore::{KeyError, KeyStore};
use crate::ledger::{Event, EventKind, Ledger, LedgerError, Receipt, TransferStatus, ledger_time};
use crate::policy::agreement::LegalBasisView;
use crate::policy::keys::SUBJECT_ACCESS_SCOPE;
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
    /// Set where the disclosure relied on a DPA 2018 Schedule 2 exemption (crime, legal
    /// proceedings): the DPO weighs whether telling the person would prejudice that purpose before
    /// including it in the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weigh_before_replying: Option<String>,
}

/// The answer, and the ledger record of the lookup.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub lookup_id: Uuid,
    pub ledger_seq: i64,
    pub disclosures: Vec<Disclosure>,
}

/// Who asked: the system, the user, and the user's token issuer (`None` from the command line on
/// the gateway's host).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub system: &'a str,
    pub user: &'a str,
    pub issuer: Option<&'a str>,
}

/// Why a lookup could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("subject-index keys: {0}")]
    Keys(#[from] KeyError),
}

/// Looks the person up and records that `asker` (acting as DPO) did so. The record carries the
/// person's blind index under the lookups' own key for the year (never the number), so the
/// lookup is part of their own record.
pub async fn lookup(
    ledger: &dyn Ledger,
    keys: &KeyStore,
    nhs_number: &NhsNumber,
    asker: Asker<'_>,
    now: Timestamp,
) -> Result<Answer, LookupError> {
    let year = crate::policy::agreement::utc_date(now).year();
    // Through next year: a gateway whose clock runs a little ahead may have indexed there.
    // The seeds are read once, now; the lookups' own scope must be among them.
    let seeds = keys.subject_seeds()?;
    let Some(own) = seeds.iter().find(|s| s.scope == SUBJECT_ACCESS_SCOPE) else {
        return Err(LookupError::Keys(KeyError::Missing(vec![format!(
            "index/subject/{SUBJECT_ACCESS_SCOPE} (run `isa-gateway keys new --subject`)"
        )])));
    };
    let own_index: Vec<String> = own.key(year).map(|k| k.index(nhs_number)).into_iter().collect();
    // Through next year: a gateway whose clock runs a little ahead may have indexed there.
    let hashes = keys.subject_hashes(&seeds, nhs_number, year.saturating_add(1))?;
    let found = ledger.disclosures(&hashes).await?;
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
                .map(|code| LegalBasisView::of(code))
                .collect(),
            data_classes: entry.event.data_classes.clone(),
            status: record.status,
            weigh_before_replying: entry
                .event
                .legal_bases
                .iter()
                .find(|b| b.starts_with("dpa-2018/sch2/"))
                .map(|b| {
                    format!(
                        "made under the exemption {b}: before including it in the reply, weigh whether telling the \
                         person would prejudice the purpose it served (an investigation, legal proceedings)"
                    )
                }),
        })
        .collect();
    let lookup_id = Uuid::now_v7();
    let mut event = Event::new(
        ledger_time(now),
        lookup_id,
        EventKind::SubjectAccess,
        TransferStatus::Accepted,
        "subject-access",
        asker.system,
    );
    event.user_sub = Some(asker.user.to_owned());
    event.user_issuer = asker.issuer.map(str::to_owned);
    event.user_role = Some("dpo".into());
    event.subject_index = own_index;
    event.detail = Some(format!("{} disclosure(s) found", disclosures.len()));
    let Receipt { seq, .. } = ledger.append(event).await?;
    Ok(Answer {
        lookup_id,
        ledger_seq: seq,
        disclosures,
    })
}
