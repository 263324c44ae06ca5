//! A transfer's listing row, as the read side stores it.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sync::{corrupt, timestamp, uuid};
use crate::ledger::{LedgerError, TransferQuery, TransferRecord, TransferStatus, micros};

/// A row's columns by position in [`TRANSFER_COLUMNS`], whichever driver read it (sqlx's, or
/// rusqlite's for the direct SQLite reads), so that a listing is decoded by one function. By
/// position, not by name: a name is looked for among the row's columns on every read, which
/// took a fifth of the listing check's time.
pub(super) trait Columns {
    fn text(&self, column: Col) -> Result<Option<String>, LedgerError>;
    fn int(&self, column: Col) -> Result<Option<i64>, LedgerError>;
}

impl Columns for AnyRow {
    fn text(&self, column: Col) -> Result<Option<String>, LedgerError> {
        Ok(self.try_get(column as usize)?)
    }
    fn int(&self, column: Col) -> Result<Option<i64>, LedgerError> {
        Ok(self.try_get(column as usize)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: Col) -> Result<Option<String>, LedgerError> {
        Ok(self.get(column as usize)?)
    }
    fn int(&self, column: Col) -> Result<Option<i64>, LedgerError> {
        Ok(self.get(column as usize)?)
    }
}

/// The listing's columns, in [`TRANSFER_COLUMNS`]'s order (a test holds them together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Col {
    TransferId,
    AgreementId,
    MessageType,
    SenderSystem,
    Recipient,
    Status,
    ReasonCode,
    CreatedAtUs,
    UpdatedAtUs,
    DecisionSeq,
    UserSub,
    ReviewDueAtUs,
    ReviewedAtUs,
    SubjectInformedDue,
    SubjectInformedAtUs,
    LegalBases,
}

impl Col {
    #[cfg(test)]
    const ALL: [Col; 16] = [
        Col::TransferId,
        Col::AgreementId,
        Col::MessageType,
        Col::SenderSystem,
        Col::Recipient,
        Col::Status,
        Col::ReasonCode,
        Col::CreatedAtUs,
        Col::UpdatedAtUs,
        Col::DecisionSeq,
        Col::UserSub,
        Col::ReviewDueAtUs,
        Col::ReviewedAtUs,
        Col::SubjectInformedDue,
        Col::SubjectInformedAtUs,
        Col::LegalBases,
    ];

    /// The column's name, as a corrupt row's report names it.
    fn name(self) -> &'static str {
        TRANSFER_COLUMNS.split(", ").nth(self as usize).unwrap_or("?")
    }
}

pub(super) fn record_from_row(row: &impl Columns) -> Result<TransferRecord, LedgerError> {
    let seq = row
        .int(Col::DecisionSeq)?
        .ok_or_else(|| corrupt(0, Col::DecisionSeq.name()))?;
    let text = |col: Col| row.text(col)?.ok_or_else(|| corrupt(seq, col.name()));
    let at =
        |col: Col| -> Result<Option<Timestamp>, LedgerError> { row.int(col)?.map(|us| timestamp(seq, us)).transpose() };
    let required_at = |col: Col| at(col)?.ok_or_else(|| corrupt(seq, col.name()));
    Ok(TransferRecord {
        transfer_id: uuid(seq, &text(Col::TransferId)?)?,
        agreement_id: text(Col::AgreementId)?,
        message_type: row.text(Col::MessageType)?,
        sender_system: text(Col::SenderSystem)?,
        recipient: row.text(Col::Recipient)?,
        status: TransferStatus::parse(&text(Col::Status)?).ok_or_else(|| corrupt(seq, Col::Status.name()))?,
        reason_code: row.text(Col::ReasonCode)?,
        created_at: required_at(Col::CreatedAtUs)?,
        updated_at: required_at(Col::UpdatedAtUs)?,
        ledger_seq: seq,
        user_sub: row.text(Col::UserSub)?,
        review_due: at(Col::ReviewDueAtUs)?,
        reviewed_at: at(Col::ReviewedAtUs)?,
        subject_informed_due: row.text(Col::SubjectInformedDue)?,
        subject_informed_at: at(Col::SubjectInformedAtUs)?,
        legal_bases: row
            .text(Col::LegalBases)?
            .map(|text| serde_json::from_str(&text).map_err(|_| corrupt(seq, Col::LegalBases.name())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_are_read_where_the_listing_selects_them() {
        let names: Vec<&str> = TRANSFER_COLUMNS.split(", ").collect();
        assert_eq!(names.len(), Col::ALL.len());
        for (i, col) in Col::ALL.iter().enumerate() {
            assert_eq!(*col as usize, i);
            let camel: String = col.name().split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
            assert_eq!(format!("{col:?}"), camel, "{} at {i}", col.name());
        }
    }
}
