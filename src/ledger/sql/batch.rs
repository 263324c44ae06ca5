//! The writer's statements that take many rows at once: the entries of a batch and their
//! effect on the transfers' listing rows, and deliveries and acceptances recorded together.

use std::collections::{HashMap, HashSet};

use super::exec::{Exec, Param, args};
use super::sync::Dialect;
use super::writer::{Effect, Queued};
use crate::ledger::{Enqueue, Event, EventKind, Hash, LedgerError, micros};

/// Rows per multi-row statement (SQLite allows 32,766 parameters, PostgreSQL 65,535).
const ROWS_PER_INSERT: usize = 128;

/// One entry to insert: its place, its bytes, the event it encodes.
pub(super) struct Row<'a> {
    pub(super) seq: i64,
    pub(super) hash: Hash,
    pub(super) bytes: Vec<u8>,
    pub(super) event: &'a Event,
}

/// The writes in `batch` about a transfer no earlier write in it is about, with their positions.
/// Such a write may be applied before the batch's in-order loop, together with others of its
/// kind: the writes before it are about other transfers, and those after it see its effect, as
/// they would in order.
fn first_about_their_transfer(batch: &[Queued]) -> impl Iterator<Item = (usize, &Queued)> {
    let mut touched = HashSet::new();
    batch
        .iter()
        .enumerate()
        .filter(move |(_, request)| touched.insert(request.event.transfer_id))
}

/// Deliveries (without a partner reference to keep) that are the first write about their
/// transfer in `batch`, applied in one statement per chunk: their outbox entries removed if
/// still pending. Returns, by position in the batch, whether each applied; the other writes are
/// applied one by one in order.
pub(super) async fn delivered_together(
    tx: &mut impl Exec,
    dialect: Dialect,
    batch: &[Queued],
) -> Result<HashMap<usize, bool>, LedgerError> {
    let together: Vec<(usize, String)> = first_about_their_transfer(batch)
        .filter(|(_, request)| matches!(request.op, Effect::Delivered { remote: None }))
        .map(|(i, request)| (i, request.event.transfer_id.to_string()))
        .collect();
    let mut applied = HashMap::with_capacity(together.len());
    for chunk in together.chunks(ROWS_PER_INSERT) {
        let sql = delivered_sql(dialect, chunk.len());
        let ids: Vec<Param> = chunk.iter().map(|(_, id)| Param::from(id.as_str())).collect();
        let removed: HashSet<String> = tx
            .fetch(&sql, &ids)
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next().and_then(|v| v.into_text()))
            .collect();
        for (i, id) in chunk {
            applied.insert(*i, removed.contains(id));
        }
    }
    Ok(applied)
}

/// Removes `n` transfers' outbox entries if still pending. On SQLite the unary `+` keeps the
/// planner from walking the pending backlog by its `state` index instead of looking each
/// entry up by its key (a cost that grew with the backlog, per batch).
fn delivered_sql(dialect: Dialect, n: usize) -> String {
    let plus = if dialect == Dialect::Sqlite { "+" } else { "" };
    let params = placeholders(dialect, 0, n);
    format!("DELETE FROM outbox WHERE {plus}state = 'pending' AND transfer_id IN ({params}) RETURNING transfer_id")
}

/// Acceptances that are the first write about their transfer in `batch`, not held and with no
/// idempotency key: their outbox entries inserted together, before the in-order loop. Such an
/// acceptance always applies; a row the database refuses fails the statement, and the batch is
/// then retried one write at a time. Returns their positions in the batch.
pub(super) async fn accepted_together(
    tx: &mut impl Exec,
    dialect: Dialect,
    batch: &[Queued],
) -> Result<HashSet<usize>, LedgerError> {
    let together: Vec<(usize, (&Event, &Enqueue))> = first_about_their_transfer(batch)
        .filter_map(|(i, request)| match &request.op {
            Effect::Accept { enqueue, key: None } if !enqueue.held => Some((i, (&request.event, enqueue))),
            _ => None,
        })
        .collect();
    let rows: Vec<_> = together.iter().map(|(_, row)| *row).collect();
    insert_outbox(tx, dialect, &rows).await?;
    Ok(together.into_iter().map(|(i, _)| i).collect())
}

/// Inserts accepted transfers' outbox entries: pending, or held for a director.
pub(super) async fn insert_outbox(
    tx: &mut impl Exec,
    dialect: Dialect,
    rows: &[(&Event, &Enqueue)],
) -> Result<(), LedgerError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_row_insert(
            dialect,
            "outbox",
            &[
                "transfer_id",
                "destination",
                "agreement_id",
                "message_type",
                "sender_system",
                "recipient",
                "body",
                "state",
                "attempts",
                "created_at_us",
                "next_attempt_at_us",
                "held_by",
            ],
            chunk.len(),
            "",
        );
        let mut params = Vec::with_capacity(chunk.len() * 12);
        for (event, enqueue) in chunk {
            let now = micros(enqueue.now);
            params.extend(args![
                event.transfer_id.to_string(),
                &enqueue.destination,
                &event.agreement_id,
                event.message_type.as_deref().unwrap_or_default(),
                &event.sender_system,
                &event.recipient,
                enqueue.body.as_slice(),
                if enqueue.held { "held" } else { "pending" },
                0_i64,
                now,
                now,
                enqueue.held.then(|| event.user_sub.clone()).flatten(),
            ]);
        }
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

/// `n` parameters numbered from `first + 1`, comma-separated (anonymous `?` for SQLite).
pub(super) fn placeholders(dialect: Dialect, first: usize, n: usize) -> String {
    (1..=n)
        .map(|c| match dialect {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${}", first + c),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO {table} ({columns}) VALUES ($1, …), (…), …` for `rows` rows, then `tail`.
/// SQLite gets anonymous `?` parameters: it looks a numbered one up by name, one at a time,
/// which costs time proportional to the square of the parameters in a statement.
fn multi_row_insert(dialect: Dialect, table: &str, columns: &[&str], rows: usize, tail: &str) -> String {
    let values = values(dialect, columns.len(), rows);
    format!("INSERT INTO {table} ({}) VALUES {values}{tail}", columns.join(", "))
}

/// `($1, …), (…), …`: `rows` rows of `n` parameters.
fn values(dialect: Dialect, n: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(dialect, r * n, n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Inserts the entries, then their effect on the transfers they are about: a decision starts
/// a transfer (and its place in the subject index); deliveries, approvals and follow-ups
/// change it.
pub(super) async fn insert(tx: &mut impl Exec, dialect: Dialect, rows: &[Row<'_>]) -> Result<(), LedgerError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_row_insert(
            dialect,
            "ledger_entries",
            &[
                "seq",
                "recorded_at_us",
                "transfer_id",
                "kind",
                "agreement_id",
                "entry",
                "hash",
            ],
            chunk.len(),
            "",
        );
        let mut params = Vec::with_capacity(chunk.len() * 7);
        for row in chunk {
            params.extend(args![
                row.seq,
                micros(row.event.at),
                row.event.transfer_id.to_string(),
                row.event.kind.as_str(),
                &row.event.agreement_id,
                row.bytes.as_slice(),
                &row.hash[..],
            ]);
        }
        tx.execute(&sql, &params).await?;
    }
    let decisions: Vec<&Row> = rows.iter().filter(|r| r.event.kind == EventKind::Decision).collect();
    for chunk in decisions.chunks(ROWS_PER_INSERT) {
        let sql = multi_row_insert(
            dialect,
            "transfers",
            &[
                "transfer_id",
                "agreement_id",
                "message_type",
                "sender_system",
                "recipient",
                "status",
                "reason_code",
                "created_at_us",
                "updated_at_us",
                "decision_seq",
                "user_sub",
                "review_due_at_us",
                "subject_informed_due",
                "legal_bases",
            ],
            chunk.len(),
            "",
        );
        let mut params = Vec::with_capacity(chunk.len() * 14);
        for row in chunk {
            let e = row.event;
            let at = micros(e.at);
            params.extend(args![
                e.transfer_id.to_string(),
                &e.agreement_id,
                &e.message_type,
                &e.sender_system,
                &e.recipient,
                e.status.as_str(),
                &e.reason_code,
                at,
                at,
                row.seq,
                &e.user_sub,
                e.review_due_at().map(micros),
                &e.subject_informed_due,
                e.permitted().then(|| json_list(&e.legal_bases)),
            ]);
        }
        tx.execute(&sql, &params).await?;
    }
    let subjects: Vec<(&str, String)> = decisions
        .iter()
        .flat_map(|r| {
            let id = r.event.transfer_id.to_string();
            r.event.subject_index.iter().map(move |s| (s.as_str(), id.clone()))
        })
        .collect();
    for chunk in subjects.chunks(ROWS_PER_INSERT) {
        let sql = multi_row_insert(
            dialect,
            "subject_disclosures",
            &["subject_hash", "transfer_id"],
            chunk.len(),
            " ON CONFLICT DO NOTHING",
        );
        let params: Vec<Param> = chunk
            .iter()
            .flat_map(|(subject, id)| args![*subject, id.as_str()])
            .collect();
        tx.execute(&sql, &params).await?;
    }
    // Deliveries and approvals set the transfer's status, together; the last in the batch wins,
    // as it would one by one.
    let mut seen = HashSet::new();
    let mut statuses: Vec<&Event> = rows
        .iter()
        .rev()
        .map(|r| r.event)
        .filter(|e| matches!(e.kind, EventKind::Delivery | EventKind::Approval) && seen.insert(e.transfer_id))
        .collect();
    statuses.reverse();
    for chunk in statuses.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "UPDATE transfers SET status = v.column2, reason_code = v.column3, updated_at_us = v.column4 \
             FROM (VALUES {}) AS v WHERE transfers.transfer_id = v.column1",
            values(dialect, 4, chunk.len())
        );
        let params: Vec<Param> = chunk
            .iter()
            .flat_map(|e| {
                args![
                    e.transfer_id.to_string(),
                    e.status.as_str(),
                    &e.reason_code,
                    micros(e.at),
                ]
            })
            .collect();
        tx.execute(&sql, &params).await?;
    }
    for row in rows {
        let e = row.event;
        let update = match e.kind {
            EventKind::Review => {
                "UPDATE transfers SET reviewed_at_us = $1 WHERE transfer_id = $2 AND reviewed_at_us IS NULL"
            }
            EventKind::Notification => {
                "UPDATE transfers SET subject_informed_at_us = $1 WHERE transfer_id = $2 \
                 AND subject_informed_at_us IS NULL"
            }
            _ => continue,
        };
        tx.execute(update, &args![micros(e.at), e.transfer_id.to_string()])
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{delivered_sql, multi_row_insert};
    use crate::ledger::sql::sync::Dialect;

    /// The plan SQLite makes for `sql` on a migrated ledger.
    fn plan(sql: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(crate::ledger::sql::SqlLedger::sqlite(&path)).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = statement.query_map((), |row| row.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn deliveries_find_their_outbox_entries_by_key_not_by_scanning_the_backlog() {
        let sql = delivered_sql(Dialect::Sqlite, 3).replacen('?', "'a'", 3);
        let plan = plan(&sql);
        assert!(plan.contains("sqlite_autoindex_outbox_1"), "{plan}");
    }

    #[test]
    fn multi_row_insert_numbers_parameters_row_by_row() {
        assert_eq!(
            multi_row_insert(Dialect::Postgres, "t", &["a", "b"], 2, " ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            multi_row_insert(Dialect::Sqlite, "t", &["a", "b"], 2, ""),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
