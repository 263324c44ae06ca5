//! The decision core: given who is calling, which agreement they name, today's date and the
//! request body, decide PERMIT or REFUSE and say exactly why. No IO: the API layer reads the
//! body and records the decision; the ledger writes it; transports deliver it.
//!
//! The checks run in a fixed order, and the first that fails decides:
//! agreement exists (404) → caller may send under it (403) → agreement in force today (409) →
//! body within the limit (413) → body is JSON (400) → envelope shape (422) → message type
//! covered (422) → payload valid against its schema (422) → no field outside the agreement's
//! allowed pointers (422).

use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::agreement::{Agreement, Agreements, NotInForce};
use crate::schemas::{MessageSchemas, Violation};

/// What the core knows of the world: agreements and message schemas, both loaded at start-up.
#[derive(Debug)]
pub struct Catalogue {
    pub agreements: Agreements,
    pub schemas: MessageSchemas,
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
    pub agreement_id: &'a str,
    pub body: Body<'a>,
}

/// Why a transfer was refused. The codes are stable: clients match on them and the ledger
/// stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    UnknownAgreement,
    NotAParty,
    NotInForce(NotInForce),
    BodyTooLarge,
    MalformedJson,
    InvalidEnvelope,
    MessageTypeNotCovered,
    SchemaViolation,
    FieldNotAllowed,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownAgreement => "unknown_agreement",
            Self::NotAParty => "not_a_party",
            Self::NotInForce(n) => n.code(),
            Self::BodyTooLarge => "body_too_large",
            Self::MalformedJson => "malformed_json",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::MessageTypeNotCovered => "message_type_not_covered",
            Self::SchemaViolation => "schema_violation",
            Self::FieldNotAllowed => "field_not_allowed",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::UnknownAgreement => "No agreement has this id.",
            Self::NotAParty => "This system is not permitted to send under this agreement.",
            Self::NotInForce(n) => n.explain(),
            Self::BodyTooLarge => "The request body is larger than the gateway accepts.",
            Self::MalformedJson => "The request body is not valid JSON.",
            Self::InvalidEnvelope => {
                "The request body must be an object with message_type and payload."
            }
            Self::MessageTypeNotCovered => "This agreement does not cover this message type.",
            Self::SchemaViolation => "The payload does not match its message type's schema.",
            Self::FieldNotAllowed => {
                "The payload carries fields this agreement does not allow to leave."
            }
        }
    }
}

/// A refusal, with what is known of the attempt for the ledger.
#[derive(Debug)]
pub struct Refusal {
    pub reason: Reason,
    pub violations: Vec<Violation>,
    pub agreement: Option<Arc<Agreement>>,
    pub message_type: Option<String>,
    pub schema_hash: Option<String>,
}

/// A permitted transfer: exactly the bytes that will leave, and what the ledger records.
#[derive(Debug)]
pub struct Permit {
    pub agreement: Arc<Agreement>,
    pub message_type: String,
    pub schema_hash: String,
    /// The document delivered to the recipient.
    pub outbound: Vec<u8>,
    pub outbound_sha256: String,
    /// Pointers removed from the payload on the way out (pseudonymisation rules; none yet).
    pub pointers_removed: Vec<String>,
}

#[derive(Debug)]
pub enum Decision {
    Permit(Permit),
    Refuse(Refusal),
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
    legal_bases: &'a [String],
    payload: &'a Value,
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

impl Catalogue {
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let refuse = |reason, agreement: Option<&Arc<Agreement>>| {
            Decision::Refuse(Refusal {
                reason,
                violations: Vec::new(),
                agreement: agreement.cloned(),
                message_type: None,
                schema_hash: None,
            })
        };
        let Some(agreement) = self.agreements.get(req.agreement_id) else {
            return refuse(Reason::UnknownAgreement, None);
        };
        if !req.system_may_send || !agreement.permits_system(req.system_id) {
            return refuse(Reason::NotAParty, Some(agreement));
        }
        let today = req.now.to_zoned(jiff::tz::TimeZone::UTC).date();
        if let Err(why) = agreement.in_force(today) {
            return refuse(Reason::NotInForce(why), Some(agreement));
        }
        let bytes = match req.body {
            Body::TooLarge => return refuse(Reason::BodyTooLarge, Some(agreement)),
            Body::Complete(b) => b,
        };
        let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
            return refuse(Reason::MalformedJson, Some(agreement));
        };
        let (message_type, payload) = match envelope(&body) {
            Ok(parts) => parts,
            Err(violations) => {
                return Decision::Refuse(Refusal {
                    reason: Reason::InvalidEnvelope,
                    violations,
                    agreement: Some(agreement.clone()),
                    message_type: None,
                    schema_hash: None,
                });
            }
        };
        let schema = match self.schemas.get(message_type) {
            Some(s) if agreement.covers_message_type(message_type) => s,
            _ => {
                return Decision::Refuse(Refusal {
                    reason: Reason::MessageTypeNotCovered,
                    violations: vec![Violation {
                        pointer: "/message_type".into(),
                        rule: "agreement.message_types".into(),
                        message: "is not a message type this agreement covers".into(),
                    }],
                    agreement: Some(agreement.clone()),
                    // Only a known name is worth recording; an unknown one is the caller's text.
                    message_type: self.schemas.get(message_type).map(|s| s.name().to_owned()),
                    schema_hash: None,
                });
            }
        };
        let refused = |reason, violations| {
            Decision::Refuse(Refusal {
                reason,
                violations,
                agreement: Some(agreement.clone()),
                message_type: Some(schema.name().to_owned()),
                schema_hash: Some(schema.hash().to_owned()),
            })
        };
        let violations = schema.violations(payload, "/payload");
        if !violations.is_empty() {
            return refused(Reason::SchemaViolation, violations);
        }
        let outside = crate::fields::disallowed(payload, agreement.allowed_fields());
        if !outside.is_empty() {
            let violations = outside
                .into_iter()
                .map(|p| Violation {
                    pointer: format!("/payload{p}"),
                    rule: "agreement.fields".into(),
                    message: "is not a field this agreement allows to leave".into(),
                })
                .collect();
            return refused(Reason::FieldNotAllowed, violations);
        }
        let terms = agreement.terms();
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
            recipient: OutboundParty {
                organisation: &terms.recipient.organisation,
                ods_code: terms.recipient.ods_code.as_deref(),
            },
            legal_bases: &terms.legal_bases,
            payload,
        };
        // Serialising a tree of strings and JSON values cannot fail.
        let outbound = serde_json::to_vec(&document).unwrap_or_default();
        Decision::Permit(Permit {
            agreement: agreement.clone(),
            message_type: schema.name().to_owned(),
            schema_hash: schema.hash().to_owned(),
            outbound_sha256: sha256_hex(&outbound),
            outbound,
            pointers_removed: Vec::new(),
        })
    }
}

/// Splits the request body into its message type and payload, or says what is wrong with it.
fn envelope(body: &Value) -> Result<(&str, &Value), Vec<Violation>> {
    let v = |pointer: &str, rule: &str, message: &str| Violation {
        pointer: pointer.into(),
        rule: rule.into(),
        message: message.into(),
    };
    let Some(map) = body.as_object() else {
        return Err(vec![v(
            "",
            "type",
            "the request body must be a JSON object",
        )]);
    };
    let mut problems = Vec::new();
    for key in map.keys() {
        if key != "message_type" && key != "payload" {
            problems.push(v(
                &format!("/{}", crate::fields::escape(key)),
                "additionalProperties",
                "is not a field of the transfer envelope",
            ));
        }
    }
    let message_type = match map.get("message_type") {
        None => {
            problems.push(v("/message_type", "required", "is required"));
            None
        }
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            problems.push(v("/message_type", "type", "must be a string"));
            None
        }
    };
    let payload = match map.get("payload") {
        None => {
            problems.push(v("/payload", "required", "is required"));
            None
        }
        Some(p @ Value::Object(_)) => Some(p),
        Some(_) => {
            problems.push(v("/payload", "type", "must be a JSON object"));
            None
        }
    };
    match (message_type, payload) {
        (Some(m), Some(p)) if problems.is_empty() => Ok((m, p)),
        _ => Err(problems),
    }
}
