//! What the ledger records of a decision: a pure `Decision → Event`. The rule lives here, beside
//! the event it builds, rather than in the policy core (which cannot know the ledger's types) or
//! in an HTTP handler (which should only run the steps).

use jiff::Timestamp;
use uuid::Uuid;

use super::{DecisionKind, Event, EventKind, TransferStatus};
use crate::policy::decision::{ConsentRecord, Decision, Disposition, Permit, Refusal};

/// An attempt to send, before anything is decided: who, when, under which agreement id (as the
/// caller named it, made recordable), and the digest of what was received.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub at: Timestamp,
    pub transfer_id: Uuid,
    pub agreement_id: &'a str,
    pub system_id: &'a str,
    pub received_sha256: Option<String>,
}

/// The user who acted (their token's issuer and subject), and the role they acted in.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub issuer: Option<&'a str>,
    pub sub: &'a str,
    pub role: Option<&'a str>,
}

/// A refusal of the attempt before any policy was applied (a bad token, a reused idempotency
/// key): the attempt's identity and the reason code.
pub fn refused(attempt: &Attempt<'_>, actor: Option<Actor<'_>>, reason_code: &str) -> Event {
    let mut e = base(attempt, actor);
    e.reason_code = Some(reason_code.to_owned());
    e
}

/// The decision as the ledger records it: for a permit, the agreement's version and content
/// hash, the legal bases, the recipient, the digests of what was received and of exactly what
/// will leave, the fields removed, the treatments and key used, the classes of data, consent and
/// transparency, the subject index, and any review or notification due; for a refusal, the reason
/// and whatever of the attempt was known.
pub fn decided(attempt: &Attempt<'_>, actor: Option<Actor<'_>>, decision: &Decision) -> Event {
    let mut e = base(attempt, actor);
    match decision {
        Decision::Permit(permit) => permitted(&mut e, permit),
        Decision::Refuse(refusal) => refused_by_policy(&mut e, refusal),
    }
    e
}

fn base(attempt: &Attempt<'_>, actor: Option<Actor<'_>>) -> Event {
    let mut e = Event::new(
        attempt.at,
        attempt.transfer_id,
        EventKind::Decision,
        TransferStatus::Refused,
        attempt.agreement_id,
        attempt.system_id,
    );
    e.decision = Some(DecisionKind::Deny);
    e.received_sha256 = attempt.received_sha256.clone();
    if let Some(actor) = actor {
        e.user_sub = Some(actor.sub.to_owned());
        e.user_issuer = actor.issuer.map(str::to_owned);
        e.user_role = actor.role.map(str::to_owned);
    }
    e
}

fn permitted(e: &mut Event, permit: &Permit) {
    let terms = permit.agreement.terms();
    (e.status, e.decision) = match permit.disposition {
        Disposition::Hold => (TransferStatus::Held, Some(DecisionKind::Hold)),
        Disposition::Send | Disposition::SendForReview { .. } => (TransferStatus::Accepted, Some(DecisionKind::Permit)),
    };
    if let Disposition::SendForReview { review_by } = permit.disposition {
        e.review_due = Some(review_by.to_string());
    }
    e.agreement_version = Some(permit.agreement.version().to_owned());
    e.agreement_hash = Some(permit.agreement.content_hash().to_owned());
    e.message_type = Some(permit.message_type.clone());
    e.schema_hash = Some(permit.schema_hash.clone());
    e.recipient = Some(terms.recipient.organisation.clone());
    e.legal_bases = permit.legal_bases.clone();
    e.national_data_opt_out = Some(permit.opt_out.clone());
    e.sent_sha256 = Some(permit.outbound_sha256.clone());
    e.pointers_removed = permit.pointers_removed.clone();
    e.treatments = permit.treatments.clone();
    e.data_classes = permit.data_classes.clone();
    e.key_ref = permit.key_ref.clone();
    e.subject_index = permit.subject_index.clone();
    e.subject_informed_due = permit.subject_informed_due.clone();
    if let Some(one_off) = &permit.one_off {
        // The requester is the recipient; the destination was chosen from the template's.
        e.recipient = Some(one_off.organisation.clone());
        e.destination = Some(permit.destination.clone());
        e.requester_kind = Some(one_off.kind.to_owned());
        e.requester_ref = Some(one_off.reference.clone());
    }
    consent(e, &permit.consent);
}

fn refused_by_policy(e: &mut Event, refusal: &Refusal) {
    if let Some(a) = &refusal.agreement {
        e.agreement_version = Some(a.version().to_owned());
        e.agreement_hash = Some(a.content_hash().to_owned());
        e.recipient = Some(a.terms().recipient.organisation.clone());
    }
    e.message_type = refusal.message_type.clone();
    e.schema_hash = refusal.schema_hash.clone();
    e.reason_code = Some(refusal.reason.code().to_owned());
    consent(e, &refusal.consent);
}

fn consent(e: &mut Event, consent: &ConsentRecord) {
    e.consent_status = consent.status.clone();
    e.consent_reason = consent.reason.clone();
    e.consent_evidence_ref = consent.evidence_ref.clone();
    e.consent_given_by = consent.given_by.clone();
    e.capacity_ref = consent.capacity_ref.clone();
    e.subject_informed = consent.subject_informed.clone();
    e.subject_informed_reason = consent.subject_informed_reason.clone();
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;
    use crate::app::catalogue::{load_agreement_files, load_schemas};
    use crate::policy::agreement::Context;
    use crate::policy::decision::{Body, Catalogue, Request};
    use crate::policy::keys::{AgreementKey, IndexKey, KeyRing};
    use crate::policy::roles::UserRole;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn catalogue() -> Catalogue {
        let schemas = load_schemas(&repo().join("schemas")).unwrap();
        let ctx = Context {
            systems: HashSet::from(["tt-case-system".to_owned()]),
            destinations: [
                "y99001-gp-drop",
                "nhse-dataset-drop",
                "mash-drop",
                "lado-drop",
                "disclosures-drop",
                "funder-drop",
            ]
            .map(str::to_owned)
            .into(),
            schemas: &schemas,
        };
        let agreements = load_agreement_files(&repo().join("isa-templates"), &ctx).unwrap();
        let mut keys = KeyRing::default();
        keys.insert(AgreementKey::from_bytes("nvtt-nhse-dataset", 1, &[7; 32]));
        keys.set_index(IndexKey::from_bytes(&[9; 32]));
        for a in agreements.iter().filter(|a| !a.subject_index().is_empty()) {
            keys.subject().set(a.id(), 2020, &[9; 32]);
        }
        Catalogue::new(agreements, load_schemas(&repo().join("schemas")).unwrap(), keys).unwrap()
    }

    fn example(name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(repo().join("examples").join(name)).unwrap()).unwrap()
    }

    fn record(agreement_id: &str, body: &Value) -> (Decision, Event) {
        let body = serde_json::to_vec(body).unwrap();
        let attempt = Attempt {
            at: "2026-06-01T12:00:00Z".parse().unwrap(),
            transfer_id: Uuid::nil(),
            agreement_id,
            system_id: "tt-case-system",
            received_sha256: Some("r".repeat(64)),
        };
        let decision = catalogue().decide(&Request {
            transfer_id: attempt.transfer_id,
            now: attempt.at,
            system_id: "tt-case-system",
            system_may_send: true,
            user_roles: &[UserRole::Practitioner, UserRole::SafeguardingLead],
            agreement_id,
            body: Body::Complete(&body),
        });
        let actor = Actor {
            issuer: None,
            sub: "alice",
            role: Some("safeguarding_lead"),
        };
        let event = decided(&attempt, Some(actor), &decision);
        (decision, event)
    }

    #[test]
    fn a_permit_records_the_terms_it_was_decided_under_and_what_leaves() {
        let (decision, e) = record("nvtt-nhse-dataset", &example("nhs_dataset_return.json"));
        let Decision::Permit(permit) = &decision else {
            panic!("refused")
        };
        assert_eq!(
            (e.status, e.decision),
            (TransferStatus::Accepted, Some(DecisionKind::Permit))
        );
        assert_eq!(e.agreement_hash.as_deref(), Some(permit.agreement.content_hash()));
        assert_eq!(e.agreement_version.as_deref(), Some(permit.agreement.version()));
        assert_eq!(e.legal_bases, permit.legal_bases);
        assert_eq!(
            e.recipient.as_deref(),
            Some(permit.agreement.terms().recipient.organisation.as_str())
        );
        assert_eq!(e.sent_sha256.as_deref(), Some(permit.outbound_sha256.as_str()));
        assert_eq!(e.received_sha256, Some("r".repeat(64)));
        assert_eq!(e.message_type.as_deref(), Some("nhs_dataset_return"));
        assert_eq!(e.key_ref.as_deref(), Some("agreement/nvtt-nhse-dataset/v1"));
        assert!(
            e.treatments.iter().any(|t| t.starts_with("token ")),
            "{:?}",
            e.treatments
        );
        assert!(!e.data_classes.is_empty() && !e.subject_index.is_empty());
        assert_eq!(
            (e.user_sub.as_deref(), e.user_role.as_deref()),
            (Some("alice"), Some("safeguarding_lead"))
        );
        assert_eq!(e.reason_code, None);
    }

    #[test]
    fn a_disclosure_without_consent_is_recorded_held_with_its_consent_record() {
        let (_, e) = record("nvtt-mash-referral", &example("mash_referral.json"));
        assert_eq!((e.status, e.decision), (TransferStatus::Held, Some(DecisionKind::Hold)));
        assert_eq!(e.consent_status.as_deref(), Some("not_sought"));
        assert_eq!(e.consent_reason.as_deref(), Some("increase_risk_of_significant_harm"));
        assert_eq!(e.subject_informed.as_deref(), Some("not_informed"));
        assert_eq!(e.subject_informed_reason.as_deref(), Some("risk_of_harm_to_subject"));
        assert_eq!(e.review_due, None);
    }

    #[test]
    fn an_urgent_release_is_recorded_sent_with_its_review_due() {
        let mut body = example("mash_referral.json");
        body["immediate"] = Value::Bool(true);
        let (_, e) = record("nvtt-mash-referral", &body);
        assert_eq!(
            (e.status, e.decision),
            (TransferStatus::Accepted, Some(DecisionKind::Permit))
        );
        assert_eq!(e.review_due.as_deref(), Some("2026-06-02T12:00:00Z"));
    }

    #[test]
    fn a_refusal_records_its_reason_and_what_was_known_nothing_that_left() {
        let mut body = example("gp_update.json");
        body["payload"]["nhs_number"] = Value::String("9434765918".into());
        let (_, e) = record("nvtt-gp-update", &body);
        assert_eq!(
            (e.status, e.decision),
            (TransferStatus::Refused, Some(DecisionKind::Deny))
        );
        assert_eq!(e.reason_code.as_deref(), Some("schema_violation"));
        assert_eq!(e.message_type.as_deref(), Some("gp_update"));
        assert!(e.agreement_hash.is_some() && e.sent_sha256.is_none() && e.legal_bases.is_empty());

        let (_, unknown) = record("no-such-agreement", &body);
        assert_eq!(unknown.reason_code.as_deref(), Some("unknown_agreement"));
        assert_eq!((unknown.agreement_hash, unknown.recipient), (None, None));
    }

    #[test]
    fn a_refusal_before_the_policy_names_only_the_attempt() {
        let attempt = Attempt {
            at: "2026-06-01T12:00:00Z".parse().unwrap(),
            transfer_id: Uuid::nil(),
            agreement_id: "nvtt-gp-update",
            system_id: "tt-case-system",
            received_sha256: None,
        };
        let e = refused(&attempt, None, "token_expired");
        assert_eq!(
            (e.status, e.decision),
            (TransferStatus::Refused, Some(DecisionKind::Deny))
        );
        assert_eq!((e.reason_code.as_deref(), e.user_sub), (Some("token_expired"), None));
    }
}
