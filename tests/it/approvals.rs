//! Decisions the policies require: held disclosures approved by a second person, the urgent
//! path with its retrospective review, and telling the person. Time is moved by hand.

use std::time::Duration;

use isa_gateway::ledger::{DecisionKind, EventKind, TransferStatus};
use isa_gateway::platform::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, at, fixture, http_client_as, pki, token};

fn referral(consent: Value) -> Value {
    json!({
        "message_type": "mash_referral",
        "payload": fixture("mash_referral", "valid", "01"),
        "consent": consent,
        "subject_informed": {"status": "after", "due_by": "2026-06-08"}
    })
}

fn not_sought() -> Value {
    json!({"status": "not_sought", "reason_not_sought": "increase_risk_of_significant_harm"})
}

fn director(sub: &str) -> reqwest::Client {
    http_client_as(&pki().sender, &token(sub, &["director"]))
}

fn mash_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.dir.path().join("deliveries/mash"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn post(app: &TestApp, client: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    let r = client.post(app.url(path)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_disclosure_without_consent_is_held_until_a_second_person_approves_it() {
    let app = TestApp::spawn().await;
    // The safeguarding lead who refers is also a director: still not allowed to approve it.
    let referrer = http_client_as(&pki().sender, &token("dana", &["safeguarding_lead", "director"]));
    let body = serde_json::to_vec(&referral(not_sought())).unwrap();
    let (status, sent, _) = app.post_raw(&referrer, "nvtt-mash-referral", body).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")), "{sent}");
    let id = sent["transfer_id"].as_str().unwrap().to_owned();

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mash_files(&app), 0, "nothing leaves while held");
    let (status, held) = app.get(&director("dee"), "/v1/held").await;
    assert_eq!(status, 200);
    assert_eq!(held["transfers"][0]["transfer_id"], id.as_str());
    let (status, _) = app.get(&app.sender, "/v1/held").await;
    assert_eq!(status, 403, "the held list is for directors");

    let approve = format!("/v1/transfers/{id}/approve");
    let (status, body) = post(&app, &referrer, &approve, json!({"reason": "risk_of_serious_harm"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("two_person_rule")));
    let (status, body) = post(&app, &app.sender, &approve, json!({"reason": "risk_of_serious_harm"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("role_required")));
    let (status, body) = post(&app, &director("dee"), &approve, json!({"reason": "because"})).await;
    assert_eq!(
        (status, body["violations"][0]["pointer"].as_str()),
        (422, Some("/reason"))
    );
    let (status, body) = post(
        &app,
        &director("dee"),
        &approve,
        json!({"reason": "risk_of_serious_harm", "note_ref": "CMS:case/2201/n14"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(app.settled(&id).await["status"], "delivered");
    assert_eq!(mash_files(&app), 1);
    let entries = app.entries().await;
    let decision = &entries[0].event;
    assert_eq!(
        (decision.status, decision.decision.map(DecisionKind::code)),
        (TransferStatus::Held, Some("hold"))
    );
    assert_eq!(
        (decision.user_sub.as_deref(), decision.user_role.as_deref()),
        (Some("dana"), Some("safeguarding_lead"))
    );
    let approval = entries.iter().find(|e| e.event.kind == EventKind::Approval).unwrap();
    assert_eq!(approval.event.user_sub.as_deref(), Some("dee"));
    assert_eq!(approval.event.user_role.as_deref(), Some("director"));
    assert_eq!(approval.event.reason_code.as_deref(), Some("risk_of_serious_harm"));
    // The director's note reference, kept as a keyed hash: never the text typed.
    let kept = approval.event.detail.clone().unwrap();
    assert!(kept.starts_with("ref:") && !kept.contains("2201"), "{kept}");
    let (status, body) = post(
        &app,
        &director("dee"),
        &approve,
        json!({"reason": "risk_of_serious_harm"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("not_held")));
}

#[tokio::test]
async fn a_refused_disclosure_never_leaves() {
    let app = TestApp::spawn().await;
    let (status, sent, _) = app.post_envelope("nvtt-mash-referral", &referral(not_sought())).await;
    assert_eq!(status, 202);
    let id = sent["transfer_id"].as_str().unwrap();
    let (status, body) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{id}/refuse"),
        json!({"reason": "seek_consent_first"}),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("refused")));
    let (status, _) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{id}/approve"),
        json!({"reason": "legal_duty"}),
    )
    .await;
    assert_eq!(status, 409, "a refusal is final");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mash_files(&app), 0);
    let (_, t) = app.get(&app.auditor, &format!("/v1/transfers/{id}")).await;
    assert_eq!(t["status"], "refused");
    assert_eq!(app.ledger.outbox_depth().await.unwrap(), Vec::<(String, i64)>::new());
}

#[tokio::test]
async fn with_consent_a_referral_is_not_held() {
    let app = TestApp::spawn().await;
    let (status, sent, _) = app
        .post_envelope(
            "nvtt-mash-referral",
            &referral(json!({"status": "obtained", "given_by": "parent_or_carer"})),
        )
        .await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("accepted")));
    assert_eq!(
        app.settled(sent["transfer_id"].as_str().unwrap()).await["status"],
        "delivered"
    );
}

#[tokio::test]
async fn an_immediate_referral_leaves_at_once_and_an_overdue_review_is_listed() {
    let clock = Clock::manual(at("2026-06-01T12:00:00Z"));
    let app = TestApp::spawn_with(Spawn {
        clock: clock.clone(),
        ..Spawn::default()
    })
    .await;
    let mut e = referral(not_sought());
    e["immediate"] = json!(true);
    let (status, sent, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("accepted")), "{sent}");
    let id = sent["transfer_id"].as_str().unwrap().to_owned();
    let settled = app.settled(&id).await;
    assert_eq!(settled["status"], "delivered", "an immediate referral is not held");
    assert_eq!(settled["review_due"], "2026-06-02T12:00:00Z");

    let dee = director("dee");
    let overdue = || async {
        app.get(&dee, "/v1/reviews/overdue").await.1["transfers"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(overdue().await, 0, "not overdue within the window");
    clock.set(at("2026-06-02T12:00:01Z"));
    assert_eq!(overdue().await, 1);
    let metrics = app.metrics().await;
    assert!(metrics.contains("isa_reviews_overdue 1"), "{metrics}");

    let (status, _) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{id}/review"),
        json!({"outcome": "justified"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(overdue().await, 0);
    let (status, body) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{id}/review"),
        json!({"outcome": "justified"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("no_review_due")));
    let review = app
        .entries()
        .await
        .into_iter()
        .find(|e| e.event.kind == EventKind::Review)
        .unwrap();
    assert_eq!(review.event.user_sub.as_deref(), Some("dee"));
    assert_eq!(review.event.reason_code.as_deref(), Some("justified"));
}

#[tokio::test]
async fn people_to_be_told_are_listed_until_it_is_recorded() {
    let app = TestApp::spawn().await;
    let (_, sent, _) = app
        .post_envelope(
            "nvtt-mash-referral",
            &referral(json!({"status": "obtained", "given_by": "subject"})),
        )
        .await;
    let id = sent["transfer_id"].as_str().unwrap().to_owned();
    let (status, due) = app.get(&app.sender, "/v1/notifications/due").await;
    assert_eq!(status, 200);
    assert_eq!(due["transfers"][0]["transfer_id"], id.as_str());
    assert_eq!(due["transfers"][0]["subject_informed_due"], "2026-06-08");
    let (status, body) = post(
        &app,
        &app.sender,
        &format!("/v1/transfers/{id}/subject-informed"),
        json!({"note_ref": "CMS:letter/7781"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, due) = app.get(&app.sender, "/v1/notifications/due").await;
    assert!(due["transfers"].as_array().unwrap().is_empty());
    let told = app
        .entries()
        .await
        .into_iter()
        .find(|e| e.event.kind == EventKind::Notification)
        .unwrap();
    assert_eq!(told.event.user_sub.as_deref(), Some("alice"));
    assert_eq!(told.event.user_role.as_deref(), Some("practitioner"));
    let (status, body) = post(
        &app,
        &app.sender,
        &format!("/v1/transfers/{id}/subject-informed"),
        json!({"note_ref": "Told Mrs Smith on the phone"}),
    )
    .await;
    assert_eq!(
        (status, body["violations"][0]["pointer"].as_str()),
        (422, Some("/note_ref")),
        "notes stay in the case record"
    );
}

/// Review finding H1: any consent status but "obtained" is a disclosure without consent.
#[tokio::test]
async fn consent_marked_not_applicable_is_still_held() {
    let app = TestApp::spawn().await;
    let (status, sent, _) = app
        .post_envelope("nvtt-mash-referral", &referral(json!({"status": "not_applicable"})))
        .await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")));
}

/// Review finding H2: a director reaching the gateway through another organisation's system
/// cannot see or decide this organisation's held disclosures.
#[tokio::test]
async fn a_director_on_another_system_cannot_see_or_approve() {
    let app = TestApp::spawn().await;
    let (_, sent, _) = app.post_envelope("nvtt-mash-referral", &referral(not_sought())).await;
    let id = sent["transfer_id"].as_str().unwrap();
    let elsewhere = http_client_as(&pki().auditor, &token("eve", &["director"]));
    let (status, _) = post(
        &app,
        &elsewhere,
        &format!("/v1/transfers/{id}/approve"),
        json!({"reason": "legal_duty"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, held) = app.get(&elsewhere, "/v1/held").await;
    assert_eq!(status, 200);
    assert!(held["transfers"].as_array().unwrap().is_empty());
    let (_, held) = app.get(&director("dee"), "/v1/held").await;
    assert_eq!(held["transfers"].as_array().unwrap().len(), 1);
}

/// Review finding H3: the person who sent an urgent referral cannot review it.
#[tokio::test]
async fn the_referrer_cannot_review_their_own_urgent_referral() {
    let app = TestApp::spawn().await;
    let dana = http_client_as(&pki().sender, &token("dana", &["safeguarding_lead", "director"]));
    let mut e = referral(not_sought());
    e["immediate"] = json!(true);
    let (status, sent, _) = app
        .post_raw(&dana, "nvtt-mash-referral", serde_json::to_vec(&e).unwrap())
        .await;
    assert_eq!(status, 202);
    let id = sent["transfer_id"].as_str().unwrap();
    let (status, body) = post(
        &app,
        &dana,
        &format!("/v1/transfers/{id}/review"),
        json!({"outcome": "justified"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("two_person_rule")));
}

/// Review finding M4: approval decides the disclosure, so the agreement must still be in force.
#[tokio::test]
async fn approval_after_the_agreement_expired_is_refused() {
    let clock = Clock::manual(at("2026-06-01T12:00:00Z"));
    let app = TestApp::spawn_with(Spawn {
        clock: clock.clone(),
        ..Spawn::default()
    })
    .await;
    let (_, sent, _) = app.post_envelope("nvtt-mash-referral", &referral(not_sought())).await;
    let id = sent["transfer_id"].as_str().unwrap();
    clock.set(at("2029-01-01T00:00:00Z"));
    let (status, body) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{id}/approve"),
        json!({"reason": "legal_duty"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("agreement_expired")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mash_files(&app), 0);
}

/// What an insider with the database could do to a held referral's outbox row, by SQL.
async fn tamper_outbox(app: &TestApp, sql: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", app.db_path().display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let done = conn.execute(sql).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
    conn.close().await.unwrap();
}

fn lado_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.dir.path().join("deliveries/lado"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The transfer once delivery has finished with it (delivered or dead), after it left "held".
async fn finished(app: &TestApp, id: &str) -> Value {
    for _ in 0..400 {
        let (_, body) = app.get(&app.auditor, &format!("/v1/transfers/{id}")).await;
        if body["status"] == "delivered" || body["status"] == "undeliverable" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("transfer {id} never finished");
}

/// Delivery sends only what was decided (issue 12, item 4): a held referral whose outbox row an
/// insider edited — flipped to pending without an approval, its bytes replaced, or pointed at the
/// LADO's folder — is not sent; it becomes a dead letter whose reason names what differed.
#[tokio::test]
async fn an_edited_outbox_row_is_never_sent() {
    let cases = [
        ("UPDATE outbox SET state = 'pending'", false, "not_approved"),
        (
            "UPDATE outbox SET body = CAST('{\"payload\":{}}' AS BLOB)",
            true,
            "outbox_bytes_changed",
        ),
        (
            "UPDATE outbox SET destination = 'lado-drop'",
            true,
            "destination_changed",
        ),
    ];
    for (sql, approve, reason) in cases {
        let app = TestApp::spawn().await;
        let (status, sent, _) = app
            .post_raw(
                &app.sender,
                "nvtt-mash-referral",
                serde_json::to_vec(&referral(not_sought())).unwrap(),
            )
            .await;
        assert_eq!((status, sent["status"].as_str()), (202, Some("held")), "{sent}");
        let id = sent["transfer_id"].as_str().unwrap().to_owned();
        tamper_outbox(&app, &format!("{sql} WHERE transfer_id = '{id}'")).await;
        if approve {
            let path = format!("/v1/transfers/{id}/approve");
            let (status, body) = post(&app, &director("dee"), &path, json!({"reason": "risk_of_serious_harm"})).await;
            assert_eq!(status, 200, "{body}");
        }
        // The worker's next poll finds the row pending.
        let settled = finished(&app, &id).await;
        assert_eq!(settled["status"], "undeliverable", "{sql}: {settled}");
        let reasons: Vec<&str> = settled["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["reason_code"].as_str())
            .collect();
        assert!(reasons.contains(&reason), "{sql}: {reasons:?}");
        assert_eq!(
            (mash_files(&app), lado_files(&app)),
            (0, 0),
            "{sql}: nothing left the gateway"
        );
    }
}

/// The urgent path opens only by the payload, the agreement and the role (issue 13, row 1): the
/// flag on a routine referral, or from a practitioner, is refused and recorded, and nothing
/// leaves; the same referral without the flag waits for a director as usual.
#[tokio::test]
async fn the_urgent_flag_alone_releases_nothing() {
    let app = TestApp::spawn().await;
    let lead = http_client_as(&pki().sender, &token("sam", &["safeguarding_lead"]));
    let practitioner = http_client_as(&pki().sender, &token("alice", &["practitioner"]));
    let mut routine = referral(not_sought());
    routine["immediate"] = json!(true);
    routine["payload"]["urgency"] = json!("routine");
    let mut immediate = referral(not_sought());
    immediate["immediate"] = json!(true);
    let cases = [
        (&lead, routine, 422, "urgent_flag_contradicts_payload"),
        (&practitioner, immediate, 403, "urgent_role_not_permitted"),
    ];
    for (client, envelope, status, code) in cases {
        let (got, body, _) = app
            .post_raw(client, "nvtt-mash-referral", serde_json::to_vec(&envelope).unwrap())
            .await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        assert!(body["ledger_seq"].is_i64(), "the refusal is recorded: {body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mash_files(&app), 0, "nothing left");
}

/// The two-person rule compares people, not spellings: "DANA" with a space is still Dana
/// (issue 13, row 5).
#[tokio::test]
async fn a_case_variant_of_the_askers_name_is_the_same_person() {
    let app = TestApp::spawn().await;
    let referrer = http_client_as(&pki().sender, &token("dana", &["safeguarding_lead"]));
    let body = serde_json::to_vec(&referral(not_sought())).unwrap();
    let (status, sent, _) = app.post_raw(&referrer, "nvtt-mash-referral", body).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")), "{sent}");
    let approve = format!("/v1/transfers/{}/approve", sent["transfer_id"].as_str().unwrap());
    let reason = json!({"reason": "risk_of_serious_harm"});
    let (status, body) = post(&app, &director(" DANA"), &approve, reason.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("two_person_rule")));
    let (status, _) = post(&app, &director("dee"), &approve, reason).await;
    assert_eq!(status, 200, "a second person may");
}

/// Nothing kept for ever by accident (issue 13, item 8): a held referral no director decides in
/// time is refused by the gateway (`held_expired`) and its bytes destroyed, in one record; a
/// director's approval afterwards finds nothing to approve.
#[tokio::test]
async fn a_held_transfer_nobody_decides_expires_and_its_bytes_are_destroyed() {
    let app = TestApp::spawn_with(Spawn {
        expiry: crate::helpers::Expiry {
            held_secs: 1,
            every_ms: 100,
            ..crate::helpers::Expiry::default()
        },
        ..Spawn::default()
    })
    .await;
    let referrer = http_client_as(&pki().sender, &token("dana", &["safeguarding_lead"]));
    // A marker in the payload: the bytes, and nothing else, carry it into the database.
    let marker = format!("MARKER{}", uuid::Uuid::new_v4().simple());
    let mut envelope = referral(not_sought());
    envelope["payload"]["concern_description"] = json!(format!("Concern noted {marker} in session."));
    let body = serde_json::to_vec(&envelope).unwrap();
    let (status, sent, _) = app.post_raw(&referrer, "nvtt-mash-referral", body).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")), "{sent}");
    let id = sent["transfer_id"].as_str().unwrap().to_owned();
    let mut shown = serde_json::Value::Null;
    for _ in 0..200 {
        (_, shown) = app.get(&app.auditor, &format!("/v1/transfers/{id}")).await;
        if shown["status"] == "refused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(shown["status"], "refused", "{shown}");
    assert_eq!(shown["reason_code"], "held_expired");
    let outbox: i64 = {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(outbox, 0, "the held bytes are gone");
    // Gone from the database's files too, not only from its tables (review finding: SQLite kept
    // them in free pages and the write-ahead log).
    let files = |suffix: &str| std::fs::read(format!("{}{suffix}", app.db_path().display())).unwrap_or_default();
    let mut still_there = true;
    for _ in 0..100 {
        still_there = ["", "-wal"].iter().any(|s| {
            let bytes = files(s);
            bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
        });
        if !still_there {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!still_there, "the destroyed bytes are still in the database files");
    let (status, body) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{id}/approve"),
        json!({"reason": "risk_of_serious_harm"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("not_held")));
    assert_eq!(mash_files(&app), 0);
}

/// A quota of held transfers per agreement: past it, a disclosure that would be held is refused
/// and recorded, until directors clear the queue.
#[tokio::test]
async fn held_transfers_past_the_quota_are_refused_and_recorded() {
    let app = TestApp::spawn_with(Spawn {
        held_per_agreement: 2,
        ..Spawn::default()
    })
    .await;
    let referrer = http_client_as(&pki().sender, &token("dana", &["safeguarding_lead"]));
    let body = serde_json::to_vec(&referral(not_sought())).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, sent, _) = app.post_raw(&referrer, "nvtt-mash-referral", body.clone()).await;
        assert_eq!((status, sent["status"].as_str()), (202, Some("held")));
        ids.push(sent["transfer_id"].as_str().unwrap().to_owned());
    }
    let (status, refused, _) = app.post_raw(&referrer, "nvtt-mash-referral", body.clone()).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("held_quota_exceeded")),
        "{refused}"
    );
    let seq = refused["ledger_seq"].as_i64().expect("the refusal is recorded");
    let recorded = app.entries().await.into_iter().find(|e| e.seq == seq).unwrap();
    assert_eq!(recorded.event.reason_code.as_deref(), Some("held_quota_exceeded"));
    assert_eq!(recorded.event.user_sub.as_deref(), Some("dana"));
    // A director decides one; there is room again.
    let (status, _) = post(
        &app,
        &director("dee"),
        &format!("/v1/transfers/{}/refuse", ids[0]),
        json!({"reason": "seek_consent_first"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, sent, _) = app.post_raw(&referrer, "nvtt-mash-referral", body).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")));
}

/// An insider who edits the decision in the database, so that it names someone else as the asker,
/// and re-hashes that one entry, still cannot let the asker approve: the entry is not the one the
/// gateway's chain holds (review finding on the two-person rule).
#[tokio::test]
async fn an_asker_rewritten_in_the_database_cannot_approve_their_own_referral() {
    use sqlx::{Connection as _, Executor as _};
    let app = TestApp::spawn().await;
    let dana = http_client_as(&pki().sender, &token("dana", &["safeguarding_lead", "director"]));
    let body = serde_json::to_vec(&referral(not_sought())).unwrap();
    let (status, sent, _) = app.post_raw(&dana, "nvtt-mash-referral", body.clone()).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")));
    let id = sent["transfer_id"].as_str().unwrap().to_owned();
    // Another transfer after it, so the edited entry is not the chain's head.
    let (status, _, _) = app.post_raw(&dana, "nvtt-mash-referral", body).await;
    assert_eq!(status, 202);

    let mut decision = app
        .entries()
        .await
        .into_iter()
        .find(|e| e.event.transfer_id.to_string() == id)
        .unwrap();
    decision.event.user_sub = Some("someone-else".into());
    decision.hash = isa_gateway::ledger::Entry::compute_hash(decision.seq, &decision.prev_hash, &decision.event);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap();
    conn.execute("DROP TRIGGER ledger_entries_no_update").await.unwrap();
    sqlx::query("UPDATE ledger_entries SET entry = ?, hash = ? WHERE seq = ?")
        .bind(isa_gateway::ledger::Entry::canonical_bytes(
            decision.seq,
            &decision.prev_hash,
            &decision.event,
        ))
        .bind(decision.hash.to_vec())
        .bind(decision.seq)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE transfers SET user_sub = 'someone-else' WHERE transfer_id = ?")
        .bind(&id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let (status, body) = post(
        &app,
        &dana,
        &format!("/v1/transfers/{id}/approve"),
        json!({"reason": "risk_of_serious_harm"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("record_unverifiable")),
        "{body}"
    );
    assert_eq!(mash_files(&app), 0);
}
