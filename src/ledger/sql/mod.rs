//! The ledger on SQL: SQLite (embedded, the default) or PostgreSQL (several gateways may share
//! one database). One dialect of SQL through sqlx's `Any` driver; where the two differ it says
//! so in [`Dialect`]. Every write goes through the group-commit writer in [`writer`] (its
//! many-row statements in [`batch`]); [`sync`] reads entries and takes in what other gateways
//! appended; [`connect`] opens the database; [`direct`] serves SQLite's reads of many rows
//! without sqlx's per-row cost; this module holds the rest.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::checkpoint::Checkpoint;
mod batch;
mod checkpoints;
mod connect;
mod cosignatures;
mod direct;
mod exec;
mod keys;
mod outbox;
mod reports;
mod rows;
mod sessions;
mod sync;
mod writer;

use self::rows::{ListingParams, TRANSFER_COLUMNS, listing_sql, record_from_row};
pub use self::sessions::{SessionStore, StoredSession};
pub use self::sync::Dialect;
use self::sync::{RAW_COLUMNS, corrupt, entry_from_row, raw_after, raw_from_row, uuid};
use self::writer::{Effect, Writer};
use super::{
    Chain, Claim, Counts, Enqueue, Entry, Event, FollowUp, Hash, HistoryItem, IdempotencyKey, IdempotentOriginal,
    Ledger, LedgerError, OutboxItem, OutboxState, RawEntry, Receipt, TransferQuery, TransferRecord, merkle, micros,
};

/// The reads about a set of transfers, for either driver: `{select} WHERE transfer_id IN (…){tail}`.
const ENTRIES_OF: (&str, &str) = ("SELECT seq, entry, hash FROM ledger_entries", " ORDER BY seq");
const SUBJECTS_OF: (&str, &str) = ("SELECT transfer_id, subject_hash FROM subject_disclosures", "");
const LEGAL_BASES_OF: (&str, &str) = ("SELECT transfer_id, legal_bases FROM transfers", "");

pub struct SqlLedger {
    pool: AnyPool,
    dialect: Dialect,
    /// The chain head and the Merkle tree's leaves, as far as this process has read or written.
    /// Loaded lazily and brought up to date from the database before every use, so entries
    /// other gateways appended are included.
    chain: Arc<Mutex<Chain>>,
    writer: Writer,
    /// SQLite: long sequential reads straight from the file.
    direct: Option<direct::DirectReader>,
}

impl SqlLedger {
    /// `{select} WHERE transfer_id IN (…){tail}` for these transfers.
    async fn rows_about(&self, select: &str, transfer_ids: &[Uuid], tail: &str) -> Result<Vec<AnyRow>, LedgerError> {
        if transfer_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{select} WHERE transfer_id IN ({}){tail}",
            self.placeholders(transfer_ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in transfer_ids {
            query = query.bind(id.to_string());
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// `n` parameters for an `IN (…)` list (SQLite's anonymous ones: see `write::multi_row_insert`).
    fn placeholders(&self, n: usize) -> String {
        batch::placeholders(self.dialect, 0, n)
    }

    /// The chain, brought up to date with every committed entry (any process's).
    /// A copy of the first `size` leaves, taken under the chain's lock and released at once:
    /// proofs and roots (O(size) hashing) are then computed without holding up appends.
    async fn leaves_upto(&self, size: u64) -> Result<Vec<Hash>, LedgerError> {
        let chain = self.chain().await?;
        chain
            .leaves
            .get(..usize::try_from(size).unwrap_or(usize::MAX))
            .map(<[Hash]>::to_vec)
            .ok_or(LedgerError::BeyondTree(size))
    }

    async fn chain(&self) -> Result<tokio::sync::MutexGuard<'_, Chain>, LedgerError> {
        // The writer checks the head and takes in other gateways' entries, on its connection.
        self.writer.sync().await?;
        Ok(self.chain.lock().await)
    }
}

#[async_trait]
impl Ledger for SqlLedger {
    fn sessions(&self) -> SessionStore {
        SessionStore {
            pool: self.pool.clone(),
        }
    }

    async fn append(&self, event: Event) -> Result<Receipt, LedgerError> {
        self.writer.always(event, Effect::Append).await
    }

    async fn accept(
        &self,
        event: Event,
        enqueue: Enqueue,
        key: Option<IdempotencyKey>,
    ) -> Result<Receipt, LedgerError> {
        self.writer.always(event, Effect::Accept { enqueue, key }).await
    }

    async fn idempotent_original(&self, system: &str, key: &str) -> Result<Option<IdempotentOriginal>, LedgerError> {
        let row = sqlx::query(
            "SELECT request_sha256, transfer_id, ledger_seq FROM idempotency_keys \
             WHERE sender_system = $1 AND idempotency_key = $2",
        )
        .bind(system)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let seq: i64 = r.try_get("ledger_seq")?;
            Ok(IdempotentOriginal {
                request_sha256: r.try_get("request_sha256")?,
                transfer_id: uuid(seq, &r.try_get::<String, _>("transfer_id")?)?,
                ledger_seq: seq,
            })
        })
        .transpose()
    }

    async fn due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        self.outbox_due(now, limit).await
    }

    async fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<OutboxItem>, LedgerError> {
        self.outbox_claim_due(claim).await
    }

    async fn unrouted(&self, configured: &[&str], limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        self.outbox_unrouted(configured, limit).await
    }

    async fn release_leases(&self, gateway_id: &str, now: Timestamp) -> Result<u64, LedgerError> {
        self.outbox_release_leases(gateway_id, now).await
    }

    async fn attempt_failed(
        &self,
        event: Event,
        attempts: u32,
        next_attempt: Timestamp,
    ) -> Result<Receipt, LedgerError> {
        self.writer
            .always(event, Effect::AttemptFailed { attempts, next_attempt })
            .await
    }

    async fn delivered(&self, event: Event, remote: Option<(String, String)>) -> Result<Option<Receipt>, LedgerError> {
        self.writer.submit(event, Effect::Delivered { remote }).await
    }

    async fn transfer_by_remote_ref(&self, destination: &str, remote_ref: &str) -> Result<Option<Uuid>, LedgerError> {
        let row = sqlx::query("SELECT transfer_id FROM delivery_refs WHERE destination = $1 AND remote_ref = $2")
            .bind(destination)
            .bind(remote_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| uuid(0, &r.try_get::<String, _>("transfer_id")?))
            .transpose()
    }

    async fn dead_letter(&self, event: Event) -> Result<Receipt, LedgerError> {
        self.writer.always(event, Effect::DeadLetter).await
    }

    async fn requeue(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        self.writer.submit(event, Effect::Requeue).await
    }

    async fn outbox_older_than(
        &self,
        state: OutboxState,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, LedgerError> {
        self.outbox_older_than_sql(state, before, limit).await
    }

    async fn destroy(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        self.writer.submit(event, Effect::Destroy).await
    }

    async fn holds(&self, entries: &[Entry]) -> Result<bool, LedgerError> {
        // On the delivery path: the leaves already held answer without a trip to the database;
        // only entries appended since (by another gateway) need the chain brought up to date.
        if let Some(held) = self.chain.lock().await.holds(entries) {
            return Ok(held);
        }
        Ok(self.chain().await?.holds(entries).unwrap_or(false))
    }

    async fn scrub(&self) -> Result<(), LedgerError> {
        if self.dialect == Dialect::Sqlite {
            // Old page images (deleted bytes among them) live on in the write-ahead log until
            // it is checkpointed and reset.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn release(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        self.writer.submit(event, Effect::Release).await
    }

    async fn withdraw(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        self.writer.submit(event, Effect::Withdraw).await
    }

    async fn follow_up(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        self.writer.submit(event, Effect::FollowUp).await
    }

    async fn disclosures(&self, subject_hashes: &[String]) -> Result<Vec<(TransferRecord, Entry)>, LedgerError> {
        if subject_hashes.is_empty() {
            return Ok(Vec::new());
        }
        let columns = TRANSFER_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // One keyed hash per live subject-index key (a few per agreement and year); bound, never
        // spliced. Each transfer is indexed under one key, so no row comes twice.
        let params = self.placeholders(subject_hashes.len());
        let sql = format!(
            "SELECT {columns}, e.entry, e.hash FROM subject_disclosures s \
             JOIN transfers t ON t.transfer_id = s.transfer_id JOIN ledger_entries e ON e.seq = t.decision_seq \
             WHERE s.subject_hash IN ({params}) AND t.status <> 'refused' ORDER BY t.decision_seq"
        );
        let mut q = sqlx::query(&sql);
        for h in subject_hashes {
            q = q.bind(h);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let record = record_from_row(row)?;
                let entry = entry_from_row(row, record.ledger_seq)?;
                Ok((record, entry))
            })
            .collect()
    }

    async fn follow_ups(
        &self,
        which: FollowUp,
        sender_system: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransferRecord>, LedgerError> {
        // $1 is the sending system, $2 the limit, $3 the time (the overdue filter only).
        let (filter, order, at) = match which {
            FollowUp::Held => ("status = 'held'", "created_at_us", None),
            FollowUp::ReviewsOverdue(now) => (
                "review_due_at_us IS NOT NULL AND reviewed_at_us IS NULL AND review_due_at_us < $3",
                "review_due_at_us",
                Some(micros(now)),
            ),
            FollowUp::ReviewsOutstanding => (
                "review_due_at_us IS NOT NULL AND reviewed_at_us IS NULL",
                "review_due_at_us",
                None,
            ),
            FollowUp::NotificationsDue => (
                "subject_informed_due IS NOT NULL AND subject_informed_at_us IS NULL",
                "subject_informed_due",
                None,
            ),
        };
        let sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE {filter} AND ($1 IS NULL OR sender_system = $1) \
             ORDER BY {order} LIMIT $2"
        );
        let mut query = sqlx::query(&sql).bind(sender_system).bind(i64::from(limit));
        if let Some(at) = at {
            query = query.bind(at);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn warm(&self) -> Result<(), LedgerError> {
        // Keep the heads at the newest checkpoint's size as the chain is read: the checkpointer
        // checks that checkpoint at start-up, and would otherwise read the ledger again.
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(tree_size) FROM checkpoints")
            .fetch_one(&self.pool)
            .await?;
        {
            let mut chain = self.chain.lock().await;
            if chain.leaves.is_empty() {
                chain.watched = newest.and_then(|n| u64::try_from(n).ok()).map(|n| (n, None));
            }
        }
        self.chain().await.map(|_| ())
    }

    async fn tree_size(&self) -> u64 {
        // A database that cannot be read leaves the size as last known: the checkpointer and
        // the proof endpoints then work on that prefix.
        match self.chain().await {
            Ok(chain) => chain.leaves.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, "could not bring the ledger's tree up to date");
                self.chain.lock().await.leaves.len() as u64
            }
        }
    }

    async fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        let leaves = self.leaves_upto(size).await?;
        off_the_runtime(move || Ok(merkle::root(&leaves))).await
    }

    async fn commitment(&self) -> Result<(u64, Hash, Vec<Hash>), LedgerError> {
        let (leaves, lines) = {
            let chain = self.chain().await?;
            (chain.leaves.clone(), chain.heads.lines())
        };
        off_the_runtime(move || Ok((leaves.len() as u64, merkle::root(&leaves), lines))).await
    }

    async fn inclusion_proof(&self, seq: i64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        let index = u64::try_from(seq - 1).map_err(|_| LedgerError::BeyondTree(0))?;
        let leaves = self.leaves_upto(size).await?;
        off_the_runtime(move || {
            merkle::inclusion_proof(&leaves, index, size).map_err(|_| LedgerError::BeyondTree(size))
        })
        .await
    }

    async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        let leaves = self.leaves_upto(new).await?;
        off_the_runtime(move || merkle::consistency_proof(&leaves, old, new).map_err(|_| LedgerError::BeyondTree(new)))
            .await
    }

    async fn store_checkpoint(&self, cp: &Checkpoint) -> Result<(), LedgerError> {
        self.insert_checkpoint(cp).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, LedgerError> {
        self.select_checkpoints().await
    }

    async fn agreement_hashes(&self, agreement_id: &str, upto: u64) -> Result<Vec<(i64, i64, Hash)>, LedgerError> {
        self.select_agreement_hashes(agreement_id, upto).await
    }

    async fn heads_at(&self, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.heads_at_size(size).await
    }

    async fn agreement_entries(&self, agreement_id: &str, from: i64, to: i64) -> Result<Vec<Entry>, LedgerError> {
        self.select_agreement_entries(agreement_id, from, to).await
    }

    async fn store_cosignature(&self, cosigned: &super::StoredCosignature) -> Result<bool, LedgerError> {
        self.insert_cosignature(cosigned).await
    }

    async fn subject_key_fingerprint(
        &self,
        mine: &super::KeyFingerprint,
    ) -> Result<super::KeyFingerprint, LedgerError> {
        self.record_fingerprint(mine).await
    }

    async fn cosignatures(&self, min_tree_size: u64) -> Result<Vec<super::StoredCosignature>, LedgerError> {
        self.select_cosignatures(min_tree_size).await
    }

    async fn outbox_depth(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        self.outbox_outbox_depth().await
    }

    async fn transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn history(&self, id: Uuid) -> Result<Vec<HistoryItem>, LedgerError> {
        let rows = sqlx::query("SELECT entry, hash, seq FROM ledger_entries WHERE transfer_id = $1 ORDER BY seq")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                let e = entry_from_row(row, seq)?;
                Ok(HistoryItem {
                    seq,
                    at: e.event.at,
                    kind: e.event.kind,
                    status: e.event.status,
                    reason_code: e.event.reason_code,
                    detail: e.event.detail,
                })
            })
            .collect()
    }

    async fn list_transfers(&self, q: &TransferQuery) -> Result<Vec<TransferRecord>, LedgerError> {
        let p = ListingParams::of(q);
        if let Some(direct) = &self.direct {
            return direct.list_transfers(p).await;
        }
        let rows = sqlx::query(&listing_sql())
            .bind(p.agreement_id)
            .bind(p.status)
            .bind(p.since)
            .bind(p.until)
            .bind(p.limit)
            .bind(p.after_seq)
            .bind(p.message_type)
            .bind(p.sender_system)
            .bind(p.user_sub)
            .bind(p.legal_basis)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn counts(
        &self,
        agreement_id: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, LedgerError> {
        let (since, until) = (since.map(micros), until.map(micros));
        let mut counts = Counts::default();
        let rows = sqlx::query(
            "SELECT status, legal_bases FROM transfers WHERE agreement_id = $1 \
             AND ($2 IS NULL OR created_at_us >= $2) AND ($3 IS NULL OR created_at_us < $3)",
        )
        .bind(agreement_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            *counts.by_status.entry(r.try_get("status")?).or_default() += 1;
            if let Some(bases) = r.try_get::<Option<String>, _>("legal_bases")? {
                let bases: Vec<String> = serde_json::from_str(&bases).map_err(|_| corrupt(0, "legal_bases"))?;
                for basis in bases {
                    *counts.by_legal_basis.entry(basis).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    async fn activity(
        &self,
        agreement_id: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<super::Activity>, LedgerError> {
        reports::activity(&self.pool, agreement_id, since, until).await
    }

    async fn transfers_by(
        &self,
        user_sub: &str,
        sender_systems: &[String],
        limit: u32,
    ) -> Result<Vec<TransferRecord>, LedgerError> {
        reports::transfers_by(&self.pool, self.dialect, user_sub, sender_systems, limit).await
    }

    async fn entries_for(
        &self,
        agreement_id: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<Entry>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {RAW_COLUMNS} FROM ledger_entries WHERE agreement_id = $1 \
             AND ($2 IS NULL OR recorded_at_us >= $2) AND ($3 IS NULL OR recorded_at_us < $3) ORDER BY seq"
        ))
        .bind(agreement_id)
        .bind(since.map(micros))
        .bind(until.map(micros))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| raw_from_row(r)?.decode()).collect()
    }

    async fn entries_of(&self, transfer_ids: &[Uuid]) -> Result<Vec<Entry>, LedgerError> {
        if let Some(direct) = &self.direct {
            return direct.entries_of(transfer_ids).await;
        }
        let rows = self.rows_about(ENTRIES_OF.0, transfer_ids, ENTRIES_OF.1).await?;
        rows.iter()
            .map(|row| entry_from_row(row, row.try_get("seq")?))
            .collect()
    }

    async fn subjects_of(&self, transfer_ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, LedgerError> {
        if let Some(direct) = &self.direct {
            return direct.subjects_of(transfer_ids).await;
        }
        let rows = self.rows_about(SUBJECTS_OF.0, transfer_ids, SUBJECTS_OF.1).await?;
        rows.iter()
            .map(|r| Ok((uuid(0, &r.try_get::<String, _>(0)?)?, r.try_get(1)?)))
            .collect()
    }

    async fn legal_bases_of(&self, transfer_ids: &[Uuid]) -> Result<Vec<(Uuid, Option<String>)>, LedgerError> {
        if let Some(direct) = &self.direct {
            return direct.legal_bases_of(transfer_ids).await;
        }
        let rows = self
            .rows_about(LEGAL_BASES_OF.0, transfer_ids, LEGAL_BASES_OF.1)
            .await?;
        rows.iter()
            .map(|r| Ok((uuid(0, &r.try_get::<String, _>(0)?)?, r.try_get(1)?)))
            .collect()
    }

    async fn projection_sizes(&self) -> Result<(i64, i64, i64), LedgerError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM transfers) AS t, \
             (SELECT COUNT(*) FROM ledger_entries WHERE kind = 'decision') AS d, \
             (SELECT COUNT(*) FROM subject_disclosures) AS s",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("t")?, row.try_get("d")?, row.try_get("s")?))
    }

    async fn raw_entries_after(&self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
        if let Some(direct) = &self.direct {
            return direct.raw_after(after, limit).await;
        }
        let mut conn = self.pool.acquire().await?;
        raw_after(&mut conn, after, limit).await
    }
}

/// Runs CPU-bound Merkle work on the blocking pool, not on the request threads.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LedgerError::Interrupted(e.to_string()))?
}
