//! The ledger's chain catches tampering done directly to the database file.

use isa_gateway::ledger::checkpoint::{CheckpointJson, parse_public_key};
use isa_gateway::ledger::{Entry, merkle, verify_chain};
use serde_json::Value;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Executor};

use crate::backends::flip_entry_byte;
use crate::helpers::{GP_AGREEMENT, TestApp, gp_update};

async fn app_with_three_transfers() -> TestApp {
    three_transfers(TestApp::spawn().await).await
}

/// Three GP updates, each delivered: six entries.
pub(crate) async fn three_transfers(app: TestApp) -> TestApp {
    for _ in 0..3 {
        let (status, body, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
        assert_eq!(status, 202);
        app.settled(body["transfer_id"].as_str().unwrap()).await;
    }
    app
}

/// Rewrites `entries` in the database as a consistent chain from `prev`: every hash recomputed,
/// as an intruder covering their tracks would.
pub(crate) async fn rechain(conn: &mut sqlx::AnyConnection, entries: &mut [Entry], mut prev: [u8; 32]) {
    for e in entries {
        e.prev_hash = prev;
        e.hash = Entry::compute_hash(e.seq, &e.prev_hash, &e.event);
        prev = e.hash;
        sqlx::query("UPDATE ledger_entries SET entry = $1, hash = $2 WHERE seq = $3")
            .bind(Entry::canonical_bytes(e.seq, &e.prev_hash, &e.event))
            .bind(e.hash.to_vec())
            .bind(e.seq)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// What an intruder with the database file could do: drop the guard triggers and run SQL.
async fn tamper(app: &TestApp, sql: &str) {
    let mut conn = intruder(app).await;
    conn.execute(sql).await.unwrap();
    conn.close().await.unwrap();
}

pub(crate) async fn intruder(app: &TestApp) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", app.db_path().display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    for trigger in [
        "ledger_entries_no_update",
        "ledger_entries_no_delete",
        "checkpoints_no_update",
        "checkpoints_no_delete",
    ] {
        conn.execute(format!("DROP TRIGGER IF EXISTS {trigger}").as_str())
            .await
            .unwrap();
    }
    conn
}

/// Changes one byte of entry `seq`.
async fn edit_entry(app: &TestApp, seq: i64) {
    let mut conn = intruder(app).await;
    flip_entry_byte(&mut conn, seq).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_intact_ledger_verifies() {
    let app = app_with_three_transfers().await;
    let report = verify_chain(app.ledger.as_ref()).await.unwrap();
    assert_eq!(report.entries, 6);
    assert_eq!(report.first_break, None);
}

#[tokio::test]
async fn the_ledger_refuses_ordinary_updates() {
    let app = app_with_three_transfers().await;
    let url = format!("sqlite://{}", app.db_path().display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let err = sqlx::query("UPDATE ledger_entries SET kind = 'review' WHERE seq = 1")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = sqlx::query("DELETE FROM ledger_entries WHERE seq = 1")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn an_edited_row_is_detected_at_that_row() {
    let app = app_with_three_transfers().await;
    edit_entry(&app, 3).await;
    let report = verify_chain(app.ledger.as_ref()).await.unwrap();
    let broken = report.first_break.unwrap();
    assert_eq!(broken.seq, 3);
    assert!(broken.problem.contains("edited"), "{}", broken.problem);
}

/// Someone with the file can lift the table's type checks (edit the schema) and store a value of
/// another type: the chain breaks at that row, as for any edit, and the read does not fail.
#[tokio::test]
async fn a_column_of_another_type_is_detected_at_that_row() {
    let app = app_with_three_transfers().await;
    let mut conn = intruder(&app).await;
    conn.execute("PRAGMA writable_schema = ON").await.unwrap();
    conn.execute("UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')') WHERE name = 'ledger_entries'")
        .await
        .unwrap();
    conn.close().await.unwrap();
    tamper(&app, "UPDATE ledger_entries SET recorded_at_us = 'noon' WHERE seq = 3").await;
    let broken = verify_chain(app.ledger.as_ref()).await.unwrap().first_break.unwrap();
    assert_eq!(broken.seq, 3);
    assert!(broken.problem.contains("index columns"), "{}", broken.problem);
    tamper(&app, "UPDATE ledger_entries SET hash = 'not a hash' WHERE seq = 2").await;
    let broken = verify_chain(app.ledger.as_ref()).await.unwrap().first_break.unwrap();
    assert_eq!(broken.seq, 2);
    assert!(broken.problem.contains("edited"), "{}", broken.problem);
}

#[tokio::test]
async fn a_deleted_row_is_detected() {
    let app = app_with_three_transfers().await;
    tamper(&app, "DELETE FROM ledger_entries WHERE seq = 4").await;
    let broken = verify_chain(app.ledger.as_ref()).await.unwrap().first_break.unwrap();
    assert_eq!(broken.seq, 4);
    assert!(broken.problem.contains("missing"), "{}", broken.problem);
}

#[tokio::test]
async fn a_row_rehashed_after_editing_still_breaks_the_link_to_the_next() {
    let app = app_with_three_transfers().await;
    // Swap two rows' contents but keep their sequence numbers: each row's own hash no longer
    // matches its position.
    tamper(
        &app,
        "UPDATE ledger_entries SET transfer_id = CASE seq WHEN 2 THEN (SELECT transfer_id FROM ledger_entries WHERE seq = 4) \
         WHEN 4 THEN (SELECT transfer_id FROM ledger_entries WHERE seq = 2) END WHERE seq IN (2, 4)",
    )
    .await;
    let broken = verify_chain(app.ledger.as_ref()).await.unwrap().first_break.unwrap();
    assert_eq!(broken.seq, 2);
}

#[tokio::test]
async fn the_cli_names_the_first_broken_entry_and_exits_non_zero() {
    let app = app_with_three_transfers().await;
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
            .args(["ledger", "verify", "--config"])
            .arg(&app.config_path)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok: 6 entries"));
    edit_entry(&app, 5).await;
    let broken = verify();
    assert_eq!(broken.status.code(), Some(1));
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(out.contains("ledger entry 5"), "{out}");
}

#[tokio::test]
async fn the_cli_catches_an_edited_listing() {
    let app = app_with_three_transfers().await;
    tamper(&app, "UPDATE transfers SET status = 'refused' WHERE decision_seq = 3").await;
    let o = cli(&app, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("its listing does not match its ledger entries"),
        "{}",
        stdout(&o)
    );
}

// ---- Signed checkpoints over the Merkle tree (issue 5) ----

/// An auditor has a checkpoint signed now, through the API: its answer (checkpoint, public key).
pub(crate) async fn sign_checkpoint(app: &TestApp) -> Value {
    let r = app
        .auditor
        .post(app.url("/v1/ledger/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// `ledger export` of the GP agreement to `name` in the test's folder (with `extra` arguments):
/// the folder, and what the command said.
pub(crate) fn try_export(app: &TestApp, name: &str, extra: &[&str]) -> (std::path::PathBuf, std::process::Output) {
    let out = app.dir.path().join(name);
    let mut args = vec![
        "ledger",
        "export",
        "--agreement",
        GP_AGREEMENT,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = cli(app, &args);
    (out, o)
}

/// Three transfers (six entries) and a checkpoint over all of them, made through the API.
pub(crate) async fn checkpointed() -> (TestApp, CheckpointJson, String) {
    let app = app_with_three_transfers().await;
    let body = sign_checkpoint(&app).await;
    let cp: CheckpointJson = serde_json::from_value(body["checkpoint"].clone()).unwrap();
    assert_eq!(cp.tree_size, 6);
    (app, cp, body["public_key"].as_str().unwrap().to_owned())
}

pub(crate) fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(args)
        .arg("--config")
        .arg(&app.config_path)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

pub(crate) fn stdout(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn proofs_from_the_api_verify_against_the_signed_checkpoint() {
    let (app, cp, public) = checkpointed().await;
    let cp = cp.parse().unwrap();
    assert!(cp.verify(&parse_public_key(&public).unwrap()));
    for seq in 1..=6 {
        let (status, p) = app
            .get(
                &app.auditor,
                &format!("/v1/ledger/proof/inclusion?seq={seq}&tree_size=6"),
            )
            .await;
        assert_eq!(status, 200);
        let leaf: [u8; 32] = hex::decode(p["leaf_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let path: Vec<[u8; 32]> = p["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        merkle::verify_inclusion(&leaf, seq - 1, 6, &path, &cp.root).unwrap();
    }
    // A later tree is consistent with the checkpointed one.
    app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
    let size = app.ledger.tree_size().await;
    let (status, c) = app
        .get(&app.auditor, &format!("/v1/ledger/proof/consistency?from=6&to={size}"))
        .await;
    assert_eq!(status, 200);
    let path: Vec<[u8; 32]> = c["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    let new_root = app.ledger.root(size).await.unwrap();
    merkle::verify_consistency(6, size, &cp.root, &new_root, &path).unwrap();
    let (status, _) = app.get(&app.sender, "/v1/ledger/checkpoint").await;
    assert_eq!(status, 403, "proofs and checkpoints are for auditors");
}

#[tokio::test]
async fn a_truncated_tail_is_caught_by_the_checkpoint() {
    let (app, _, _) = checkpointed().await;
    tamper(&app, "DELETE FROM ledger_entries WHERE seq >= 5").await;
    let o = cli(&app, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("the tail was truncated"), "{}", stdout(&o));
}

#[tokio::test]
async fn a_forged_checkpoint_is_caught() {
    let (app, _, _) = checkpointed().await;
    tamper(
        &app,
        "UPDATE checkpoints SET root = '0000000000000000000000000000000000000000000000000000000000000000'",
    )
    .await;
    let o = cli(&app, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("signature that is not the gateway's"),
        "{}",
        stdout(&o)
    );
}

/// The strongest tampering: history rewritten with every later hash recomputed (the chain is
/// consistent again) and the checkpoint re-signed with the intruder's own key.
#[tokio::test]
async fn rewritten_history_with_a_consistent_chain_is_caught_by_the_signed_checkpoint() {
    let (app, _, _) = checkpointed().await;
    let mut entries = app.ledger.entries_after(0, 100).await.unwrap();
    entries[1].event.sender_system = "someone-else".into();
    let mut conn = intruder(&app).await;
    let genesis_side = entries[0].hash;
    rechain(&mut conn, &mut entries[1..], genesis_side).await;
    // Re-sign a checkpoint over the rewritten tree with another key.
    let leaves: Vec<[u8; 32]> = entries
        .iter()
        .map(|e| Entry::leaf(e.seq, &e.prev_hash, &e.event))
        .collect();
    let intruder = isa_gateway::ledger::signing::CheckpointKey::from_seed(&[0x66; 32]);
    let forged = isa_gateway::ledger::checkpoint::Checkpoint::sign(
        6,
        merkle::root(&leaves),
        Vec::new(),
        jiff::Timestamp::now(),
        &intruder,
    );
    sqlx::query("UPDATE checkpoints SET root = $1, signature = $2, at_us = $3 WHERE tree_size = 6")
        .bind(hex::encode(forged.root))
        .bind(hex::encode(forged.signature))
        .bind(forged.at.as_microsecond())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let o = cli(&app, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("checkpoint at tree size 6"), "{}", stdout(&o));
    // Without the checkpoint the rewrite would have passed: the chain itself is consistent.
    assert_eq!(verify_chain(app.ledger.as_ref()).await.unwrap().first_break, None);
}

#[tokio::test]
async fn an_audit_bundle_verifies_offline_and_fails_after_any_change() {
    let (app, _, public) = checkpointed().await;
    let (out, o) = try_export(&app, "bundle", &[]);
    assert!(o.status.success(), "{}", stdout(&o));
    // Private from creation: a bundle describes every disclosure under the agreement.
    for file in ["entries.jsonl", "proofs.jsonl", "checkpoint.json", "public_key.txt"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let verify = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
            .args(["ledger", "verify-bundle", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = verify(&["--public-key", &public]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("ok: 6 entries"), "{}", stdout(&ok));
    // The database is not needed: delete it.
    std::fs::remove_file(app.db_path()).unwrap();
    assert!(verify(&["--public-key", &public]).status.success());

    // Without a pinned key it refuses to say "ok"; --allow-unpinned checks integrity only, and says so.
    let unpinned = verify(&[]);
    assert!(!unpinned.status.success());
    assert!(stdout(&unpinned).contains("--public-key"), "{}", stdout(&unpinned));
    let integrity = verify(&["--allow-unpinned"]);
    assert!(integrity.status.success(), "{}", stdout(&integrity));
    assert!(stdout(&integrity).contains("NOT proved") && !stdout(&integrity).contains("ok:"));

    // Another organisation's key does not verify it.
    let other = isa_gateway::ledger::checkpoint::public_key_text(
        &isa_gateway::ledger::signing::CheckpointKey::from_seed(&[1; 32]).public(),
    );
    let wrong = verify(&["--public-key", &other]);
    assert!(!wrong.status.success());
    assert!(
        stdout(&wrong).contains("signature does not verify"),
        "{}",
        stdout(&wrong)
    );

    // Change one byte of one entry.
    let entries = out.join("entries.jsonl");
    let text = std::fs::read_to_string(&entries).unwrap();
    let changed = text.replacen("\"tt-case-system\"", "\"tt-case-systen\"", 1);
    assert_ne!(text, changed);
    std::fs::write(&entries, changed).unwrap();
    let broken = verify(&["--public-key", &public]);
    assert!(!broken.status.success());
    assert!(
        stdout(&broken).contains("entry 1: its contents do not match its hash"),
        "{}",
        stdout(&broken)
    );
}

/// Issue 12, attack 1, end to end: history rewritten with a consistent chain (the user who asked
/// changed), every checkpoint row deleted, then a restart. With checkpoints also kept outside the
/// database, the gateway refuses to sign over the rewrite and refuses to start on it, and
/// `ledger verify` fails naming the kept checkpoint, although the chain in the database is
/// consistent and holds no checkpoint to contradict it.
#[tokio::test]
async fn a_rewrite_with_checkpoints_deleted_is_refused_at_restart_by_the_checkpoint_log() {
    let app = TestApp::spawn_with(crate::helpers::Spawn {
        destinations: "[ledger]\ncheckpoint_log = \"checkpoint-log\"\n".into(),
        ..crate::helpers::Spawn::default()
    })
    .await;
    let app = three_transfers(app).await;
    let signed = sign_checkpoint(&app).await;
    let kept = std::fs::read_dir(app.dir.path().join("checkpoint-log"))
        .unwrap()
        .count();
    assert!(kept >= 1, "the checkpoint is also kept outside the database");
    assert!(cli(&app, &["ledger", "verify"]).status.success());

    // The insider: triggers dropped, one entry's user changed, the chain re-hashed from there,
    // the checkpoints deleted. The database is now a consistent ledger with no checkpoint.
    let mut entries = app.ledger.entries_after(0, 100).await.unwrap();
    entries[0].event.user_sub = Some("someone-else".into());
    let mut conn = intruder(&app).await;
    rechain(&mut conn, &mut entries, isa_gateway::ledger::GENESIS).await;
    // The listing too, so that only the kept checkpoint can tell.
    sqlx::query("UPDATE transfers SET user_sub = 'someone-else' WHERE transfer_id = $1")
        .bind(entries[0].event.transfer_id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.execute("DELETE FROM checkpoints").await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        verify_chain(app.ledger.as_ref()).await.unwrap().first_break,
        None,
        "the rewritten chain is consistent in itself"
    );

    // The auditor's check fails, naming the checkpoint kept outside.
    let o = cli(&app, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).to_lowercase().contains("checkpoint"), "{}", stdout(&o));
    // The running gateway writes nothing more onto the rewritten database, and signs nothing
    // over it: asked for a checkpoint, it still answers with the one it signed before.
    let (status, _, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
    assert_eq!(status, 503);
    let r = app
        .auditor
        .post(app.url("/v1/ledger/checkpoints"))
        .send()
        .await
        .unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        again["checkpoint"], signed["checkpoint"],
        "no signature over the rewrite"
    );
    // Nor will a restarted one start on it.
    let config = isa_gateway::app::config::Config::load(&app.config_path, &Default::default()).unwrap();
    let refused = isa_gateway::app::startup::Application::build(config).await;
    let why = refused
        .err()
        .expect("the gateway must refuse to start on a rewritten ledger")
        .to_string();
    assert!(why.contains("checkpoint"), "{why}");
}
