//! The ledger's speed: durable appends per second under concurrency, on SQLite
//! (synchronous=FULL) and on PostgreSQL, with group commit; and `verify` entries per second
//! (chain, Merkle tree and a checkpoint, read back from a SQLite file).
//!
//! Run: `cargo bench --bench ledger` (optionally `-- APPENDS CONCURRENCY VERIFY_ENTRIES`,
//! default 100000 1024 1000000). PostgreSQL is found at `ISA_GATEWAY_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432`); the bench makes its own database and drops it.
//! Issue 5's targets: 50,000 appends/s on SQLite, 10,000/s on PostgreSQL, 1,000,000 verified
//! entries/s. Prints figures; asserts nothing but correctness.

use std::sync::Arc;
use std::time::Instant;

use isa_gateway::ledger::checkpoint::Checkpoint;
use isa_gateway::ledger::signing::CheckpointKey;
use isa_gateway::ledger::{Event, EventKind, Ledger, SqlLedger, TransferStatus, verify};
use jiff::Timestamp;
use sqlx::{Connection, Executor};
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
    e.decision = Some(isa_gateway::ledger::DecisionKind::Deny);
    e.message_type = Some("gp_update".into());
    e.recipient = Some("Y99001".into());
    e.reason_code = Some("schema_violation".into());
    e.legal_bases = vec!["uk-gdpr/6.1.e".into(), "uk-gdpr/9.2.h".into()];
    e.received_sha256 = Some("ab".repeat(32));
    e
}

/// `appends` appends from `concurrency` tasks at once; returns appends per second.
async fn appends_per_second(ledger: Arc<SqlLedger>, appends: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let ledger = ledger.clone();
            let n = appends / concurrency + usize::from(t < appends % concurrency);
            tokio::spawn(async move {
                for _ in 0..n {
                    ledger.append(event()).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    appends as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let appends = args.first().copied().unwrap_or(100_000);
    let concurrency = args.get(1).copied().unwrap_or(1024);
    let to_verify = args.get(2).copied().unwrap_or(1_000_000);

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Arc::new(SqlLedger::sqlite(&dir.path().join("ledger.db")).await.expect("ledger"));
    let rate = appends_per_second(sqlite.clone(), appends, concurrency).await;
    println!("durable appends, SQLite (WAL, synchronous=FULL), {concurrency} concurrent: {rate:.0}/s ({appends})");

    // The same with checkpoints signed as the gateway signs them, but far more often (every 200
    // ms, or every 10,000 entries) and each also written to a checkpoint log outside the database (file and folder
    // synced), checked against the log's latest before signing.
    let logged = Arc::new(SqlLedger::sqlite(&dir.path().join("logged.db")).await.expect("ledger"));
    let log_dir = dir.path().join("checkpoint-log");
    std::fs::create_dir_all(&log_dir).expect("log folder");
    let checkpointer = Arc::new(
        isa_gateway::audit::checkpointer::Checkpointer::new(
            logged.clone(),
            CheckpointKey::from_seed(&[4; 32]),
            isa_gateway::platform::clock::Clock::System,
            10_000,
            std::time::Duration::from_millis(200),
            isa_gateway::audit::checkpointer::Publication {
                origin: "isa-gateway".into(),
                log: Some(isa_gateway::audit::checkpoint_log::CheckpointLog::new(
                    &log_dir,
                    "isa-gateway",
                )),
                witnesses: Vec::new(),
            },
        )
        .await
        .expect("checkpointer"),
    );
    let running = tokio::spawn(checkpointer.clone().run());
    let rate = appends_per_second(logged.clone(), appends, concurrency).await;
    running.abort();
    let kept = std::fs::read_dir(&log_dir).expect("log").count();
    println!(
        "durable appends, SQLite, checkpoints signed and written to the checkpoint log meanwhile, {concurrency} concurrent: \
         {rate:.0}/s ({appends}; {kept} checkpoints in the log)"
    );
    drop(logged);

    let server = std::env::var("ISA_GATEWAY_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("isa_gateway_bench_{}", std::process::id());
    let admin = || async {
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/test"))
            .await
            .expect("PostgreSQL");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .expect("drop");
        admin
    };
    admin()
        .await
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create");
    let pg = Arc::new(SqlLedger::open(&format!("{server}/{name}")).await.expect("ledger"));
    let rate = appends_per_second(pg.clone(), appends, concurrency).await;
    println!("durable appends, PostgreSQL (synchronous_commit on), {concurrency} concurrent: {rate:.0}/s ({appends})");
    drop(pg);
    admin().await;

    // Verify: fill a file ledger to `to_verify` entries, checkpoint it, and verify from a
    // fresh handle (as `isa-gateway ledger verify` does).
    let have = sqlite.tree_size().await as usize;
    if to_verify > have {
        appends_per_second(sqlite.clone(), to_verify - have, concurrency).await;
    }
    // A hundred checkpoints along the way, as a gateway signing every 1% of the ledger would
    // have: verify's cost must not grow with their number.
    let key = CheckpointKey::from_seed(&[3; 32]);
    let size = sqlite.tree_size().await;
    // Each checkpoint signs the agreements' heads at its size: read the entries once for them.
    let wanted: Vec<u64> = (1..=100u64).map(|k| size * k / 100).filter(|at| *at > 0).collect();
    let mut heads = isa_gateway::ledger::heads::Heads::default();
    let mut lines_at = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let page = sqlite.raw_entries_after(after, 10_000).await.expect("entries");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for raw in &page {
            heads.record(&raw.agreement_id, raw.at_us, &raw.hash);
            if wanted.contains(&(raw.seq as u64)) {
                lines_at.insert(raw.seq as u64, heads.lines());
            }
        }
    }
    for at in wanted {
        let lines = lines_at.remove(&at).expect("heads at the size");
        let cp = Checkpoint::sign(at, sqlite.root(at).await.expect("root"), lines, Timestamp::now(), &key);
        sqlite.store_checkpoint(&cp).await.expect("checkpoint");
    }
    drop(sqlite);
    let fresh = SqlLedger::sqlite(&dir.path().join("ledger.db")).await.expect("ledger");
    let started = Instant::now();
    let (mut after, mut read) = (0, 0);
    loop {
        let page = fresh.raw_entries_after(after, 2_000).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.seq;
        read += page.len();
    }
    println!(
        "reading alone (pages of 2,000 from SQLite): {:.0} entries/s",
        read as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = verify(&fresh, &key.public(), &mut |_| {}).await.expect("verify");
    let took = started.elapsed();
    assert_eq!(report.first_break, None);
    println!(
        "verify (chain, tree, {} checkpoints; read from a SQLite file): {:.0} entries/s ({} in {:.2} s)",
        report.checkpoints,
        report.entries as f64 / took.as_secs_f64(),
        report.entries,
        took.as_secs_f64()
    );
    // `ledger verify` goes on to re-derive every listing and the subject index from the entries.
    let started = Instant::now();
    let listings = isa_gateway::ledger::verify_transfers(&fresh).await.expect("listings");
    let listing_took = started.elapsed();
    assert_eq!(listings, None);
    println!(
        "verify with the listing and subject-index check (as `ledger verify`): {:.0} entries/s (the check alone {:.2} s)",
        report.entries as f64 / (took + listing_took).as_secs_f64(),
        listing_took.as_secs_f64()
    );
}
