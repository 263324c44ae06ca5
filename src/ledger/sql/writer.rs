//! Group commit: every ledger write goes through one writer per gateway (SQLite: a thread that
//! owns its connection; PostgreSQL: a task on pool transactions, see `exec`). It takes what
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
//! other gateways appended, so the chain stays one gap-free sequence. The writer also brings
//! the chain up to date for readers, and on SQLite makes the outbox's claims in its batches.

use std::sync::Arc;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::batch::{Row, accepted_together, delivered_together, insert, insert_outbox};
use super::exec::{Exec, Transact, Value, args, refuses_the_write};
use super::outbox::{OwnedClaim, claim_statement, claimed};
use super::sync::{Dialect, catch_up, check_head};
use crate::ledger::{
    Chain, Enqueue, Entry, Event, EventKind, Hash, IdempotencyKey, LedgerError, OutboxItem, Receipt, merkle, micros,
};

/// The most requests one transaction takes.
const MAX_BATCH: usize = 512;

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
type Claimed = Result<Vec<OutboxItem>, LedgerError>;

pub(super) struct Queued {
    pub(super) event: Event,
    pub(super) op: Effect,
    reply: oneshot::Sender<Reply>,
}

/// What the writer is asked to do. (Mostly writes, each passed on once: not boxed.)
#[allow(clippy::large_enum_variant)]
enum Job {
    Write(Queued),
    /// Claim due outbox entries, in the batch's transaction (one commit with the writes; SQLite).
    Claim(OwnedClaim, oneshot::Sender<Claimed>),
    /// Bring the chain up to date with every committed entry (any process's).
    Sync(oneshot::Sender<Result<(), LedgerError>>),
}

pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer on sqlx's pool (PostgreSQL); it ends when the `Writer` is dropped.
    pub(super) fn spawn(pool: sqlx::AnyPool, chain: Arc<Mutex<Chain>>) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(jobs, super::exec::PoolTx::new(pool), Dialect::Postgres, chain));
        Self { queue }
    }

    /// Starts the writer on a thread of its own that owns `conn` (SQLite); it ends when the
    /// `Writer` is dropped.
    pub(super) fn spawn_owning(conn: super::exec::FileConn, chain: Arc<Mutex<Chain>>) -> Result<Self, LedgerError> {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                // Its futures never wait on IO (rusqlite blocks this thread), only for the next
                // job or the chain's lock.
                match tokio::runtime::Builder::new_current_thread().build() {
                    Ok(runtime) => runtime.block_on(run(jobs, conn, Dialect::Sqlite, chain)),
                    // The queue closes: every write is answered that the writer stopped.
                    Err(e) => tracing::error!(error = %e, "the ledger's writer cannot start"),
                }
            })
            .map_err(|e| LedgerError::Interrupted(e.to_string()))?;
        Ok(Self { queue })
    }

    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Job) -> Result<T, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(job(reply))
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Records `event` with `op`; `None` if the op did not apply (nothing was recorded).
    pub(super) async fn submit(&self, event: Event, op: Effect) -> Reply {
        self.ask(|reply| Job::Write(Queued { event, op, reply })).await
    }

    /// Records `event` with an op that always applies.
    pub(super) async fn always(&self, event: Event, op: Effect) -> Result<Receipt, LedgerError> {
        self.submit(event, op).await?.ok_or_else(|| LedgerError::Corrupt {
            seq: 0,
            what: "an unconditional write did not apply".into(),
        })
    }

    /// Claims due outbox entries (committed before this returns).
    pub(super) async fn claim(&self, claim: OwnedClaim) -> Claimed {
        self.ask(|reply| Job::Claim(claim, reply)).await
    }

    /// Brings the chain up to date with every entry committed before this call.
    pub(super) async fn sync(&self) -> Result<(), LedgerError> {
        self.ask(Job::Sync).await
    }
}

async fn run(mut jobs: mpsc::Receiver<Job>, mut conn: impl Transact, dialect: Dialect, chain: Arc<Mutex<Chain>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = std::time::Instant::now();
        let (mut writes, mut claims, mut syncs) = (Vec::new(), Vec::new(), Vec::new());
        for job in batch.drain(..) {
            match job {
                Job::Write(w) => writes.push(w),
                Job::Claim(c, reply) => claims.push((c, reply)),
                Job::Sync(reply) => syncs.push(reply),
            }
        }
        let asked: Vec<&OwnedClaim> = claims.iter().map(|(c, _)| c).collect();
        let (replies, claimed, synced) = match commit(&mut conn, dialect, &chain, &writes, &asked).await {
            Ok((replies, claimed)) => (replies, claimed, Ok(())),
            // (A claim the database refuses fails alone inside the batch: see `write`.)
            Err(Failed::Write(e)) if writes.len() == 1 && claims.is_empty() => (vec![Err(e)], Vec::new(), Ok(())),
            Err(Failed::Write(e)) => {
                tracing::warn!(error = %e, writes = writes.len(), "a write in a ledger batch failed; recording them one by one");
                one_by_one(&mut conn, dialect, &chain, &writes, &asked).await
            }
            Err(Failed::Batch(why)) => {
                tracing::error!(error = %why, writes = writes.len(), "ledger batch not recorded");
                (
                    writes
                        .iter()
                        .map(|_| Err(LedgerError::Unrecorded(why.clone())))
                        .collect(),
                    unrecorded(&asked, &why),
                    Err(why),
                )
            }
        };
        tracing::debug!(
            writes = writes.len(),
            claims = claims.len(),
            micros = started.elapsed().as_micros() as u64,
            "ledger batch"
        );
        // A caller that went away still has its write recorded (and a claim's lease runs out).
        for (request, reply) in writes.into_iter().zip(replies) {
            let _ = request.reply.send(reply);
        }
        for ((_, reply), items) in claims.into_iter().zip(claimed) {
            let _ = reply.send(items);
        }
        for reply in syncs {
            let _ = reply.send(synced.clone().map_err(LedgerError::Unrecorded));
        }
    }
}

/// After a write in a batch was refused: each write, then the claims, in a transaction of
/// its own, so that the refused write fails alone.
async fn one_by_one(
    conn: &mut impl Transact,
    dialect: Dialect,
    chain: &Mutex<Chain>,
    writes: &[Queued],
    claims: &[&OwnedClaim],
) -> (Vec<Reply>, Vec<Claimed>, Result<(), String>) {
    let mut replies = Vec::with_capacity(writes.len());
    for request in writes {
        replies.push(
            match commit(conn, dialect, chain, std::slice::from_ref(request), &[]).await {
                Ok((mut r, _)) => r.pop().unwrap_or(Err(LedgerError::WriterStopped)),
                Err(Failed::Write(e)) => Err(e),
                Err(Failed::Batch(why)) => Err(LedgerError::Unrecorded(why)),
            },
        );
    }
    // Last, the claims (if any) and the chain's catch-up for those who asked for it.
    match commit(conn, dialect, chain, &[], claims).await {
        Ok((_, claimed)) => (replies, claimed, Ok(())),
        Err(Failed::Write(e)) => (replies, unrecorded(claims, &e.to_string()), Err(e.to_string())),
        Err(Failed::Batch(why)) => (replies, unrecorded(claims, &why), Err(why)),
    }
}

fn unrecorded(claims: &[&OwnedClaim], why: &str) -> Vec<Claimed> {
    claims
        .iter()
        .map(|_| Err(LedgerError::Unrecorded(why.to_owned())))
        .collect()
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
    if refuses_the_write(&e) {
        Failed::Write(e)
    } else {
        whole(e)
    }
}

/// Writes `batch` and makes `claims` in one transaction and commits; then advances the chain.
/// Returns one reply per write and one per claim, in order. Any failure rolls back all of it.
async fn commit(
    conn: &mut impl Transact,
    dialect: Dialect,
    chain: &Mutex<Chain>,
    batch: &[Queued],
    claims: &[&OwnedClaim],
) -> Result<(Vec<Reply>, Vec<Claimed>), Failed> {
    let mut chain = chain.lock().await;
    conn.begin(!batch.is_empty() || !claims.is_empty())
        .await
        .map_err(whole)?;
    let (replies, claimed, rows) = match write(conn, dialect, &mut chain, batch, claims).await {
        Ok(written) => written,
        Err(failed) => {
            conn.rollback().await;
            return Err(failed);
        }
    };
    if let Err(e) = conn.commit().await {
        conn.rollback().await;
        return Err(Failed::Batch(format!("the commit was not confirmed: {e}")));
    }
    for row in &rows {
        chain.append(
            row.seq,
            row.hash,
            merkle::leaf_hash(&row.bytes),
            &row.event.agreement_id,
            micros(row.event.at),
        );
    }
    Ok((replies, claimed))
}

/// The batch's statements, inside its transaction.
async fn write<'a>(
    tx: &mut impl Exec,
    dialect: Dialect,
    chain: &mut Chain,
    batch: &'a [Queued],
    claims: &[&OwnedClaim],
) -> Result<(Vec<Reply>, Vec<Claimed>, Vec<Row<'a>>), Failed> {
    // The head this gateway holds must still be the database's (a restore or failover may have
    // lost it); then take in what other gateways appended, each linked to the one before.
    check_head(tx, chain).await.map_err(whole)?;
    catch_up(tx, chain).await.map_err(whole)?;
    let (mut seq, mut prev) = (chain.seq, chain.hash);
    let mut rows = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let delivered = delivered_together(tx, dialect, batch).await.map_err(statement)?;
    let accepted = accepted_together(tx, dialect, batch).await.map_err(statement)?;
    for (i, request) in batch.iter().enumerate() {
        let next = seq + 1;
        let applied = match delivered.get(&i) {
            Some(&applied) => Ok(applied),
            None if accepted.contains(&i) => Ok(true),
            None => apply(tx, dialect, next, &request.event, &request.op)
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
    insert(tx, dialect, &rows).await.map_err(statement)?;
    // Claims after the writes: a transfer accepted in this batch can be claimed in it. A claim
    // the database refuses fails alone (its savepoint undone), not the batch.
    let mut claims_made = Vec::with_capacity(claims.len());
    for claim in claims {
        let (sql, params) = claim_statement(dialect, claim);
        tx.execute("SAVEPOINT claim", &[]).await.map_err(whole)?;
        let rows = match tx.fetch(&sql, &params).await {
            Ok(rows) => rows,
            Err(e) => {
                tx.execute("ROLLBACK TO SAVEPOINT claim", &[]).await.map_err(whole)?;
                tx.execute("RELEASE SAVEPOINT claim", &[]).await.map_err(whole)?;
                tracing::error!(destination = %claim.destination, error = %e, "a claim on the outbox failed");
                claims_made.push(Err(e));
                continue;
            }
        };
        tx.execute("RELEASE SAVEPOINT claim", &[]).await.map_err(whole)?;
        claims_made.push(Ok(claimed(rows)));
    }
    Ok((replies, claims_made, rows))
}

/// Checks a write's precondition and makes its changes besides the entry. `Ok(false)`: it does
/// not apply; `Err` inside: it is refused (an idempotency key already bound). Nothing is
/// changed in either case.
async fn apply(
    tx: &mut impl Exec,
    dialect: Dialect,
    seq: i64,
    event: &Event,
    op: &Effect,
) -> Result<Result<bool, LedgerError>, LedgerError> {
    let id = event.transfer_id.to_string();
    let id = id.as_str();
    let changed = |n: u64| Ok(n > 0);
    match op {
        Effect::Append => Ok(Ok(true)),
        Effect::Accept { enqueue, key } => {
            // The held quota, counted here so that concurrent requests cannot all pass it.
            if enqueue.held
                && let Some(quota) = enqueue.held_quota
            {
                let counts = tx
                    .fetch(
                        "SELECT COUNT(*), COUNT(CASE WHEN held_by = $2 THEN 1 END) FROM outbox \
                         WHERE state = 'held' AND agreement_id = $1",
                        &args![&event.agreement_id, event.user_sub.as_deref().unwrap_or_default()],
                    )
                    .await?;
                let count = |i: usize| counts.first().and_then(|row| row.get(i)).and_then(Value::int);
                let (per_agreement, per_user) = (count(0).unwrap_or(i64::MAX), count(1).unwrap_or(i64::MAX));
                if u64::try_from(per_agreement).unwrap_or(u64::MAX) >= quota.per_agreement
                    || u64::try_from(per_user).unwrap_or(u64::MAX) >= quota.per_user
                {
                    return Ok(Err(LedgerError::HeldQuotaExceeded));
                }
            }
            if let Some(k) = key {
                let bound = tx
                    .execute(
                        "INSERT INTO idempotency_keys (sender_system, idempotency_key, request_sha256, transfer_id, \
                     ledger_seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        &args![&k.system, &k.key, &k.request_sha256, id, seq],
                    )
                    .await?;
                if bound == 0 {
                    return Ok(Err(LedgerError::IdempotencyKeyTaken));
                }
            }
            insert_outbox(tx, dialect, &[(event, enqueue)]).await?;
            Ok(Ok(true))
        }
        Effect::AttemptFailed { attempts, next_attempt } => {
            // Only while this attempt's claim is the latest: a gateway whose lease ran out does
            // not undo a newer claim (the event still records its failure).
            tx.execute(
                "UPDATE outbox SET attempts = $1, next_attempt_at_us = $2, last_error = $3 WHERE transfer_id = $4 \
                 AND state = 'pending' AND attempts = $1",
                &args![i64::from(*attempts), micros(*next_attempt), &event.detail, id],
            )
            .await?;
            Ok(Ok(true))
        }
        Effect::Delivered { remote } => {
            let removed = tx
                .execute(
                    "DELETE FROM outbox WHERE transfer_id = $1 AND state = 'pending'",
                    &args![id],
                )
                .await?;
            if removed == 0 {
                return Ok(Ok(false));
            }
            if let Some((destination, remote_ref)) = remote {
                tx.execute(
                    "INSERT INTO delivery_refs (destination, remote_ref, transfer_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (destination, remote_ref) DO UPDATE SET transfer_id = excluded.transfer_id",
                    &args![destination, remote_ref, id],
                )
                .await?;
            }
            Ok(Ok(true))
        }
        Effect::DeadLetter => {
            tx.execute(
                "UPDATE outbox SET state = 'dead', last_error = $1 WHERE transfer_id = $2 AND state = 'pending'",
                &args![&event.detail, id],
            )
            .await?;
            Ok(Ok(true))
        }
        Effect::Release => {
            let released = tx.execute("UPDATE outbox SET state = 'pending', next_attempt_at_us = $1 WHERE transfer_id = $2 AND state = 'held'", &args![micros(event.at), id]).await?;
            Ok(changed(released))
        }
        Effect::Requeue => {
            let requeued = tx
                .execute(
                    "UPDATE outbox SET state = 'pending', attempts = 1, created_at_us = $1, next_attempt_at_us = $1, \
                 last_error = NULL WHERE transfer_id = $2 AND state = 'dead'",
                    &args![micros(event.at), id],
                )
                .await?;
            Ok(changed(requeued))
        }
        Effect::Withdraw => {
            let removed = tx
                .execute(
                    "DELETE FROM outbox WHERE transfer_id = $1 AND state = 'held'",
                    &args![id],
                )
                .await?;
            Ok(changed(removed))
        }
        Effect::Destroy => {
            let removed = tx
                .execute(
                    "DELETE FROM outbox WHERE transfer_id = $1 AND state = 'dead'",
                    &args![id],
                )
                .await?;
            Ok(changed(removed))
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
            let marked = tx.execute(sql, &args![micros(event.at), id]).await?;
            Ok(changed(marked))
        }
    }
}
