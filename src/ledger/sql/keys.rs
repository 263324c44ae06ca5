//! The subject-index keys' fingerprints (`subject_key_fingerprints`): the first gateway to load a
//! key records its fingerprint; every other one compares its own with it.

use sqlx::Row;

use super::SqlLedger;
use crate::ledger::{KeyFingerprint, LedgerError};

impl SqlLedger {
    pub(super) async fn record_fingerprint(&self, mine: &KeyFingerprint) -> Result<KeyFingerprint, LedgerError> {
        sqlx::query(
            "INSERT INTO subject_key_fingerprints (scope, year, fingerprint, gateway, recorded_at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, year) DO NOTHING",
        )
        .bind(&mine.scope)
        .bind(i64::from(mine.year))
        .bind(&mine.fingerprint)
        .bind(&mine.gateway)
        .bind(mine.recorded_at_us)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT fingerprint, gateway, recorded_at_us FROM subject_key_fingerprints WHERE scope = $1 AND year = $2",
        )
        .bind(&mine.scope)
        .bind(i64::from(mine.year))
        .fetch_one(&self.pool)
        .await?;
        Ok(KeyFingerprint {
            scope: mine.scope.clone(),
            year: mine.year,
            fingerprint: row.try_get("fingerprint")?,
            gateway: row.try_get("gateway")?,
            recorded_at_us: row.try_get("recorded_at_us")?,
        })
    }
}
