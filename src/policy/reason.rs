//! Why a transfer was refused: the stable codes clients match on and the ledger stores, and what
//! each means in words.

use crate::agreement::NotInForce;

/// Why a transfer was refused. The codes are stable: clients match on them and the ledger
/// stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    UnknownAgreement,
    NotAParty,
    RoleNotPermitted,
    NotInForce(NotInForce),
    BodyTooLarge,
    MalformedJson,
    InvalidEnvelope,
    MessageTypeNotCovered,
    SchemaViolation,
    ConsentRequired,
    ConsentRefused,
    ConsentIncomplete,
    ConsentNotAllContributors,
    SubjectInformedRequired,
    FieldNotAllowed,
    PseudonymisationFailed,
    OutboundSchemaViolation,
    /// Marked `immediate` under an agreement without an urgent path.
    UrgentPathNotAllowed,
    /// Marked `immediate` while the payload does not say the risk is immediate.
    UrgentFlagContradictsPayload,
    /// Marked `immediate` by a user whose role may not use the urgent path.
    UrgentRoleNotPermitted,
    /// The national data opt-out applies, and the transfer does not say the person's status.
    OptOutStatusRequired,
    /// The national data opt-out applies, and the person has opted out.
    NationalDataOptOut,
    /// A statistical return holds counts the agreement's suppression rule does not let it publish.
    SmallNumbersNotSuppressed,
    /// Not decided by the core: the API refuses a reused idempotency key with another body.
    IdempotencyKeyReused,
    /// A one-off disclosure template, and the request does not name the requester.
    DisclosureDetailsRequired,
    /// A `disclosure` block under a standing agreement.
    NotAOneOffTemplate,
    /// A one-off disclosure to a destination its template does not offer.
    DestinationNotOffered,
    /// A one-off disclosure asked for by an organisation its template does not list.
    RequesterNotListed,
    /// The gateway holds no subject-index key for this agreement and year, so the transfer could
    /// not be found by subject access: it does not leave (a gateway fault, not the sender's).
    SubjectIndexUnavailable,
    /// The payload names an age group (a child, an adult) that its date of birth does not confirm
    /// (it says otherwise, or is missing).
    AgeGroupNotConfirmed,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownAgreement => "unknown_agreement",
            Self::NotAParty => "not_a_party",
            Self::RoleNotPermitted => "role_not_permitted",
            Self::NotInForce(n) => n.code(),
            Self::BodyTooLarge => "body_too_large",
            Self::MalformedJson => "malformed_json",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::MessageTypeNotCovered => "message_type_not_covered",
            Self::SchemaViolation => "schema_violation",
            Self::ConsentRequired => "consent_required",
            Self::ConsentRefused => "consent_refused",
            Self::ConsentIncomplete => "consent_incomplete",
            Self::ConsentNotAllContributors => "consent_not_all_contributors",
            Self::SubjectInformedRequired => "subject_informed_required",
            Self::FieldNotAllowed => "field_not_allowed",
            Self::PseudonymisationFailed => "pseudonymisation_failed",
            Self::OutboundSchemaViolation => "outbound_schema_violation",
            Self::UrgentPathNotAllowed => "urgent_path_not_allowed",
            Self::UrgentFlagContradictsPayload => "urgent_flag_contradicts_payload",
            Self::UrgentRoleNotPermitted => "urgent_role_not_permitted",
            Self::OptOutStatusRequired => "opt_out_status_required",
            Self::NationalDataOptOut => "national_data_opt_out",
            Self::SmallNumbersNotSuppressed => "small_numbers_not_suppressed",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::DisclosureDetailsRequired => "disclosure_details_required",
            Self::NotAOneOffTemplate => "not_a_one_off_template",
            Self::DestinationNotOffered => "destination_not_offered",
            Self::RequesterNotListed => "requester_not_listed",
            Self::SubjectIndexUnavailable => "subject_index_unavailable",
            Self::AgeGroupNotConfirmed => "age_group_not_confirmed",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::UnknownAgreement => "No agreement has this id.",
            Self::NotAParty => "This system is not permitted to send under this agreement.",
            Self::RoleNotPermitted => "The user's role may not send under this agreement.",
            Self::NotInForce(n) => n.explain(),
            Self::BodyTooLarge => "The request body is larger than the gateway accepts.",
            Self::MalformedJson => "The request body is not valid JSON.",
            Self::InvalidEnvelope => "The request body does not match the transfer envelope.",
            Self::MessageTypeNotCovered => "This agreement does not cover this message type.",
            Self::SchemaViolation => "The payload does not match its message type's schema.",
            Self::ConsentRequired => "This agreement requires a consent block with every transfer.",
            Self::ConsentRefused => "Consent was refused or not obtained, and this agreement relies on it.",
            Self::ConsentIncomplete => "The consent block lacks what this agreement requires.",
            Self::ConsentNotAllContributors => "Not every person whose information is included has consented.",
            Self::SubjectInformedRequired => {
                "This agreement requires saying whether the person was told, and why not if not."
            }
            Self::FieldNotAllowed => "The payload carries fields this agreement does not allow to leave.",
            Self::PseudonymisationFailed => "A field could not be pseudonymised as the agreement requires.",
            Self::UrgentPathNotAllowed => {
                "This agreement has no urgent path: nothing is released without its usual checks."
            }
            Self::UrgentFlagContradictsPayload => {
                "The transfer is marked immediate, but its payload does not say the risk is immediate."
            }
            Self::UrgentRoleNotPermitted => "The user's role may not use the urgent path under this agreement.",
            Self::OutboundSchemaViolation => {
                "After pseudonymisation the message does not match what the recipient accepts."
            }
            Self::OptOutStatusRequired => {
                "The national data opt-out applies to this agreement: say whether the person has opted out."
            }
            Self::NationalDataOptOut => "The person has registered a national data opt-out, which applies here.",
            Self::SmallNumbersNotSuppressed => {
                "The table holds small counts the agreement does not allow to be published, or is too small to publish."
            }
            Self::IdempotencyKeyReused => {
                "This Idempotency-Key was used before with a different request; use a new key."
            }
            Self::DisclosureDetailsRequired => {
                "A one-off disclosure must name the requester (organisation and their reference)."
            }
            Self::NotAOneOffTemplate => {
                "Disclosure details belong to one-off disclosures, not to a standing agreement."
            }
            Self::DestinationNotOffered => "The template does not offer this destination for one-off disclosures.",
            Self::RequesterNotListed => "The template does not list this requester; ask the IG officer to add it.",
            Self::SubjectIndexUnavailable => {
                "The gateway cannot index this transfer for subject access just now; nothing left. Try again later."
            }
            Self::AgeGroupNotConfirmed => {
                "The payload says the person is a child or an adult, and their date of birth does not confirm it."
            }
        }
    }
}
