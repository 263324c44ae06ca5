//! Delivery that loses nothing, with real receivers that are down, fail, hang or refuse.

use std::time::Duration;

use isa_gateway::ledger::{EventKind, TransferStatus};
use serde_json::{Value, json};

use crate::helpers::{
    Receiver, ReceiverOpts, Spawn, TestApp, free_port, gp_agreement_variant, gp_update, https_destination,
    post_accepted,
};

fn over_https() -> (String, String) {
    gp_agreement_variant("gp-over-https", |t| {
        t.replace("destination = \"y99001-gp-drop\"", "destination = \"gp-https\"")
    })
}

async fn app_for(destination: String) -> TestApp {
    TestApp::spawn_with(Spawn {
        agreements: vec![over_https()],
        destinations: destination,
        ..Spawn::default()
    })
    .await
}

async fn send(app: &TestApp) -> String {
    let (status, body, _) = app.post("gp-over-https", "gp_update", &gp_update()).await;
    assert_eq!(status, 202, "{body}");
    body["transfer_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_receiver_that_is_down_then_comes_up_gets_every_transfer_once() {
    let port = free_port();
    let mut destination = https_destination("gp-https", port);
    destination = destination.replace("max_attempts = 3", "max_attempts = 1000");
    let app = app_for(destination).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(send(&app).await);
    }
    // Nothing can arrive while the receiver is down; the transfers wait, retrying.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, first) = app.get(&app.auditor, &format!("/v1/transfers/{}", ids[0])).await;
    assert!(
        first["status"] == "retrying" || first["status"] == "accepted",
        "{first}"
    );

    let receiver = Receiver::start_with(ReceiverOpts {
        port: Some(port),
        ..ReceiverOpts::default()
    })
    .await;
    for id in &ids {
        assert_eq!(app.settled(id).await["status"], "delivered");
    }
    let mut received = receiver.ids();
    received.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(received, expected, "each transfer arrived exactly once");
    let entries = app.entries().await;
    for id in &ids {
        let delivered = entries
            .iter()
            .filter(|e| e.event.transfer_id.to_string() == *id && e.event.status == TransferStatus::Delivered)
            .count();
        assert_eq!(delivered, 1);
    }
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_then_dead_letters() {
    let receiver = Receiver::start_with(ReceiverOpts {
        delay: Duration::from_secs(5),
        ..ReceiverOpts::default()
    })
    .await;
    let app = app_for(
        receiver
            .destination("gp-https")
            .replace("max_attempts = 3", "max_attempts = 2"),
    )
    .await;
    let id = send(&app).await;
    let settled = app.settled(&id).await;
    assert_eq!(settled["status"], "undeliverable");
    assert_eq!(settled["reason_code"], "undeliverable");
    assert_eq!(
        settled["history"].as_array().unwrap().last().unwrap()["detail"],
        "gave up after 2 attempt(s): https: timed out"
    );
}

#[tokio::test]
async fn a_partner_that_rejects_the_message_is_not_retried() {
    let receiver = Receiver::start(400).await;
    let app = app_for(receiver.destination("gp-https")).await;
    let id = send(&app).await;
    let settled = app.settled(&id).await;
    assert_eq!(settled["status"], "undeliverable");
    assert_eq!(
        settled["history"][1]["detail"],
        "the partner refused it: https: the receiver answered 400"
    );
    assert_eq!(receiver.ids().len(), 1);
}

#[tokio::test]
async fn dead_letters_are_listed_for_operators() {
    let receiver = Receiver::start(503).await;
    let app = app_for(
        receiver
            .destination("gp-https")
            .replace("max_attempts = 3", "max_attempts = 1"),
    )
    .await;
    let id = send(&app).await;
    app.settled(&id).await;
    let (status, list) = app.get(&app.auditor, "/v1/transfers?status=undeliverable").await;
    assert_eq!(status, 200);
    let rows = list["transfers"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["transfer_id"], id.as_str());
    assert_eq!(rows[0]["agreement_id"], "gp-over-https");
}

/// A partner down past the retry limit, then back: the operator requeues the dead letter from
/// the command line, and it is delivered, once, with the requeue in its history.
#[tokio::test]
async fn an_operator_requeues_a_dead_letter_once_the_partner_is_back() {
    let port = free_port();
    let app = app_for(https_destination("gp-https", port).replace("max_attempts = 3", "max_attempts = 1")).await;
    let id = send(&app).await;
    assert_eq!(app.settled(&id).await["status"], "undeliverable");
    let receiver = Receiver::start_with(ReceiverOpts {
        port: Some(port),
        ..ReceiverOpts::default()
    })
    .await;
    let requeue = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
            .args(["transfers", "requeue", &id, "--by", "olly", "--config"])
            .arg(&app.config_path)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    // Not under a changed agreement: the bytes were permitted under the one in force then.
    let (name, text) = over_https();
    let file = app.dir.path().join("agreements").join(name);
    std::fs::write(&file, text.replace("version = \"1.0.0\"", "version = \"1.1.0\"")).unwrap();
    let refused = requeue();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("has changed since the transfer was permitted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::write(&file, text).unwrap();
    let out = requeue();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued transfer"));
    let settled = app.settled(&id).await;
    assert_eq!(settled["status"], "delivered", "{settled}");
    assert_eq!(receiver.ids(), std::slice::from_ref(&id));
    let steps: Vec<(&str, &str)> = settled["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["status"].as_str().unwrap(), h["reason_code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(steps[2], ("accepted", "requeued"), "{steps:?}");
    let requeued = app
        .entries()
        .await
        .into_iter()
        .find(|e| e.event.reason_code.as_deref() == Some("requeued"))
        .unwrap()
        .event;
    assert_eq!(
        (requeued.user_sub.as_deref(), requeued.user_role.as_deref()),
        (Some("olly"), Some("operator")),
        "who requeued it is on the record"
    );
    assert_eq!(steps.last().unwrap().0, "delivered");
    // Only a dead letter can be requeued.
    let again = requeue();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is delivered, not undeliverable"));
}

#[tokio::test]
async fn the_same_request_twice_makes_one_transfer() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    let post = |key: &'static str, body: Vec<u8>| {
        let app = &app;
        async move {
            let r = app
                .sender
                .post(app.url("/v1/agreements/nvtt-gp-update/transfers"))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body)
                .send()
                .await
                .unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (r.status().as_u16(), replayed, r.json::<Value>().await.unwrap())
        }
    };
    let (s1, replayed1, first) = post("referral-2026-0001", body.clone()).await;
    assert_eq!((s1, replayed1), (202, false));
    let (s2, replayed2, second) = post("referral-2026-0001", body.clone()).await;
    assert_eq!((s2, replayed2), (202, true));
    assert_eq!(second["transfer_id"], first["transfer_id"]);
    assert_eq!(second["ledger_seq"], first["ledger_seq"]);

    // The same key with another body is refused, and recorded as such.
    let mut other = gp_update();
    other["event"] = json!("assessment");
    other["treatment"]["sessions_attended"] = json!(2);
    let other = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": other})).unwrap();
    let (s3, _, third) = post("referral-2026-0001", other).await;
    assert_eq!(s3, 422);
    assert_eq!(third["code"], "idempotency_key_reused");

    app.settled(first["transfer_id"].as_str().unwrap()).await;
    let decisions: Vec<_> = app
        .entries()
        .await
        .into_iter()
        .filter(|e| e.event.kind == EventKind::Decision)
        .collect();
    assert_eq!(decisions.len(), 2, "one accepted transfer and one refusal");
    assert_eq!(
        decisions[1].event.reason_code.as_deref(),
        Some("idempotency_key_reused")
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_transfer() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let client = app.sender.clone();
        let url = app.url("/v1/agreements/nvtt-gp-update/transfers");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            post_accepted(client, url, body, &[("idempotency-key", "burst-1")]).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every response names the same transfer");
    app.settled(&ids[0]).await;
    let accepted = app
        .entries()
        .await
        .iter()
        .filter(|e| e.event.status == TransferStatus::Accepted)
        .count();
    assert_eq!(accepted, 1);
    assert_eq!(
        std::fs::read_dir(app.dir.path().join("deliveries/y99001-gp"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test]
async fn metrics_count_decisions_and_deliveries_without_patient_data() {
    let app = TestApp::spawn().await;
    let (_, body, _) = app.post("nvtt-gp-update", "gp_update", &gp_update()).await;
    app.settled(body["transfer_id"].as_str().unwrap()).await;
    let mut bad = gp_update();
    bad["nhs_number"] = json!("9990000017");
    app.post("nvtt-gp-update", "gp_update", &bad).await;
    app.post("made-up-agreement-id-9990000018", "gp_update", &gp_update())
        .await;
    let text = app.metrics().await;
    assert!(
        text.contains("isa_transfers_total{agreement=\"nvtt-gp-update\",outcome=\"accepted\",reason=\"\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "isa_transfers_total{agreement=\"nvtt-gp-update\",outcome=\"refused\",reason=\"schema_violation\"} 1"
    ));
    assert!(
        text.contains("isa_transfers_total{agreement=\"unknown\",outcome=\"refused\",reason=\"unknown_agreement\"} 1")
    );
    assert!(text.contains("isa_delivery_attempts_total{destination=\"y99001-gp-drop\",result=\"delivered\"} 1"));
    assert!(text.contains("isa_delivery_seconds_count{destination=\"y99001-gp-drop\"} 1"));
    assert!(text.contains("isa_outbox_depth{destination=\"y99001-gp-drop\"}"));
    for value in ["9990000018", "9990000017", "Thornbury"] {
        assert!(!text.contains(value), "metrics carry {value}");
    }
}

#[tokio::test]
async fn an_open_circuit_shows_at_readyz_and_in_metrics() {
    let port = free_port();
    let destination = https_destination("gp-https", port)
        .replace("max_attempts = 3", "max_attempts = 1000")
        .replace(
            "breaker_threshold = 100",
            "breaker_threshold = 2\nbreaker_cooldown_ms = 60000",
        );
    let app = app_for(destination).await;
    send(&app).await;
    let mut open = false;
    for _ in 0..100 {
        let (status, ready) = app.get(&app.auditor, "/readyz").await;
        assert_eq!(status, 200, "the gateway still accepts and queues: {ready}");
        if ready["destinations"]["gp-https"] == "open" {
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(open, "the breaker never opened");
    let text = app.metrics().await;
    assert!(text.contains("isa_circuit_open{destination=\"gp-https\"} 1"), "{text}");
    // The breaker opens on the second failure, a moment before that attempt is recorded.
    let retries = || async {
        app.entries()
            .await
            .iter()
            .filter(|e| e.event.status == TransferStatus::Retrying)
            .count()
    };
    for _ in 0..200 {
        if retries().await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(retries().await, 2);
    // While open, the transfer waits instead of burning its attempts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(retries().await, 2);
}

/// A dead letter nobody requeues loses its bytes after its limit (issue 13, item 8): recorded,
/// and then it can no longer be requeued.
#[tokio::test]
async fn a_dead_letter_nobody_requeues_has_its_bytes_destroyed() {
    let receiver = Receiver::start(400).await;
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![over_https()],
        destinations: receiver.destination("gp-https"),
        expiry: crate::helpers::Expiry {
            dead_letter_secs: 1,
            every_ms: 100,
            ..crate::helpers::Expiry::default()
        },
        ..Spawn::default()
    })
    .await;
    let id = send(&app).await;
    assert_eq!(app.settled(&id).await["status"], "undeliverable");
    let mut reason = Value::Null;
    for _ in 0..200 {
        let (_, shown) = app.get(&app.auditor, &format!("/v1/transfers/{id}")).await;
        reason = shown["reason_code"].clone();
        if reason == "dead_letter_expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(reason, "dead_letter_expired");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["transfers", "requeue", &id, "--by", "olive", "--config"])
        .arg(&app.config_path)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!o.status.success(), "nothing left to requeue");
}
