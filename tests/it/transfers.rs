//! The transfer endpoint, end to end: decisions, delivery, and what the ledger records.

use std::os::unix::fs::PermissionsExt;

use isa_gateway::ledger::{DecisionKind, EventKind, TransferStatus};
use isa_gateway::platform::clock::Clock;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{GP_AGREEMENT, Receiver, Spawn, TestApp, at, gp_agreement_variant, gp_update, http_client, pki};

fn violations(body: &Value) -> Vec<(String, String)> {
    body["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|v| {
                    (
                        v["pointer"].as_str().unwrap().to_owned(),
                        v["rule"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_gp_update_is_accepted_recorded_and_dropped_in_the_folder() {
    let app = TestApp::spawn().await;
    let (status, body, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    let id = body["transfer_id"].as_str().unwrap().to_owned();
    assert_eq!(body["ledger_seq"], 1);

    let settled = app.settled(&id).await;
    assert_eq!(settled["status"], "delivered", "{settled}");
    let file = app.dir.path().join("deliveries/y99001-gp").join(format!("{id}.json"));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let delivered: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(delivered["payload"], gp_update());
    assert_eq!(delivered["transfer_id"], id.as_str());
    assert_eq!(delivered["agreement"]["id"], GP_AGREEMENT);
    assert_eq!(delivered["legal_bases"][0], "uk-gdpr/6.1.e");
    // No half-written files are left behind.
    assert_eq!(std::fs::read_dir(file.parent().unwrap()).unwrap().count(), 1);

    // The ledger committed to exactly these bytes before they left.
    let entries = app.entries().await;
    assert_eq!(entries.len(), 2);
    let (decision, delivery) = (&entries[0].event, &entries[1].event);
    assert_eq!(decision.kind, EventKind::Decision);
    assert_eq!(decision.status, TransferStatus::Accepted);
    assert_eq!(decision.decision.map(DecisionKind::code), Some("permit"));
    assert_eq!(
        decision.sent_sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str())
    );
    assert_eq!(decision.agreement_version.as_deref(), Some("1.0.0"));
    assert_eq!(decision.legal_bases.len(), 4);
    assert!(decision.agreement_hash.is_some() && decision.schema_hash.is_some() && decision.received_sha256.is_some());
    assert_eq!(delivery.kind, EventKind::Delivery);
    assert_eq!(delivery.status, TransferStatus::Delivered);
    assert_eq!(settled["history"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn delivers_over_https_with_the_gateways_client_certificate() {
    let receiver = Receiver::start(200).await;
    let agreement = gp_agreement_variant("gp-over-https", |t| {
        t.replace("destination = \"y99001-gp-drop\"", "destination = \"gp-https\"")
    });
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![agreement],
        destinations: receiver.destination("gp-https"),
        ..Spawn::default()
    })
    .await;
    let (status, body, _) = app.post("gp-over-https", "gp_update", &gp_update()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["transfer_id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "delivered");

    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].transfer_id.as_deref(), Some(id.as_str()));
    assert_eq!(received[0].agreement_id.as_deref(), Some("gp-over-https"));
    let doc: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(doc["payload"], gp_update());
    let recorded = app.entries().await[0].event.sent_sha256.clone().unwrap();
    assert_eq!(recorded, hex::encode(Sha256::digest(&received[0].body)));
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_retried_then_dead_lettered_with_the_reason() {
    let receiver = Receiver::start(500).await;
    let agreement = gp_agreement_variant("gp-over-https", |t| {
        t.replace("destination = \"y99001-gp-drop\"", "destination = \"gp-https\"")
    });
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![agreement],
        destinations: receiver.destination("gp-https"),
        ..Spawn::default()
    })
    .await;
    let (_, body, _) = app.post("gp-over-https", "gp_update", &gp_update()).await;
    let settled = app.settled(body["transfer_id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "undeliverable");
    let history: Vec<&str> = settled["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["accepted", "retrying", "retrying", "undeliverable"]);
    assert_eq!(settled["history"][1]["detail"], "https: the receiver answered 500");
    assert_eq!(
        settled["history"][3]["detail"],
        "gave up after 3 attempt(s): https: the receiver answered 500"
    );
    assert_eq!(receiver.ids().len(), 3, "three attempts reached the receiver");
}

#[tokio::test]
async fn a_receiver_that_does_not_trust_the_gateway_is_a_failed_delivery() {
    // The destination's CA is the gateway's own CA, not the receiver's: the receiver's server
    // certificate must not be accepted.
    let receiver = Receiver::start(200).await;
    let wrong_ca = receiver.destination("gp-https").replace(
        &pki().receiver_ca_cert.display().to_string(),
        &pki().ca_cert.display().to_string(),
    );
    let agreement = gp_agreement_variant("gp-over-https", |t| {
        t.replace("destination = \"y99001-gp-drop\"", "destination = \"gp-https\"")
    });
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![agreement],
        destinations: wrong_ca,
        ..Spawn::default()
    })
    .await;
    let (_, body, _) = app.post("gp-over-https", "gp_update", &gp_update()).await;
    let settled = app.settled(body["transfer_id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "undeliverable");
    assert!(receiver.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_agreement_is_404_and_recorded_without_the_text_typed() {
    let app = TestApp::spawn().await;
    // Whatever a caller types in the URL never reaches the ledger as typed.
    let typed = "=HYPERLINK(\"x\")";
    let (status, body, _) = app.post(typed, "gp_update", &gp_update()).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "unknown_agreement");
    let entries = app.entries().await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].event.agreement_id, "unknown",
        "neither the text nor a digest of it"
    );
    assert_eq!(entries[0].event.reason_code.as_deref(), Some("unknown_agreement"));
    assert_eq!(entries[0].event.decision.map(DecisionKind::code), Some("deny"));
    assert_eq!(
        entries[0].event.user_sub.as_deref(),
        Some("alice"),
        "someone is accountable for it"
    );
}

#[tokio::test]
async fn a_system_not_party_to_the_agreement_is_403_and_recorded() {
    let app = TestApp::spawn().await;
    let other = http_client(&pki().other_sender);
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    let (status, body, _) = app.post_raw(&other, GP_AGREEMENT, body).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "not_a_party");
    let entries = app.entries().await;
    assert_eq!(entries[0].event.sender_system, "other-case-system");
    assert_eq!(entries[0].event.reason_code.as_deref(), Some("not_a_party"));
}

/// A registered system that may not send (the auditor's) is refused before its body is read, and
/// nothing is recorded: no flood of permanent refusals from a system that is not a sender.
#[tokio::test]
async fn an_auditor_system_cannot_send_and_leaves_no_record() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    for _ in 0..5 {
        let (status, body, _) = app.post_raw(&app.auditor, GP_AGREEMENT, body.clone()).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    }
    assert!(app.entries().await.is_empty());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("isa_requests_refused_unrecorded_total{system=\"ig-audit\",reason=\"not_a_sender\"} 5"),
        "{metrics}"
    );
}

/// A system over its request rate gets 429 with Retry-After; nothing of the refused requests is
/// recorded, and other systems are not held up.
#[tokio::test]
async fn a_flooding_system_is_rate_limited_with_retry_after() {
    let app = TestApp::spawn_with(Spawn {
        rate: (1, 3),
        ..Spawn::default()
    })
    .await;
    // Twenty at once: whatever the machine's load, at most the burst and one more a second pass.
    let started = std::time::Instant::now();
    let sends: Vec<_> = (0..20)
        .map(|_| {
            let request = app
                .sender
                .post(app.url("/v1/agreements/nvtt-gp-update/transfers"))
                .json(&json!({"message_type": "gp_update", "payload": gp_update()}));
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body: Value = r.json().await.unwrap_or_default();
                (status, retry_after, body)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for s in sends {
        let (status, after, body) = s.await.unwrap();
        statuses.push(status);
        if status == 429 {
            assert_eq!(body["code"], "rate_limited");
            retry_after = after;
        }
    }
    let elapsed = started.elapsed().as_secs() as usize;
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(accepted >= 3, "the burst is allowed: {statuses:?}");
    assert!(
        accepted <= 3 + elapsed + 1,
        "{accepted} accepted in {elapsed} s: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 202 || *s == 429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let decisions = app
        .entries()
        .await
        .into_iter()
        .filter(|e| e.event.kind == EventKind::Decision)
        .count();
    assert_eq!(decisions, accepted, "only accepted transfers are recorded");
    let (status, _) = app.get(&app.auditor, "/v1/agreements").await;
    assert_eq!(status, 200, "another system has its own allowance");
}

async fn refused_on(clock: &str, agreement: Option<(String, String)>, id: &str) -> (u16, Value) {
    let app = TestApp::spawn_with(Spawn {
        clock: Clock::Fixed(at(clock)),
        agreements: agreement.into_iter().collect(),
        ..Spawn::default()
    })
    .await;
    let (status, body, _) = app.post(id, "gp_update", &gp_update()).await;
    let entries = app.entries().await;
    assert_eq!(entries.len(), 1, "the refusal is recorded");
    assert_eq!(entries[0].event.reason_code.as_deref(), body["code"].as_str());
    (status, body)
}

#[tokio::test]
async fn an_agreement_not_yet_in_force_is_409() {
    let (status, body) = refused_on("2025-12-31T23:59:59Z", None, GP_AGREEMENT).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("agreement_not_yet_in_force"))
    );
}

#[tokio::test]
async fn an_expired_agreement_is_409() {
    let (status, body) = refused_on("2029-01-01T00:00:00Z", None, GP_AGREEMENT).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("agreement_expired")));
}

#[tokio::test]
async fn an_agreement_past_its_review_date_is_409() {
    let (status, body) = refused_on("2028-01-01T00:00:00Z", None, GP_AGREEMENT).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("agreement_review_overdue")));
}

#[tokio::test]
async fn a_suspended_agreement_is_409() {
    let suspended = gp_agreement_variant("gp-suspended", |t| {
        t.replace(
            "status = \"active\"",
            "status = \"suspended\"\nstatus_reason = \"Data breach under investigation\"",
        )
    });
    let (status, body) = refused_on("2026-06-01T00:00:00Z", Some(suspended), "gp-suspended").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("agreement_suspended")));
}

/// A large body breaking a rule thousands of times gets the first 100 violations and their total
/// (issue 13, row 7: a 259 KB body once produced a 2.44 MB answer).
#[tokio::test]
async fn a_flood_of_violations_is_answered_with_the_first_hundred_and_a_count() {
    let app = TestApp::spawn().await;
    let mut payload = gp_update();
    for i in 0..2_000 {
        payload[format!("extra_{i}")] = json!(1);
    }
    let (status, body, text) = app.post(GP_AGREEMENT, "gp_update", &payload).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("schema_violation")));
    assert_eq!(body["violations"].as_array().unwrap().len(), 100);
    assert_eq!(body["violations_total"], 2_000);
    assert!(text.len() < 20_000, "{} bytes", text.len());
}

#[tokio::test]
async fn schema_violations_list_every_pointer_and_rule_but_never_a_value() {
    let app = TestApp::spawn().await;
    let mut payload = gp_update();
    payload["nhs_number"] = json!("9990000017"); // wrong check digit
    payload["date_of_birth"] = json!("1991-02-30");
    payload["measures"]["phq9"]["first"] = json!(28);
    payload["name"]["nickname"] = json!("Secret-Nickname");
    payload.as_object_mut().unwrap().remove("gp_practice");
    let (status, body, text) = app.post(GP_AGREEMENT, "gp_update", &payload).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "schema_violation");
    let mut got = violations(&body);
    got.sort();
    let expected: Vec<(String, String)> = [
        ("/payload/date_of_birth", "format"),
        ("/payload/gp_practice", "required"),
        ("/payload/measures/phq9/first", "maximum"),
        ("/payload/name/nickname", "additionalProperties"),
        ("/payload/nhs_number", "format"),
    ]
    .iter()
    .map(|(p, r)| ((*p).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(got, expected);
    // The transfer id is random hex and could contain "28" by chance: leave it out of the search.
    let text = text.replace(body["transfer_id"].as_str().unwrap(), "");
    for value in [
        "9990000017",
        "1991-02-30",
        "Secret-Nickname",
        "28",
        "Thornbury",
        "Aisha",
    ] {
        assert!(!text.contains(value), "the error body carries a value: {value}");
    }
    assert!(body["transfer_id"].is_string() && body["ledger_seq"] == 1);
    let entries = app.entries().await;
    assert_eq!(entries[0].event.reason_code.as_deref(), Some("schema_violation"));
    assert_eq!(entries[0].event.message_type.as_deref(), Some("gp_update"));
}

#[tokio::test]
async fn a_field_the_agreement_does_not_allow_is_422_naming_the_pointer() {
    // The same message type, under an agreement that lets only identity and the event leave.
    let narrow = gp_agreement_variant("gp-minimal", |t| {
        let head = t.split("[[fields]]").next().unwrap().to_owned();
        head + "[[fields]]\npointer = \"/nhs_number\"\nclass = \"identifying\"\n\n[[fields]]\npointer = \"/event\"\nclass = \"special_category\"\n\n[[fields]]\npointer = \"/measures/phq9\"\nclass = \"special_category\"\n"
    });
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![narrow],
        ..Spawn::default()
    })
    .await;
    let (status, body, text) = app.post("gp-minimal", "gp_update", &gp_update()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "field_not_allowed");
    let pointers: Vec<String> = violations(&body).into_iter().map(|(p, _)| p).collect();
    assert!(pointers.contains(&"/payload/name".to_owned()), "{pointers:?}");
    assert!(pointers.contains(&"/payload/measures/gad7".to_owned()), "{pointers:?}");
    assert!(
        !pointers
            .iter()
            .any(|p| p == "/payload/nhs_number" || p == "/payload/event" || p.starts_with("/payload/measures/phq9"))
    );
    assert!(!text.contains("Aisha"));
    // Nothing was delivered.
    assert!(!app.dir.path().join("deliveries/y99001-gp").exists());
}

#[tokio::test]
async fn a_message_type_outside_the_agreement_is_422() {
    let app = TestApp::spawn().await;
    let payload = crate::helpers::fixture("lado_referral", "valid", "01");
    let (status, body, _) = app.post(GP_AGREEMENT, "lado_referral", &payload).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "message_type_not_covered");
    assert_eq!(
        violations(&body),
        vec![("/message_type".to_owned(), "agreement.message_types".to_owned())]
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_and_recorded() {
    let app = TestApp::spawn_with(Spawn {
        max_body_bytes: 4096,
        ..Spawn::default()
    })
    .await;
    let mut payload = gp_update();
    payload["recommendations"] = json!("x".repeat(5000));
    let (status, body, _) = app.post(GP_AGREEMENT, "gp_update", &payload).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "body_too_large");
    let entries = app.entries().await;
    assert_eq!(entries[0].event.reason_code.as_deref(), Some("body_too_large"));
    assert_eq!(entries[0].event.received_sha256, None);
}

#[tokio::test]
async fn malformed_json_is_400_and_recorded() {
    let app = TestApp::spawn().await;
    let (status, body, text) = app
        .post_raw(
            &app.sender,
            GP_AGREEMENT,
            b"{\"message_type\": \"gp_update\", \"payload\": {\"nhs_number\": \"9990000018\"".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "malformed_json");
    assert!(!text.contains("9990000018"));
    assert_eq!(
        app.entries().await[0].event.reason_code.as_deref(),
        Some("malformed_json")
    );
}

#[tokio::test]
async fn an_envelope_with_unknown_fields_is_422() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update(), "notes": "x"})).unwrap();
    let (status, body, _) = app.post_raw(&app.sender, GP_AGREEMENT, body).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "invalid_envelope");
    assert_eq!(
        violations(&body),
        vec![("/notes".to_owned(), "additionalProperties".to_owned())]
    );
}

#[tokio::test]
async fn every_refusal_is_listed_for_auditors_beside_the_accepted_transfers() {
    let app = TestApp::spawn().await;
    let (ok, accepted, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
    assert_eq!(ok, 202);
    let mut bad = gp_update();
    bad["nhs_number"] = json!("123");
    let (no, refused, _) = app.post(GP_AGREEMENT, "gp_update", &bad).await;
    assert_eq!(no, 422);
    app.settled(accepted["transfer_id"].as_str().unwrap()).await;

    let (status, list) = app.get(&app.auditor, "/v1/agreements/nvtt-gp-update/transfers").await;
    assert_eq!(status, 200);
    let rows = list["transfers"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["transfer_id"], accepted["transfer_id"]);
    assert_eq!(rows[0]["status"], "delivered");
    assert_eq!(rows[1]["transfer_id"], refused["transfer_id"]);
    assert_eq!(rows[1]["status"], "refused");
    assert_eq!(rows[1]["reason_code"], "schema_violation");

    let (_, only_refused) = app
        .get(&app.auditor, "/v1/agreements/nvtt-gp-update/transfers?status=refused")
        .await;
    assert_eq!(only_refused["transfers"].as_array().unwrap().len(), 1);
    let (_, none_after) = app
        .get(
            &app.auditor,
            "/v1/agreements/nvtt-gp-update/transfers?since=2026-06-02T00:00:00Z",
        )
        .await;
    assert_eq!(none_after["transfers"].as_array().unwrap().len(), 0);
    let (status, bad_query) = app
        .get(
            &app.auditor,
            "/v1/agreements/nvtt-gp-update/transfers?status=lost&limit=0",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad_query["violations"].as_array().unwrap().len(), 2);
    // By the legal basis that applied (the refused one relied on none), the message type, the user.
    let count = |q: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .get(&app.auditor, &format!("/v1/agreements/nvtt-gp-update/transfers?{q}"))
                .await;
            assert_eq!(status, 200, "{q}: {body}");
            body["transfers"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("legal_basis=uk-gdpr/9.2.h").await, 1);
    assert_eq!(count("legal_basis=uk-gdpr/6.1.a").await, 0);
    assert_eq!(count("message_type=gp_update").await, 2);
    assert_eq!(count("message_type=mash_referral").await, 0);
    assert_eq!(count("sender_system=tt-case-system&status=delivered").await, 1);
    let (status, bad_basis) = app
        .get(
            &app.auditor,
            "/v1/agreements/nvtt-gp-update/transfers?legal_basis=because",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad_basis["violations"][0]["pointer"], "?legal_basis");
    assert!(!bad_basis.to_string().contains("because"), "the value is not echoed");

    // The listing is for auditors; a sender sees its own transfers one at a time.
    let (status, _) = app.get(&app.sender, "/v1/agreements/nvtt-gp-update/transfers").await;
    assert_eq!(status, 403);
    let (status, own) = app
        .get(
            &app.sender,
            &format!("/v1/transfers/{}", accepted["transfer_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(own["agreement_id"], GP_AGREEMENT);
    let other = http_client(&pki().other_sender);
    let (status, _) = app
        .get(
            &other,
            &format!("/v1/transfers/{}", accepted["transfer_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get(&app.sender, "/v2/nothing").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let response = app
        .sender
        .delete(app.url("/v1/agreements/x/transfers"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
}

/// Auditor queries (issue 5): cursor pages, CSV, counts by status and legal basis, the CLI.
#[tokio::test]
async fn auditors_page_through_transfers_export_csv_and_count_them() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, body, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
        ids.push(body["transfer_id"].as_str().unwrap().to_owned());
    }
    let mut bad = gp_update();
    bad["nhs_number"] = json!("123");
    let (_, refused, _) = app.post(GP_AGREEMENT, "gp_update", &bad).await;
    ids.push(refused["transfer_id"].as_str().unwrap().to_owned());
    for id in &ids[..5] {
        app.settled(id).await;
    }

    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    for page in 0.. {
        let path = match cursor {
            Some(c) => format!("/v1/agreements/nvtt-gp-update/transfers?limit=2&cursor={c}"),
            None => "/v1/agreements/nvtt-gp-update/transfers?limit=2".to_owned(),
        };
        let (status, body) = app.get(&app.auditor, &path).await;
        assert_eq!(status, 200);
        seen.extend(
            body["transfers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["transfer_id"].as_str().unwrap().to_owned()),
        );
        cursor = body["next_cursor"].as_i64();
        if cursor.is_none() {
            assert_eq!(page, 2, "three pages of two");
            break;
        }
    }
    assert_eq!(seen, ids, "every transfer once, in order");

    let r = app
        .auditor
        .get(app.url("/v1/agreements/nvtt-gp-update/transfers"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 7);
    assert!(lines[0].starts_with("transfer_id,created_at,agreement_id"));
    assert!(lines[6].contains(",refused,schema_violation,"), "{}", lines[6]);
    assert!(!csv.contains("123,") && !csv.contains("Thornbury"));

    let (status, counts) = app
        .get(&app.auditor, "/v1/agreements/nvtt-gp-update/transfers/counts")
        .await;
    assert_eq!(status, 200);
    assert_eq!(counts["by_status"], json!({"delivered": 5, "refused": 1}));
    assert_eq!(counts["by_legal_basis"]["uk-gdpr/6.1.e"], 5);
    assert_eq!(counts["by_legal_basis"]["common-law/implied-consent"], 5);
    let (_, none) = app
        .get(
            &app.auditor,
            "/v1/agreements/nvtt-gp-update/transfers/counts?since=2026-06-02T00:00:00Z",
        )
        .await;
    assert_eq!(none["by_status"], json!({}));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args([
            "transfers",
            "list",
            "--agreement",
            GP_AGREEMENT,
            "--format",
            "csv",
            "--status",
            "delivered",
            "--config",
        ])
        .arg(&app.config_path)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        6,
        "header and five delivered"
    );
}

/// A body trickled a byte at a time does not hold a connection open (issue 13, row 6): after
/// `limits.body_read_secs` the client gets 408 `body_timeout` and the connection is closed. The
/// trickle is bounded (at most 60 bytes, one every 200 ms); the test never waits on the clock for
/// its verdict.
#[tokio::test]
async fn a_trickled_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Spawn {
        body_read_secs: 1,
        ..Spawn::default()
    })
    .await;
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(crate::helpers::client_tls(Some(&pki().sender))));
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut read, mut write) = tokio::io::split(tls);
    let head = format!(
        "POST /v1/agreements/{GP_AGREEMENT}/transfers HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        crate::helpers::token("alice", &["practitioner"])
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    // Ends when the gateway closes the connection; bounded, so a gateway that never does fails
    // the test rather than hanging it.
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), read.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    let sent = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 60, "cut off before the trickle ended ({sent} bytes sent)");
    trickle.abort();
}
