//! The group-commit writer's statements, for either driver: sqlx's (PostgreSQL, in a pool
//! transaction) or rusqlite's (SQLite, on a connection the writer owns on a thread of its own, so
//! a batch's statements cost no hand-off between threads, and its page cache stays warm: the
//! process's other connections write seldom (sign-in sessions, checkpoints), so it is seldom
//! invalidated). The writer's SQL is written once, against [`Exec`].
//!
//! Parameters are `$1`, `$2`, … (or, in the many-row statements on SQLite, anonymous `?`, bound in
//! order: see `batch::multi_row_insert`).

use std::borrow::Cow;

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyTypeInfoKind};
use sqlx::query::Query;
use sqlx::{Any, Row, ValueRef as _};

use crate::ledger::{LedgerError, RawEntry};

/// A statement's parameter. A NULL keeps its type, as PostgreSQL wants.
#[derive(Debug, Clone)]
pub(super) enum Param<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Blob(Option<&'a [u8]>),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}
impl From<String> for Param<'_> {
    fn from(v: String) -> Self {
        Self::Text(Some(Cow::Owned(v)))
    }
}
impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Self::Text(v.as_deref().map(Cow::Borrowed))
    }
}
impl From<Option<String>> for Param<'_> {
    fn from(v: Option<String>) -> Self {
        Self::Text(v.map(Cow::Owned))
    }
}
impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Blob(Some(v))
    }
}

/// A statement's parameters: `args![a, b, …]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { [$($crate::ledger::sql::exec::Param::from($v)),*] };
}
pub(super) use args;

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub(super) fn int(&self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(*v),
            _ => None,
        }
    }
    pub(super) fn into_text(self) -> Option<String> {
        match self {
            Self::Text(v) => Some(v),
            _ => None,
        }
    }
    pub(super) fn into_blob(self) -> Option<Vec<u8>> {
        match self {
            Self::Blob(v) => Some(v),
            _ => None,
        }
    }
}

/// Where the writer's statements run.
#[async_trait]
pub(super) trait Exec: Send {
    /// Rows changed.
    async fn execute(&mut self, sql: &str, args: &[Param<'_>]) -> Result<u64, LedgerError>;
    /// Every row, each value as stored.
    async fn fetch(&mut self, sql: &str, args: &[Param<'_>]) -> Result<Vec<Vec<Value>>, LedgerError>;
    /// Up to `limit` entries after `after`, in order, as stored (each driver's fastest read).
    async fn raw_after(&mut self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError>;
}

/// The writer's transaction.
#[async_trait]
pub(super) trait Transact: Exec {
    /// `write`: with the database's write lock (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's
    /// advisory lock), so appends from several gateways form one sequence; without it, a read.
    async fn begin(&mut self, write: bool) -> Result<(), LedgerError>;
    async fn commit(&mut self) -> Result<(), LedgerError>;
    /// Undoes an unfinished transaction (nothing if none is open).
    async fn rollback(&mut self);
}

/// The database refused this write's data (a constraint, or a value it cannot store), not the
/// transaction: a lock timeout, a shutdown, a lost connection or a read-only database fails the
/// whole batch.
pub(super) fn refuses_the_write(e: &LedgerError) -> bool {
    match e {
        LedgerError::Database(sqlx::Error::Database(d)) => {
            d.kind() != sqlx::error::ErrorKind::Other
                || d.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
        }
        LedgerError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TooBig | rusqlite::ErrorCode::TypeMismatch
        ),
        _ => false,
    }
}

// sqlx: PostgreSQL's writer, and the pool's reads.

fn bound<'q>(sql: &'q str, args: &'q [Param<'_>]) -> Query<'q, Any, AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for arg in args {
        q = match arg {
            Param::Int(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.as_deref()),
            Param::Blob(v) => q.bind(*v),
        };
    }
    q
}

#[async_trait]
impl Exec for sqlx::AnyConnection {
    async fn execute(&mut self, sql: &str, args: &[Param<'_>]) -> Result<u64, LedgerError> {
        Ok(bound(sql, args).execute(&mut *self).await?.rows_affected())
    }

    async fn fetch(&mut self, sql: &str, args: &[Param<'_>]) -> Result<Vec<Vec<Value>>, LedgerError> {
        let rows = bound(sql, args).fetch_all(&mut *self).await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let raw = row.try_get_raw(i)?;
                        if raw.is_null() {
                            return Ok(Value::Null);
                        }
                        Ok(match raw.type_info().kind() {
                            AnyTypeInfoKind::Text => Value::Text(row.try_get(i)?),
                            AnyTypeInfoKind::Blob => Value::Blob(row.try_get(i)?),
                            AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                                Value::Int(row.try_get(i)?)
                            }
                            // The writer reads no other type: one it meets cannot match.
                            _ => Value::Null,
                        })
                    })
                    .collect::<Result<Vec<_>, LedgerError>>()
            })
            .collect()
    }

    async fn raw_after(&mut self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
        super::sync::raw_after(self, after, limit).await
    }
}

/// The PostgreSQL writer's connection: a transaction from the pool while a batch is written.
pub(super) struct PoolTx {
    pool: sqlx::AnyPool,
    tx: Option<sqlx::Transaction<'static, Any>>,
}

impl PoolTx {
    pub(super) fn new(pool: sqlx::AnyPool) -> Self {
        Self { pool, tx: None }
    }

    fn open(&mut self) -> Result<&mut sqlx::AnyConnection, LedgerError> {
        self.tx
            .as_deref_mut()
            .ok_or_else(|| LedgerError::Unrecorded("no transaction is open".into()))
    }

    async fn lock(&mut self) -> Result<(), LedgerError> {
        let conn = self.open()?;
        conn.execute("SET LOCAL lock_timeout = '30s'", &[]).await?;
        conn.execute("SELECT pg_advisory_xact_lock($1)", &args![APPEND_LOCK])
            .await?;
        Ok(())
    }
}

/// PostgreSQL advisory lock key for appends: "isa-ledg".
const APPEND_LOCK: i64 = 0x6973_612d_6c65_6467;

#[async_trait]
impl Exec for PoolTx {
    async fn execute(&mut self, sql: &str, args: &[Param<'_>]) -> Result<u64, LedgerError> {
        self.open()?.execute(sql, args).await
    }
    async fn fetch(&mut self, sql: &str, args: &[Param<'_>]) -> Result<Vec<Vec<Value>>, LedgerError> {
        self.open()?.fetch(sql, args).await
    }
    async fn raw_after(&mut self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
        self.open()?.raw_after(after, limit).await
    }
}

#[async_trait]
impl Transact for PoolTx {
    async fn begin(&mut self, write: bool) -> Result<(), LedgerError> {
        self.rollback().await;
        // Read committed: each statement sees what committed before it, so after the lock the
        // catch-up sees every other gateway's entries.
        self.tx = Some(self.pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await?);
        if write && let Err(e) = self.lock().await {
            self.rollback().await;
            return Err(e);
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), LedgerError> {
        match self.tx.take() {
            Some(tx) => Ok(tx.commit().await?),
            None => Err(LedgerError::Unrecorded("no transaction is open".into())),
        }
    }

    async fn rollback(&mut self) {
        if let Some(tx) = self.tx.take() {
            // A connection that cannot roll back is closed by the pool.
            let _ = tx.rollback().await;
        }
    }
}

// rusqlite: SQLite's writer, on its own thread (its futures never wait).

/// Binds `args` to `statement`'s parameters: `$n` by its number, an anonymous `?` by its place.
fn bind(statement: &mut rusqlite::Statement<'_>, args: &[Param<'_>]) -> Result<(), LedgerError> {
    for place in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(place) {
            None => Some(place),
            Some(name) => name.strip_prefix('$').and_then(|n| n.parse().ok()),
        };
        let arg = n
            .and_then(|n: usize| args.get(n.wrapping_sub(1)))
            .ok_or_else(|| LedgerError::Unrecorded(format!("statement parameter {place} has no value")))?;
        match arg {
            Param::Int(v) => statement.raw_bind_parameter(place, v)?,
            Param::Text(v) => statement.raw_bind_parameter(place, v.as_deref())?,
            Param::Blob(v) => statement.raw_bind_parameter(place, v)?,
        }
    }
    Ok(())
}

/// Every read-write SQLite connection's settings (the pool's and the writer's). secure_delete:
/// deleted rows (delivered and destroyed outbox bytes: patient data) are overwritten with zeros,
/// not left in free pages.
pub(super) const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON;";

/// The SQLite writer's connection: read-write, on the ledger's file, with the pool's settings.
/// Reopened after [`LIFETIME`] as the pool's connections are (one opened before the file was
/// replaced, by a restore, must not go on writing to the old one), and after a transaction it
/// could not end.
pub(super) struct FileConn {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
    opened: std::time::Instant,
}

impl FileConn {
    pub(super) fn open(path: &std::path::Path) -> Result<Self, LedgerError> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(SQLITE_SETTINGS)?;
        // A 16 MiB page cache holds what a batch touches (the indexes' pages among them), which
        // the default 2 MiB did not: it read pages again from the file on every batch.
        conn.execute_batch("PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;")?;
        // One statement per kind and per size of a many-row statement.
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Self {
            conn,
            path: path.to_owned(),
            opened: std::time::Instant::now(),
        })
    }
}

#[async_trait]
impl Exec for FileConn {
    async fn execute(&mut self, sql: &str, args: &[Param<'_>]) -> Result<u64, LedgerError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        bind(&mut statement, args)?;
        Ok(statement.raw_execute()? as u64)
    }

    async fn fetch(&mut self, sql: &str, args: &[Param<'_>]) -> Result<Vec<Vec<Value>>, LedgerError> {
        use rusqlite::types::ValueRef;
        let mut statement = self.conn.prepare_cached(sql)?;
        bind(&mut statement, args)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut all = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Integer(v) => Value::Int(v),
                        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        ValueRef::Null | ValueRef::Real(_) => Value::Null,
                    })
                })
                .collect::<Result<Vec<_>, rusqlite::Error>>()?;
            all.push(values);
        }
        Ok(all)
    }

    async fn raw_after(&mut self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
        super::direct::raw_after(&self.conn, after, limit)
    }
}

#[async_trait]
impl Transact for FileConn {
    async fn begin(&mut self, write: bool) -> Result<(), LedgerError> {
        if !self.conn.is_autocommit() || self.opened.elapsed() >= super::direct::LIFETIME {
            *self = Self::open(&self.path)?;
        }
        Ok(self
            .conn
            .execute_batch(if write { "BEGIN IMMEDIATE" } else { "BEGIN" })?)
    }

    async fn commit(&mut self) -> Result<(), LedgerError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    async fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            // If this fails the transaction stays open, and the next `begin` reopens.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
