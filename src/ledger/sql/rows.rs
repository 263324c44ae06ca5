//! A transfer's listing row, as the read side stores it.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sync::{corrupt, timestamp, uuid};
use crate::ledger::{LedgerError, TransferQuery, TransferRecord, TransferStatus, micros};

/// A row's columns by name, whichever driver read it (sqlx's, or rusqlite's for the direct
/// SQLite reads), so that a listing is decoded by one function.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<Option<String>, LedgerError>;
    fn int(&self, column: &str) -> Result<Option<i64>, LedgerError>;
}

impl Columns for AnyRow {
    fn text(&self, column: &str) -> Result<Option<String>, LedgerError> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<Option<i64>, LedgerError> {
        Ok(self.try_get(column)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<Option<String>, LedgerError> {
        Ok(self.get(column)?)
    }
    fn int(&self, column: &str) -> Result<Option<i64>, LedgerError> {
        Ok(self.get(column)?)
    }
}

pub(super) fn record_from_row(row: &impl Columns) -> Result<TransferRecord, LedgerError> {
    let seq = row.int("decision_seq")?.ok_or_else(|| corrupt(0, "decision_seq"))?;
    let text = |col: &str| row.text(col)?.ok_or_else(|| corrupt(seq, col));
    let at = |col: &str| -> Result<Option<Timestamp>, LedgerError> {
        row.int(col)?.map(|us| timestamp(seq, us)).transpose()
    };
    let required_at = |col: &str| at(col)?.ok_or_else(|| corrupt(seq, col));
    Ok(TransferRecord {
        transfer_id: uuid(seq, &text("transfer_id")?)?,
        agreement_id: text("agreement_id")?,
        message_type: row.text("message_type")?,
        sender_system: text("sender_system")?,
        recipient: row.text("recipient")?,
        status: TransferStatus::parse(&text("status")?).ok_or_else(|| corrupt(seq, "status"))?,
        reason_code: row.text("reason_code")?,
        created_at: required_at("created_at_us")?,
        updated_at: required_at("updated_at_us")?,
        ledger_seq: seq,
        user_sub: row.text("user_sub")?,
        review_due: at("review_due_at_us")?,
        reviewed_at: at("reviewed_at_us")?,
        subject_informed_due: row.text("subject_informed_due")?,
        subject_informed_at: at("subject_informed_at_us")?,
        legal_bases: row
            .text("legal_bases")?
            .map(|text| serde_json::from_str(&text).map_err(|_| corrupt(seq, "legal_bases")))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(super) const TRANSFER_COLUMNS: &str = "transfer_id, agreement_id, message_type, sender_system, recipient, status, \
     reason_code, created_at_us, updated_at_us, decision_seq, user_sub, review_due_at_us, reviewed_at_us, \
     subject_informed_due, subject_informed_at_us, legal_bases";

/// The listing's query: a page of transfers in decision order, every filter optional.
pub(super) fn listing_sql() -> String {
    format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE ($1 IS NULL OR agreement_id = $1) \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR created_at_us >= $3) \
         AND ($4 IS NULL OR created_at_us < $4) AND decision_seq > $6 \
         AND ($7 IS NULL OR message_type = $7) AND ($8 IS NULL OR sender_system = $8) \
         AND ($9 IS NULL OR user_sub = $9) AND ($10 IS NULL OR legal_bases LIKE $10 ESCAPE '\\') \
         ORDER BY decision_seq LIMIT $5"
    )
}

/// [`listing_sql`]'s parameters, `$1` to `$10` in order.
pub(super) struct ListingParams {
    pub agreement_id: Option<String>,
    pub status: Option<&'static str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
    /// The smallest number when the query names none (so a row edited to a number below
    /// the first entry's still lists).
    pub after_seq: i64,
    pub message_type: Option<String>,
    pub sender_system: Option<String>,
    pub user_sub: Option<String>,
    pub legal_basis: Option<String>,
}

impl ListingParams {
    pub(super) fn of(q: &TransferQuery) -> Self {
        Self {
            agreement_id: q.agreement_id.clone(),
            status: q.status.map(TransferStatus::as_str),
            since: q.since.map(micros),
            until: q.until.map(micros),
            limit: i64::from(q.limit),
            after_seq: q.after_seq.unwrap_or(i64::MIN),
            message_type: q.message_type.clone(),
            sender_system: q.sender_system.clone(),
            user_sub: q.user_sub.clone(),
            // The listing keeps the bases as a JSON array of codes: one of them, quoted, exactly.
            legal_basis: q.legal_basis.as_deref().map(|code| {
                let escaped = code.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                format!("%\"{escaped}\"%")
            }),
        }
    }
}
