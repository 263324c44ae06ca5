//! The decision core: given who is calling, which agreement they name, the time and the request
//! body, decide PERMIT or REFUSE and say exactly why. No IO: the API layer reads the body and
//! records the decision; the ledger writes it; transports deliver it.
//!
//! The checks run in a fixed order, and the first that fails decides:
//! agreement exists (404) → caller may send under it (403) → agreement in force today (409) →
//! body within the limit (413) → body is JSON (400) → envelope shape (422) → message type
//! covered (422) → payload valid against its schema (422) → an age group the payload names agrees
//! with its date of birth (422) → consent and subject-informed as the
//! agreement requires (422) → national data opt-out (422, 403) → a one-off disclosure's requester
//! and destination (422) → no field outside the agreement's allowed pointers (422) →
//! pseudonymisation applies (422) → output valid against the agreement's outbound schema (422).

#[path = "conditions.rs"]
mod conditions;
#[path = "reason.rs"]
mod reason;
use self::conditions::{age_agrees, applied_bases, opt_out, urgent};
pub use self::reason::Reason;

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use jsonschema::Validator;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::agreement::{Agreement, Agreements, ConsentModel};
use crate::consent::check_consent;
pub use crate::consent::{ConsentBlock, ConsentRecord, ConsentStatus, Contributor, InformedStatus, SubjectInformed};
use crate::keys::KeyRing;
use crate::nhs_number::NhsNumber;
use crate::pseudonymise::{self, Op, Rule};
use crate::roles::UserRole;
use crate::schemas::{MessageSchemas, Violation};

/// The transfer envelope's schema, built into the gateway.
pub const ENVELOPE_SCHEMA: &str = include_str!("../../schemas/envelope.json");

/// What the core knows of the world: agreements, schemas and keys, all loaded at start-up.
pub struct Catalogue {
    pub agreements: Agreements,
    pub schemas: MessageSchemas,
    pub keys: KeyRing,
    envelope: Validator,
}

impl Catalogue {
    /// What the ledger keeps of a typed reference: a keyed hash under the index key, or, with no
    /// index key loaded, a plain marker (never the text).
    pub fn reference(&self, text: &str) -> String {
        self.keys
            .index()
            .map_or_else(|| "ref:unkeyed".to_owned(), |k| k.reference(text))
    }

    /// The same for a reference recorded about a transfer under `scope` (its agreement) decided
    /// at `decided`: keyed under that agreement's subject-index key for the year, so retention
    /// destroys it with the person's index (a reference such as a case-record id would otherwise
    /// link a destroyed year's entries to a live one). Every agreement has such a key; a year
    /// before its seed existed falls back to the gateway-wide key.
    pub fn reference_in(&self, scope: &str, decided: Timestamp, text: &str) -> String {
        let year = crate::agreement::utc_date(decided).year();
        self.reference_under(self.keys.subject().get(scope, year).as_ref(), text)
    }

    /// A typed reference under `key` (an agreement's subject-index key for a year), else under
    /// the gateway-wide key.
    fn reference_under(&self, key: Option<&crate::keys::IndexKey>, text: &str) -> String {
        key.map_or_else(|| self.reference(text), |k| k.reference(text))
    }
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue")
            .field("agreements", &self.agreements.len())
            .finish_non_exhaustive()
    }
}

/// The request body as read by the API layer.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Complete(&'a [u8]),
    /// The body exceeded the configured limit; reading stopped.
    TooLarge,
}

/// Everything one decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub transfer_id: Uuid,
    pub now: Timestamp,
    /// The calling system's id (already authenticated by its client certificate).
    pub system_id: &'a str,
    pub system_may_send: bool,
    /// The user's roles (from the verified bearer token).
    pub user_roles: &'a [UserRole],
    pub agreement_id: &'a str,
    pub body: Body<'a>,
}

/// What a case system sends: the message type, its payload, and what was recorded of consent and
/// of telling the person (`schemas/envelope.json` is the full contract).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    /// One of the agreement's message types.
    message_type: String,
    /// Validated against the message type's JSON Schema; only the agreement's fields leave.
    payload: Value,
    /// Asks for the urgent path. Never enough alone: the agreement's payload condition and the
    /// user's role decide.
    #[serde(default)]
    immediate: bool,
    #[serde(default)]
    consent: Option<ConsentBlock>,
    #[serde(default)]
    subject_informed: Option<SubjectInformed>,
    /// The person's national data opt-out status (`opted_out` or `not_opted_out`), where the
    /// agreement says the opt-out applies.
    #[serde(default)]
    national_data_opt_out: Option<String>,
    /// One-off disclosures only: the requester and the destination.
    #[serde(default)]
    disclosure: Option<crate::disclosure::DisclosureBlock>,
    /// `POST /v1/disclosures`: the one-off template; elsewhere absent, or the agreement named.
    #[serde(default)]
    template: Option<String>,
}

/// A refusal, with what is known of the attempt for the ledger.
#[derive(Debug)]
pub struct Refusal {
    pub reason: Reason,
    pub violations: Vec<Violation>,
    pub agreement: Option<Arc<Agreement>>,
    pub message_type: Option<String>,
    pub schema_hash: Option<String>,
    pub consent: ConsentRecord,
}

/// What happens to a permitted transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Queued for delivery now.
    Send,
    /// Recorded and held: nothing leaves until a director approves (disclosure without consent).
    Hold,
    /// Queued now (immediate risk, urgent path) and flagged for a director's review by this time.
    SendForReview { review_by: Timestamp },
}

/// A permitted transfer: exactly the bytes that will leave, and what the ledger records.
#[derive(Debug)]
pub struct Permit {
    pub disposition: Disposition,
    /// When the person is to be told, if "after".
    pub subject_informed_due: Option<String>,
    pub agreement: Arc<Agreement>,
    pub message_type: String,
    pub schema_hash: String,
    /// The document delivered to the recipient.
    pub outbound: Vec<u8>,
    pub outbound_sha256: String,
    /// Pointers removed on the way out (`drop` treatments).
    pub pointers_removed: Vec<String>,
    /// Every treatment applied, as `op pointer`.
    pub treatments: Vec<String>,
    /// The classes of data that left.
    pub data_classes: Vec<String>,
    pub consent: ConsentRecord,
    /// `agreement/<id>/v<N>` when a token key was used.
    pub key_ref: Option<String>,
    /// Blind index entries of the people the transfer is about.
    pub subject_index: Vec<String>,
    /// The legal bases that applied to this transfer: the agreement's, and those of its
    /// conditional bases the payload met.
    pub legal_bases: Vec<String>,
    /// The national data opt-out as it stood: `applies:not_opted_out`, or
    /// `not_applicable:<exemption>`.
    pub opt_out: String,
    /// Where the bytes go: the agreement's recipient destination, or the one a one-off
    /// disclosure chose from its template's.
    pub destination: String,
    /// A one-off disclosure: who asked, with the reference as a keyed hash.
    pub one_off: Option<OneOffRecord>,
}

/// What the ledger keeps of a one-off disclosure's requester.
#[derive(Debug, Clone)]
pub struct OneOffRecord {
    /// The request kind's code (`court_order`, …).
    pub kind: &'static str,
    pub organisation: String,
    /// The requester's reference as a keyed hash (never the text).
    pub reference: String,
}

#[derive(Debug)]
pub enum Decision {
    /// Both boxed: each carries the record of the attempt; a decision moves, its parts stay put.
    Permit(Box<Permit>),
    Refuse(Box<Refusal>),
}

/// What the recipient receives: the payload with its provenance.
#[derive(Debug, Serialize)]
struct Outbound<'a> {
    transfer_id: Uuid,
    sent_at: String,
    agreement: OutboundAgreement<'a>,
    message_type: &'a str,
    sender: OutboundParty<'a>,
    recipient: OutboundParty<'a>,
    /// A one-off disclosure: the request it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_response_to: Option<InResponseTo<'a>>,
    legal_bases: &'a [String],
    payload: &'a Value,
}

#[derive(Debug, Serialize)]
struct InResponseTo<'a> {
    kind: &'a str,
    reference: &'a str,
}

#[derive(Debug, Serialize)]
struct OutboundAgreement<'a> {
    id: &'a str,
    version: &'a str,
}

#[derive(Debug, Serialize)]
struct OutboundParty<'a> {
    organisation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ods_code: Option<&'a str>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn violation(pointer: &str, rule: &str, message: &str) -> Violation {
    Violation {
        pointer: pointer.into(),
        rule: rule.into(),
        message: message.into(),
    }
}

impl Catalogue {
    pub fn new(agreements: Agreements, schemas: MessageSchemas, keys: KeyRing) -> Result<Self, String> {
        let envelope_schema: Value = serde_json::from_str(ENVELOPE_SCHEMA).map_err(|e| e.to_string())?;
        let envelope = crate::schemas::compile(&envelope_schema)?;
        Ok(Self {
            agreements,
            schemas,
            keys,
            envelope,
        })
    }

    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let mut refusal = Refusal {
            reason: Reason::UnknownAgreement,
            violations: Vec::new(),
            agreement: None,
            message_type: None,
            schema_hash: None,
            consent: ConsentRecord::default(),
        };
        let Some(agreement) = self.agreements.get(req.agreement_id) else {
            // A one-off disclosure names its template in the body (`POST /v1/disclosures`, with no
            // agreement in the path): a body that cannot be read says so, rather than "no such
            // agreement".
            if req.agreement_id.is_empty() {
                refusal.reason = match req.body {
                    Body::TooLarge => Reason::BodyTooLarge,
                    Body::Complete(b) if serde_json::from_slice::<Value>(b).is_err() => Reason::MalformedJson,
                    Body::Complete(_) => {
                        refusal.violations = vec![violation(
                            "/template",
                            "one_off.template",
                            "names no one-off disclosure template",
                        )];
                        Reason::UnknownAgreement
                    }
                };
            }
            return Decision::Refuse(Box::new(refusal));
        };
        refusal.agreement = Some(agreement.clone());
        let refuse = |mut r: Refusal, reason, violations| {
            r.reason = reason;
            r.violations = violations;
            Decision::Refuse(Box::new(r))
        };
        if !req.system_may_send || !agreement.permits_system(req.system_id) {
            return refuse(refusal, Reason::NotAParty, vec![]);
        }
        if agreement.acting_role(req.user_roles).is_none() {
            return refuse(refusal, Reason::RoleNotPermitted, vec![]);
        }
        let today = crate::agreement::utc_date(req.now);
        if let Err(why) = agreement.in_force(today) {
            return refuse(refusal, Reason::NotInForce(why), vec![]);
        }
        let bytes = match req.body {
            Body::TooLarge => return refuse(refusal, Reason::BodyTooLarge, vec![]),
            Body::Complete(b) => b,
        };
        let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
            return refuse(refusal, Reason::MalformedJson, vec![]);
        };
        let envelope_violations = crate::schemas::violations(&self.envelope, &body, "");
        if !envelope_violations.is_empty() {
            return refuse(refusal, Reason::InvalidEnvelope, envelope_violations);
        }
        let Ok(envelope) = serde_json::from_value::<Envelope>(body) else {
            return refuse(refusal, Reason::InvalidEnvelope, vec![]);
        };
        if envelope.template.as_deref().is_some_and(|t| t != agreement.id()) {
            let v = violation("/template", "agreement.id", "does not name this agreement");
            return refuse(refusal, Reason::InvalidEnvelope, vec![v]);
        }
        let consent = envelope.consent.as_ref();
        let informed = envelope.subject_informed.as_ref();
        // This agreement's subject-index key for the year of the decision: it indexes the person
        // and keys the references, so retention destroys both together.
        let subject_key = self
            .keys
            .subject()
            .get(agreement.id(), crate::agreement::utc_date(req.now).year());
        // References are kept as keyed hashes: the text could be anything a sender typed.
        let reference = |r: &Option<String>| r.as_deref().map(|r| self.reference_under(subject_key.as_ref(), r));
        refusal.consent = ConsentRecord {
            status: consent.map(|c| c.status.code().to_owned()),
            reason: consent.and_then(|c| c.reason_not_sought.clone()),
            evidence_ref: consent.and_then(|c| reference(&c.evidence_ref)),
            given_by: consent.and_then(|c| c.given_by.clone()),
            capacity_ref: consent.and_then(|c| reference(&c.capacity_ref)),
            subject_informed: informed.map(|s| s.status.code().to_owned()),
            subject_informed_reason: informed.and_then(|s| s.reason.clone()),
        };
        let schema = match self.schemas.get(&envelope.message_type) {
            Some(s) if agreement.covers_message_type(&envelope.message_type) => s,
            known => {
                // Only a known name is worth recording; an unknown one is the caller's text.
                refusal.message_type = known.map(|s| s.name().to_owned());
                let v = violation(
                    "/message_type",
                    "agreement.message_types",
                    "is not a message type this agreement covers",
                );
                return refuse(refusal, Reason::MessageTypeNotCovered, vec![v]);
            }
        };
        refusal.message_type = Some(schema.name().to_owned());
        refusal.schema_hash = Some(schema.hash().to_owned());
        let payload = &envelope.payload;
        let violations = schema.violations(payload, "/payload");
        if !violations.is_empty() {
            return refuse(refusal, Reason::SchemaViolation, violations);
        }
        if let Err((reason, v)) = age_agrees(agreement, payload, today) {
            return refuse(refusal, reason, v);
        }
        if envelope.immediate
            && let Err((reason, v)) = urgent(agreement, payload, req.user_roles)
        {
            return refuse(refusal, reason, v);
        }
        if let Err((reason, violations)) =
            check_consent(agreement, envelope.consent.as_ref(), envelope.subject_informed.as_ref())
        {
            return refuse(refusal, reason, violations);
        }
        let opt_out = match opt_out(agreement, envelope.national_data_opt_out.as_deref()) {
            Ok(recorded) => recorded,
            Err((reason, violations)) => return refuse(refusal, reason, violations),
        };
        let one_off = match crate::disclosure::check(
            agreement.one_off(),
            &agreement.terms().recipient.destination,
            envelope.disclosure.as_ref(),
        ) {
            Ok(o) => o,
            Err((reason, violations)) => return refuse(refusal, reason, violations),
        };
        let outside = crate::fields::disallowed(payload, agreement.allowed_fields());
        if !outside.is_empty() {
            let violations = outside
                .into_iter()
                .map(|p| {
                    violation(
                        &format!("/payload{p}"),
                        "agreement.fields",
                        "is not a field this agreement allows to leave",
                    )
                })
                .collect();
            return refuse(refusal, Reason::FieldNotAllowed, violations);
        }

        let key = self.keys.current(agreement.id());
        let rules: Vec<Rule> = agreement
            .fields()
            .iter()
            .map(|f| Rule {
                pattern: f.pattern.clone(),
                op: f.op.clone(),
            })
            .collect();
        let (out, applied) = match pseudonymise::apply(payload, &rules, key) {
            Ok(r) => r,
            Err(f) => {
                let v = violation(
                    &format!("/payload{}", f.pointer),
                    "agreement.fields.treatment",
                    f.reason,
                );
                return refuse(refusal, Reason::PseudonymisationFailed, vec![v]);
            }
        };
        // Statistical returns: small numbers suppressed (or refused), totals computed here.
        let mut out = out;
        let mut applied_rules: Vec<String> = applied.iter().map(|a| format!("{} {}", a.op, a.pointer)).collect();
        if let Some(rule) = &agreement.terms().suppression {
            match crate::suppression::publish(&out, rule) {
                Ok(published) => {
                    out = published;
                    applied_rules.push(format!("{} /cells", rule.describe()));
                }
                Err(u) => {
                    let v = violation(&format!("/payload{}", u.pointer), "agreement.suppression", u.reason);
                    return refuse(refusal, Reason::SmallNumbersNotSuppressed, vec![v]);
                }
            }
        }
        if let Some(outbound_schema) = agreement
            .terms()
            .outbound_schema
            .as_deref()
            .and_then(|n| self.schemas.outbound(n))
        {
            let violations = outbound_schema.violations(&out, "/payload");
            if !violations.is_empty() {
                return refuse(refusal, Reason::OutboundSchemaViolation, violations);
            }
        }

        let data_classes: BTreeSet<&str> = agreement
            .fields()
            .iter()
            .filter(|f| f.op != Op::Drop && !pseudonymise::expand(payload, &f.pattern).is_empty())
            .map(|f| f.class.as_str())
            .collect();
        // The person's NHS numbers, indexed under this agreement's key for the year of the
        // decision (destroyed once the retention period has passed: crypto-shredding).
        let numbers: Vec<NhsNumber> = agreement
            .subject_index()
            .iter()
            .flat_map(|p| pseudonymise::expand(payload, p))
            .filter_map(|p| {
                payload
                    .pointer(&p)
                    .and_then(Value::as_str)
                    .and_then(|s| NhsNumber::parse(s).ok())
            })
            .collect();
        let subject_index: BTreeSet<String> = if numbers.is_empty() {
            BTreeSet::new()
        } else {
            let Some(index) = subject_key.as_ref() else {
                return refuse(refusal, Reason::SubjectIndexUnavailable, Vec::new());
            };
            numbers.iter().map(|n| index.index(n)).collect()
        };
        let used_token = applied.iter().any(|a| a.op == Op::Token.name());
        let terms = agreement.terms();
        let consent_terms = &agreement.terms().consent;
        // An objection under implied consent that the agreement's overriding basis overrides: the
        // basis is recorded, and a director decides.
        let objection_overridden = consent_terms.model == ConsentModel::Implied
            && envelope.consent.as_ref().map(|c| c.status) == Some(ConsentStatus::Refused)
            && consent_terms.overriding_basis.is_some();
        let mut legal_bases = applied_bases(agreement, payload);
        if objection_overridden && let Some(basis) = &consent_terms.overriding_basis {
            // Implied consent ended with the objection: it is not a basis for this transfer.
            legal_bases.retain(|b| b != "common-law/implied-consent");
            if !legal_bases.contains(basis) {
                legal_bases.push(basis.clone());
            }
        }
        let document = Outbound {
            transfer_id: req.transfer_id,
            sent_at: req.now.to_string(),
            agreement: OutboundAgreement {
                id: agreement.id(),
                version: agreement.version(),
            },
            message_type: schema.name(),
            sender: OutboundParty {
                organisation: &terms.sender.organisation,
                ods_code: terms.sender.ods_code.as_deref(),
            },
            recipient: match &one_off {
                Some(o) => OutboundParty {
                    organisation: &o.organisation,
                    ods_code: o.ods_code.as_deref(),
                },
                None => OutboundParty {
                    organisation: &terms.recipient.organisation,
                    ods_code: terms.recipient.ods_code.as_deref(),
                },
            },
            in_response_to: one_off.as_ref().map(|o| InResponseTo {
                kind: o.kind.code(),
                reference: &o.reference,
            }),
            legal_bases: &legal_bases,
            payload: &out,
        };
        // Serialising a tree of strings and JSON values cannot fail.
        let outbound = serde_json::to_vec(&document).unwrap_or_default();
        let approval = &agreement.terms().approval;
        // Anything but consent obtained is a disclosure without consent: not sought, refused,
        // "not applicable", or no consent block at all.
        let without_consent = envelope.consent.as_ref().map(|c| c.status) != Some(ConsentStatus::Obtained);
        // `immediate` was checked against the payload and the role above.
        // An overridden objection always waits for a director, even on the urgent path.
        // A one-off disclosure always waits for a director (its template has no urgent path).
        let disposition = if objection_overridden || one_off.is_some() {
            Disposition::Hold
        } else if envelope.immediate {
            Disposition::SendForReview {
                review_by: req.now + jiff::SignedDuration::from_hours(i64::from(approval.review_within_hours)),
            }
        } else if approval.hold_without_consent && without_consent {
            Disposition::Hold
        } else {
            Disposition::Send
        };
        let subject_informed_due = envelope
            .subject_informed
            .as_ref()
            .filter(|s| s.status == InformedStatus::After)
            .and_then(|s| s.due_by.clone());
        Decision::Permit(Box::new(Permit {
            disposition,
            subject_informed_due,
            agreement: agreement.clone(),
            message_type: schema.name().to_owned(),
            schema_hash: schema.hash().to_owned(),
            outbound_sha256: sha256_hex(&outbound),
            outbound,
            pointers_removed: applied
                .iter()
                .filter(|a| a.op == "drop")
                .map(|a| a.pointer.clone())
                .collect(),
            treatments: applied_rules,
            data_classes: data_classes.into_iter().map(str::to_owned).collect(),
            consent: refusal.consent,
            key_ref: key.filter(|_| used_token).map(crate::keys::AgreementKey::key_ref),
            subject_index: subject_index.into_iter().collect(),
            legal_bases,
            opt_out,
            destination: one_off
                .as_ref()
                .map_or_else(|| terms.recipient.destination.clone(), |o| o.destination.clone()),
            one_off: one_off.map(|o| OneOffRecord {
                kind: o.kind.code(),
                organisation: o.organisation,
                reference: self.reference_under(subject_key.as_ref(), &o.reference),
            }),
        }))
    }
}
