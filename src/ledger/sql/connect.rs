//! Opening a ledger: an SQLite file created private to the gateway's user, or a PostgreSQL
//! database; migrations run before the writer starts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use tokio::sync::Mutex;

use super::writer::Writer;
use super::{Dialect, SqlLedger, direct};
use crate::ledger::{Chain, LedgerError};

impl SqlLedger {
    /// PostgreSQL: the writer works in pool transactions.
    pub(super) fn start_postgres(pool: AnyPool) -> Self {
        let chain = Arc::new(Mutex::new(Chain::default()));
        let writer = Writer::spawn(pool.clone(), chain.clone());
        Self {
            pool,
            dialect: Dialect::Postgres,
            chain,
            writer,
            direct: None,
        }
    }

    /// SQLite: the writer owns a connection of its own; long reads go straight to the file.
    pub(super) fn start_sqlite(
        pool: AnyPool,
        writer: super::exec::FileConn,
        direct: direct::DirectReader,
    ) -> Result<Self, LedgerError> {
        let chain = Arc::new(Mutex::new(Chain::default()));
        let writer = Writer::spawn_owning(writer, chain.clone())?;
        Ok(Self {
            pool,
            dialect: Dialect::Sqlite,
            chain,
            writer,
            direct: Some(direct),
        })
    }

    /// `sqlite://PATH` or `postgres://…` (`postgresql://…`).
    pub async fn open(database_url: &str) -> Result<Self, LedgerError> {
        if let Some(path) = database_url.strip_prefix("sqlite://") {
            Self::sqlite(Path::new(path)).await
        } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Self::postgres(database_url).await
        } else {
            Err(LedgerError::UnsupportedUrl)
        }
    }

    /// An SQLite ledger in one file, created private to the gateway's user. WAL mode with
    /// `synchronous = FULL`: a commit is on disk before the append returns.
    pub async fn sqlite(path: &Path) -> Result<Self, LedgerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::path::absolute(path).map_err(sqlx::Error::Io)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(sqlx::Error::Io)?;
        // The Any driver takes a URL: escape what the URL or SQLite's parser would read as syntax.
        let text = path.to_str().ok_or(LedgerError::UnsupportedUrl)?;
        let url = format!(
            "sqlite://{}",
            text.replace('%', "%25").replace('?', "%3F").replace('#', "%23")
        );
        Self::connect_sqlite(&url, path).await
    }

    async fn connect_sqlite(url: &str, path: std::path::PathBuf) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .max_lifetime(Duration::from_secs(30 * 60))
            .idle_timeout(Duration::from_secs(10 * 60))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute(super::exec::SQLITE_SETTINGS).await.map(|_| ()) })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let writer = super::exec::FileConn::open(&path)?;
        Self::start_sqlite(pool, writer, super::direct::DirectReader::new(path))
    }

    /// A PostgreSQL ledger. Migrations run under sqlx's advisory lock, so gateways starting
    /// together are safe.
    pub async fn postgres(url: &str) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self::start_postgres(pool))
    }
}
