//! The outbox's reads and claims: what is due, one gateway's lease on an attempt, and the
//! leases a restarted gateway gives back. Writes that go with a ledger entry (accepted,
//! delivered, retry, dead letter) are the writer's.

use jiff::Timestamp;
use sqlx::Row;

use super::SqlLedger;
use super::exec::{Exec, Param, Value, args};
use super::sync::{Dialect, corrupt, timestamp, uuid};
use crate::ledger::{Claim, LedgerError, OutboxItem, OutboxState, micros};

impl SqlLedger {
    pub(super) async fn outbox_due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox \
                 WHERE state = 'pending' AND next_attempt_at_us <= $1 ORDER BY next_attempt_at_us LIMIT $2"
        );
        self.items(&sql, &args![micros(now), i64::from(limit)]).await
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
        let mut params = vec![Param::from(i64::from(limit))];
        params.extend(configured.iter().map(|d| Param::from(*d)));
        self.items(&sql, &params).await
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
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE state = $1 AND created_at_us <= $2 \
                 ORDER BY created_at_us LIMIT $3"
        );
        self.items(&sql, &args![state.as_str(), micros(before), i64::from(limit)])
            .await
    }

    async fn items(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<OutboxItem>, LedgerError> {
        let mut conn = self.pool.acquire().await?;
        conn.fetch(sql, params)
            .await?
            .into_iter()
            .map(item_from_values)
            .collect()
    }
}

/// The columns [`item_from_row`] reads.
const ITEM_COLUMNS: &str =
    "transfer_id, destination, agreement_id, message_type, sender_system, recipient, body, attempts, created_at_us";

fn item_from_values(row: Vec<Value>) -> Result<OutboxItem, LedgerError> {
    let Ok::<[Value; 9], _>(
        [
            transfer_id,
            destination,
            agreement_id,
            message_type,
            sender_system,
            recipient,
            body,
            attempts,
            created_at,
        ],
    ) = row.try_into()
    else {
        return Err(corrupt(0, "an outbox row"));
    };
    let text = |v: Value, what| v.into_text().ok_or_else(|| corrupt(0, what));
    Ok(OutboxItem {
        transfer_id: uuid(0, &text(transfer_id, "outbox transfer_id")?)?,
        destination: text(destination, "outbox destination")?,
        agreement_id: text(agreement_id, "outbox agreement_id")?,
        message_type: text(message_type, "outbox message_type")?,
        sender_system: text(sender_system, "outbox sender_system")?,
        recipient: recipient.into_text(),
        body: body.into_blob().ok_or_else(|| corrupt(0, "outbox body"))?,
        attempts: u32::try_from(attempts.int().ok_or_else(|| corrupt(0, "outbox attempts"))?).unwrap_or(u32::MAX),
        created_at: timestamp(0, created_at.int().ok_or_else(|| corrupt(0, "outbox created_at_us"))?)?,
    })
}

impl SqlLedger {
    /// Claims due entries for one destination (see [`Ledger::claim_due`]). SQLite: in the
    /// writer's batch, under its write lock and committed with its writes. PostgreSQL: one
    /// statement of its own, `SKIP LOCKED` keeping gateways off each other's rows.
    pub(super) async fn outbox_claim_due(&self, claim: &Claim<'_>) -> Result<Vec<OutboxItem>, LedgerError> {
        if self.dialect == Dialect::Sqlite {
            return self.writer.claim(claim.into()).await;
        }
        let claim = OwnedClaim::from(claim);
        let (sql, params) = claim_statement(self.dialect, &claim);
        let mut conn = self.pool.acquire().await?;
        Ok(claimed(conn.fetch(&sql, &params).await?))
    }
}

/// The statement that claims due entries for one destination, and its parameters.
pub(super) fn claim_statement(dialect: Dialect, claim: &OwnedClaim) -> (String, Vec<Param<'_>>) {
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
    let (skip_locked, plus) = match dialect {
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
    let params = args![
        now.saturating_add(lease),
        claim.gateway_id.as_str(),
        now,
        claim.destination.as_str(),
        i64::from(claim.limit),
    ];
    (sql, params.into())
}

/// The entries a claim returned, oldest first. A row that cannot be read (an insider edited it)
/// is left out and stays leased: it is reported each time its lease ends, and the rest go.
pub(super) fn claimed(rows: Vec<Vec<Value>>) -> Vec<OutboxItem> {
    let mut items: Vec<OutboxItem> = rows
        .into_iter()
        .filter_map(|row| {
            item_from_values(row)
                .inspect_err(
                    |e| tracing::error!(error = %e, "ALERT an outbox entry cannot be read (edited?); it is not sent"),
                )
                .ok()
        })
        .collect();
    for item in &mut items {
        // The attempts it had before this claim.
        item.attempts = item.attempts.saturating_sub(1);
    }
    // RETURNING gives no order; attempts go out oldest first.
    items.sort_by_key(|i| i.created_at);
    items
}

/// A claim as the writer takes it.
pub(super) struct OwnedClaim {
    pub(super) destination: String,
    pub(super) limit: u32,
    pub(super) now: Timestamp,
    pub(super) lease: std::time::Duration,
    pub(super) gateway_id: String,
}

impl From<&Claim<'_>> for OwnedClaim {
    fn from(c: &Claim<'_>) -> Self {
        Self {
            destination: c.destination.to_owned(),
            limit: c.limit,
            now: c.now,
            lease: c.lease,
            gateway_id: c.gateway_id.to_owned(),
        }
    }
}
