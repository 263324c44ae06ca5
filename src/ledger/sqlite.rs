//! The SQLite ledger: the embedded default. WAL mode with `synchronous = FULL`, so a commit
//! is on disk before the append returns. One process writes; appends are serialised by a lock
//! that also holds the chain head.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::checkpoint::Checkpoint;
use super::merkle;
use super::{
    Counts, Enqueue, Entry, Event, EventKind, FollowUp, GENESIS, Hash, HistoryItem, IdempotencyKey, IdempotentOriginal,
    Ledger, LedgerError, OutboxItem, Receipt, TransferQuery, TransferRecord, TransferStatus, micros,
};

pub struct SqliteLedger {
    pool: SqlitePool,
    /// The chain head and the Merkle tree's leaves. Held across each append.
    head: Mutex<Head>,
}

/// The last sequence number and hash, and every leaf hash so far (32 bytes an entry).
struct Head {
    seq: i64,
    hash: Hash,
    leaves: Vec<Hash>,
}

impl Head {
    fn empty() -> Self {
        Self {
            seq: 0,
            hash: GENESIS,
            leaves: Vec::new(),
        }
    }

    /// The next sequence number and the hash it links to.
    fn next(&self) -> (i64, Hash) {
        (self.seq + 1, self.hash)
    }

    /// Called only after the entry's transaction committed.
    fn advance(&mut self, seq: i64, hash: Hash, leaf: Hash) {
        self.seq = seq;
        self.hash = hash;
        self.leaves.push(leaf);
    }
}

impl SqliteLedger {
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        // Create the file private to the gateway's user before SQLite opens it.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(sqlx::Error::Io)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // Rebuild the head and the tree's leaves from what is stored (32 bytes an entry).
        let mut head = Head::empty();
        loop {
            let rows = sqlx::query("SELECT * FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT 10000")
                .bind(head.seq)
                .fetch_all(&pool)
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let e = entry_from_row(row)?;
                head.advance(e.seq, e.hash, Entry::leaf(e.seq, &e.prev_hash, &e.event));
            }
        }
        Ok(Self {
            pool,
            head: Mutex::new(head),
        })
    }

    /// Opens an in-memory ledger (one connection), for tests and benchmarks.
    pub async fn in_memory() -> Result<Self, LedgerError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            head: Mutex::new(Head::empty()),
        })
    }
}

fn parse_hash(seq: i64, text: &str) -> Result<Hash, LedgerError> {
    let bytes = hex::decode(text).map_err(|_| LedgerError::Corrupt {
        seq,
        what: "hash is not hex".into(),
    })?;
    bytes.try_into().map_err(|_| LedgerError::Corrupt {
        seq,
        what: "hash is not 32 bytes".into(),
    })
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn corrupt(seq: i64, what: &str) -> LedgerError {
    LedgerError::Corrupt { seq, what: what.into() }
}

fn timestamp(seq: i64, us: i64) -> Result<Timestamp, LedgerError> {
    Timestamp::from_microsecond(us).map_err(|_| corrupt(seq, "time out of range"))
}

fn entry_from_row(row: &SqliteRow) -> Result<Entry, LedgerError> {
    let seq: i64 = row.try_get("seq")?;
    let list = |col: &str| -> Result<Vec<String>, LedgerError> {
        serde_json::from_str(&row.try_get::<String, _>(col)?).map_err(|_| corrupt(seq, col))
    };
    let event = Event {
        at: timestamp(seq, row.try_get("recorded_at_us")?)?,
        transfer_id: Uuid::parse_str(&row.try_get::<String, _>("transfer_id")?)
            .map_err(|_| corrupt(seq, "transfer_id"))?,
        kind: EventKind::parse(&row.try_get::<String, _>("kind")?).ok_or_else(|| corrupt(seq, "kind"))?,
        status: TransferStatus::parse(&row.try_get::<String, _>("status")?).ok_or_else(|| corrupt(seq, "status"))?,
        decision: row.try_get("decision")?,
        agreement_id: row.try_get("agreement_id")?,
        agreement_version: row.try_get("agreement_version")?,
        agreement_hash: row.try_get("agreement_hash")?,
        message_type: row.try_get("message_type")?,
        schema_hash: row.try_get("schema_hash")?,
        sender_system: row.try_get("sender_system")?,
        user_sub: row.try_get("user_sub")?,
        user_role: row.try_get("user_role")?,
        recipient: row.try_get("recipient")?,
        legal_bases: list("legal_bases")?,
        reason_code: row.try_get("reason_code")?,
        received_sha256: row.try_get("received_sha256")?,
        sent_sha256: row.try_get("sent_sha256")?,
        pointers_removed: list("pointers_removed")?,
        detail: row.try_get("detail")?,
        data_classes: list("data_classes")?,
        treatments: list("treatments")?,
        key_ref: row.try_get("key_ref")?,
        consent_status: row.try_get("consent_status")?,
        consent_reason: row.try_get("consent_reason")?,
        consent_evidence_ref: row.try_get("consent_evidence_ref")?,
        subject_informed: row.try_get("subject_informed")?,
        subject_index: list("subject_index")?,
        review_due: row.try_get("review_due")?,
        subject_informed_due: row.try_get("subject_informed_due")?,
    };
    Ok(Entry {
        seq,
        prev_hash: parse_hash(seq, &row.try_get::<String, _>("prev_hash")?)?,
        hash: parse_hash(seq, &row.try_get::<String, _>("hash")?)?,
        event,
    })
}

fn record_from_row(row: &SqliteRow) -> Result<TransferRecord, LedgerError> {
    let seq: i64 = row.try_get("decision_seq")?;
    Ok(TransferRecord {
        transfer_id: Uuid::parse_str(&row.try_get::<String, _>("transfer_id")?)
            .map_err(|_| corrupt(seq, "transfer_id"))?,
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
        review_due: row
            .try_get::<Option<i64>, _>("review_due_at_us")?
            .map(|us| timestamp(seq, us))
            .transpose()?,
        reviewed_at: row
            .try_get::<Option<i64>, _>("reviewed_at_us")?
            .map(|us| timestamp(seq, us))
            .transpose()?,
        subject_informed_due: row.try_get("subject_informed_due")?,
        subject_informed_at: row
            .try_get::<Option<i64>, _>("subject_informed_at_us")?
            .map(|us| timestamp(seq, us))
            .transpose()?,
    })
}

const TRANSFER_COLUMNS: &str = "transfer_id, agreement_id, message_type, sender_system, recipient, status, \
     reason_code, created_at_us, updated_at_us, decision_seq, user_sub, review_due_at_us, reviewed_at_us, \
     subject_informed_due, subject_informed_at_us";

/// Writes one ledger entry and its effect on the transfer projection, inside a transaction.
async fn write_entry(
    conn: &mut SqliteConnection,
    seq: i64,
    prev_hash: Hash,
    hash: Hash,
    event: &Event,
) -> Result<(), LedgerError> {
    let at = micros(event.at);
    let transfer_id = event.transfer_id.to_string();
    sqlx::query(
        "INSERT INTO ledger_entries (seq, recorded_at_us, transfer_id, kind, status, decision, agreement_id, \
             agreement_version, agreement_hash, message_type, schema_hash, sender_system, user_sub, user_role, recipient, legal_bases, \
             reason_code, received_sha256, sent_sha256, pointers_removed, detail, data_classes, treatments, key_ref, \
             consent_status, consent_reason, consent_evidence_ref, subject_informed, subject_index, review_due, \
             subject_informed_due, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(at)
    .bind(&transfer_id)
    .bind(event.kind.as_str())
    .bind(event.status.as_str())
    .bind(&event.decision)
    .bind(&event.agreement_id)
    .bind(&event.agreement_version)
    .bind(&event.agreement_hash)
    .bind(&event.message_type)
    .bind(&event.schema_hash)
    .bind(&event.sender_system)
    .bind(&event.user_sub)
    .bind(&event.user_role)
    .bind(&event.recipient)
    .bind(json_list(&event.legal_bases))
    .bind(&event.reason_code)
    .bind(&event.received_sha256)
    .bind(&event.sent_sha256)
    .bind(json_list(&event.pointers_removed))
    .bind(&event.detail)
    .bind(json_list(&event.data_classes))
    .bind(json_list(&event.treatments))
    .bind(&event.key_ref)
    .bind(&event.consent_status)
    .bind(&event.consent_reason)
    .bind(&event.consent_evidence_ref)
    .bind(&event.subject_informed)
            .bind(json_list(&event.subject_index))
        .bind(&event.review_due)
        .bind(&event.subject_informed_due)
        .bind(hex::encode(prev_hash))
    .bind(hex::encode(hash))
    .execute(&mut *conn)
    .await?;
    match event.kind {
        EventKind::Decision => {
            let review_due = event
                .review_due
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(micros);
            sqlx::query(
                "INSERT INTO transfers (transfer_id, agreement_id, message_type, sender_system, recipient, status, \
                 reason_code, created_at_us, updated_at_us, decision_seq, user_sub, review_due_at_us, \
                 subject_informed_due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&transfer_id)
            .bind(&event.agreement_id)
            .bind(&event.message_type)
            .bind(&event.sender_system)
            .bind(&event.recipient)
            .bind(event.status.as_str())
            .bind(&event.reason_code)
            .bind(at)
            .bind(at)
            .bind(seq)
            .bind(&event.user_sub)
            .bind(review_due)
            .bind(&event.subject_informed_due)
            .execute(&mut *conn)
            .await?;
            for subject in &event.subject_index {
                sqlx::query("INSERT OR IGNORE INTO subject_disclosures (subject_hash, transfer_id) VALUES (?, ?)")
                    .bind(subject)
                    .bind(&transfer_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        EventKind::SubjectAccess => {}
        EventKind::Review => {
            sqlx::query("UPDATE transfers SET reviewed_at_us = ? WHERE transfer_id = ?")
                .bind(at)
                .bind(&transfer_id)
                .execute(&mut *conn)
                .await?;
        }
        EventKind::Notification => {
            sqlx::query("UPDATE transfers SET subject_informed_at_us = ? WHERE transfer_id = ?")
                .bind(at)
                .bind(&transfer_id)
                .execute(&mut *conn)
                .await?;
        }
        EventKind::Delivery | EventKind::Approval => {
            sqlx::query("UPDATE transfers SET status = ?, reason_code = ?, updated_at_us = ? WHERE transfer_id = ?")
                .bind(event.status.as_str())
                .bind(&event.reason_code)
                .bind(at)
                .bind(&transfer_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// One ledger append in progress: the head stays locked and the transaction open until
/// `commit`; dropping it instead rolls the transaction back and leaves the head as it was.
struct Append<'a> {
    head: tokio::sync::MutexGuard<'a, Head>,
    tx: sqlx::Transaction<'a, sqlx::Sqlite>,
    seq: i64,
    prev_hash: Hash,
    hash: Hash,
    leaf: Hash,
}

impl Append<'_> {
    /// Writes the entry (and its effect on the projection) in the transaction.
    async fn write(&mut self, event: &Event) -> Result<(), LedgerError> {
        write_entry(&mut self.tx, self.seq, self.prev_hash, self.hash, event).await
    }

    async fn commit(self) -> Result<Receipt, LedgerError> {
        let Append {
            mut head,
            tx,
            seq,
            hash,
            leaf,
            ..
        } = self;
        tx.commit().await?;
        head.advance(seq, hash, leaf);
        Ok(Receipt { seq, hash })
    }
}

impl SqliteLedger {
    /// Locks the head and opens a transaction for `event` as the next entry (not yet written).
    async fn begin(&self, event: &Event) -> Result<Append<'_>, LedgerError> {
        let head = self.head.lock().await;
        let (seq, prev_hash) = head.next();
        let hash = Entry::compute_hash(seq, &prev_hash, event);
        let leaf = Entry::leaf(seq, &prev_hash, event);
        let tx = self.pool.begin().await?;
        Ok(Append {
            head,
            tx,
            seq,
            prev_hash,
            hash,
            leaf,
        })
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn append(&self, event: Event) -> Result<Receipt, LedgerError> {
        let mut a = self.begin(&event).await?;
        a.write(&event).await?;
        a.commit().await
    }

    async fn accept(
        &self,
        event: Event,
        enqueue: Enqueue,
        key: Option<IdempotencyKey>,
    ) -> Result<Receipt, LedgerError> {
        let mut a = self.begin(&event).await?;
        a.write(&event).await?;
        let now = micros(enqueue.now);
        sqlx::query(
            "INSERT INTO outbox (transfer_id, destination, agreement_id, message_type, sender_system, recipient, body, \
             state, attempts, created_at_us, next_attempt_at_us, last_error) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, NULL)",
        )
        .bind(event.transfer_id.to_string())
        .bind(&enqueue.destination)
        .bind(&event.agreement_id)
        .bind(event.message_type.as_deref().unwrap_or_default())
        .bind(&event.sender_system)
        .bind(&event.recipient)
        .bind(&enqueue.body)
        .bind(if enqueue.held { "held" } else { "pending" })
        .bind(now)
        .bind(now)
        .execute(&mut *a.tx)
        .await?;
        if let Some(k) = key {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (sender_system, idempotency_key, request_sha256, transfer_id, ledger_seq) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&k.system)
            .bind(&k.key)
            .bind(&k.request_sha256)
            .bind(event.transfer_id.to_string())
            .bind(a.seq)
            .execute(&mut *a.tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(LedgerError::IdempotencyKeyTaken),
                other => {
                    other?;
                }
            }
        }
        a.commit().await
    }

    async fn idempotent_original(&self, system: &str, key: &str) -> Result<Option<IdempotentOriginal>, LedgerError> {
        let row = sqlx::query(
            "SELECT request_sha256, transfer_id, ledger_seq FROM idempotency_keys WHERE sender_system = ? AND idempotency_key = ?",
        )
        .bind(system)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let seq: i64 = r.try_get("ledger_seq")?;
            Ok(IdempotentOriginal {
                request_sha256: r.try_get("request_sha256")?,
                transfer_id: Uuid::parse_str(&r.try_get::<String, _>("transfer_id")?)
                    .map_err(|_| corrupt(seq, "transfer_id"))?,
                ledger_seq: seq,
            })
        })
        .transpose()
    }

    async fn due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        let rows = sqlx::query(
            "SELECT transfer_id, destination, agreement_id, message_type, sender_system, recipient, body, attempts, \
             created_at_us FROM outbox \
             WHERE state = 'pending' AND next_attempt_at_us <= ? ORDER BY next_attempt_at_us LIMIT ?",
        )
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("transfer_id")?;
                Ok(OutboxItem {
                    transfer_id: Uuid::parse_str(&id).map_err(|_| corrupt(0, "outbox transfer_id"))?,
                    destination: r.try_get("destination")?,
                    agreement_id: r.try_get("agreement_id")?,
                    message_type: r.try_get("message_type")?,
                    sender_system: r.try_get("sender_system")?,
                    recipient: r.try_get("recipient")?,
                    body: r.try_get("body")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    created_at: timestamp(0, r.try_get("created_at_us")?)?,
                })
            })
            .collect()
    }

    async fn claim(&self, transfer_id: Uuid, attempts: u32, now: Timestamp) -> Result<bool, LedgerError> {
        let claimed = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1 WHERE transfer_id = ? AND state = 'pending' AND attempts = ? \
             AND next_attempt_at_us <= ?",
        )
        .bind(transfer_id.to_string())
        .bind(i64::from(attempts))
        .bind(micros(now))
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn attempt_failed(
        &self,
        event: Event,
        attempts: u32,
        next_attempt: Timestamp,
    ) -> Result<Receipt, LedgerError> {
        let mut a = self.begin(&event).await?;
        a.write(&event).await?;
        sqlx::query("UPDATE outbox SET attempts = ?, next_attempt_at_us = ?, last_error = ? WHERE transfer_id = ?")
            .bind(i64::from(attempts))
            .bind(micros(next_attempt))
            .bind(&event.detail)
            .bind(event.transfer_id.to_string())
            .execute(&mut *a.tx)
            .await?;
        a.commit().await
    }

    async fn delivered(&self, event: Event, remote: Option<(String, String)>) -> Result<Option<Receipt>, LedgerError> {
        let mut a = self.begin(&event).await?;
        let removed = sqlx::query("DELETE FROM outbox WHERE transfer_id = ? AND state = 'pending'")
            .bind(event.transfer_id.to_string())
            .execute(&mut *a.tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Ok(None);
        }
        a.write(&event).await?;
        if let Some((destination, remote_ref)) = remote {
            sqlx::query("INSERT OR REPLACE INTO delivery_refs (destination, remote_ref, transfer_id) VALUES (?, ?, ?)")
                .bind(destination)
                .bind(remote_ref)
                .bind(event.transfer_id.to_string())
                .execute(&mut *a.tx)
                .await?;
        }
        a.commit().await.map(Some)
    }

    async fn transfer_by_remote_ref(&self, destination: &str, remote_ref: &str) -> Result<Option<Uuid>, LedgerError> {
        let row = sqlx::query("SELECT transfer_id FROM delivery_refs WHERE destination = ? AND remote_ref = ?")
            .bind(destination)
            .bind(remote_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let id: String = r.try_get("transfer_id")?;
            Uuid::parse_str(&id).map_err(|_| corrupt(0, "delivery_refs transfer_id"))
        })
        .transpose()
    }

    async fn dead_letter(&self, event: Event) -> Result<Receipt, LedgerError> {
        let mut a = self.begin(&event).await?;
        a.write(&event).await?;
        sqlx::query("UPDATE outbox SET state = 'dead', last_error = ? WHERE transfer_id = ?")
            .bind(&event.detail)
            .bind(event.transfer_id.to_string())
            .execute(&mut *a.tx)
            .await?;
        a.commit().await
    }

    async fn release(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        let mut a = self.begin(&event).await?;
        let released = sqlx::query(
            "UPDATE outbox SET state = 'pending', next_attempt_at_us = ? WHERE transfer_id = ? AND state = 'held'",
        )
        .bind(micros(Timestamp::now()))
        .bind(event.transfer_id.to_string())
        .execute(&mut *a.tx)
        .await?;
        if released.rows_affected() == 0 {
            return Ok(None);
        }
        a.write(&event).await?;
        a.commit().await.map(Some)
    }

    async fn withdraw(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        let mut a = self.begin(&event).await?;
        let removed = sqlx::query("DELETE FROM outbox WHERE transfer_id = ? AND state = 'held'")
            .bind(event.transfer_id.to_string())
            .execute(&mut *a.tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Ok(None);
        }
        a.write(&event).await?;
        a.commit().await.map(Some)
    }

    async fn follow_up(&self, event: Event) -> Result<Option<Receipt>, LedgerError> {
        let outstanding = match event.kind {
            EventKind::Review => "review_due_at_us IS NOT NULL AND reviewed_at_us IS NULL",
            EventKind::Notification => "subject_informed_due IS NOT NULL AND subject_informed_at_us IS NULL",
            _ => return Ok(None),
        };
        let mut a = self.begin(&event).await?;
        let open = sqlx::query(&format!(
            "SELECT 1 FROM transfers WHERE transfer_id = ? AND {outstanding}"
        ))
        .bind(event.transfer_id.to_string())
        .fetch_optional(&mut *a.tx)
        .await?;
        if open.is_none() {
            return Ok(None);
        }
        a.write(&event).await?;
        a.commit().await.map(Some)
    }

    async fn disclosures(&self, subject_hash: &str) -> Result<Vec<(TransferRecord, Entry)>, LedgerError> {
        let columns = TRANSFER_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM subject_disclosures s JOIN transfers t ON t.transfer_id = s.transfer_id \
             WHERE s.subject_hash = ? AND t.status <> 'refused' ORDER BY t.decision_seq"
        ))
        .bind(subject_hash)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = record_from_row(row)?;
            let entry = sqlx::query("SELECT * FROM ledger_entries WHERE seq = ?")
                .bind(record.ledger_seq)
                .fetch_one(&self.pool)
                .await?;
            out.push((record, entry_from_row(&entry)?));
        }
        Ok(out)
    }

    async fn follow_ups(
        &self,
        which: FollowUp,
        sender_system: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransferRecord>, LedgerError> {
        let (filter, order, at) = match which {
            FollowUp::Held => ("status = 'held'", "created_at_us", None),
            FollowUp::ReviewsOverdue(now) => (
                "review_due_at_us IS NOT NULL AND reviewed_at_us IS NULL AND review_due_at_us < ?1",
                "review_due_at_us",
                Some(micros(now)),
            ),
            FollowUp::NotificationsDue => (
                "subject_informed_due IS NOT NULL AND subject_informed_at_us IS NULL",
                "subject_informed_due",
                None,
            ),
        };
        let sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE {filter} AND (?2 IS NULL OR sender_system = ?2) \
             ORDER BY {order} LIMIT ?3"
        );
        // ?1 is the time (used by the overdue filter only), ?2 the sending system, ?3 the limit.
        let rows = sqlx::query(&sql)
            .bind(at)
            .bind(sender_system)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn tree_size(&self) -> u64 {
        self.head.lock().await.leaves.len() as u64
    }

    async fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        let head = self.head.lock().await;
        let leaves = head
            .leaves
            .get(..usize::try_from(size).unwrap_or(usize::MAX))
            .ok_or(LedgerError::BeyondTree(size))?;
        Ok(merkle::root(leaves))
    }

    async fn inclusion_proof(&self, seq: i64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        let head = self.head.lock().await;
        let index = u64::try_from(seq - 1).map_err(|_| LedgerError::BeyondTree(0))?;
        merkle::inclusion_proof(&head.leaves, index, size).map_err(|_| LedgerError::BeyondTree(size))
    }

    async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        let head = self.head.lock().await;
        merkle::consistency_proof(&head.leaves, old, new).map_err(|_| LedgerError::BeyondTree(new))
    }

    async fn store_checkpoint(&self, cp: &Checkpoint) -> Result<(), LedgerError> {
        sqlx::query("INSERT OR IGNORE INTO checkpoints (tree_size, root, at_us, signature) VALUES (?, ?, ?, ?)")
            .bind(i64::try_from(cp.tree_size).unwrap_or(i64::MAX))
            .bind(hex::encode(cp.root))
            .bind(micros(cp.at))
            .bind(hex::encode(cp.signature))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, LedgerError> {
        let rows = sqlx::query("SELECT tree_size, root, at_us, signature FROM checkpoints ORDER BY tree_size")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.try_get("tree_size")?;
                let bad = || LedgerError::Corrupt {
                    seq: size,
                    what: "checkpoint".into(),
                };
                let signature: [u8; 64] = hex::decode(r.try_get::<String, _>("signature")?)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(bad)?;
                Ok(Checkpoint {
                    tree_size: u64::try_from(size).map_err(|_| bad())?,
                    root: parse_hash(size, &r.try_get::<String, _>("root")?)?,
                    at: timestamp(size, r.try_get("at_us")?)?,
                    signature,
                })
            })
            .collect()
    }

    async fn outbox_depth(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let rows =
            sqlx::query("SELECT destination, COUNT(*) AS n FROM outbox WHERE state = 'pending' GROUP BY destination")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("destination")?, r.try_get("n")?)))
            .collect()
    }

    async fn transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn history(&self, id: Uuid) -> Result<Vec<HistoryItem>, LedgerError> {
        let rows = sqlx::query(
            "SELECT seq, recorded_at_us, kind, status, reason_code, detail FROM ledger_entries \
             WHERE transfer_id = ? ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                Ok(HistoryItem {
                    seq,
                    at: timestamp(seq, row.try_get("recorded_at_us")?)?,
                    kind: EventKind::parse(&row.try_get::<String, _>("kind")?).ok_or_else(|| corrupt(seq, "kind"))?,
                    status: TransferStatus::parse(&row.try_get::<String, _>("status")?)
                        .ok_or_else(|| corrupt(seq, "status"))?,
                    reason_code: row.try_get("reason_code")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn list_transfers(&self, q: &TransferQuery) -> Result<Vec<TransferRecord>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE (?1 IS NULL OR agreement_id = ?1) \
             AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR created_at_us >= ?3) \
             AND (?4 IS NULL OR created_at_us < ?4) AND (?6 IS NULL OR decision_seq > ?6) ORDER BY decision_seq LIMIT ?5"
        ))
        .bind(&q.agreement_id)
        .bind(q.status.map(TransferStatus::as_str))
        .bind(q.since.map(micros))
        .bind(q.until.map(micros))
        .bind(i64::from(q.limit))
        .bind(q.after_seq)
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
            "SELECT status, COUNT(*) AS n FROM transfers WHERE agreement_id = ?1 AND (?2 IS NULL OR created_at_us >= ?2) \
             AND (?3 IS NULL OR created_at_us < ?3) GROUP BY status",
        )
        .bind(agreement_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            counts.by_status.insert(r.try_get("status")?, r.try_get("n")?);
        }
        let rows = sqlx::query(
            "SELECT j.value AS basis, COUNT(*) AS n FROM ledger_entries e, json_each(e.legal_bases) j \
             WHERE e.kind = 'decision' AND e.decision IN ('permit', 'hold') AND e.agreement_id = ?1 \
             AND (?2 IS NULL OR e.recorded_at_us >= ?2) AND (?3 IS NULL OR e.recorded_at_us < ?3) GROUP BY j.value",
        )
        .bind(agreement_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            counts.by_legal_basis.insert(r.try_get("basis")?, r.try_get("n")?);
        }
        Ok(counts)
    }

    async fn entries_for(
        &self,
        agreement_id: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<Entry>, LedgerError> {
        let rows = sqlx::query(
            "SELECT * FROM ledger_entries WHERE agreement_id = ?1 AND (?2 IS NULL OR recorded_at_us >= ?2) \
             AND (?3 IS NULL OR recorded_at_us < ?3) ORDER BY seq",
        )
        .bind(agreement_id)
        .bind(since.map(micros))
        .bind(until.map(micros))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn entries_after(&self, after: i64, limit: u32) -> Result<Vec<Entry>, LedgerError> {
        let rows = sqlx::query("SELECT * FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
