//! The console's sessions: a table beside the ledger (not in it). The cookie holds a random id;
//! the table holds only its SHA-256, so whoever reads the database cannot sign in as anyone.

use jiff::Timestamp;
use sqlx::Row;

use super::sync::timestamp;
use crate::ledger::{LedgerError, micros};

/// A signed-in person, as the console keeps them between requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub issuer: String,
    pub sub: String,
    /// The display name the identity provider gave (shown in the page header only).
    pub name: String,
    /// The roles granted at sign-in, space-separated codes.
    pub roles: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub created: Timestamp,
    pub seen: Timestamp,
}

/// Where sessions are kept: the ledger's database, its own table.
#[derive(Clone)]
pub struct SessionStore {
    pub(super) pool: sqlx::AnyPool,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}

impl SessionStore {
    pub async fn put(&self, id_sha256: &str, s: &StoredSession) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, issuer, sub, name, roles, csrf, created_at_us, seen_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id_sha256)
        .bind(&s.issuer)
        .bind(&s.sub)
        .bind(&s.name)
        .bind(&s.roles)
        .bind(&s.csrf)
        .bind(micros(s.created))
        .bind(micros(s.seen))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id_sha256: &str) -> Result<Option<StoredSession>, LedgerError> {
        let row = sqlx::query(
            "SELECT issuer, sub, name, roles, csrf, created_at_us, seen_at_us FROM console_sessions \
             WHERE id_sha256 = $1",
        )
        .bind(id_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredSession {
                issuer: r.try_get("issuer")?,
                sub: r.try_get("sub")?,
                name: r.try_get("name")?,
                roles: r.try_get("roles")?,
                csrf: r.try_get("csrf")?,
                created: timestamp(0, r.try_get("created_at_us")?)?,
                seen: timestamp(0, r.try_get("seen_at_us")?)?,
            })
        })
        .transpose()
    }

    pub async fn touch(&self, id_sha256: &str, seen: Timestamp) -> Result<(), LedgerError> {
        sqlx::query("UPDATE console_sessions SET seen_at_us = $1 WHERE id_sha256 = $2")
            .bind(micros(seen))
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn remove(&self, id_sha256: &str) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session idle since `idle_before` or begun before `created_before`.
    pub async fn expire(&self, idle_before: Timestamp, created_before: Timestamp) -> Result<u64, LedgerError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE seen_at_us < $1 OR created_at_us < $2")
            .bind(micros(idle_before))
            .bind(micros(created_before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
