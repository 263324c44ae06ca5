//! Pseudonymising a realistic NHS Talking Therapies dataset return under its shipped agreement
//! (token, age band, postcode district), and the whole decision for the same record.
//!
//! Run: `cargo bench --bench pseudonymise`. Target (issue 4): at least 200,000 records per second
//! on one core, i.e. at most 5 µs per record for `pseudonymise`.

use std::collections::HashSet;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isa_gateway::app::catalogue::{load_agreement_files, load_schemas};
use isa_gateway::policy::agreement::Context;
use isa_gateway::policy::decision::{Body, Catalogue, Request};
use isa_gateway::policy::keys::{AgreementKey, IndexKey, KeyRing};
use isa_gateway::policy::pseudonymise::{Rule, apply};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn record() -> Value {
    json!({
        "nhs_number": "9997654323",
        "postcode": "LS6 2QT",
        "date_of_birth": "1994-08-09",
        "gender": "2",
        "ethnicity": "A",
        "religion": "no_religion",
        "sexual_orientation": "1",
        "disability": ["01", "05"],
        "gp_practice_code": "Y99001",
        "long_term_conditions": ["73211009", "195967001"],
        "provisional_diagnosis": "F41.1",
        "referral": {"source": "B1", "date": "2025-02-03"},
        "care_contacts": [
            {"date": "2025-02-20", "attended": "5"},
            {"date": "2025-03-06", "attended": "5"},
            {"date": "2025-03-20", "attended": "3"}
        ],
        "coded_scored_assessments": [
            {"snomed_code": "720433000", "score": 17, "date": "2025-02-20"},
            {"snomed_code": "836521000000107", "score": 14, "date": "2025-02-20"}
        ],
        "employment_status": "01",
        "end_code": "46"
    })
}

fn bench(c: &mut Criterion) {
    let schemas = load_schemas(&repo().join("schemas")).expect("schemas");
    let ctx = Context {
        systems: HashSet::from(["tt-case-system".to_owned()]),
        destinations: [
            "y99001-gp-drop",
            "nhse-dataset-drop",
            "mash-drop",
            "lado-drop",
            "funder-drop",
        ]
        .map(str::to_owned)
        .into(),
        schemas: &schemas,
    };
    let agreements = load_agreement_files(&repo().join("isa-templates"), &ctx).expect("agreements");
    let agreement = agreements.get("nvtt-nhse-dataset").expect("dataset agreement").clone();
    let rules: Vec<Rule> = agreement
        .fields()
        .iter()
        .map(|f| Rule {
            pattern: f.pattern.clone(),
            op: f.op.clone(),
        })
        .collect();
    let key = AgreementKey::from_bytes("nvtt-nhse-dataset", 1, &[7; 32]);
    let payload = record();
    assert!(
        schemas
            .get("nhs_dataset_return")
            .expect("schema")
            .violations(&payload, "")
            .is_empty()
    );

    let mut g = c.benchmark_group("dataset_return");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pseudonymise", |b| {
        b.iter(|| apply(std::hint::black_box(&payload), &rules, Some(&key)))
    });

    let mut keys = KeyRing::default();
    keys.insert(key.clone());
    keys.set_index(IndexKey::from_bytes(&[9; 32]));
    let catalogue = Catalogue::new(
        agreements,
        load_schemas(&repo().join("schemas")).expect("schemas"),
        keys,
    )
    .expect("catalogue");
    let body = serde_json::to_vec(&json!({"message_type": "nhs_dataset_return", "payload": payload})).expect("json");
    let now = "2026-06-01T12:00:00Z".parse().expect("time");
    g.bench_function("decide", |b| {
        b.iter(|| {
            catalogue.decide(&Request {
                transfer_id: uuid::Uuid::nil(),
                now,
                system_id: "tt-case-system",
                system_may_send: true,
                user_roles: &[isa_gateway::platform::auth::UserRole::Practitioner],
                agreement_id: "nvtt-nhse-dataset",
                body: Body::Complete(std::hint::black_box(&body)),
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
