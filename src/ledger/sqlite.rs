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
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{
    Entry, Event, EventKind, GENESIS, Hash, HistoryItem, Ledger, LedgerError, Receipt, TransferQuery, TransferRecord,
    TransferStatus, micros,
};

pub struct SqliteLedger {
    pool: SqlitePool,
    /// The last sequence number and hash: the chain head. Held across each append.
    head: Mutex<(i64, Hash)>,
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
        let head = match sqlx::query("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&pool)
            .await?
        {
            Some(row) => {
                let seq: i64 = row.try_get("seq")?;
                (seq, parse_hash(seq, &row.try_get::<String, _>("hash")?)?)
            }
            None => (0, GENESIS),
        };
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
            head: Mutex::new((0, GENESIS)),
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
    })
}

const TRANSFER_COLUMNS: &str = "transfer_id, agreement_id, message_type, sender_system, recipient, status, \
     reason_code, created_at_us, updated_at_us, decision_seq";

#[async_trait]
impl Ledger for SqliteLedger {
    async fn append(&self, event: Event) -> Result<Receipt, LedgerError> {
        let mut head = self.head.lock().await;
        let seq = head.0 + 1;
        let prev_hash = head.1;
        let hash = Entry::compute_hash(seq, &prev_hash, &event);
        let at = micros(event.at);
        let transfer_id = event.transfer_id.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO ledger_entries (seq, recorded_at_us, transfer_id, kind, status, decision, agreement_id, \
             agreement_version, agreement_hash, message_type, schema_hash, sender_system, recipient, legal_bases, \
             reason_code, received_sha256, sent_sha256, pointers_removed, detail, data_classes, treatments, key_ref, \
             consent_status, consent_reason, consent_evidence_ref, subject_informed, subject_index, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(hex::encode(prev_hash))
        .bind(hex::encode(hash))
        .execute(&mut *tx)
        .await?;
        match event.kind {
            EventKind::Decision => {
                sqlx::query(
                    "INSERT INTO transfers (transfer_id, agreement_id, message_type, sender_system, recipient, status, \
                     reason_code, created_at_us, updated_at_us, decision_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                .execute(&mut *tx)
                .await?;
            }
            EventKind::Delivery => {
                sqlx::query(
                    "UPDATE transfers SET status = ?, reason_code = ?, updated_at_us = ? WHERE transfer_id = ?",
                )
                .bind(event.status.as_str())
                .bind(&event.reason_code)
                .bind(at)
                .bind(&transfer_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        *head = (seq, hash);
        Ok(Receipt { seq, hash })
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
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE agreement_id = ? \
             AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR created_at_us >= ?3) \
             AND (?4 IS NULL OR created_at_us < ?4) ORDER BY created_at_us, decision_seq LIMIT ?5"
        ))
        .bind(&q.agreement_id)
        .bind(q.status.map(TransferStatus::as_str))
        .bind(q.since.map(micros))
        .bind(q.until.map(micros))
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
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
