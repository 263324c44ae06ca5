//! A transfer's listing row, as the read side stores it.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sync::{corrupt, timestamp, uuid};
use crate::ledger::{LedgerError, TransferRecord, TransferStatus};

pub(super) fn record_from_row(row: &AnyRow) -> Result<TransferRecord, LedgerError> {
    let seq: i64 = row.try_get("decision_seq")?;
    let at = |col: &str| -> Result<Option<Timestamp>, LedgerError> {
        row.try_get::<Option<i64>, _>(col)?
            .map(|us| timestamp(seq, us))
            .transpose()
    };
    Ok(TransferRecord {
        transfer_id: uuid(seq, &row.try_get::<String, _>("transfer_id")?)?,
        agreement_id: row.try_get("agreement_id")?,
        message_type: row.try_get("message_type")?,
        sender_system: row.try_get("sender_system")?,
        recipient: row.try_get("recipient")?,
        status: TransferStatus::parse(&row.try_get::<String, _>("status")?).ok_or_else(|| corrupt(seq, "status"))?,
        reason_code: row.try_get("reason_code")?,
        created_at: timestamp(seq, row.try_get("created_at_us")?)?,
        updated_at: timestamp(seq, row.try_get("updated_at_us")?)?,
        ledger_seq: seq,
        user_sub: row.try_get("user_sub")?,
        review_due: at("review_due_at_us")?,
        reviewed_at: at("reviewed_at_us")?,
        subject_informed_due: row.try_get("subject_informed_due")?,
        subject_informed_at: at("subject_informed_at_us")?,
        legal_bases: row
            .try_get::<Option<String>, _>("legal_bases")?
            .map(|text| serde_json::from_str(&text).map_err(|_| corrupt(seq, "legal_bases")))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(super) const TRANSFER_COLUMNS: &str = "transfer_id, agreement_id, message_type, sender_system, recipient, status, \
     reason_code, created_at_us, updated_at_us, decision_seq, user_sub, review_due_at_us, reviewed_at_us, \
     subject_informed_due, subject_informed_at_us, legal_bases";
