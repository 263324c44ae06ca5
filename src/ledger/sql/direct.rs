//! SQLite reads straight from the file, for the reads that return many rows: `verify`'s pages of
//! entries, the listing check's pages, and the records delivery checks before sending. sqlx's
//! driver pays a thread hand-off and several allocations per row, many times SQLite's own cost
//! (measured: 452k entries/s at best, with each page concatenated into one value in SQL). Here
//! connections of its own read on the blocking pool. They are query-only, and in WAL mode they
//! see exactly what has committed, as the pool's connections do. (The ledger writer's own
//! connection is in `exec`.)

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, named_params, params_from_iter};
use uuid::Uuid;

use super::rows::{ListingParams, listing_sql, record_from_row};
use super::sync::{RAW_COLUMNS, decode_entry, uuid};
use super::{ENTRIES_OF, LEGAL_BASES_OF, SUBJECTS_OF};
use crate::ledger::{Entry, LedgerError, RawEntry, TransferRecord};

/// Connections kept open between reads (more are opened while more read at once).
const KEPT: usize = 4;
/// How long a connection is kept, as the pool's are: one opened before the file was replaced (a
/// restore) does not go on reading the old one.
pub(super) const LIFETIME: Duration = Duration::from_secs(30 * 60);

pub(super) struct DirectReader {
    path: PathBuf,
    /// Opened when first needed and kept for the next read (their statements stay prepared),
    /// each with when it was opened.
    idle: Arc<Mutex<Vec<(Connection, Instant)>>>,
}

impl DirectReader {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::default(),
        }
    }

    /// Runs `read` on one of the reader's connections, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (path, idle) = (self.path.clone(), Arc::clone(&self.idle));
        tokio::task::spawn_blocking(move || {
            let kept = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let (conn, opened) = match kept {
                Some((conn, opened)) if opened.elapsed() < LIFETIME => (conn, opened),
                _ => (open(&path)?, Instant::now()),
            };
            let answer = read(&conn);
            let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < KEPT {
                idle.push((conn, opened));
            }
            answer
        })
        .await
        .map_err(|e| LedgerError::Interrupted(e.to_string()))?
    }

    /// Up to `limit` entries after `after`, in order.
    pub(super) async fn raw_after(&self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
        self.read(move |conn| raw_after(conn, after, limit)).await
    }

    /// A page of listings (see [`listing_sql`]).
    pub(super) async fn list_transfers(&self, p: ListingParams) -> Result<Vec<TransferRecord>, LedgerError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&listing_sql())?;
            let mut rows = statement.query(named_params! {
                "$1": p.agreement_id, "$2": p.status, "$3": p.since, "$4": p.until, "$5": p.limit,
                "$6": p.after_seq, "$7": p.message_type, "$8": p.sender_system, "$9": p.user_sub,
                "$10": p.legal_basis,
            })?;
            let mut records = Vec::new();
            while let Some(row) = rows.next()? {
                records.push(record_from_row(row)?);
            }
            Ok(records)
        })
        .await
    }

    /// These transfers' entries, in order.
    pub(super) async fn entries_of(&self, ids: &[Uuid]) -> Result<Vec<Entry>, LedgerError> {
        self.about(ENTRIES_OF, ids, |row| {
            decode_entry(row.get(0)?, blob(row, 1)?, blob(row, 2)?)
        })
        .await
    }

    /// These transfers' subject-index rows.
    pub(super) async fn subjects_of(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, LedgerError> {
        self.about(SUBJECTS_OF, ids, |row| {
            Ok((uuid(0, &row.get::<_, String>(0)?)?, row.get(1)?))
        })
        .await
    }

    /// These transfers' stored legal bases, as stored.
    pub(super) async fn legal_bases_of(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, Option<String>)>, LedgerError> {
        self.about(LEGAL_BASES_OF, ids, |row| {
            Ok((uuid(0, &row.get::<_, String>(0)?)?, row.get(1)?))
        })
        .await
    }

    /// `{select} WHERE transfer_id IN (…){tail}` for these transfers, each row through `decode`.
    async fn about<T: Send + 'static>(
        &self,
        (select, tail): (&'static str, &'static str),
        ids: &[Uuid],
        decode: fn(&rusqlite::Row<'_>) -> Result<T, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.read(move |conn| {
            let marks = vec!["?"; ids.len()].join(", ");
            let mut statement = conn.prepare_cached(&format!("{select} WHERE transfer_id IN ({marks}){tail}"))?;
            let mut rows = statement.query(params_from_iter(&ids))?;
            let mut out = Vec::with_capacity(ids.len());
            while let Some(row) = rows.next()? {
                out.push(decode(row)?);
            }
            Ok(out)
        })
        .await
    }
}

/// An entry as stored. Whatever an insider put in a column, the entry is returned for `verify`
/// to judge at its place: a value of the wrong type reads as one that cannot match its bytes
/// (an empty text, a time no entry has, an all-zero hash), so the chain breaks at that entry,
/// as with the pool's reads.
fn raw_entry(row: &rusqlite::Row<'_>) -> Result<RawEntry, LedgerError> {
    use rusqlite::types::ValueRef;
    let text = |i: usize| -> rusqlite::Result<String> {
        Ok(match row.get_ref(i)? {
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        })
    };
    Ok(RawEntry {
        // The rowid: always an integer.
        seq: row.get(0)?,
        bytes: blob(row, 1)?.to_vec(),
        hash: blob(row, 2)?.try_into().unwrap_or([0; 32]),
        transfer_id: text(3)?,
        kind: text(4)?,
        agreement_id: text(5)?,
        at_us: match row.get_ref(6)? {
            ValueRef::Integer(us) => us,
            _ => i64::MIN,
        },
    })
}

/// Up to `limit` entries after `after`, in order (also the writer's catch-up on SQLite).
pub(super) fn raw_after(conn: &Connection, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {RAW_COLUMNS} FROM ledger_entries WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let mut rows = statement.query((after, i64::from(limit)))?;
    let mut page = Vec::with_capacity(limit.min(10_000) as usize);
    while let Some(row) = rows.next()? {
        page.push(raw_entry(row)?);
    }
    Ok(page)
}

/// Column `i` as a blob; of any other type, as an empty one (which no entry or hash is).
fn blob<'a>(row: &'a rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'a [u8]> {
    Ok(match row.get_ref(i)? {
        rusqlite::types::ValueRef::Blob(b) => b,
        _ => &[],
    })
}

fn open(path: &std::path::Path) -> Result<Connection, LedgerError> {
    // Read-write flags (no create) so that WAL's shared-memory index can be used as the
    // gateway's connections use it; `query_only` then refuses any write on this connection.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}
