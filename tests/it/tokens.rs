//! Users: the bearer-token attack matrix, roles, and the user recorded with every decision.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{GP_AGREEMENT, KEY_ID, TestApp, claims, fixture, gp_update, http_client_as, pki, sign, token};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Sends a GP update with the given bearer token (or none) and returns status, code, and the
/// ledger's record of the attempt.
async fn attempt(app: &TestApp, bearer: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::helpers::client_tls(Some(&pki().sender)))
        .build()
        .unwrap()
        .post(app.url("/v1/agreements/nvtt-gp-update/transfers"))
        .json(&json!({"message_type": "gp_update", "payload": gp_update()}));
    if let Some(b) = bearer {
        request = request.header("authorization", format!("Bearer {b}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 401 {
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "401 without a Bearer challenge");
    }
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Nobody is accountable for an attempt without a valid token: it is refused, counted against the
/// system and logged, but never written one by one into the permanent ledger.
async fn refused_unrecorded(bearer: Option<&str>, expected: &str) {
    let app = TestApp::spawn().await;
    let (status, code) = attempt(&app, bearer).await;
    assert_eq!((status, code.as_str()), (401, expected));
    assert!(
        app.entries().await.is_empty(),
        "nothing recorded before a user is established"
    );
    let metrics = app.metrics().await;
    let counted = format!("isa_requests_refused_unrecorded_total{{system=\"tt-case-system\",reason=\"{expected}\"}} 1");
    assert!(metrics.contains(&counted), "{metrics}");
    assert!(!app.dir.path().join("deliveries/y99001-gp").exists());
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn a_missing_token_is_refused() {
    refused_unrecorded(None, "token_missing").await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(serde_json::to_vec(&claims("mallory", &["director"])).unwrap());
    refused_unrecorded(Some(&format!("{header}.{body}.")), "token_malformed").await;
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_public_key_is_refused() {
    let public_pem = std::fs::read(&pki().issuer_pub).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(KEY_ID.into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("mallory", &["director"]),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    refused_unrecorded(Some(&forged), "token_algorithm_not_allowed").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let mut c = claims("alice", &["practitioner"]);
    c["exp"] = json!(now() - 3600);
    c["nbf"] = json!(now() - 7200);
    refused_unrecorded(Some(&sign(&c, Some(KEY_ID), &pki().issuer_key)), "token_expired").await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let mut c = claims("alice", &["practitioner"]);
    c["nbf"] = json!(now() + 3600);
    c["exp"] = json!(now() + 7200);
    refused_unrecorded(Some(&sign(&c, Some(KEY_ID), &pki().issuer_key)), "token_not_yet_valid").await;
}

/// A correctly signed token that lives ten years is refused (issue 13, row 8): a stolen token is
/// good for an hour at most (`auth.max_token_lifetime_secs`), however its `iat` is set.
#[tokio::test]
async fn a_token_that_lives_too_long_is_refused() {
    let mut c = claims("alice", &["practitioner"]);
    c["exp"] = json!(now() + 10 * 365 * 86_400);
    refused_unrecorded(
        Some(&sign(&c, Some(KEY_ID), &pki().issuer_key)),
        "token_lifetime_too_long",
    )
    .await;
    // Issued "in the future" so that exp - iat looks short: still too long from now.
    c["iat"] = json!(now() + 10 * 365 * 86_400 - 600);
    refused_unrecorded(
        Some(&sign(&c, Some(KEY_ID), &pki().issuer_key)),
        "token_lifetime_too_long",
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let mut c = claims("alice", &["practitioner"]);
    c["iss"] = json!("https://idp.elsewhere.example");
    refused_unrecorded(Some(&sign(&c, Some(KEY_ID), &pki().issuer_key)), "token_wrong_issuer").await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let mut c = claims("alice", &["practitioner"]);
    c["aud"] = json!("some-other-service");
    refused_unrecorded(Some(&sign(&c, Some(KEY_ID), &pki().issuer_key)), "token_wrong_audience").await;
}

#[tokio::test]
async fn an_unknown_key_id_is_refused() {
    refused_unrecorded(
        Some(&sign(
            &claims("alice", &["practitioner"]),
            Some("other-key"),
            &pki().issuer_key,
        )),
        "token_unknown_key",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let good = token("alice", &["practitioner"]);
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut bytes = B64.decode(sig).unwrap();
    bytes[10] ^= 0x01;
    refused_unrecorded(Some(&format!("{head}.{}", B64.encode(bytes))), "token_bad_signature").await;
}

#[tokio::test]
async fn a_token_signed_by_an_impostor_with_the_right_key_id_is_refused() {
    refused_unrecorded(
        Some(&sign(
            &claims("alice", &["director"]),
            Some(KEY_ID),
            &pki().foreign_issuer_key,
        )),
        "token_bad_signature",
    )
    .await;
}

#[tokio::test]
async fn elevated_claims_in_a_tampered_payload_are_refused() {
    let good = token("alice", &["practitioner"]);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = B64.encode(serde_json::to_vec(&claims("alice", &["director", "auditor"])).unwrap());
    refused_unrecorded(Some(&parts.join(".")), "token_bad_signature").await;
}

#[tokio::test]
async fn a_role_the_agreement_does_not_allow_is_refused_unrecorded_with_the_user() {
    // LADO referrals are for the safeguarding lead only.
    let app = TestApp::spawn().await;
    let practitioner = http_client_as(&pki().sender, &token("pat", &["practitioner"]));
    let body = serde_json::to_vec(
        &json!({"message_type": "lado_referral", "payload": fixture("lado_referral", "valid", "01")}),
    )
    .unwrap();
    let (status, body, _) = app.post_raw(&practitioner, "nvtt-lado-referral", body).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("role_not_permitted")));
    let lead = http_client_as(&pki().sender, &token("sam", &["safeguarding_lead"]));
    let ok = serde_json::to_vec(
        &json!({"message_type": "lado_referral", "payload": fixture("lado_referral", "valid", "01")}),
    )
    .unwrap();
    let (status, _, _) = app.post_raw(&lead, "nvtt-lado-referral", ok).await;
    assert_eq!(status, 202);
    let entries = app.entries().await;
    let decisions: Vec<_> = entries
        .iter()
        .filter(|e| e.event.kind == isa_gateway::ledger::EventKind::Decision)
        .collect();
    assert_eq!(decisions[0].event.user_sub.as_deref(), Some("pat"));
    assert_eq!(decisions[0].event.user_role.as_deref(), Some("practitioner"));
    assert_eq!(decisions[0].event.reason_code.as_deref(), Some("role_not_permitted"));
    assert_eq!(decisions[1].event.user_sub.as_deref(), Some("sam"));
    assert_eq!(decisions[1].event.user_role.as_deref(), Some("safeguarding_lead"));
    assert_eq!(
        decisions[1].event.decision.map(isa_gateway::ledger::DecisionKind::code),
        Some("permit")
    );
}

#[tokio::test]
async fn every_accepted_transfer_records_its_user_and_role() {
    let app = TestApp::spawn().await;
    let (status, _, _) = app.post(GP_AGREEMENT, "gp_update", &gp_update()).await;
    assert_eq!(status, 202);
    let e = &app.entries().await[0].event;
    assert_eq!(e.user_sub.as_deref(), Some("alice"));
    assert_eq!(e.user_role.as_deref(), Some("practitioner"));
}

#[tokio::test]
async fn auditor_endpoints_need_the_auditor_role() {
    let app = TestApp::spawn().await;
    let not_an_auditor = http_client_as(&pki().auditor, &token("ivan", &["practitioner"]));
    let (status, body) = app
        .get(&not_an_auditor, "/v1/agreements/nvtt-gp-update/transfers")
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("role_required")));
    let (status, _) = app.get(&app.auditor, "/v1/agreements/nvtt-gp-update/transfers").await;
    assert_eq!(status, 200);
    let no_token = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::helpers::client_tls(Some(&pki().auditor)))
        .build()
        .unwrap();
    let (status, body) = app.get(&no_token, "/v1/agreements").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_missing")));
}

/// The README walk-through's token: minted by the CLI from the development issuer, accepted by
/// a development gateway.
#[tokio::test]
async fn the_cli_mints_development_tokens_the_gateway_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::dev_config_in(dir.path(), |c| c);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["token", "dev", "--sub", "alice", "--role", "practitioner", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let gateway = crate::helpers::GatewayProcess::start(&config).await;
    let r = http_client_as(&pki().sender, &minted)
        .post(gateway.url("/v1/agreements/nvtt-gp-update/transfers"))
        .json(&json!({"message_type": "gp_update", "payload": gp_update()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    gateway.kill();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
        .args(["token", "dev", "--sub", "alice", "--role", "overlord", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));
}
