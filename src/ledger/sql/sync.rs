//! Reading entries from the database, and taking in what other gateways appended: the chain
//! this process holds is checked against the database's head, then brought up to date.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::exec::{Exec, Value, args};
use crate::ledger::{Chain, Entry, Hash, LedgerError, RawEntry};

/// Which database the URL named. The SQL is shared; these are the differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// One file; appends take SQLite's write lock (`BEGIN IMMEDIATE`).
    Sqlite,
    /// Appends take a transaction-scoped advisory lock, so gateways sharing the database keep
    /// one gap-free chain.
    Postgres,
}

/// The database still holds the entry this chain ends with. Fails after a restore or failover
/// that lost entries this gateway had seen (its tree would no longer match the database).
pub(super) async fn check_head(conn: &mut impl Exec, chain: &Chain) -> Result<(), LedgerError> {
    if chain.seq == 0 {
        return Ok(());
    }
    let stored = conn
        .fetch("SELECT hash FROM ledger_entries WHERE seq = $1", &args![chain.seq])
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next());
    if stored == Some(Value::Blob(chain.hash.to_vec())) {
        Ok(())
    } else {
        Err(LedgerError::HeadMismatch(chain.seq))
    }
}

/// Takes into `chain` every committed entry after its head (appended by another gateway, or
/// not yet loaded). Entries are taken as stored: judging them is `verify`'s work, and it must
/// be able to open a tampered ledger to report on it.
pub(super) async fn catch_up(conn: &mut impl Exec, chain: &mut Chain) -> Result<(), LedgerError> {
    loop {
        let page = conn.raw_after(chain.seq, 10_000).await?;
        if page.is_empty() {
            return Ok(());
        }
        for raw in &page {
            chain.adopt(raw)?;
        }
    }
}

pub(super) const RAW_COLUMNS: &str = "seq, entry, hash, transfer_id, kind, agreement_id, recorded_at_us";

/// Through sqlx (PostgreSQL; SQLite reads entries with rusqlite).
pub(super) async fn raw_after(
    conn: &mut sqlx::AnyConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<RawEntry>, LedgerError> {
    let rows = sqlx::query(&format!(
        "SELECT {RAW_COLUMNS} FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(raw_from_row).collect()
}

pub(super) fn raw_from_row(row: &AnyRow) -> Result<RawEntry, LedgerError> {
    let seq: i64 = row.try_get(0)?;
    Ok(RawEntry {
        seq,
        bytes: row.try_get(1)?,
        // A stored hash of the wrong length cannot match: `verify` reports the entry as edited.
        hash: row.try_get::<Vec<u8>, _>(2)?.try_into().unwrap_or([0; 32]),
        transfer_id: row.try_get(3)?,
        kind: row.try_get(4)?,
        agreement_id: row.try_get(5)?,
        at_us: row.try_get(6)?,
    })
}

/// The entry in a row's `entry` and `hash` columns.
pub(super) fn entry_from_row(row: &AnyRow, seq: i64) -> Result<Entry, LedgerError> {
    decode_entry(
        seq,
        &row.try_get::<Vec<u8>, _>("entry")?,
        &row.try_get::<Vec<u8>, _>("hash")?,
    )
}

/// Entry `seq` from its stored bytes and hash, whichever driver read them.
pub(super) fn decode_entry(seq: i64, bytes: &[u8], hash: &[u8]) -> Result<Entry, LedgerError> {
    let hash = hash.try_into().map_err(|_| corrupt(seq, "hash is not 32 bytes"))?;
    Entry::decode(bytes, hash).ok_or_else(|| corrupt(seq, "its stored bytes are not a ledger entry"))
}

pub(super) fn parse_hash(seq: i64, text: &str) -> Result<Hash, LedgerError> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(seq, "hash is not 32 bytes of hex"))
}

/// A checkpoint's agreement lines as stored: 64 hex digits each, one after another.
pub(super) fn parse_lines(size: i64, text: &str) -> Result<Vec<Hash>, LedgerError> {
    if !text.len().is_multiple_of(64) || !text.is_ascii() {
        return Err(corrupt(size, "checkpoint agreement lines"));
    }
    (0..text.len() / 64)
        .map(|i| parse_hash(size, &text[i * 64..(i + 1) * 64]))
        .collect()
}

pub(super) fn corrupt(seq: i64, what: &str) -> LedgerError {
    LedgerError::Corrupt { seq, what: what.into() }
}

pub(super) fn timestamp(seq: i64, us: i64) -> Result<Timestamp, LedgerError> {
    Timestamp::from_microsecond(us).map_err(|_| corrupt(seq, "time out of range"))
}

/// A transfer id as the gateway writes it (lower-case, hyphenated). Any other spelling is an
/// edit: the database compares ids as text, so it would hide the row from joins and lookups.
pub(super) fn uuid(seq: i64, text: &str) -> Result<Uuid, LedgerError> {
    Uuid::parse_str(text)
        .ok()
        .filter(|id| id.to_string() == text)
        .ok_or_else(|| corrupt(seq, "transfer_id is not in the gateway's form (edited)"))
}
