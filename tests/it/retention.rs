//! Retention of the subject index (issue 14, item 6): once an agreement's retention period for a
//! year has passed, that year's subject-index key is destroyed (crypto-shredding). Subject
//! access then no longer finds those disclosures, the ledger still verifies, and the destruction
//! is itself in the ledger. Through the real API, the real CLI and the real key files.

use serde_json::{Value, json};

use crate::helpers::{TestApp, fixture, gp_update, http_client_as, pki, token};
use crate::ledger::{cli, stdout};
use isa_gateway::ledger::EventKind;

async fn found(app: &TestApp, nhs: &str) -> Vec<String> {
    let dpo = http_client_as(&pki().auditor, &token("daphne", &["dpo"]));
    let r = dpo
        .post(app.url("/v1/subject-disclosures"))
        .json(&json!({"nhs_number": nhs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    answer["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["agreement_id"].as_str().unwrap().to_owned())
        .collect()
}

// Multi-threaded: the CLI runs as another process while this one's gateway keeps delivering, and
// a blocked test thread must not hold the gateway's open transaction (and SQLite's write lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_retention_period_a_years_disclosures_can_no_longer_be_linked_to_the_person() {
    // The test clock: 2026-06-01. A GP update (kept 8 years) and a LADO referral (kept 10 years)
    // about the same child.
    let app = TestApp::spawn().await;
    let lado = fixture("lado_referral", "valid", "01");
    let nhs = lado["child"]["nhs_number"].as_str().unwrap().to_owned();
    let mut gp = gp_update();
    gp["nhs_number"] = json!(nhs);
    let (s1, b1, _) = app.post("nvtt-gp-update", "gp_update", &gp).await;
    let lead = http_client_as(&pki().sender, &token("sam", &["safeguarding_lead"]));
    let body = serde_json::to_vec(&json!({"message_type": "lado_referral", "payload": lado})).unwrap();
    let (s2, b2, _) = app.post_raw(&lead, "nvtt-lado-referral", body).await;
    assert_eq!((s1, s2), (202, 202), "{b1} {b2}");
    assert_eq!(found(&app, &nhs).await, ["nvtt-gp-update", "nvtt-lado-referral"]);

    // Listing only: what is due as of a date, and nothing destroyed without --destroy.
    let listed = cli(&app, &["retention", "--as-of", "2035-01-01T00:00:00Z"]);
    assert!(listed.status.success(), "{}", stdout(&listed));
    let text = stdout(&listed);
    assert!(
        text.contains("nvtt-gp-update: live from 2026; retention 8 years; 2026 goes on 2035-01-01; DUE"),
        "{text}"
    );
    assert!(
        text.contains("nvtt-lado-referral: live from 2026; retention 10 years; 2026 goes on 2037-01-01\n"),
        "{text}"
    );
    assert!(text.contains("(nothing destroyed: run with --destroy)"), "{text}");
    assert_eq!(found(&app, &nhs).await.len(), 2);

    // A day short of the GP update's period: nothing of 2026 is due.
    let early = cli(&app, &["retention", "--as-of", "2034-12-31T23:59:59Z", "--destroy"]);
    assert!(early.status.success(), "{}", stdout(&early));
    assert!(!stdout(&early).contains("–2026"), "{}", stdout(&early));

    // From 1 January 2035 the GP agreement's 2026 key goes; the LADO referral's stays.
    let run = cli(&app, &["retention", "--as-of", "2035-01-01T00:00:00Z", "--destroy"]);
    assert!(run.status.success(), "{}", stdout(&run));
    assert!(
        stdout(&run).contains("destroyed: nvtt-gp-update 2026–2026"),
        "{}",
        stdout(&run)
    );
    assert_eq!(found(&app, &nhs).await, ["nvtt-lado-referral"]);
    let seed_path = app.dir.path().join("keys/index/subject/nvtt-gp-update.key");
    let seed = std::fs::read_to_string(&seed_path).unwrap();
    assert!(seed.starts_with("2027 "), "the seed is now 2027's key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&seed_path), 0o600);
        assert_eq!(mode(seed_path.parent().unwrap()), 0o700);
    }

    // Run again: nothing more is due, nothing more recorded.
    let again = cli(&app, &["retention", "--as-of", "2035-01-01T00:00:00Z", "--destroy"]);
    assert!(stdout(&again).contains("0 scope(s) destroyed"), "{}", stdout(&again));

    // The destruction is in the ledger, with the agreement's version and no personal data; the
    // ledger (chain, tree, listings and subject index) still verifies.
    let entries = app.entries().await;
    let events: Vec<_> = entries
        .iter()
        .map(|e| &e.event)
        .filter(|e| e.kind == EventKind::Retention)
        .collect();
    assert!(events.iter().any(|e| {
        e.agreement_id == "nvtt-gp-update"
            && e.reason_code.as_deref() == Some("subject_index_keys_destroyed")
            && e.agreement_hash.is_some()
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("2026") && d.contains("retention 8 years"))
    }));
    assert!(!serde_json::to_string(&events).unwrap().contains(&nhs));
    let verify = cli(&app, &["ledger", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));

    // Subject access that cannot find the seeds says so; it never answers "nothing found" (here a
    // shell without the gateway's ISA_GATEWAY_SUBJECT_INDEX_DIR, looking in an empty folder).
    let elsewhere = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["subject-disclosures", "--by", "daphne", "--config"])
        .arg(&app.config_path)
        .env("RUST_LOG", "error")
        .env("ISA_GATEWAY_SUBJECT_INDEX_DIR", elsewhere.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "{nhs}").unwrap();
    }
    let lost = child.wait_with_output().unwrap();
    assert!(!lost.status.success(), "{}", stdout(&lost));
    assert!(stdout(&lost).contains("subject-index seeds"), "{}", stdout(&lost));
    assert!(!stdout(&lost).contains(&nhs));

    // Two years on, the LADO referral's period has passed too: the person is no longer findable.
    let later = cli(&app, &["retention", "--as-of", "2037-01-01T00:00:00Z", "--destroy"]);
    assert!(
        stdout(&later).contains("destroyed: nvtt-lado-referral 2026–2026"),
        "{}",
        stdout(&later)
    );
    assert!(found(&app, &nhs).await.is_empty());
    let verify = cli(&app, &["ledger", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

/// The running gateway applies retention itself at start-up (and hourly after): a gateway whose
/// clock is past the GP agreement's period destroys the old year's key before serving.
#[tokio::test]
async fn the_gateway_destroys_what_is_due_at_start_up() {
    let app = TestApp::spawn().await;
    let mut gp = gp_update();
    gp["nhs_number"] = json!("9434765919");
    let (status, _, _) = app.post("nvtt-gp-update", "gp_update", &gp).await;
    assert_eq!(status, 202);
    let keys = app.dir.path().join("keys");
    // Another gateway on the same database and keys, its clock in 2036.
    let later = TestApp::spawn_with(crate::helpers::Spawn {
        clock: isa_gateway::platform::clock::Clock::Fixed(crate::helpers::at("2036-02-01T00:00:00Z")),
        database_url: format!("sqlite://{}", app.db_path().display()),
        keys_dir: Some(keys.clone()),
        ..crate::helpers::Spawn::default()
    })
    .await;
    // The seed is rewritten after the ledger records the destruction: wait for the file.
    let seed_file = keys.join("index/subject/nvtt-gp-update.key");
    let mut seed = String::new();
    for _ in 0..200 {
        seed = std::fs::read_to_string(&seed_file).unwrap();
        if seed.starts_with("2028 ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seed.starts_with("2028 "), "{}", &seed[..5]);
    assert!(
        later
            .entries()
            .await
            .iter()
            .any(|e| e.event.kind == EventKind::Retention && e.event.agreement_id == "nvtt-gp-update"),
        "the retention run at start-up recorded the GP agreement's destruction"
    );
    assert!(found(&app, "9434765919").await.is_empty());
}

/// Gateways sharing a database must share their subject-index seeds, or subject access misses
/// what the others indexed (and retention destroys nothing of theirs). A second gateway started
/// with a keys folder of its own (its development profile makes new seeds) refuses to start,
/// naming the rule; one sharing the folder starts.
#[tokio::test]
async fn a_gateway_with_subject_index_seeds_of_its_own_will_not_start_on_a_shared_database() {
    let app = TestApp::spawn().await;
    let mut gp = gp_update();
    gp["nhs_number"] = json!("9434765919");
    assert_eq!(app.post("nvtt-gp-update", "gp_update", &gp).await.0, 202);

    let own_keys = tempfile::tempdir().unwrap();
    let mut config = isa_gateway::app::config::Config::load(&app.config_path, &Default::default()).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.keys_dir = own_keys.path().to_owned();
    match isa_gateway::app::startup::Application::build(config).await {
        Ok(_) => panic!("a gateway with seeds of its own started on the shared database"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("is not the one gateway"), "{text}");
            assert!(text.contains("share one copy of index/subject"), "{text}");
        }
    }

    let mut shared = isa_gateway::app::config::Config::load(&app.config_path, &Default::default()).unwrap();
    shared.listen = "127.0.0.1:0".parse().unwrap();
    assert!(isa_gateway::app::startup::Application::build(shared).await.is_ok());
    // The first gateway's disclosure is still found.
    assert_eq!(found(&app, "9434765919").await, ["nvtt-gp-update"]);
}
