//! The OpenAPI document: generated from the handlers, checked in, served, and true of the router.

use serde_json::Value;

use crate::helpers::{TestApp, repo};

/// docs/openapi.json is generated from the code; regenerated here if stale (commit it).
#[test]
fn checked_in_openapi_document_is_up_to_date() {
    let path = repo().join("docs/openapi.json");
    let fresh = isa_gateway::api::openapi::pretty_json();
    if std::fs::read_to_string(&path).unwrap_or_default() != fresh {
        std::fs::write(&path, fresh).unwrap();
        panic!("{} was stale and has been regenerated; commit it", path.display());
    }
}

#[test]
fn the_document_is_openapi_3_1_with_both_security_schemes_and_typed_errors() {
    let doc: Value = serde_json::from_str(&isa_gateway::api::openapi::pretty_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["mutual_tls"]["type"], "mutualTLS");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    // Every operation says what its errors look like: the one error shape.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let forbidden = &op["responses"]["403"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(forbidden, "#/components/schemas/ErrorBody", "{method} {path}");
        }
    }
    let submit = &doc["paths"]["/v1/agreements/{agreement_id}/transfers"]["post"];
    assert_eq!(
        submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Envelope"
    );
    for status in ["202", "401", "403", "404", "409", "413", "422", "503"] {
        assert!(submit["responses"][status].is_object(), "submit documents {status}");
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(error["violations"].is_object() && error["code"].is_object());
}

/// The document and the router agree: every documented path exists with exactly the documented
/// methods (a method it lacks answers 405 whose `Allow` names them), and the running gateway serves
/// the same document.
#[tokio::test]
async fn every_documented_path_is_routed_with_exactly_its_documented_methods() {
    let app = TestApp::spawn().await;
    let doc: Value = serde_json::from_str(&isa_gateway::api::openapi::pretty_json()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut documented: Vec<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        documented.sort();
        let concrete = path
            .replace("{agreement_id}", "nvtt-gp-update")
            .replace("{transfer_id}", "0192e0c4-0000-7000-8000-000000000000");
        let response = app.sender.delete(app.url(&concrete)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "DELETE {path}");
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        let mut allowed: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
        allowed.sort();
        assert_eq!(allowed, documented, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "method_not_allowed");
    }
    let (status, served) = app.get(&app.sender, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, doc);
}
