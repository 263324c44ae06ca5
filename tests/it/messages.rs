//! The message schemas against their fixtures, and the checked-in generated agreement schema.

use std::path::PathBuf;

use isa_gateway::app::catalogue::load_schemas;
use serde_json::Value;

use crate::helpers::repo;

fn files(dir: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

const TYPES: [&str; 4] = ["gp_update", "nhs_dataset_return", "mash_referral", "lado_referral"];

#[test]
fn every_valid_fixture_validates() {
    let schemas = load_schemas(&repo().join("schemas")).unwrap();
    for t in TYPES {
        let valid = files(repo().join("tests/fixtures/messages").join(t).join("valid"));
        assert!(valid.len() >= 3, "{t}: at least three valid fixtures");
        for f in valid {
            let payload: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let v = schemas.get(t).unwrap().violations(&payload, "");
            assert!(v.is_empty(), "{}: {v:?}", f.display());
        }
    }
}

/// Each invalid fixture says which rule it breaks and where; the validator must report exactly
/// that (a `required` or `additionalProperties` violation names the property itself, so its
/// parent is the object the fixture names).
#[test]
fn every_invalid_fixture_breaks_the_rule_it_names() {
    let schemas = load_schemas(&repo().join("schemas")).unwrap();
    for t in TYPES {
        let invalid = files(repo().join("tests/fixtures/messages").join(t).join("invalid"));
        assert!(invalid.len() >= 10, "{t}: at least ten invalid fixtures");
        for f in invalid {
            let doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let (pointer, rule) = (
                doc["breaks"]["pointer"].as_str().unwrap(),
                doc["breaks"]["rule"].as_str().unwrap(),
            );
            let v = schemas.get(t).unwrap().violations(&doc["payload"], "");
            assert!(!v.is_empty(), "{}: accepted", f.display());
            let found = v.iter().any(|v| {
                let at = if matches!(v.rule.as_str(), "required" | "additionalProperties") {
                    v.pointer.rsplit_once('/').map_or("", |(parent, _)| parent)
                } else {
                    v.pointer.as_str()
                };
                v.rule == rule && at == pointer
            });
            assert!(found, "{}: expected {rule} at {pointer:?}, got {v:?}", f.display());
        }
    }
}

/// The JSON Schema of agreement files is generated from the Rust type. If this fails, the
/// checked-in copy was stale and has been rewritten: review and commit it.
#[test]
fn generated_agreement_schema_is_up_to_date() {
    let path = repo().join("schemas/agreement.schema.json");
    let fresh = isa_gateway::policy::agreement::file_schema_json();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != fresh {
        std::fs::write(&path, &fresh).unwrap();
        panic!("{} was stale and has been regenerated; commit it", path.display());
    }
}

#[test]
fn shipped_agreements_validate_against_the_generated_schema() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/agreement.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for f in files(repo().join("isa-templates")) {
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let json = serde_json::to_value(doc).unwrap();
        let errors: Vec<String> = validator.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
    }
}
