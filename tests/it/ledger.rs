//! The ledger's chain catches tampering done directly to the database file.

use isa_gateway::ledger::verify_chain;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

use crate::helpers::{GP_AGREEMENT, TestApp, gp_update};

async fn app_with_three_transfers() -> TestApp {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        let (status, body, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
        assert_eq!(status, 202);
        app.settled(body["transfer_id"].as_str().unwrap()).await;
    }
    app
}

/// What an intruder with the database file could do: drop the guard triggers and run SQL.
async fn tamper(app: &TestApp, sql: &str) {
    let url = format!("sqlite://{}", app.db_path().display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
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
    let err = sqlx::query("UPDATE ledger_entries SET status = 'refused' WHERE seq = 1")
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
    tamper(
        &app,
        "UPDATE ledger_entries SET reason_code = 'nothing to see' WHERE seq = 3",
    )
    .await;
    let report = verify_chain(app.ledger.as_ref()).await.unwrap();
    let broken = report.first_break.unwrap();
    assert_eq!(broken.seq, 3);
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
    tamper(
        &app,
        "UPDATE ledger_entries SET sender_system = 'someone-else' WHERE seq = 5",
    )
    .await;
    let broken = verify();
    assert_eq!(broken.status.code(), Some(1));
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(out.contains("ledger entry 5"), "{out}");
}
