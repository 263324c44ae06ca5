//! The four message types end to end under their shipped agreements, the consent envelope and
//! its models, and the agreements as an information-governance officer reads them.

use isa_gateway::ledger::EventKind;
use isa_gateway::platform::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, at, fixture, gp_agreement_variant, gp_update};

fn mash_envelope() -> Value {
    json!({
        "message_type": "mash_referral",
        "payload": fixture("mash_referral", "valid", "01"),
        "consent": {"status": "not_sought", "reason_not_sought": "increase_risk_of_significant_harm"},
        "subject_informed": {"status": "not_informed", "reason": "risk_of_harm_to_subject"}
    })
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

fn pointers(body: &Value) -> Vec<&str> {
    body["violations"]
        .as_array()
        .map(|v| v.iter().filter_map(|v| v["pointer"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_gp_update_leaves_identified_with_its_classes_recorded() {
    let app = TestApp::spawn().await;
    let (status, body, _) = app.post("nvtt-gp-update", "gp_update", &gp_update()).await;
    assert_eq!(status, 202, "{body}");
    let doc = app.delivered("y99001-gp", body["transfer_id"].as_str().unwrap()).await;
    assert_eq!(doc["payload"]["nhs_number"], "9990000018");
    let decision = &app.entries().await[0].event;
    assert_eq!(
        decision.data_classes,
        ["identifying", "quasi_identifier", "special_category"]
    );
    assert!(decision.treatments.is_empty() && decision.key_ref.is_none());
}

#[tokio::test]
async fn a_dataset_return_leaves_pseudonymised_and_indexed() {
    let app = TestApp::spawn().await;
    let payload = fixture("nhs_dataset_return", "valid", "01");
    let (status, body, _) = app.post("nvtt-nhse-dataset", "nhs_dataset_return", &payload).await;
    assert_eq!(status, 202, "{body}");
    let doc = app
        .delivered("nhse-dataset", body["transfer_id"].as_str().unwrap())
        .await;
    let out = &doc["payload"];
    let token = out["nhs_number"].as_str().unwrap();
    assert!(token.starts_with("pt-v1-") && token.len() == 6 + 32, "{token}");
    assert_eq!(out["postcode"], "LS6");
    assert_eq!(
        out["date_of_birth"], "25-34",
        "born 1994-08-09, referred 2025-02-03: 30"
    );
    assert_eq!(out["ethnicity"], payload["ethnicity"]);
    let text = serde_json::to_string(&doc).unwrap();
    assert!(
        !text.contains(payload["nhs_number"].as_str().unwrap())
            && !text.contains("1994-08-09")
            && !text.contains("2QT")
    );

    let decision = &app.entries().await[0].event;
    assert_eq!(decision.key_ref.as_deref(), Some("agreement/nvtt-nhse-dataset/v1"));
    assert_eq!(
        decision.treatments,
        [
            "token /nhs_number",
            "generalise_postcode:district /postcode",
            "generalise_date:age_band /date_of_birth"
        ]
    );
    assert_eq!(decision.subject_index.len(), 1);
    assert_eq!(decision.subject_index[0].len(), 64);
    assert!(!decision.subject_index[0].contains("9997654323"));
    assert_eq!(decision.consent_status, None);

    // The same person in a later return gets the same token (linkable within the agreement).
    let (_, again, _) = app.post("nvtt-nhse-dataset", "nhs_dataset_return", &payload).await;
    let doc2 = app
        .delivered("nhse-dataset", again["transfer_id"].as_str().unwrap())
        .await;
    assert_eq!(doc2["payload"]["nhs_number"], token);
    assert_eq!(app.entries().await[2].event.subject_index, decision.subject_index);
}

#[tokio::test]
async fn a_mash_referral_carries_its_consent_and_transparency_record() {
    let app = TestApp::spawn().await;
    let (status, body, _) = app.post_envelope("nvtt-mash-referral", &mash_envelope()).await;
    assert_eq!(status, 202, "{body}");
    // Without consent, the MASH agreement holds it for a director (see approvals.rs).
    assert_eq!(body["status"], "held");
    let decision = &app.entries().await[0].event;
    assert_eq!(decision.consent_status.as_deref(), Some("not_sought"));
    assert_eq!(
        decision.consent_reason.as_deref(),
        Some("increase_risk_of_significant_harm")
    );
    assert_eq!(decision.subject_informed.as_deref(), Some("not_informed"));
    assert!(decision.legal_bases.contains(&"dpa-2018/sch1/18".to_owned()));
    assert!(decision.data_classes.contains(&"third_party".to_owned()));
}

#[tokio::test]
async fn a_lado_referral_records_criminal_offence_data_leaving() {
    let app = TestApp::spawn().await;
    let payload = fixture("lado_referral", "valid", "01");
    let lead = crate::helpers::http_client_as(
        &crate::helpers::pki().sender,
        &crate::helpers::token("sam", &["safeguarding_lead"]),
    );
    let body = serde_json::to_vec(&json!({"message_type": "lado_referral", "payload": payload})).unwrap();
    let (status, body, _) = app.post_raw(&lead, "nvtt-lado-referral", body).await;
    assert_eq!(status, 202, "{body}");
    app.delivered("lado", body["transfer_id"].as_str().unwrap()).await;
    let decision = &app.entries().await[0].event;
    assert!(decision.data_classes.contains(&"criminal_offence".to_owned()));
    assert!(decision.legal_bases.contains(&"dpa-2018/sch1/36".to_owned()));
}

#[tokio::test]
async fn every_valid_fixture_flows_under_its_agreement() {
    let app = TestApp::spawn().await;
    for (agreement, message_type) in [
        ("nvtt-gp-update", "gp_update"),
        ("nvtt-nhse-dataset", "nhs_dataset_return"),
        ("nvtt-mash-referral", "mash_referral"),
        ("nvtt-lado-referral", "lado_referral"),
    ] {
        for n in ["01", "02", "03"] {
            let mut envelope = mash_envelope();
            envelope["message_type"] = json!(message_type);
            envelope["payload"] = fixture(message_type, "valid", n);
            let (status, body, _) = app.post_envelope(agreement, &envelope).await;
            assert_eq!(status, 202, "{agreement} {n}: {body}");
        }
    }
}

#[tokio::test]
async fn a_safeguarding_referral_without_its_consent_block_is_refused() {
    let app = TestApp::spawn().await;
    let mut e = mash_envelope();
    e.as_object_mut().unwrap().remove("consent");
    let (status, body, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!((status, code(&body)), (422, "consent_required"));
    assert_eq!(pointers(&body), ["/consent"]);
    assert_eq!(
        app.entries().await[0].event.reason_code.as_deref(),
        Some("consent_required")
    );
}

#[tokio::test]
async fn consent_not_sought_needs_its_reason() {
    let app = TestApp::spawn().await;
    let mut e = mash_envelope();
    e["consent"] = json!({"status": "not_sought"});
    let (status, body, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!((status, code(&body)), (422, "consent_incomplete"));
    assert_eq!(pointers(&body), ["/consent/reason_not_sought"]);
}

#[tokio::test]
async fn a_reason_not_sought_must_be_one_the_law_recognises() {
    let app = TestApp::spawn().await;
    let mut e = mash_envelope();
    e["consent"]["reason_not_sought"] = json!("too busy");
    let (status, body, text) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!((status, code(&body)), (422, "invalid_envelope"));
    assert_eq!(pointers(&body), ["/consent/reason_not_sought"]);
    assert!(!text.contains("too busy"));
}

#[tokio::test]
async fn the_subject_informed_record_is_required_and_complete() {
    let app = TestApp::spawn().await;
    let mut e = mash_envelope();
    e.as_object_mut().unwrap().remove("subject_informed");
    let (status, body, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!((status, code(&body)), (422, "subject_informed_required"));
    e["subject_informed"] = json!({"status": "not_informed"});
    let (_, body, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!(pointers(&body), ["/subject_informed/reason"]);
    e["subject_informed"] = json!({"status": "after"});
    let (_, body, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!(pointers(&body), ["/subject_informed/due_by"]);
    e["subject_informed"] = json!({"status": "after", "due_by": "2026-06-08"});
    let (status, _, _) = app.post_envelope("nvtt-mash-referral", &e).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn under_implied_consent_an_objection_stops_the_transfer() {
    let app = TestApp::spawn().await;
    let e = json!({"message_type": "gp_update", "payload": gp_update(), "consent": {"status": "refused"}});
    let (status, body, _) = app.post_envelope("nvtt-gp-update", &e).await;
    assert_eq!((status, code(&body)), (422, "consent_refused"));
    assert!(!app.dir.path().join("deliveries/y99001-gp").exists());
}

fn with_consent_model(id: &str, model: &str) -> (String, String) {
    gp_agreement_variant(id, |t| {
        t.replace("model = \"implied\"", &format!("model = \"{model}\""))
    })
}

#[tokio::test]
async fn explicit_consent_needs_consent_obtained_with_evidence() {
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![with_consent_model("gp-explicit", "explicit")],
        ..Spawn::default()
    })
    .await;
    let post = |consent: Option<Value>| {
        let mut e = json!({"message_type": "gp_update", "payload": gp_update()});
        if let Some(c) = consent {
            e["consent"] = c;
        }
        let app = &app;
        async move { app.post_envelope("gp-explicit", &e).await }
    };
    let (s, b, _) = post(None).await;
    assert_eq!((s, code(&b)), (422, "consent_required"));
    let (s, b, _) = post(Some(json!({"status": "refused"}))).await;
    assert_eq!((s, code(&b)), (422, "consent_refused"));
    let (s, b, _) = post(Some(json!({"status": "obtained", "given_by": "subject"}))).await;
    assert_eq!((s, code(&b)), (422, "consent_incomplete"));
    assert_eq!(pointers(&b), ["/consent/evidence_ref"]);
    let (s, b, _) = post(Some(
        json!({"status": "obtained", "given_by": "subject", "evidence_ref": "CMS:consent/8812"}),
    ))
    .await;
    assert_eq!(s, 202, "{b}");
    let entries = app.entries().await;
    // Delivery runs after the answer, so the last decision is not necessarily the last entry.
    let recorded = &entries
        .iter()
        .rev()
        .find(|e| e.event.kind == EventKind::Decision)
        .unwrap()
        .event;
    assert_eq!(recorded.status, isa_gateway::ledger::TransferStatus::Accepted);
    let kept = recorded.consent_evidence_ref.clone().unwrap();
    assert!(
        kept.starts_with("ref:") && !kept.contains("8812"),
        "a keyed hash, never the text: {kept}"
    );
}

#[tokio::test]
async fn all_contributors_must_have_consented() {
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![with_consent_model("gp-couple", "all_contributors")],
        ..Spawn::default()
    })
    .await;
    let mut e = json!({
        "message_type": "gp_update",
        "payload": gp_update(),
        "consent": {"status": "obtained", "given_by": "subject", "contributors": [
            {"ref": "client-1", "relationship": "subject", "consented": true},
            {"ref": "client-2", "relationship": "partner", "consented": false}
        ]}
    });
    let (status, body, _) = app.post_envelope("gp-couple", &e).await;
    assert_eq!((status, code(&body)), (422, "consent_not_all_contributors"));
    assert_eq!(pointers(&body), ["/consent/contributors/1/consented"]);
    e["consent"]["contributors"][1]["consented"] = json!(true);
    let (status, body, _) = app.post_envelope("gp-couple", &e).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn agreements_are_readable_with_legal_bases_titles_and_field_treatments() {
    // A fortnight before the GP agreement's review date.
    let app = TestApp::spawn_with(Spawn {
        clock: Clock::Fixed(at("2027-12-17T09:00:00Z")),
        ..Spawn::default()
    })
    .await;
    let (status, list) = app.get(&app.sender, "/v1/agreements").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["agreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "nvtt-coroner-disclosure",
            "nvtt-couples-gp-update",
            "nvtt-court-order-disclosure",
            "nvtt-funder-return",
            "nvtt-gp-update",
            "nvtt-hospital-disclosure",
            "nvtt-lado-referral",
            "nvtt-mash-referral",
            "nvtt-nhse-dataset",
            "nvtt-police-disclosure"
        ]
    );

    let (status, gp) = app.get(&app.auditor, "/v1/agreements/nvtt-gp-update").await;
    assert_eq!(status, 200);
    assert_eq!(gp["state"], "in_force");
    assert_eq!(gp["review_due_in_days"], 14);
    assert_eq!(gp["warnings"][0], "review due in 14 day(s), on 2027-12-31");
    assert_eq!(gp["legal_bases"][0]["code"], "uk-gdpr/6.1.e");
    assert_eq!(gp["legal_bases"][0]["title"], "UK GDPR Art 6(1)(e) public task");
    assert_eq!(gp["consent"]["model"], "implied");
    assert_eq!(
        gp["fields"][0],
        json!({"pointer": "/nhs_number", "class": "identifying"})
    );

    let (_, ds) = app.get(&app.auditor, "/v1/agreements/nvtt-nhse-dataset").await;
    assert_eq!(ds["fields"][0]["treatment"], json!({"op": "token"}));
    assert_eq!(ds["outbound_schema"], "nhs_dataset_return_pseudonymised");
    let (status, _) = app.get(&app.auditor, "/v1/agreements/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_expired_agreement_shows_why_it_refuses() {
    let app = TestApp::spawn_with(Spawn {
        clock: Clock::Fixed(at("2028-04-01T00:00:00Z")),
        ..Spawn::default()
    })
    .await;
    let (_, ds) = app.get(&app.auditor, "/v1/agreements/nvtt-nhse-dataset").await;
    assert_eq!(ds["state"], "agreement_expired");
}

/// Subject access: the DPO asks with the NHS number in the body and gets every disclosure about
/// the person — not anyone else's — and the lookup is recorded without the number.
#[tokio::test]
async fn a_dpo_finds_every_disclosure_about_one_person() {
    let app = TestApp::spawn().await;
    let dataset = fixture("nhs_dataset_return", "valid", "01"); // NHS number 9997654323
    let nhs = dataset["nhs_number"].as_str().unwrap().to_owned();
    let (s1, _, _) = app.post("nvtt-nhse-dataset", "nhs_dataset_return", &dataset).await;
    let mut referral = mash_envelope();
    referral["payload"]["subject"]["nhs_number"] = json!(nhs);
    referral["consent"] = json!({"status": "obtained", "given_by": "subject"});
    let (s2, _, _) = app.post_envelope("nvtt-mash-referral", &referral).await;
    let (s3, _, _) = app
        .post(
            "nvtt-nhse-dataset",
            "nhs_dataset_return",
            &fixture("nhs_dataset_return", "valid", "02"),
        )
        .await;
    // The identified update to the person's GP is found too (issue 14: every identified flow).
    let mut gp = gp_update();
    gp["nhs_number"] = json!(nhs);
    let (s4, _, _) = app.post("nvtt-gp-update", "gp_update", &gp).await;
    assert_eq!((s1, s2, s3, s4), (202, 202, 202, 202));

    let dpo = crate::helpers::http_client_as(
        &crate::helpers::pki().auditor,
        &crate::helpers::token("daphne", &["dpo"]),
    );
    let r = subject_access(&app, &dpo, &nhs).await;
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&nhs), "the answer does not repeat the number");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let found = answer["disclosures"].as_array().unwrap();
    assert_eq!(found.len(), 3, "{answer}");
    assert_eq!(found[2]["agreement_id"], "nvtt-gp-update");
    assert_eq!(found[0]["agreement_id"], "nvtt-nhse-dataset");
    assert_eq!(found[0]["recipient"], "NHS England");
    assert_eq!(found[1]["agreement_id"], "nvtt-mash-referral");
    assert_eq!(found[1]["legal_bases"][2]["code"], "dpa-2018/sch1/18");
    assert!(
        found[1]["data_classes"]
            .as_array()
            .unwrap()
            .contains(&json!("third_party"))
    );

    let lookup = app
        .entries()
        .await
        .into_iter()
        .find(|e| e.event.kind == isa_gateway::ledger::EventKind::SubjectAccess)
        .unwrap();
    assert_eq!(lookup.event.user_sub.as_deref(), Some("daphne"));
    assert_eq!(lookup.event.user_issuer.as_deref(), Some(crate::helpers::ISSUER));
    assert_eq!(lookup.event.user_role.as_deref(), Some("dpo"));
    let recorded = serde_json::to_string(&lookup.event).unwrap();
    assert!(!recorded.contains(&nhs));
    // The lookup is part of the person's own record: their blind index under the lookups' own
    // key for the year (never the number), the same for every lookup about them that year.
    assert_eq!(lookup.event.subject_index.len(), 1);
    assert_eq!(lookup.event.subject_index[0].len(), 64);
    let again = subject_access(&app, &dpo, &nhs).await;
    assert_eq!(again.status().as_u16(), 200);
    let lookups: Vec<Vec<String>> = app
        .entries()
        .await
        .into_iter()
        .filter(|e| e.event.kind == isa_gateway::ledger::EventKind::SubjectAccess)
        .map(|e| e.event.subject_index)
        .collect();
    assert_eq!(
        lookups,
        [lookup.event.subject_index.clone(), lookup.event.subject_index.clone()]
    );

    // Subject access only through the DPO's system: a DPO token through a case system is refused.
    let dpo_through_case_system = crate::helpers::http_client_as(
        &crate::helpers::pki().sender,
        &crate::helpers::token("daphne", &["dpo"]),
    );
    let r = subject_access(&app, &dpo_through_case_system, &nhs).await;
    assert_eq!(r.status().as_u16(), 403);

    let not_dpo = subject_access(&app, &app.auditor, &nhs).await;
    assert_eq!(not_dpo.status().as_u16(), 403);
    let bad = subject_access(&app, &dpo, "9997654320").await;
    assert_eq!(bad.status().as_u16(), 422);
    assert!(!bad.text().await.unwrap().contains("9997654320"));
}

#[tokio::test]
async fn the_subject_access_cli_reads_the_number_from_standard_input() {
    use std::io::Write as _;
    let app = TestApp::spawn().await;
    let dataset = fixture("nhs_dataset_return", "valid", "01");
    app.post("nvtt-nhse-dataset", "nhs_dataset_return", &dataset).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["subject-disclosures", "--by", "daphne", "--config"])
        .arg(&app.config_path)
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.take().unwrap(),
        "{}",
        dataset["nhs_number"].as_str().unwrap()
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["disclosures"].as_array().unwrap().len(), 1);
    assert_eq!(answer["disclosures"][0]["message_type"], "nhs_dataset_return");
}

/// The basis that applied (issue 14, item 1): a MASH referral about a child records the Children
/// Acts, one about an adult the Care Act — in the ledger, in what the MASH receives, and in what
/// subject access shows — never the agreement's whole list.
#[tokio::test]
async fn a_referral_records_the_statutory_gateway_that_applied_to_it() {
    let app = TestApp::spawn().await;
    let mut bases = Vec::new();
    for fixture_name in ["01", "03"] {
        // With consent, so that neither is held for a director and both reach the MASH.
        let envelope = json!({
            "message_type": "mash_referral",
            "payload": fixture("mash_referral", "valid", fixture_name),
            "consent": {"status": "obtained", "given_by": "subject"},
            "subject_informed": {"status": "before"}
        });
        let (status, body, _) = app.post_envelope("nvtt-mash-referral", &envelope).await;
        assert!(status == 202, "{body}");
        let seq = body["ledger_seq"].as_i64().unwrap();
        let entry = app.entries().await.into_iter().find(|e| e.seq == seq).unwrap();
        bases.push((envelope["payload"]["subject_type"].clone(), entry.event.legal_bases));
    }
    let child = &bases[0];
    let adult = &bases[1];
    assert_eq!(child.0, "child");
    assert!(
        child.1.contains(&"statute/children-act-1989/s47".to_owned()),
        "{child:?}"
    );
    assert!(child.1.contains(&"statute/children-act-2004/s11".to_owned()));
    assert!(!child.1.contains(&"statute/care-act-2014/s42".to_owned()), "{child:?}");
    assert_eq!(adult.0, "adult");
    assert!(adult.1.contains(&"statute/care-act-2014/s42".to_owned()), "{adult:?}");
    assert!(!adult.1.iter().any(|b| b.contains("children-act")), "{adult:?}");
    for (_, b) in &bases {
        assert!(b.contains(&"uk-gdpr/6.1.e".to_owned()) && b.contains(&"dpa-2018/sch1/18".to_owned()));
    }
    // What the MASH receives says the same.
    let dir = app.dir.path().join("deliveries/mash");
    let mut received = Vec::new();
    for _ in 0..200 {
        received = std::fs::read_dir(&dir)
            .map(|d| d.map(|f| f.unwrap().path()).collect())
            .unwrap_or_default();
        if received.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(received.len(), 2);
    for path in received {
        let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let sent: Vec<String> = serde_json::from_value(doc["legal_bases"].clone()).unwrap();
        let decided = if doc["payload"]["subject_type"] == "child" {
            &child.1
        } else {
            &adult.1
        };
        assert_eq!(&sent, decided);
    }
    // The agreement shows its conditional bases to an IG officer.
    let (_, view) = app.get(&app.auditor, "/v1/agreements/nvtt-mash-referral").await;
    assert_eq!(view["conditional_bases"][1]["values"], json!(["adult"]));
    assert_eq!(
        view["conditional_bases"][1]["bases"][0]["code"],
        "statute/care-act-2014/s42"
    );

    // The sender's word alone does not choose the statutory gateway: the age group must agree with
    // the person's date of birth on the day (the test clock: 2026-06-01).
    // (The schema already ties each group to its own form; a child's form can still carry an
    // adult's date of birth, and the reverse.)
    let cases = [
        ("01", "child", "2008-06-01", false),
        ("01", "child", "1990-01-01", false),
        ("01", "child", "2008-06-02", true),
        ("03", "adult", "2008-06-02", false),
        ("03", "adult", "2008-06-01", true),
    ];
    for (fixture_name, subject_type, born, permitted) in cases {
        let mut payload = fixture("mash_referral", "valid", fixture_name);
        assert_eq!(payload["subject_type"], subject_type);
        payload["subject"]["date_of_birth"] = json!(born);
        let envelope = json!({
            "message_type": "mash_referral",
            "payload": payload,
            "consent": {"status": "obtained", "given_by": "subject"},
            "subject_informed": {"status": "before"}
        });
        let (status, body, _) = app.post_envelope("nvtt-mash-referral", &envelope).await;
        let case = format!("{fixture_name}, a {subject_type} born {born}");
        if permitted {
            assert_eq!(status, 202, "{case}: {body}");
            continue;
        }
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("age_group_not_confirmed")),
            "{case}: {body}"
        );
        assert_eq!(
            body["violations"][0]["pointer"], "/payload/subject_type",
            "{case}: {body}"
        );
        assert!(!body.to_string().contains(born), "{case}: {body}");
    }
}

/// What a referral states is what the ledger keeps (issue 14, item 3): who gave consent, where
/// the capacity decision is recorded, and why the person was not told — codes and references.
#[tokio::test]
async fn the_ledger_keeps_who_consented_the_capacity_reference_and_why_not_told() {
    let app = TestApp::spawn().await;
    let envelope = json!({
        "message_type": "mash_referral",
        "payload": fixture("mash_referral", "valid", "03"),
        "consent": {"status": "obtained", "given_by": "attorney_or_deputy", "capacity_ref": "CMS:capacity/12"},
        "subject_informed": {"status": "not_informed", "reason": "lacks_capacity"}
    });
    let (status, body, _) = app.post_envelope("nvtt-mash-referral", &envelope).await;
    assert_eq!(status, 202, "{body}");
    let seq = body["ledger_seq"].as_i64().unwrap();
    let e = app.entries().await.into_iter().find(|e| e.seq == seq).unwrap().event;
    assert_eq!(e.consent_given_by.as_deref(), Some("attorney_or_deputy"));
    // References a sender types are kept as keyed hashes: the same reference, the same value.
    let kept = e.capacity_ref.clone().unwrap();
    assert!(kept.starts_with("ref:") && !kept.contains("capacity"), "{kept}");
    let (_, again, _) = app.post_envelope("nvtt-mash-referral", &envelope).await;
    let seq = again["ledger_seq"].as_i64().unwrap();
    let e2 = app.entries().await.into_iter().find(|e| e.seq == seq).unwrap().event;
    assert_eq!(e2.capacity_ref, Some(kept));
    assert_eq!(e.subject_informed.as_deref(), Some("not_informed"));
    assert_eq!(e.subject_informed_reason.as_deref(), Some("lacks_capacity"));
    // A free-text reference is refused by the envelope schema, naming the pointer only.
    let mut free_text = envelope.clone();
    free_text["consent"]["capacity_ref"] = json!("Mrs Smith lacks capacity, see notes");
    let (status, body, _) = app.post_envelope("nvtt-mash-referral", &free_text).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("/consent/capacity_ref"), "{body}");
    assert!(!body.to_string().contains("Smith"), "{body}");
}

/// Objection and opt-out (issue 14, item 4): under implied consent an objection refuses the GP
/// update unless the agreement names an overriding basis, and then a director decides and the
/// basis is recorded; where the national data opt-out applies an opted-out person's transfer is
/// refused, and every transfer records whether the opt-out applied and why not.
#[tokio::test]
async fn objections_and_the_national_data_opt_out_are_honoured_and_recorded() {
    let overriding = gp_agreement_variant("gp-overriding", |t| {
        t.replace(
            "[consent]\n",
            "[consent]\noverriding_basis = \"common-law/overriding-public-interest\"\n",
        )
    });
    let dataset = std::fs::read_to_string(crate::helpers::repo().join("isa-templates/nvtt-nhse-dataset.toml"))
        .unwrap()
        .replace("id = \"nvtt-nhse-dataset\"", "id = \"dataset-opt-out\"")
        .replace(
            "national_data_opt_out_applies = false\nnational_data_opt_out_exemption = \"legal_requirement\"",
            "national_data_opt_out_applies = true",
        );
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![overriding, ("dataset-opt-out.toml".into(), dataset)],
        ..Spawn::default()
    })
    .await;
    let objection = json!({"message_type": "gp_update", "payload": gp_update(), "consent": {"status": "refused"}});
    let (status, body, _) = app.post_envelope("nvtt-gp-update", &objection).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("consent_refused")));
    let (status, body, _) = app.post_envelope("gp-overriding", &objection).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("held")), "{body}");
    let seq = body["ledger_seq"].as_i64().unwrap();
    let entries = app.entries().await;
    let held = &entries.iter().find(|e| e.seq == seq).unwrap().event;
    assert!(
        held.legal_bases
            .contains(&"common-law/overriding-public-interest".to_owned())
    );
    assert_eq!(held.consent_status.as_deref(), Some("refused"));

    let dataset = |status: Option<&str>| {
        let mut e =
            json!({"message_type": "nhs_dataset_return", "payload": fixture("nhs_dataset_return", "valid", "01")});
        if let Some(s) = status {
            e["national_data_opt_out"] = json!(s);
        }
        e
    };
    let (status, body, _) = app.post_envelope("dataset-opt-out", &dataset(Some("opted_out"))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("national_data_opt_out")));
    let (status, body, _) = app.post_envelope("dataset-opt-out", &dataset(None)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("opt_out_status_required")));
    let (status, body, _) = app
        .post_envelope("dataset-opt-out", &dataset(Some("not_opted_out")))
        .await;
    assert_eq!(status, 202, "{body}");
    let recorded = app_entry(&app, body["ledger_seq"].as_i64().unwrap())
        .await
        .national_data_opt_out;
    assert_eq!(recorded.as_deref(), Some("applies:not_opted_out"));
    let (status, body, _) = app.post_envelope("nvtt-nhse-dataset", &dataset(None)).await;
    assert_eq!(status, 202, "{body}");
    let recorded = app_entry(&app, body["ledger_seq"].as_i64().unwrap())
        .await
        .national_data_opt_out;
    assert_eq!(recorded.as_deref(), Some("not_applicable:legal_requirement"));
}

async fn app_entry(app: &TestApp, seq: i64) -> isa_gateway::ledger::Event {
    app.entries().await.into_iter().find(|e| e.seq == seq).unwrap().event
}

/// Statistical returns with small-number suppression (issue 14, item 7): the funder receives the
/// table with counts of 1 to 4 hidden, enough other cells hidden that none can be found by
/// subtraction, every count and total rounded to 5 and totals computed by the gateway; the ledger
/// records the rule applied.
#[tokio::test]
async fn a_funder_return_leaves_with_small_numbers_suppressed() {
    // The shipped agreement, to the funder's folder every test gateway has.
    let app = TestApp::spawn().await;
    let table = example("funder_return.json")["payload"].clone();
    let (status, body, _) = app.post("nvtt-funder-return", "funder_return", &table).await;
    assert_eq!(status, 202, "{body}");
    let id = body["transfer_id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "delivered");
    let sent: Value =
        serde_json::from_slice(&std::fs::read(app.dir.path().join(format!("deliveries/funder/{id}.json"))).unwrap())
            .unwrap();
    let published = &sent["payload"];
    // 3 and 2 are small; 37 and 7 are hidden with them so that no row or column gives them away.
    assert_eq!(
        published["cells"],
        json!([[40, null, null], [50, 45, 10], [20, null, null]])
    );
    assert_eq!(published["row_totals"], json!([80, 105, 25]));
    assert_eq!(published["column_totals"], json!([110, 85, 20]));
    assert_eq!(published["total"], json!(215));
    let decision = app
        .entries()
        .await
        .into_iter()
        .find(|e| e.event.transfer_id.to_string() == id)
        .unwrap();
    assert!(
        decision
            .event
            .treatments
            .contains(&"suppress 1-4 round 5 secondary /cells".to_owned()),
        "{:?}",
        decision.event.treatments
    );
}

/// The couples counselling template (issue 14, item 8): an update to one partner's GP leaves only
/// when every contributor consented, and the example in the README does.
#[tokio::test]
async fn a_couples_update_leaves_only_with_every_contributors_consent() {
    let app = TestApp::spawn().await;
    let example = example("couples_gp_update.json");
    let (status, body, _) = app.post_envelope("nvtt-couples-gp-update", &example).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        app.settled(body["transfer_id"].as_str().unwrap()).await["status"],
        "delivered"
    );
    let mut one_declined = example.clone();
    one_declined["consent"]["contributors"][1]["consented"] = json!(false);
    let (status, body, _) = app.post_envelope("nvtt-couples-gp-update", &one_declined).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("consent_not_all_contributors")),
        "{body}"
    );
    assert!(body.to_string().contains("/consent/contributors/1"), "{body}");
}

/// Whatever a sender types into a reference (here an NHS number and a name) never reaches the
/// ledger or the idempotency table as typed (review finding: references were kept verbatim in
/// append-only, signed entries).
#[tokio::test]
async fn typed_references_never_reach_the_database_as_typed() {
    let app = TestApp::spawn().await;
    let envelope = json!({
        "message_type": "mash_referral",
        "payload": fixture("mash_referral", "valid", "03"),
        "consent": {"status": "obtained", "given_by": "attorney_or_deputy",
                    "evidence_ref": "NHS:9991112227", "capacity_ref": "Kacper.Wisniewski-Grant/1"},
        "subject_informed": {"status": "before"}
    });
    let r = app
        .sender
        .post(app.url("/v1/agreements/nvtt-mash-referral/transfers"))
        .header("idempotency-key", "Kacper-Wisniewski-Grant-DOB-2016")
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // A replay with the same key still finds the original.
    let again = app
        .sender
        .post(app.url("/v1/agreements/nvtt-mash-referral/transfers"))
        .header("idempotency-key", "Kacper-Wisniewski-Grant-DOB-2016")
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let mut files = Vec::new();
    for suffix in ["", "-wal"] {
        files.extend(std::fs::read(format!("{}{suffix}", app.db_path().display())).unwrap_or_default());
    }
    for typed in ["9991112227", "Wisniewski"] {
        assert!(
            !files.windows(typed.len()).any(|w| w == typed.as_bytes()),
            "{typed} is in the database files"
        );
    }
}

/// A subject access request for `nhs_number`, in the body, as `client`.
async fn subject_access(app: &TestApp, client: &reqwest::Client, nhs_number: &str) -> reqwest::Response {
    client
        .post(app.url("/v1/subject-disclosures"))
        .json(&json!({"nhs_number": nhs_number}))
        .send()
        .await
        .unwrap()
}

/// One of the README's example files under `examples/`.
fn example(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(crate::helpers::repo().join("examples").join(name)).unwrap()).unwrap()
}
