//! The outbox's reads and claims: what is due, one gateway's lease on an attempt, and the
//! leases a restarted gateway gives back. Writes that go with a ledger entry (accepted,
//! delivered, retry, dead letter) are the writer's.

use jiff::Timestamp;
use sqlx::Row;

use super::SqlLedger;
use super::sync::{Dialect, timestamp, uuid};
use crate::ledger::{Claim, LedgerError, OutboxItem, OutboxState, micros};

impl SqlLedger {
    pub(super) async fn outbox_due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM outbox \
                 WHERE state = 'pending' AND next_attempt_at_us <= $1 ORDER BY next_attempt_at_us LIMIT $2"
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_from_row).collect()
    }

    pub(super) async fn outbox_claim_due(&self, claim: &Claim<'_>) -> Result<Vec<OutboxItem>, LedgerError> {
        let lease = i64::try_from(claim.lease.as_micros()).unwrap_or(i64::MAX);
        let now = micros(claim.now);
        // The entries are picked once, in a common table expression (PostgreSQL may run a
        // LIMIT subquery inside UPDATE … IN (…) more than once, and so claim more than asked);
        // the update checks the conditions again on the row it finally sees, so on PostgreSQL
        // a row another gateway claimed meanwhile (its lease now in the future) is left out, and
        // SKIP LOCKED lets each gateway pick rows the other is not taking. SQLite runs the whole
        // statement under its write lock.
        // On SQLite the update finds the picked rows by their key: the unary `+` keeps its
        // planner from walking the due index over the whole backlog instead.
        let (skip_locked, plus) = match self.dialect {
            Dialect::Postgres => (" FOR UPDATE SKIP LOCKED", ""),
            Dialect::Sqlite => ("", "+"),
        };
        let sql = format!(
            "WITH picked AS (SELECT transfer_id FROM outbox \
             WHERE state = 'pending' AND destination = $4 AND next_attempt_at_us <= $3 \
             ORDER BY next_attempt_at_us LIMIT $5{skip_locked}) \
             UPDATE outbox SET attempts = attempts + 1, next_attempt_at_us = $1, claimed_by = $2, claimed_at_us = $3 \
             WHERE {plus}state = 'pending' AND {plus}destination = $4 AND {plus}next_attempt_at_us <= $3 \
             AND transfer_id IN (SELECT transfer_id FROM picked) \
             RETURNING {ITEM_COLUMNS}"
        );
        // In-process, a claim waits for the writer's transaction rather than meeting SQLite's
        // write lock, whose busy handler sleeps for milliseconds at a time.
        let _writer = match self.dialect {
            Dialect::Sqlite => Some(self.chain.lock().await),
            Dialect::Postgres => None,
        };
        let rows = sqlx::query(&sql)
            .bind(now.saturating_add(lease))
            .bind(claim.gateway_id)
            .bind(now)
            .bind(claim.destination)
            .bind(i64::from(claim.limit))
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>, _>>()?;
        for item in &mut items {
            // The attempts it had before this claim.
            item.attempts = item.attempts.saturating_sub(1);
        }
        // RETURNING gives no order; attempts go out oldest first.
        items.sort_by_key(|i| i.created_at);
        Ok(items)
    }

    pub(super) async fn outbox_unrouted(
        &self,
        configured: &[&str],
        limit: u32,
    ) -> Result<Vec<OutboxItem>, LedgerError> {
        // A gateway has a handful of destinations; their names go in as parameters.
        let known = if configured.is_empty() {
            String::new()
        } else {
            let params: Vec<String> = (0..configured.len()).map(|i| format!("${}", i + 2)).collect();
            format!(" AND destination NOT IN ({})", params.join(", "))
        };
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM outbox WHERE state = 'pending'{known} ORDER BY created_at_us LIMIT $1");
        let mut q = sqlx::query(&sql).bind(i64::from(limit));
        for d in configured {
            q = q.bind(*d);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(item_from_row).collect()
    }

    pub(super) async fn outbox_release_leases(&self, gateway_id: &str, now: Timestamp) -> Result<u64, LedgerError> {
        let released = sqlx::query(
            "UPDATE outbox SET next_attempt_at_us = $1 WHERE claimed_by = $2 AND state = 'pending' \
             AND claimed_at_us IS NOT NULL AND next_attempt_at_us > $1",
        )
        .bind(micros(now))
        .bind(gateway_id)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }

    pub(super) async fn outbox_outbox_depth(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let rows =
            sqlx::query("SELECT destination, COUNT(*) AS n FROM outbox WHERE state = 'pending' GROUP BY destination")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("destination")?, r.try_get("n")?)))
            .collect()
    }

    pub(super) async fn outbox_older_than_sql(
        &self,
        state: OutboxState,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE state = $1 AND created_at_us <= $2 \
                 ORDER BY created_at_us LIMIT $3"
        ))
        .bind(state.as_str())
        .bind(micros(before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_from_row).collect()
    }
}

/// The columns [`item_from_row`] reads.
const ITEM_COLUMNS: &str =
    "transfer_id, destination, agreement_id, message_type, sender_system, recipient, body, attempts, created_at_us";

fn item_from_row(r: &sqlx::any::AnyRow) -> Result<OutboxItem, LedgerError> {
    Ok(OutboxItem {
        transfer_id: uuid(0, &r.try_get::<String, _>("transfer_id")?)?,
        destination: r.try_get("destination")?,
        agreement_id: r.try_get("agreement_id")?,
        message_type: r.try_get("message_type")?,
        sender_system: r.try_get("sender_system")?,
        recipient: r.try_get("recipient")?,
        body: r.try_get("body")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        created_at: timestamp(0, r.try_get("created_at_us")?)?,
    })
}
