//! Group commit: every ledger write goes through one writer task per gateway. It takes what
//! callers have queued, writes it all in one transaction (one fsync), and answers each caller
//! only after that transaction committed. While one batch commits the next one gathers, so
//! under load many transfers share a commit and a lone transfer waits for no one.
//!
//! Each write is checked against the database's state inside the batch's transaction (an
//! outbox entry still pending, an idempotency key still free, a review still outstanding), in
//! the order the writes arrived; one that does not apply gets no entry and uses no sequence
//! number. A batch that fails is retried one write at a time, so a write that cannot be
//! recorded fails alone.
//!
//! Across processes the batch's transaction holds the database's write lock (SQLite's
//! `BEGIN IMMEDIATE`, PostgreSQL's transaction-scoped advisory lock) and first takes in what
//! other gateways appended, so the chain stays one gap-free sequence.

use std::sync::Arc;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Executor};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::batch::{Row, accepted_together, delivered_together, insert, insert_outbox};
use super::sync::{Dialect, catch_up, check_head};
use crate::ledger::{
    Chain, Enqueue, Entry, Event, EventKind, Hash, IdempotencyKey, LedgerError, Receipt, merkle, micros,
};

/// The most writes one transaction takes.
const MAX_BATCH: usize = 512;
/// PostgreSQL advisory lock key for appends: "isa-ledg".
const APPEND_LOCK: i64 = 0x6973_612d_6c65_6467;

/// What a write does besides appending its entry.
pub(super) enum Effect {
    /// Only the entry (and its effect on the transfer's state).
    Append,
    /// A permitted decision: its outbox entry and idempotency key.
    Accept {
        enqueue: Enqueue,
        key: Option<IdempotencyKey>,
    },
    AttemptFailed {
        attempts: u32,
        next_attempt: Timestamp,
    },
    /// Only while the outbox entry is still pending.
    Delivered {
        remote: Option<(String, String)>,
    },
    DeadLetter,
    /// Only while the transfer is held.
    Release,
    /// Only while the transfer is held.
    Withdraw,
    /// A dead letter's bytes destroyed, only while it is dead.
    Destroy,
    /// A review or notification, only while one is outstanding.
    FollowUp,
    /// A dead letter back to the queue, only while it is dead: its age restarts, and it counts as
    /// attempted once, so a MESH destination asks tracking before sending it again.
    Requeue,
}

type Reply = Result<Option<Receipt>, LedgerError>;

pub(super) struct Queued {
    pub(super) event: Event,
    pub(super) op: Effect,
    reply: oneshot::Sender<Reply>,
}

pub(super) struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts the writer task; it ends when the `Writer` is dropped.
    pub(super) fn spawn(pool: AnyPool, dialect: Dialect, chain: Arc<Mutex<Chain>>) -> Self {
        let (queue, requests) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(requests, pool, dialect, chain));
        Self { queue }
    }

    /// Records `event` with `op`; `None` if the op did not apply (nothing was recorded).
    pub(super) async fn submit(&self, event: Event, op: Effect) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { event, op, reply })
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Records `event` with an op that always applies.
    pub(super) async fn always(&self, event: Event, op: Effect) -> Result<Receipt, LedgerError> {
        self.submit(event, op).await?.ok_or_else(|| LedgerError::Corrupt {
            seq: 0,
            what: "an unconditional write did not apply".into(),
        })
    }
}

async fn run(mut requests: mpsc::Receiver<Queued>, pool: AnyPool, dialect: Dialect, chain: Arc<Mutex<Chain>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = std::time::Instant::now();
        let replies = match commit(&pool, dialect, &chain, &batch).await {
            Ok(replies) => replies,
            Err(Failed::Write(e)) if batch.len() == 1 => vec![Err(e)],
            Err(Failed::Write(e)) => {
                tracing::warn!(error = %e, writes = batch.len(), "a write in a ledger batch failed; recording them one by one");
                let mut replies = Vec::with_capacity(batch.len());
                for request in &batch {
                    replies.push(
                        match commit(&pool, dialect, &chain, std::slice::from_ref(request)).await {
                            Ok(mut r) => r.pop().unwrap_or(Err(LedgerError::WriterStopped)),
                            Err(Failed::Write(e)) => Err(e),
                            Err(Failed::Batch(why)) => Err(LedgerError::Unrecorded(why)),
                        },
                    );
                }
                replies
            }
            Err(Failed::Batch(why)) => {
                tracing::error!(error = %why, writes = batch.len(), "ledger batch not recorded");
                batch
                    .iter()
                    .map(|_| Err(LedgerError::Unrecorded(why.clone())))
                    .collect()
            }
        };
        tracing::debug!(
            writes = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            "ledger batch"
        );
        for (request, reply) in batch.drain(..).zip(replies) {
            // A caller that went away still has its write recorded.
            let _ = request.reply.send(reply);
        }
    }
}

/// Why a batch was not recorded (nothing of it was).
enum Failed {
    /// The database refused a statement of one write: the batch is retried write by write, so
    /// that write fails alone.
    Write(LedgerError),
    /// The transaction could not begin, lock, catch up or commit, or the connection failed:
    /// every write in it fails, none is retried here. (A commit that errors may still have
    /// happened; the next batch takes such entries in, and callers retry with their
    /// idempotency keys.)
    Batch(String),
}

fn whole(e: impl Into<LedgerError>) -> Failed {
    Failed::Batch(e.into().to_string())
}

/// A statement's failure: the write's own (the database refused it) or the batch's (anything
/// else, such as a lost connection).
fn statement(e: LedgerError) -> Failed {
    match &e {
        LedgerError::Database(sqlx::Error::Database(d)) if refuses_the_write(d.as_ref()) => Failed::Write(e),
        _ => whole(e),
    }
}

/// The database refused this write's data (a constraint, or a value it cannot store), not the
/// transaction: a lock timeout, a shutdown or a read-only server fails the whole batch.
fn refuses_the_write(d: &dyn sqlx::error::DatabaseError) -> bool {
    d.kind() != sqlx::error::ErrorKind::Other || d.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

/// Writes `batch` in one transaction and commits; then advances the chain. Returns one reply
/// per request, in order.
async fn commit(
    pool: &AnyPool,
    dialect: Dialect,
    chain: &Mutex<Chain>,
    batch: &[Queued],
) -> Result<Vec<Reply>, Failed> {
    let mut chain = chain.lock().await;
    let mut tx = match dialect {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(whole)?,
        Dialect::Postgres => {
            // Read committed: each statement sees what committed before it, so after the lock
            // the catch-up below sees every other gateway's entries.
            let mut tx = pool
                .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                .await
                .map_err(whole)?;
            tx.execute("SET LOCAL lock_timeout = '30s'").await.map_err(whole)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(APPEND_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(whole)?;
            tx
        }
    };
    // The head this gateway holds must still be the database's (a restore or failover may have
    // lost it); then take in what other gateways appended, each linked to the one before.
    check_head(&mut tx, &chain).await.map_err(whole)?;
    catch_up(&mut tx, dialect, &mut chain).await.map_err(whole)?;
    let (mut seq, mut prev) = (chain.seq, chain.hash);
    let mut rows = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let delivered = delivered_together(&mut tx, dialect, batch).await.map_err(statement)?;
    let accepted = accepted_together(&mut tx, dialect, batch).await.map_err(statement)?;
    for (i, request) in batch.iter().enumerate() {
        let next = seq + 1;
        let applied = match delivered.get(&i) {
            Some(&applied) => Ok(applied),
            None if accepted.contains(&i) => Ok(true),
            None => apply(&mut tx, dialect, next, &request.event, &request.op)
                .await
                .map_err(statement)?,
        };
        match applied {
            Ok(true) => {
                let bytes = Entry::canonical_bytes(next, &prev, &request.event);
                let hash: Hash = Sha256::digest(&bytes).into();
                replies.push(Ok(Some(Receipt { seq: next, hash })));
                rows.push(Row {
                    seq: next,
                    hash,
                    bytes,
                    event: &request.event,
                });
                (seq, prev) = (next, hash);
            }
            Ok(false) => replies.push(Ok(None)),
            Err(refused) => replies.push(Err(refused)),
        }
    }
    insert(&mut tx, dialect, &rows).await.map_err(statement)?;
    tx.commit()
        .await
        .map_err(|e| Failed::Batch(format!("the commit was not confirmed: {e}")))?;
    for row in &rows {
        chain.append(
            row.seq,
            row.hash,
            merkle::leaf_hash(&row.bytes),
            &row.event.agreement_id,
            crate::ledger::micros(row.event.at),
        );
    }
    Ok(replies)
}

/// Checks a write's precondition and makes its changes besides the entry. `Ok(false)`: it does
/// not apply; `Err` inside: it is refused (an idempotency key already bound). Nothing is
/// changed in either case.
async fn apply(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    seq: i64,
    event: &Event,
    op: &Effect,
) -> Result<Result<bool, LedgerError>, LedgerError> {
    let id = event.transfer_id.to_string();
    let changed = |n: u64| Ok(n > 0);
    match op {
        Effect::Append => Ok(Ok(true)),
        Effect::Accept { enqueue, key } => {
            // The held quota, counted here so that concurrent requests cannot all pass it.
            if enqueue.held
                && let Some(quota) = enqueue.held_quota
            {
                let per_agreement: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'held' AND agreement_id = $1")
                        .bind(&event.agreement_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let per_user: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'held' AND agreement_id = $1 AND held_by = $2",
                )
                .bind(&event.agreement_id)
                .bind(event.user_sub.as_deref().unwrap_or_default())
                .fetch_one(&mut *tx)
                .await?;
                if u64::try_from(per_agreement).unwrap_or(u64::MAX) >= quota.per_agreement
                    || u64::try_from(per_user).unwrap_or(u64::MAX) >= quota.per_user
                {
                    return Ok(Err(LedgerError::HeldQuotaExceeded));
                }
            }
            if let Some(k) = key {
                let bound = sqlx::query(
                    "INSERT INTO idempotency_keys (sender_system, idempotency_key, request_sha256, transfer_id, \
                     ledger_seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&k.system)
                .bind(&k.key)
                .bind(&k.request_sha256)
                .bind(&id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                if bound.rows_affected() == 0 {
                    return Ok(Err(LedgerError::IdempotencyKeyTaken));
                }
            }
            insert_outbox(tx, dialect, &[(event, enqueue)]).await?;
            Ok(Ok(true))
        }
        Effect::AttemptFailed { attempts, next_attempt } => {
            sqlx::query(
                // Only while this attempt's claim is the latest: a gateway whose lease ran out does
                // not undo a newer claim (the event still records its failure).
                "UPDATE outbox SET attempts = $1, next_attempt_at_us = $2, last_error = $3 WHERE transfer_id = $4 \
                 AND state = 'pending' AND attempts = $1",
            )
            .bind(i64::from(*attempts))
            .bind(micros(*next_attempt))
            .bind(&event.detail)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            Ok(Ok(true))
        }
        Effect::Delivered { remote } => {
            let removed = sqlx::query("DELETE FROM outbox WHERE transfer_id = $1 AND state = 'pending'")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            if removed.rows_affected() == 0 {
                return Ok(Ok(false));
            }
            if let Some((destination, remote_ref)) = remote {
                sqlx::query(
                    "INSERT INTO delivery_refs (destination, remote_ref, transfer_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (destination, remote_ref) DO UPDATE SET transfer_id = excluded.transfer_id",
                )
                .bind(destination)
                .bind(remote_ref)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            Ok(Ok(true))
        }
        Effect::DeadLetter => {
            sqlx::query(
                "UPDATE outbox SET state = 'dead', last_error = $1 WHERE transfer_id = $2 AND state = 'pending'",
            )
            .bind(&event.detail)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            Ok(Ok(true))
        }
        Effect::Release => {
            let released = sqlx::query(
                "UPDATE outbox SET state = 'pending', next_attempt_at_us = $1 WHERE transfer_id = $2 AND state = 'held'",
            )
            .bind(micros(event.at))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            Ok(changed(released.rows_affected()))
        }
        Effect::Requeue => {
            let requeued = sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = 1, created_at_us = $1, next_attempt_at_us = $1, \
                 last_error = NULL WHERE transfer_id = $2 AND state = 'dead'",
            )
            .bind(micros(event.at))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            Ok(changed(requeued.rows_affected()))
        }
        Effect::Withdraw => {
            let removed = sqlx::query("DELETE FROM outbox WHERE transfer_id = $1 AND state = 'held'")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            Ok(changed(removed.rows_affected()))
        }
        Effect::Destroy => {
            let removed = sqlx::query("DELETE FROM outbox WHERE transfer_id = $1 AND state = 'dead'")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            Ok(changed(removed.rows_affected()))
        }
        Effect::FollowUp => {
            // The mark is made here, not with the entry, so that two of the same in one batch
            // cannot both find it outstanding.
            let sql = match event.kind {
                EventKind::Review => {
                    "UPDATE transfers SET reviewed_at_us = $1 WHERE transfer_id = $2 \
                     AND review_due_at_us IS NOT NULL AND reviewed_at_us IS NULL"
                }
                EventKind::Notification => {
                    "UPDATE transfers SET subject_informed_at_us = $1 WHERE transfer_id = $2 \
                     AND subject_informed_due IS NOT NULL AND subject_informed_at_us IS NULL"
                }
                _ => return Ok(Ok(false)),
            };
            let marked = sqlx::query(sql)
                .bind(micros(event.at))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            Ok(changed(marked.rows_affected()))
        }
    }
}
