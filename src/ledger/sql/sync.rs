//! Reading entries from the database, and taking in what other gateways appended: the chain
//! this process holds is checked against the database's head, then brought up to date.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

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
pub(super) async fn check_head(conn: &mut sqlx::AnyConnection, chain: &Chain) -> Result<(), LedgerError> {
    if chain.seq == 0 {
        return Ok(());
    }
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM ledger_entries WHERE seq = $1")
        .bind(chain.seq)
        .fetch_optional(conn)
        .await?;
    if stored.as_deref() == Some(&chain.hash[..]) {
        Ok(())
    } else {
        Err(LedgerError::HeadMismatch(chain.seq))
    }
}

/// Takes into `chain` every committed entry after its head (appended by another gateway, or
/// not yet loaded). Entries are taken as stored: judging them is `verify`'s work, and it must
/// be able to open a tampered ledger to report on it.
pub(super) async fn catch_up(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    chain: &mut Chain,
) -> Result<(), LedgerError> {
    loop {
        let page = raw_after(conn, dialect, chain.seq, 10_000).await?;
        if page.is_empty() {
            return Ok(());
        }
        for raw in &page {
            chain.adopt(raw)?;
        }
    }
}

pub(super) const RAW_COLUMNS: &str = "seq, entry, hash, transfer_id, kind, agreement_id, recorded_at_us";

pub(super) async fn raw_after(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    after: i64,
    limit: u32,
) -> Result<Vec<RawEntry>, LedgerError> {
    if dialect == Dialect::Sqlite {
        return raw_page_sqlite(conn, after, limit).await;
    }
    let rows = sqlx::query(&format!(
        "SELECT {RAW_COLUMNS} FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(raw_from_row).collect()
}

/// SQLite: a page of entries as one value, because the driver's cost is per row (a channel
/// hand-off and several allocations), several times SQLite's own. Each entry is framed as
/// `seq,at,L1,L2,L3,L4,L5,` in decimal, then transfer_id, kind, agreement_id, hash and entry,
/// of those byte lengths: no byte of the stored values is interpreted while framing.
async fn raw_page_sqlite(conn: &mut sqlx::AnyConnection, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(group_concat(\
           printf('%d,%d,%d,%d,%d,%d,%d,', seq, recorded_at_us, length(CAST(transfer_id AS BLOB)), \
             length(CAST(kind AS BLOB)), length(CAST(agreement_id AS BLOB)), length(CAST(hash AS BLOB)), length(CAST(entry AS BLOB))) \
           || transfer_id || kind || agreement_id || hash || entry, '' ORDER BY seq) AS BLOB) AS page \
         FROM (SELECT * FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2)",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_one(conn)
    .await?;
    let count: i64 = row.try_get("n")?;
    let page: Option<Vec<u8>> = row.try_get("page")?;
    let entries =
        parse_page(page.as_deref().unwrap_or_default()).ok_or_else(|| corrupt(after + 1, "unreadable page"))?;
    if entries.len() as i64 != count {
        return Err(corrupt(after + 1, "a page's entries do not match its rows"));
    }
    Ok(entries)
}

/// Splits a page made by [`raw_page_sqlite`].
fn parse_page(mut page: &[u8]) -> Option<Vec<RawEntry>> {
    fn number(page: &mut &[u8]) -> Option<i64> {
        let end = page.iter().position(|&b| b == b',')?;
        let n = std::str::from_utf8(&page[..end]).ok()?.parse().ok()?;
        *page = &page[end + 1..];
        Some(n)
    }
    fn take<'a>(page: &mut &'a [u8], n: i64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        if page.len() < n {
            return None;
        }
        let (v, rest) = page.split_at(n);
        *page = rest;
        Some(v)
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    let mut entries = Vec::new();
    while !page.is_empty() {
        let [seq, at_us, l_transfer, l_kind, l_agreement, l_hash, l_entry] = [(); 7].map(|()| number(&mut page));
        let transfer_id = text(take(&mut page, l_transfer?)?)?;
        let kind = text(take(&mut page, l_kind?)?)?;
        let agreement_id = text(take(&mut page, l_agreement?)?)?;
        let hash = take(&mut page, l_hash?)?;
        let bytes = take(&mut page, l_entry?)?.to_vec();
        entries.push(RawEntry {
            seq: seq?,
            bytes,
            // A stored hash of the wrong length cannot match: `verify` reports it as edited.
            hash: hash.try_into().unwrap_or([0; 32]),
            transfer_id,
            kind,
            agreement_id,
            at_us: at_us?,
        });
    }
    Some(entries)
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

#[cfg(test)]
mod tests {
    use super::parse_page;

    #[test]
    fn pages_split_by_their_lengths_and_refuse_anything_else() {
        let mut page = b"7,1700,3,8,1,32,2,".to_vec();
        page.extend_from_slice(b"t,kdecision");
        page.extend_from_slice(b"a");
        page.extend_from_slice(&[1; 32]);
        page.extend_from_slice(b",,");
        let entries = parse_page(&page).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            (e.seq, e.at_us, e.transfer_id.as_str(), e.kind.as_str()),
            (7, 1700, "t,k", "decision")
        );
        assert_eq!(
            (e.agreement_id.as_str(), e.hash, e.bytes.as_slice()),
            ("a", [1; 32], &b",,"[..])
        );
        for bad in [&page[..page.len() - 1], b"1,2,3", b"x,1,1,1,1,1,1,", b"1,1,-1,0,0,0,0,"] {
            assert!(parse_page(bad).is_none());
        }
        assert!(parse_page(b"").unwrap().is_empty());
    }
}
