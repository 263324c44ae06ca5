//! The ledger's speed: durable appends per second under concurrency (SQLite, synchronous=FULL,
//! one transaction per append: no group commit yet), and `verify` entries per second (chain,
//! Merkle tree and a checkpoint).
//!
//! Run: `cargo bench --bench ledger` (optionally `-- APPENDS CONCURRENCY VERIFY_ENTRIES`,
//! default 2000 64 200000). Issue 5's targets: 50,000 appends/s on SQLite with group commit,
//! 1,000,000 verified entries/s. Prints figures; asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use isa_gateway::keys::CheckpointKey;
use isa_gateway::ledger::checkpoint::Checkpoint;
use isa_gateway::ledger::{Event, EventKind, Ledger, SqliteLedger, TransferStatus, verify};
use jiff::Timestamp;
use uuid::Uuid;

fn event() -> Event {
    let mut e = Event::new(
        Timestamp::now(),
        Uuid::now_v7(),
        EventKind::Decision,
        TransferStatus::Refused,
        "nvtt-gp-update",
        "tt-case-system",
    );
    e.decision = Some("deny".into());
    e.reason_code = Some("schema_violation".into());
    e.legal_bases = vec!["uk-gdpr/6.1.e".into(), "uk-gdpr/9.2.h".into()];
    e
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let appends = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(64);
    let to_verify = args.get(2).copied().unwrap_or(200_000);

    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.db")).await.expect("ledger"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let ledger = ledger.clone();
        let n = appends / concurrency + usize::from(t < appends % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                ledger.append(event()).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let took = started.elapsed();
    println!(
        "durable appends (SQLite, synchronous=FULL, one commit each, {concurrency} concurrent): {:.0}/s ({appends} in {:.2} s)",
        appends as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );

    let memory = SqliteLedger::in_memory().await.expect("ledger");
    for _ in 0..to_verify {
        memory.append(event()).await.expect("append");
    }
    let key = CheckpointKey::from_seed(&[3; 32]);
    let size = memory.tree_size().await;
    let cp = Checkpoint::sign(size, memory.root(size).await.expect("root"), Timestamp::now(), &key);
    memory.store_checkpoint(&cp).await.expect("checkpoint");
    let started = Instant::now();
    let report = verify(&memory, &key.public(), &mut |_| {}).await.expect("verify");
    let took = started.elapsed();
    assert_eq!(report.first_break, None);
    println!(
        "verify (chain, tree, checkpoint; rows read from SQLite): {:.0} entries/s ({} in {:.2} s)",
        report.entries as f64 / took.as_secs_f64(),
        report.entries,
        took.as_secs_f64()
    );
}
