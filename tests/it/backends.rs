//! The two ledger backends, for tests that must pass on both: SQLite in a temporary file, and
//! PostgreSQL in a database made for the test and dropped after it.
//!
//! PostgreSQL is found at `ISA_GATEWAY_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`,
//! trust auth, as on every machine this project runs on, CI's included). It is required: a
//! test that cannot reach it fails and says where it looked.

use std::sync::atomic::{AtomicU32, Ordering};

use isa_gateway::ledger::SqlLedger;
use sqlx::{Connection, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of one kind.
pub struct Db {
    pub kind: Kind,
    pub url: String,
    /// SQLite's file lives here.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL's database, dropped with this.
    _pg: Option<PgDatabase>,
}

impl Db {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                Self {
                    kind,
                    url,
                    _dir: Some(dir),
                    _pg: None,
                }
            }
            Kind::Postgres => {
                let pg = PgDatabase::create().await;
                Self {
                    kind,
                    url: pg.url.clone(),
                    _dir: None,
                    _pg: Some(pg),
                }
            }
        }
    }

    /// A gateway's view of the ledger. Each call opens another (its own pool, writer and tree),
    /// as a second gateway process would.
    pub async fn open(&self) -> SqlLedger {
        SqlLedger::open(&self.url).await.unwrap()
    }

    /// What an intruder with the database could do: drop the guard triggers, then run SQL.
    pub async fn tamper(&self, sql: &str) {
        let mut conn = self.intruder().await;
        conn.execute(sql).await.unwrap();
        conn.close().await.unwrap();
    }

    /// Changes one byte of an entry's stored bytes (inside its transfer id, never a no-op).
    pub async fn flip_byte(&self, seq: i64) {
        let mut conn = self.intruder().await;
        flip_entry_byte(&mut conn, seq).await;
        conn.close().await.unwrap();
    }

    /// A connection with the guard triggers dropped.
    async fn intruder(&self) -> sqlx::AnyConnection {
        let mut conn = self.raw().await;
        for (table, trigger) in [
            ("ledger_entries", "ledger_entries_no_update"),
            ("ledger_entries", "ledger_entries_no_delete"),
            ("checkpoints", "checkpoints_no_update"),
            ("checkpoints", "checkpoints_no_delete"),
        ] {
            let on = if self.kind == Kind::Postgres {
                format!(" ON {table}")
            } else {
                String::new()
            };
            conn.execute(format!("DROP TRIGGER IF EXISTS {trigger}{on}").as_str())
                .await
                .unwrap();
        }
        conn
    }

    /// A plain connection, outside the ledger.
    pub async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url).await.unwrap()
    }
}

fn pg_server() -> String {
    std::env::var("ISA_GATEWAY_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database on the test PostgreSQL server, created empty and dropped (even with connections
/// still open) when this is dropped.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "isa_gateway_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let server = pg_server();
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/test"))
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is needed at {server} (database `test`; set ISA_GATEWAY_TEST_PG): {e}")
            });
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        admin.close().await.unwrap();
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// What a database failover or an operator's `pg_terminate_backend` does: every connection
    /// to this database is cut. Returns how many.
    pub async fn terminate_connections(&self) -> i64 {
        let mut admin = sqlx::PgConnection::connect(&format!("{}/test", pg_server()))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
        n
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the test's runtime: do the blocking work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&format!("{}/test", pg_server())).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("note: could not drop test database {}", self.name);
        }
    }
}

/// Changes byte 100 of entry `seq`'s canonical bytes: a character of its transfer id.
pub async fn flip_entry_byte(conn: &mut sqlx::AnyConnection, seq: i64) {
    use sqlx::Row;
    let row = sqlx::query("SELECT entry FROM ledger_entries WHERE seq = $1")
        .bind(seq)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let mut bytes: Vec<u8> = row.try_get(0).unwrap();
    bytes[99] ^= 0x01;
    sqlx::query("UPDATE ledger_entries SET entry = $1 WHERE seq = $2")
        .bind(bytes)
        .bind(seq)
        .execute(&mut *conn)
        .await
        .unwrap();
}
