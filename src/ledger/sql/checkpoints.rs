//! Signed checkpoints' rows, and what an audit bundle reads to prove it complete: one agreement's
//! entry hashes, and its entries between two sequence numbers.

use sqlx::Row;

use super::SqlLedger;
use super::sync::{RAW_COLUMNS, corrupt, parse_hash, parse_lines, raw_from_row, timestamp};
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::heads::Heads;
use crate::ledger::{Entry, Hash, Ledger as _, LedgerError, head_input, micros};

impl SqlLedger {
    pub(super) async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, root, at_us, signature, agreements) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(i64::try_from(cp.tree_size).unwrap_or(i64::MAX))
        .bind(hex::encode(cp.root))
        .bind(micros(cp.at))
        .bind(hex::encode(cp.signature))
        .bind(
            cp.agreements
                .as_ref()
                .map(|l| l.iter().map(hex::encode).collect::<String>()),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn select_checkpoints(&self) -> Result<Vec<Checkpoint>, LedgerError> {
        let rows =
            sqlx::query("SELECT tree_size, root, at_us, signature, agreements FROM checkpoints ORDER BY tree_size")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.try_get("tree_size")?;
                let signature: [u8; 64] = hex::decode(r.try_get::<String, _>("signature")?)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt(size, "checkpoint signature"))?;
                Ok(Checkpoint {
                    tree_size: u64::try_from(size).map_err(|_| corrupt(size, "checkpoint size"))?,
                    root: parse_hash(size, &r.try_get::<String, _>("root")?)?,
                    at: timestamp(size, r.try_get("at_us")?)?,
                    agreements: r
                        .try_get::<Option<String>, _>("agreements")?
                        .map(|text| parse_lines(size, &text))
                        .transpose()?,
                    signature,
                })
            })
            .collect()
    }

    /// Every agreement's head line at `size` entries: the chain's own when it is of that size,
    /// otherwise worked out again from the entries' bytes up to it.
    pub(super) async fn heads_at_size(&self, size: u64) -> Result<Vec<Hash>, LedgerError> {
        {
            let chain = self.chain().await?;
            if let Some(lines) = chain.heads_at(size) {
                return Ok(lines);
            }
            if (chain.leaves.len() as u64) < size {
                return Err(LedgerError::BeyondTree(size));
            }
        }
        let mut heads = Heads::default();
        let mut after = 0i64;
        while u64::try_from(after).unwrap_or(u64::MAX) < size {
            let left = size - u64::try_from(after).unwrap_or(0);
            let page = self
                .raw_entries_after(after, u32::try_from(left.min(10_000)).unwrap_or(10_000))
                .await?;
            let Some(last) = page.last() else {
                return Err(LedgerError::BeyondTree(size));
            };
            for raw in &page {
                let (agreement, at_us, hash) = head_input(&raw.bytes)
                    .ok_or_else(|| corrupt(raw.seq, "its stored bytes are not a ledger entry"))?;
                heads.record(agreement, at_us, &hash);
            }
            after = last.seq;
        }
        Ok(heads.lines())
    }

    pub(super) async fn select_agreement_hashes(
        &self,
        agreement_id: &str,
        upto: u64,
    ) -> Result<Vec<(i64, i64, Hash)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT seq, recorded_at_us, hash FROM ledger_entries WHERE agreement_id = $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(agreement_id)
        .bind(i64::try_from(upto).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                let hash: Vec<u8> = r.try_get("hash")?;
                Ok((
                    seq,
                    r.try_get("recorded_at_us")?,
                    hash.try_into().map_err(|_| corrupt(seq, "hash is not 32 bytes"))?,
                ))
            })
            .collect()
    }

    pub(super) async fn select_agreement_entries(
        &self,
        agreement_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Entry>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {RAW_COLUMNS} FROM ledger_entries WHERE agreement_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
        ))
        .bind(agreement_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| raw_from_row(r)?.decode()).collect()
    }
}
