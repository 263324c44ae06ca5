//! The outbox's reads and claims: what is due, one gateway's lease on an attempt, and the
//! leases a restarted gateway gives back. Writes that go with a ledger entry (accepted,
//! delivered, retry, dead letter) are the writer's.

use jiff::Timestamp;
use sqlx::Row;

use super::SqlLedger;
use super::sync::{timestamp, uuid};
use crate::ledger::{Claim, LedgerError, OutboxItem, OutboxState, micros};

impl SqlLedger {
    pub(super) async fn outbox_due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        let rows = sqlx::query(
            "SELECT transfer_id, destination, agreement_id, message_type, sender_system, recipient, body, attempts, \
             created_at_us FROM outbox \
             WHERE state = 'pending' AND next_attempt_at_us <= $1 ORDER BY next_attempt_at_us LIMIT $2",
        )
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_from_row).collect()
    }

    pub(super) async fn outbox_claim(&self, claim: &Claim<'_>) -> Result<bool, LedgerError> {
        let lease = i64::try_from(claim.lease.as_micros()).unwrap_or(i64::MAX);
        let now = micros(claim.now);
        let claimed = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at_us = $1, claimed_by = $2, claimed_at_us = $3 \
             WHERE transfer_id = $4 AND state = 'pending' AND attempts = $5 AND next_attempt_at_us <= $3",
        )
        .bind(now.saturating_add(lease))
        .bind(claim.gateway_id)
        .bind(now)
        .bind(claim.transfer_id.to_string())
        .bind(i64::from(claim.attempts))
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
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
        let rows = sqlx::query(
            "SELECT transfer_id, destination, agreement_id, message_type, sender_system, recipient, body, attempts, \
             created_at_us FROM outbox WHERE state = $1 AND created_at_us <= $2 ORDER BY created_at_us LIMIT $3",
        )
        .bind(state.as_str())
        .bind(micros(before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_from_row).collect()
    }
}

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
