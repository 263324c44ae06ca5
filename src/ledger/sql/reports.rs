//! Read-side queries for the console's people: an agreement's decisions over time, and one
//! person's own transfers. Both read the listing table (`transfers`), never the outbox.

use jiff::Timestamp;
use sqlx::{AnyPool, Row};

use super::batch::placeholders;
use super::rows::{TRANSFER_COLUMNS, record_from_row};
use super::sync::{Dialect, corrupt, timestamp};
use crate::ledger::{Activity, LedgerError, Outcome, TransferRecord, micros};

const HOUR_US: i64 = 3_600_000_000;

/// Decisions in `[since, until)` per hour and outcome. A transfer "went to a director" when it is
/// held now or its history has an approval entry (only held transfers are approved or refused by
/// a director), so a held referral approved later still counts as held on the day it was asked.
pub(super) async fn activity(
    pool: &AnyPool,
    agreement_id: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Activity>, LedgerError> {
    let rows = sqlx::query(
        "SELECT created_at_us / 3600000000 AS hour, \
           CASE WHEN status = 'held' OR EXISTS (SELECT 1 FROM ledger_entries e \
                  WHERE e.transfer_id = t.transfer_id AND e.kind = 'approval') THEN 'held' \
                WHEN status = 'refused' THEN 'refused' ELSE 'permitted' END AS outcome, \
           COUNT(*) AS n \
         FROM transfers t WHERE agreement_id = $1 AND created_at_us >= $2 AND created_at_us < $3 \
         GROUP BY 1, 2",
    )
    .bind(agreement_id)
    .bind(micros(since))
    .bind(micros(until))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let hour: i64 = r.try_get("hour")?;
            let outcome: String = r.try_get("outcome")?;
            Ok(Activity {
                hour: timestamp(0, hour.saturating_mul(HOUR_US))?,
                outcome: Outcome::ALL
                    .into_iter()
                    .find(|o| o.as_str() == outcome)
                    .ok_or_else(|| corrupt(0, "outcome"))?,
                count: r.try_get("n")?,
            })
        })
        .collect()
}

/// One person's transfers through these systems, newest first (index `transfers_by_user`).
pub(super) async fn transfers_by(
    pool: &AnyPool,
    dialect: Dialect,
    user_sub: &str,
    sender_systems: &[String],
    limit: u32,
) -> Result<Vec<TransferRecord>, LedgerError> {
    if sender_systems.is_empty() {
        return Ok(Vec::new());
    }
    // The systems first, then the subject and the limit.
    let n = sender_systems.len();
    let sql = format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE sender_system IN ({}) AND user_sub = {} \
         ORDER BY decision_seq DESC LIMIT {}",
        placeholders(dialect, 0, n),
        placeholders(dialect, n, 1),
        placeholders(dialect, n + 1, 1)
    );
    let mut query = sqlx::query(&sql);
    for s in sender_systems {
        query = query.bind(s.as_str());
    }
    let rows = query.bind(user_sub).bind(i64::from(limit)).fetch_all(pool).await?;
    rows.iter().map(record_from_row).collect()
}
