//! The agreement file format: what an information-governance officer writes in TOML under
//! `isa-templates/`. serde and schemars sit here, at the boundary; the JSON Schema editors use is
//! generated from [`AgreementFile`] into `schemas/agreement.schema.json`.

use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::pseudonymise::{DateLevel, PostcodeLevel, Treatment};
use crate::roles::UserRole;

/// An Information Sharing Agreement, as written in a TOML file under `isa-templates/`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "isa-gateway Information Sharing Agreement")]
pub struct AgreementFile {
    /// Stable identifier used in URLs and the ledger: lower-case letters, digits and '-'.
    pub id: String,
    /// The version of this agreement; change it whenever the terms change.
    pub version: String,
    pub title: String,
    pub status: AgreementStatus,
    /// Why the agreement is suspended or terminated (required for those statuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// First day transfers may be made (UTC calendar date).
    pub effective_from: Date,
    /// The agreement must be reviewed by this date; after it, transfers are refused until it is.
    pub review_by: Date,
    /// Last day transfers may be made.
    pub expires: Date,
    /// Why the data is shared (Caldicott principle 1).
    pub purpose: String,
    pub sender: Sender,
    pub recipient: Recipient,
    /// Message types that may be sent under this agreement (each has a schema in schemas/messages/).
    pub message_types: Vec<String>,
    /// Legal-basis codes for the disclosure (docs/legal-bases.md lists them all): those that
    /// apply to every transfer.
    pub legal_bases: Vec<String>,
    /// Legal bases that apply only when the payload says so (a child or an adult at risk, say):
    /// each transfer records exactly the bases that applied to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditional_bases: Vec<ConditionalBases>,
    /// Reference to the Appropriate Policy Document (DPA 2018 Sch 1 Part 4); required when a
    /// Schedule 1 Part 2 condition is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appropriate_policy_document: Option<String>,
    /// Whether the national data opt-out applies (it does not to direct care, safeguarding, or
    /// where the law requires the data). Where it applies, each transfer must state the person's
    /// opt-out status, and an opted-out person's transfer is refused.
    #[serde(default)]
    pub national_data_opt_out_applies: bool,
    /// Why the national data opt-out does not apply, when it does not; recorded with every transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub national_data_opt_out_exemption: Option<OptOutExemption>,
    pub consent: ConsentTerms,
    #[serde(default)]
    pub transparency: Transparency,
    #[serde(default)]
    pub approval: Approval,
    pub retention: Retention,
    /// The fields that may leave, by JSON pointer into the payload, with their class and how
    /// they are treated on the way out. Anything else is refused.
    pub fields: Vec<FieldRule>,
    /// A schema (in schemas/outbound/) the gateway checks its own output against before
    /// anything leaves, e.g. the pseudonymised profile the recipient accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_schema: Option<String>,
    /// Pointers to the NHS numbers of the people a transfer is about, for the blind subject
    /// index (subject access requests). Values never reach the ledger, only a keyed hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_index: Vec<String>,
    /// For statistical returns (a `cells` table of counts): how small numbers are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppression: Option<crate::suppression::SuppressionRule>,
    /// Makes this file a one-off disclosure template (a court order, a coroner's notice, a police
    /// request, a hospital in an emergency) rather than a standing agreement: each disclosure
    /// names its requester and is always held for a director.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_off: Option<crate::disclosure::OneOffTerms>,
}

/// Why the national data opt-out does not apply to a flow (NHS England's operational policy).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptOutExemption {
    /// Individual care (the opt-out is about research and planning).
    DirectCare,
    /// Safeguarding: the risk of harm overrides.
    Safeguarding,
    /// A legal requirement, e.g. a direction under the Health and Social Care Act 2012 s.259.
    LegalRequirement,
    /// The person consented to this flow.
    Consent,
    /// The data is anonymised in line with the ICO code: not confidential patient information.
    Anonymised,
    /// An overriding public interest (e.g. preventing or detecting a serious crime), decided case
    /// by case.
    OverridingPublicInterest,
}

impl OptOutExemption {
    pub fn code(self) -> &'static str {
        match self {
            Self::DirectCare => "direct_care",
            Self::Safeguarding => "safeguarding",
            Self::LegalRequirement => "legal_requirement",
            Self::Consent => "consent",
            Self::Anonymised => "anonymised",
            Self::OverridingPublicInterest => "overriding_public_interest",
        }
    }
}

/// Legal bases that apply when a payload field takes one of some values.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionalBases {
    /// A JSON pointer into the payload (a field of every message type, with an enum of strings).
    pub pointer: String,
    /// The values for which these bases apply.
    pub values: Vec<String>,
    /// Legal-basis codes, added to the agreement's `legal_bases`.
    pub bases: Vec<String>,
    /// Where the values name an age group (a child, an adult): the person's date of birth must
    /// agree with it on the day of the decision, so the sender's word alone never chooses the
    /// statutory gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<AgeBand>,
}

/// An age group, in whole years on the day of the decision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeBand {
    /// A JSON pointer into the payload to the person's date of birth (`YYYY-MM-DD`).
    pub date_of_birth: String,
    /// The youngest age in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<u8>,
    /// The age the group ends at (18 for children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under: Option<u8>,
}

/// How consent works under this agreement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentTerms {
    pub model: ConsentModel,
    /// Why consent is not required (required for `not_required`), e.g. the statutory duty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each transfer must carry a consent block, as referral forms record consent even when it
    /// is not the basis.
    #[serde(default)]
    pub record_per_transfer: bool,
    /// Under implied consent, the legal basis that overrides a person's recorded objection (e.g.
    /// `common-law/overriding-public-interest`, or a statutory duty). Without one, an objection
    /// refuses the transfer; with one, the transfer is held for a director and records the basis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overriding_basis: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentModel {
    /// Direct care within the person's reasonable expectations; an objection stops the transfer.
    Implied,
    /// Each transfer carries evidence of explicit consent.
    Explicit,
    /// Consent is not the basis (e.g. a legal duty or safeguarding); the reason is recorded.
    NotRequired,
    /// Information from several people: every listed contributor must have consented.
    AllContributors,
}

/// Director approval and the urgent path.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// A disclosure without consent (consent not sought, or refused and overridden in the public
    /// interest) waits, held, until a director approves it; nothing is sent before.
    #[serde(default)]
    pub hold_without_consent: bool,
    /// A transfer marked `immediate` (a child at risk now) leaves at once and is flagged for a
    /// director's retrospective review within `review_within_hours` — only when its payload says
    /// the risk is immediate (`urgent_when`) and the user acts in one of `urgent_roles`.
    #[serde(default)]
    pub urgent_path: bool,
    #[serde(default = "default_review_hours")]
    pub review_within_hours: u32,
    /// What in the payload says the risk is immediate. Required with `urgent_path`: the flag alone
    /// never releases anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgent_when: Option<UrgentWhen>,
    /// The roles that may use the urgent path (a subset of the sender roles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urgent_roles: Vec<UserRole>,
}

/// A payload condition: the field at `pointer` holds one of `values`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrgentWhen {
    pub pointer: String,
    pub values: Vec<String>,
}

fn default_review_hours() -> u32 {
    24
}

impl Default for Approval {
    fn default() -> Self {
        Self {
            hold_without_consent: false,
            urgent_path: false,
            review_within_hours: default_review_hours(),
            urgent_when: None,
            urgent_roles: Vec::new(),
        }
    }
}

/// How people are told.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transparency {
    /// Where the privacy notice covering this sharing is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_notice: Option<String>,
    /// Each transfer must say whether the person was told (before, after, or not, with why).
    #[serde(default)]
    pub subject_informed_required: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgreementStatus {
    Draft,
    Active,
    Suspended,
    Terminated,
}

/// The disclosing organisation and the systems that may send on its behalf.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub organisation: String,
    /// ODS organisation code or charity number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
    /// A public authority acting on its official tasks cannot rely on Art 6(1)(ea) or (f).
    pub public_authority: bool,
    /// The user roles (from the bearer token) that may send under this agreement.
    pub roles: Vec<UserRole>,
    /// Ids of registered systems (gateway configuration `[[systems]]`) allowed to send.
    pub systems: Vec<String>,
}

/// The receiving organisation and where its transfers are delivered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub organisation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
    /// Id of a destination in the gateway configuration (`[[destinations]]`).
    pub destination: String,
}

/// How long the recipient keeps what it receives.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub years: u16,
    /// The source of the period, e.g. the NHS Records Management Code of Practice entry.
    pub basis: String,
}

/// One field (or subtree) that may leave.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// JSON pointer into the payload; `*` matches any array index.
    pub pointer: String,
    pub class: FieldClass,
    /// What happens to the field on the way out (default: kept as it is).
    #[serde(default, skip_serializing_if = "Treatment::is_keep")]
    pub treatment: Treatment,
}

/// The data classification of a field (ICO Data Sharing Code: data items and their treatment).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldClass {
    Identifying,
    QuasiIdentifier,
    SpecialCategory,
    CriminalOffence,
    ThirdParty,
}

impl FieldClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identifying => "identifying",
            Self::QuasiIdentifier => "quasi_identifier",
            Self::SpecialCategory => "special_category",
            Self::CriminalOffence => "criminal_offence",
            Self::ThirdParty => "third_party",
        }
    }
}

/// The JSON Schema of the agreement file format, as checked in at `schemas/agreement.schema.json`.
pub fn file_schema_json() -> String {
    let schema = schemars::schema_for!(AgreementFile);
    // Serialising a schema (plain maps and strings) cannot fail.
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
