//! One-off disclosures (issue 14): a court order for a client's counselling records, outside any
//! standing agreement. Always held for a director, refused when the approver is the requester,
//! approved and delivered to the chosen destination, recorded with the requester and its legal
//! bases, and found by subject access.

use isa_gateway::ledger::{DecisionKind, EventKind};
use serde_json::{Value, json};

use crate::helpers::{TestApp, http_client_as, pki, repo, token};

fn court_order() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("examples/court_order_disclosure.json")).unwrap())
        .unwrap()
}

async fn disclose(app: &TestApp, client: &reqwest::Client, body: &Value) -> (u16, Value) {
    let r = client.post(app.url("/v1/disclosures")).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, client: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    let r = client.post(app.url(path)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The decision entry of transfer `id`.
fn decision_of(entries: &[isa_gateway::ledger::Entry], id: &str) -> isa_gateway::ledger::Event {
    entries
        .iter()
        .map(|e| &e.event)
        .find(|e| e.kind == EventKind::Decision && e.transfer_id.to_string() == id)
        .unwrap()
        .clone()
}

fn delivered_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(app.dir.path().join("deliveries/disclosures"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_court_order_disclosure_is_held_approved_by_another_person_delivered_and_found_by_subject_access() {
    let app = TestApp::spawn().await;
    // The DPO who prepares it is also a director: still not allowed to approve it.
    let dpo = http_client_as(&pki().sender, &token("daphne", &["dpo", "director"]));
    let (status, sent) = disclose(&app, &dpo, &court_order()).await;
    assert_eq!((status, sent["status"].as_str()), (202, Some("held")), "{sent}");
    let id = sent["transfer_id"].as_str().unwrap().to_owned();

    let approve = format!("/v1/transfers/{id}/approve");
    let reason = json!({"reason": "legal_duty", "note_ref": "CMS:order/NV26F00123"});
    let (status, body) = post(&app, &dpo, &approve, reason.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("two_person_rule")),
        "{body}"
    );
    assert!(delivered_files(&app).is_empty(), "nothing leaves while held");

    let director = http_client_as(&pki().sender, &token("dee", &["director"]));
    let (status, body) = post(&app, &director, &approve, reason).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.settled(&id).await["status"], "delivered");

    // The court receives the attendance, its own reference, and the bases the order rests on.
    let files = delivered_files(&app);
    assert_eq!(files.len(), 1);
    let sent: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(sent["recipient"]["organisation"], "Northvale Family Court");
    assert_eq!(
        sent["in_response_to"],
        json!({"kind": "court_order", "reference": "NV26F00123"})
    );
    assert_eq!(sent["payload"]["attendance"]["sessions_attended"], 9);
    assert!(
        sent["legal_bases"]
            .as_array()
            .unwrap()
            .contains(&json!("dpa-2018/sch2/5"))
    );

    // The ledger keeps the requester's kind, organisation and a keyed hash of the reference.
    let entries = app.entries().await;
    let decision = decision_of(&entries, &id);
    assert_eq!(decision.decision, Some(DecisionKind::Hold));
    assert_eq!(decision.requester_kind.as_deref(), Some("court_order"));
    assert_eq!(decision.recipient.as_deref(), Some("Northvale Family Court"));
    assert_eq!(decision.destination.as_deref(), Some("disclosures-drop"));
    let kept = decision.requester_ref.as_deref().unwrap();
    assert!(kept.starts_with("ref:") && !kept.contains("NV26F00123"), "{kept}");
    let delivery = entries
        .iter()
        .map(|e| &e.event)
        .find(|e| e.kind == EventKind::Delivery && e.transfer_id.to_string() == id)
        .unwrap();
    assert_eq!(delivery.destination.as_deref(), Some("disclosures-drop"));

    // A DPO's subject access request finds it, with the court and the legal bases.
    let dpo_auditor = http_client_as(&pki().auditor, &token("daphne", &["dpo"]));
    let r = dpo_auditor
        .post(app.url("/v1/subject-disclosures"))
        .json(&json!({"nhs_number": "9434765919"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    let found = answer["disclosures"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{answer}");
    assert_eq!(found[0]["agreement_id"], "nvtt-court-order-disclosure");
    assert_eq!(found[0]["recipient"], "Northvale Family Court");
    let bases: Vec<&str> = found[0]["legal_bases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["code"].as_str())
        .collect();
    assert!(
        bases.contains(&"statute/court-order") && bases.contains(&"uk-gdpr/9.2.f"),
        "{bases:?}"
    );

    // The ledger verifies, delivered bytes and destination included.
    assert_eq!(
        isa_gateway::ledger::verify_transfers(app.ledger.as_ref())
            .await
            .unwrap(),
        None
    );
}

/// Each rule of the disclosure block, through the real API: a 4xx naming the rule and the pointer,
/// never the value, and nothing held.
#[tokio::test]
async fn a_disclosure_names_its_requester_and_a_destination_its_template_offers() {
    let app = TestApp::spawn().await;
    let dpo = http_client_as(&pki().sender, &token("daphne", &["dpo"]));
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, u16, &str, &str)> = vec![
        (
            "no requester",
            Box::new(|b| drop(b.as_object_mut().unwrap().remove("disclosure"))),
            422,
            "disclosure_details_required",
            "/disclosure",
        ),
        (
            "a destination not offered",
            Box::new(|b| b["disclosure"]["destination"] = json!("mash-drop")),
            422,
            "destination_not_offered",
            "/disclosure/destination",
        ),
        (
            "a requester the template does not list (typed text never reaches the ledger)",
            Box::new(|b| b["disclosure"]["requester"]["id"] = json!("jordan-ashworth")),
            422,
            "requester_not_listed",
            "/disclosure/requester/id",
        ),
        (
            "a name typed where the requester's id goes",
            Box::new(|b| b["disclosure"]["requester"]["id"] = json!("Jordan Ashworth 9434765919")),
            422,
            "invalid_envelope",
            "/disclosure/requester/id",
        ),
        (
            "not told",
            Box::new(|b| drop(b.as_object_mut().unwrap().remove("subject_informed"))),
            422,
            "subject_informed_required",
            "/subject_informed",
        ),
        (
            "clinical notes",
            Box::new(|b| b["payload"]["clinical_summary"] = json!("Disclosed abuse in session 3")),
            422,
            "field_not_allowed",
            "/payload/clinical_summary",
        ),
    ];
    for (name, edit, want_status, want_code, want_pointer) in cases {
        let mut body = court_order();
        edit(&mut body);
        let (status, answer) = disclose(&app, &dpo, &body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (want_status, Some(want_code)),
            "{name}: {answer}"
        );
        let pointers: Vec<&str> = answer["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["pointer"].as_str())
            .collect();
        assert!(pointers.contains(&want_pointer), "{name}: {answer}");
        let text = answer.to_string();
        assert!(
            !text.contains("9434765919") && !text.contains("Disclosed abuse"),
            "{name}: {text}"
        );
    }

    // A standing agreement cannot be used for a one-off disclosure, nor a disclosure block under one.
    let mut standing = court_order();
    standing["template"] = json!("nvtt-mash-referral");
    let (status, answer) = disclose(&app, &dpo, &standing).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("unknown_agreement")),
        "{answer}"
    );
    assert_eq!(answer["violations"][0]["pointer"], "/template", "{answer}");

    // A body that cannot be read says so (the template is in the body, so there is no agreement
    // to name), and never echoes what was sent.
    let oversized =
        serde_json::to_vec(&json!({"template": "nvtt-court-order-disclosure", "pad": "9434765919".repeat(8000)}))
            .unwrap();
    let unreadable: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not JSON",
            b"template=nvtt-court-order-disclosure 9434765919".to_vec(),
            400,
            "malformed_json",
        ),
        ("over the size limit", oversized, 413, "body_too_large"),
    ];
    for (name, bytes, want_status, want_code) in unreadable {
        let r = dpo
            .post(app.url("/v1/disclosures"))
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (status, answer["code"].as_str()),
            (want_status, Some(want_code)),
            "{name}: {answer}"
        );
        assert!(!text.contains("9434765919"), "{name}: {text}");
    }

    let lead = http_client_as(&pki().sender, &token("sam", &["safeguarding_lead"]));
    let mut mash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/mash_referral.json")).unwrap()).unwrap();
    mash["disclosure"] = court_order()["disclosure"].clone();
    let r = lead
        .post(app.url("/v1/agreements/nvtt-mash-referral/transfers"))
        .json(&mash)
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["code"], "not_a_one_off_template", "{answer}");

    // A practitioner (not a role the template names) may not make one.
    let practitioner = http_client_as(&pki().sender, &token("pat", &["practitioner"]));
    let (status, answer) = disclose(&app, &practitioner, &court_order()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("role_not_permitted")),
        "{answer}"
    );

    let (status, held) = app
        .get(&http_client_as(&pki().sender, &token("dee", &["director"])), "/v1/held")
        .await;
    assert_eq!(status, 200);
    assert_eq!(held["transfers"].as_array().map(Vec::len), Some(0), "{held}");
}

/// `isa-gateway disclose` against `gateway`, the token file at `mode`, the request on standard input.
fn run_disclose(gateway: String, token_file: std::path::PathBuf, mode: u32, body: Vec<u8>) -> std::process::Output {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["disclose", "--gateway", &gateway])
        .arg("--ca")
        .arg(&pki().ca_cert)
        .arg("--cert")
        .arg(&pki().sender.cert)
        .arg("--key")
        .arg(&pki().sender.key)
        .arg("--token-file")
        .arg(&token_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    child.wait_with_output().unwrap()
}

/// The same from the command line, as a case system's operator would: the request on standard
/// input, the token in a private file; a token file others can read is refused before anything is
/// sent.
#[tokio::test]
async fn the_disclose_command_makes_a_held_disclosure_through_the_api() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token("daphne", &["dpo"])).unwrap();
    let body = serde_json::to_vec(&court_order()).unwrap();
    let (url, file, b) = (app.url(""), token_file.clone(), body.clone());
    let refused = tokio::task::spawn_blocking(move || run_disclose(url, file, 0o644, b))
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
    assert!(app.entries().await.is_empty(), "nothing was sent");

    let (url, file) = (app.url(""), token_file.clone());
    let held = tokio::task::spawn_blocking(move || run_disclose(url, file, 0o600, body))
        .await
        .unwrap();
    assert_eq!(held.status.code(), Some(0), "{}", String::from_utf8_lossy(&held.stderr));
    let receipt: Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(receipt["status"], "held");
    let (status, listed) = app
        .get(&http_client_as(&pki().sender, &token("dee", &["director"])), "/v1/held")
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["transfers"][0]["transfer_id"], receipt["transfer_id"]);
}

/// Every shipped one-off template, from its example in `examples/`: held for a director whoever
/// asks, recorded with the kind of request and exactly the bases the kind fixes, and delivered to
/// the requester the template names once another person approves. The hospital template alone
/// lets a clinical summary leave.
#[tokio::test]
async fn each_kind_of_one_off_disclosure_is_held_recorded_with_its_bases_and_delivered_once_approved() {
    let app = TestApp::spawn().await;
    let director = http_client_as(&pki().sender, &token("dee", &["director"]));
    #[rustfmt::skip]
    let table = [
        ("court_order_disclosure.json", "dpo", "court_order", "Northvale Family Court",
         &["uk-gdpr/6.1.c", "uk-gdpr/9.2.f", "dpa-2018/sch2/5", "common-law/legal-requirement", "statute/court-order"][..], false),
        ("coroner_disclosure.json", "dpo", "coroners_notice", "HM Senior Coroner for Northvale",
         &["uk-gdpr/6.1.c", "uk-gdpr/9.2.f", "dpa-2018/sch2/5", "common-law/legal-requirement", "statute/coroners-and-justice-act-2009/sch5"][..], false),
        ("police_disclosure.json", "safeguarding_lead", "police_crime", "Northvale Police",
         &["uk-gdpr/6.1.e", "uk-gdpr/9.2.g", "dpa-2018/sch1/10", "dpa-2018/sch2/2", "common-law/overriding-public-interest"][..], false),
        ("hospital_disclosure.json", "practitioner", "vital_interests", "Northvale General Hospital NHS Foundation Trust",
         &["uk-gdpr/6.1.d", "uk-gdpr/9.2.c", "common-law/best-interests"][..], true),
    ];
    for (example, role, kind, organisation, bases, summary_leaves) in table {
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(repo().join("examples").join(example)).unwrap()).unwrap();
        let asker = http_client_as(&pki().sender, &token("ash", &[role]));
        let (status, sent) = disclose(&app, &asker, &body).await;
        assert_eq!(
            (status, sent["status"].as_str()),
            (202, Some("held")),
            "{example}: {sent}"
        );
        let id = sent["transfer_id"].as_str().unwrap().to_owned();
        let decision = decision_of(&app.entries().await, &id);
        assert_eq!(decision.requester_kind.as_deref(), Some(kind), "{example}");
        assert_eq!(decision.recipient.as_deref(), Some(organisation), "{example}");
        assert_eq!(decision.legal_bases, bases, "{example}");

        let approve = format!("/v1/transfers/{id}/approve");
        let reason = json!({"reason": "legal_duty", "note_ref": "CMS:request/1"});
        let (status, answer) = post(&app, &director, &approve, reason).await;
        assert_eq!(status, 200, "{example}: {answer}");
        assert_eq!(app.settled(&id).await["status"], "delivered", "{example}");
        let file = delivered_files(&app)
            .into_iter()
            .find(|f| f.to_string_lossy().contains(&id))
            .unwrap_or_else(|| panic!("{example}: no file for {id}"));
        let out: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(out["recipient"]["organisation"], organisation, "{example}");
        assert_eq!(out["in_response_to"]["kind"], kind, "{example}");
        assert_eq!(
            out["payload"].get("clinical_summary").is_some(),
            summary_leaves,
            "{example}: a clinical summary leaves only where the template lists it"
        );
    }
}
