//! Witnesses' cosignatures on checkpoints: a table of their own, append-only.

use sqlx::Row;

use super::SqlLedger;
use super::sync::{corrupt, parse_hash};
use crate::ledger::cosignature::Cosignature;
use crate::ledger::{LedgerError, StoredCosignature};

fn size(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqlLedger {
    pub(super) async fn insert_cosignature(&self, c: &StoredCosignature) -> Result<bool, LedgerError> {
        let done = sqlx::query(
            "INSERT INTO cosignatures (tree_size, root, witness, key_id, time_s, signature, agreements) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tree_size, witness, key_id, signature) DO NOTHING",
        )
        .bind(size(c.tree_size))
        .bind(hex::encode(c.root))
        .bind(&c.cosignature.name)
        .bind(hex::encode(c.cosignature.key_id))
        .bind(size(c.cosignature.time))
        .bind(hex::encode(c.cosignature.signature))
        .bind(c.agreements.map(hex::encode))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn select_cosignatures(&self, min_tree_size: u64) -> Result<Vec<StoredCosignature>, LedgerError> {
        let rows = sqlx::query(
            "SELECT tree_size, root, witness, key_id, time_s, signature, agreements FROM cosignatures \
             WHERE tree_size >= $1 ORDER BY tree_size, witness, key_id, time_s, signature",
        )
        .bind(size(min_tree_size))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("tree_size")?;
                let bytes = |column: &str| -> Result<Vec<u8>, LedgerError> {
                    hex::decode(r.try_get::<String, _>(column)?).map_err(|_| corrupt(n, "cosignature"))
                };
                let time: i64 = r.try_get("time_s")?;
                Ok(StoredCosignature {
                    tree_size: u64::try_from(n).map_err(|_| corrupt(n, "cosignature tree size"))?,
                    root: parse_hash(n, &r.try_get::<String, _>("root")?)?,
                    agreements: r
                        .try_get::<Option<String>, _>("agreements")?
                        .map(|d| parse_hash(n, &d))
                        .transpose()?,
                    cosignature: Cosignature {
                        name: r.try_get("witness")?,
                        key_id: bytes("key_id")?
                            .try_into()
                            .map_err(|_| corrupt(n, "cosignature key id"))?,
                        time: u64::try_from(time).map_err(|_| corrupt(n, "cosignature time"))?,
                        signature: bytes("signature")?
                            .try_into()
                            .map_err(|_| corrupt(n, "cosignature signature"))?,
                    },
                })
            })
            .collect()
    }
}
