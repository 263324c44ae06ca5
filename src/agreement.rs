//! Information Sharing Agreements: the TOML files under `isa-templates/`, checked into an
//! [`Agreement`] whose invariants hold by construction.
//!
//! [`AgreementFile`] is the file format (serde and schemars sit here, at the boundary; the JSON
//! Schema editors use is generated from it into `schemas/agreement.schema.json`). [`Agreement`]
//! is what the rest of the gateway sees: dates in order, known systems, a known destination,
//! known message types, well-formed field pointers, and a content hash the ledger records.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::is_slug;
use crate::fields::PointerPattern;
use crate::legal::{Art6, Art9, CommonLaw, LegalBasis, Schedule1, Schedule1Part};
use crate::pseudonymise::{Needs, Op};
use crate::schemas::{MessageSchemas, Shape};

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
    /// Legal-basis codes for the disclosure (docs/legal-bases.md lists them all).
    pub legal_bases: Vec<String>,
    /// Reference to the Appropriate Policy Document (DPA 2018 Sch 1 Part 4); required when a
    /// Schedule 1 Part 2 condition is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appropriate_policy_document: Option<String>,
    /// Whether the national data opt-out applies (it does not to direct care, safeguarding, or
    /// where the law requires the data).
    #[serde(default)]
    pub national_data_opt_out_applies: bool,
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
}

/// How consent works under this agreement.
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
}

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
    /// director's retrospective review within `review_within_hours`.
    #[serde(default)]
    pub urgent_path: bool,
    #[serde(default = "default_review_hours")]
    pub review_within_hours: u32,
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
        }
    }
}

/// How people are told.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgreementStatus {
    Draft,
    Active,
    Suspended,
    Terminated,
}

/// The disclosing organisation and the systems that may send on its behalf.
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
    pub roles: Vec<crate::auth::UserRole>,
    /// Ids of registered systems (gateway configuration `[[systems]]`) allowed to send.
    pub systems: Vec<String>,
}

/// The receiving organisation and where its transfers are delivered.
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
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub years: u16,
    /// The source of the period, e.g. the NHS Records Management Code of Practice entry.
    pub basis: String,
}

/// One field (or subtree) that may leave.
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

/// What happens to a field on the way out (pseudonymisation and minimisation).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Treatment {
    /// Sent as it is.
    #[default]
    Keep,
    /// Accepted from the sender but removed before sending.
    Drop,
    /// Replaced by a keyed HMAC-SHA256 token under this agreement's key (`pt-v<version>-<hex>`).
    Token,
    /// A date reduced to a year, a year and month, or an age band at an event date.
    GeneraliseDate {
        to: DateLevel,
        /// For `age_band`: the lower bounds of the bands, ascending (e.g. [16, 18, 25, 35]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bands: Vec<u16>,
        /// For `age_band`: the pointer of the event date the age is taken at.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// A postcode reduced to its district (outward code, e.g. `LS6`) or sector (`LS6 3`).
    GeneralisePostcode { to: PostcodeLevel },
    /// All but the last `keep_last` characters replaced by `*`.
    Mask { keep_last: u8 },
    /// Replaced by the fixed marker `[REDACTED]`.
    Redact,
    /// A number replaced by the label of its range, given by ascending bounds.
    Bucket { bounds: Vec<f64> },
}

impl Treatment {
    pub fn is_keep(&self) -> bool {
        *self == Treatment::Keep
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Token => "token",
            Self::GeneraliseDate { .. } => "generalise_date",
            Self::GeneralisePostcode { .. } => "generalise_postcode",
            Self::Mask { .. } => "mask",
            Self::Redact => "redact",
            Self::Bucket { .. } => "bucket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DateLevel {
    Year,
    YearMonth,
    AgeBand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PostcodeLevel {
    District,
    Sector,
}

/// The data classification of a field (ICO Data Sharing Code: data items and their treatment).
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

/// Why an agreement does not permit transfers today. Codes are stable: the ledger stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotInForce {
    NotActive,
    Suspended,
    NotYetInForce,
    Expired,
    ReviewOverdue,
}

impl NotInForce {
    pub fn code(self) -> &'static str {
        match self {
            Self::NotActive => "agreement_not_active",
            Self::Suspended => "agreement_suspended",
            Self::NotYetInForce => "agreement_not_yet_in_force",
            Self::Expired => "agreement_expired",
            Self::ReviewOverdue => "agreement_review_overdue",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::NotActive => "The agreement is not active (draft or terminated).",
            Self::Suspended => "The agreement is suspended.",
            Self::NotYetInForce => "The agreement is not yet in force.",
            Self::Expired => "The agreement has expired.",
            Self::ReviewOverdue => {
                "The agreement's review date has passed; it must be reviewed before further transfers."
            }
        }
    }
}

/// A field rule, checked: where, what class, and the compiled treatment.
#[derive(Debug, Clone)]
pub struct CheckedField {
    pub pattern: PointerPattern,
    pub class: FieldClass,
    pub op: Op,
}

/// A checked agreement.
#[derive(Debug)]
pub struct Agreement {
    file: AgreementFile,
    fields: Vec<CheckedField>,
    allowed: Vec<PointerPattern>,
    legal_bases: Vec<LegalBasis>,
    subject_index: Vec<PointerPattern>,
    content_hash: String,
    source: PathBuf,
}

impl Agreement {
    pub fn id(&self) -> &str {
        &self.file.id
    }
    pub fn version(&self) -> &str {
        &self.file.version
    }
    pub fn terms(&self) -> &AgreementFile {
        &self.file
    }
    /// SHA-256 (hex) of the agreement file's bytes, recorded with every decision.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }
    pub fn source(&self) -> &Path {
        &self.source
    }
    pub fn fields(&self) -> &[CheckedField] {
        &self.fields
    }
    pub fn allowed_fields(&self) -> &[PointerPattern] {
        &self.allowed
    }
    pub fn legal_bases(&self) -> &[LegalBasis] {
        &self.legal_bases
    }
    pub fn subject_index(&self) -> &[PointerPattern] {
        &self.subject_index
    }
    /// Whether any field is tokenised (so the agreement needs a key).
    pub fn needs_key(&self) -> bool {
        self.fields.iter().any(|f| f.op == Op::Token)
    }
    /// The first role of the agreement's sender roles that the user holds: the role they act in.
    pub fn acting_role(&self, user_roles: &[crate::auth::UserRole]) -> Option<crate::auth::UserRole> {
        self.file.sender.roles.iter().copied().find(|r| user_roles.contains(r))
    }

    pub fn permits_system(&self, system_id: &str) -> bool {
        self.file.sender.systems.iter().any(|s| s == system_id)
    }
    pub fn covers_message_type(&self, message_type: &str) -> bool {
        self.file.message_types.iter().any(|m| m == message_type)
    }

    /// Whether transfers may be made on `today` (a UTC calendar date).
    pub fn in_force(&self, today: Date) -> Result<(), NotInForce> {
        match self.file.status {
            AgreementStatus::Active => {}
            AgreementStatus::Suspended => return Err(NotInForce::Suspended),
            AgreementStatus::Draft | AgreementStatus::Terminated => return Err(NotInForce::NotActive),
        }
        if today < self.file.effective_from {
            Err(NotInForce::NotYetInForce)
        } else if today > self.file.expires {
            Err(NotInForce::Expired)
        } else if today > self.file.review_by {
            Err(NotInForce::ReviewOverdue)
        } else {
            Ok(())
        }
    }
}

/// What an agreement is checked against: the gateway's registered systems, destinations and
/// message schemas.
#[derive(Debug)]
pub struct Context<'a> {
    pub systems: HashSet<String>,
    pub destinations: HashSet<String>,
    pub schemas: &'a MessageSchemas,
}

/// A problem in a file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// `line:column`, a key path or a JSON pointer, where one is known.
    pub location: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{}:{loc}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The legal consistency rules checked when an agreement is loaded (domain reference §1; ICO
/// guidance on special category and criminal offence data). Each has a stable name that
/// `isa-gateway check` prints.
pub mod rules {
    pub const ART6_REQUIRED: &str = "art6_basis_required";
    pub const SPECIAL_CATEGORY_NEEDS_ART9: &str = "special_category_needs_art9_condition";
    pub const ART9_NEEDS_SCHEDULE1: &str = "art9_condition_needs_schedule1_condition";
    pub const SCHEDULE1_PART2_NEEDS_APD: &str = "schedule1_part2_needs_appropriate_policy_document";
    pub const CRIMINAL_OFFENCE_NEEDS_PART3: &str = "criminal_offence_needs_part3_condition";
    pub const CONSENT_BASIS_NEEDS_EXPLICIT_MODEL: &str = "consent_basis_needs_per_transfer_consent";
    pub const PUBLIC_AUTHORITY_NO_LEGITIMATE_INTERESTS: &str = "public_authority_cannot_use_legitimate_interests";
    pub const NOT_REQUIRED_NEEDS_REASON: &str = "consent_not_required_needs_reason";
    pub const UNKNOWN_LEGAL_BASIS: &str = "legal_basis_code_known";
    pub const FIELD_IN_SCHEMA: &str = "field_exists_in_message_schema";
    pub const TREATMENT_FITS_FIELD: &str = "treatment_fits_field_type";
    pub const OUTBOUND_SCHEMA_KNOWN: &str = "outbound_schema_known";
    pub const TOKEN_NEEDS_OUTBOUND_SCHEMA: &str = "pseudonymised_output_needs_outbound_schema";
}

impl Agreement {
    /// Parses and checks one agreement file's text.
    pub fn parse(source: &Path, text: &str, ctx: &Context<'_>) -> Result<Self, Vec<Problem>> {
        let problem = |location: Option<String>, message: String| Problem {
            file: source.to_path_buf(),
            location,
            message,
        };
        let file: AgreementFile = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|span| line_col(text, span.start));
            vec![problem(location, e.message().to_owned())]
        })?;
        let mut problems = Vec::new();
        let mut at = |key: &str, message: String| problems.push(problem(Some(key.to_owned()), message));

        if !is_slug(&file.id) {
            at("id", "must be lower-case letters, digits and '-' (at most 64)".into());
        }
        for (key, value) in [
            ("version", &file.version),
            ("title", &file.title),
            ("purpose", &file.purpose),
        ] {
            if value.trim().is_empty() {
                at(key, "must not be empty".into());
            }
        }
        if matches!(file.status, AgreementStatus::Suspended | AgreementStatus::Terminated)
            && file.status_reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            at(
                "status_reason",
                "a suspended or terminated agreement must say why".into(),
            );
        }
        if file.effective_from > file.expires {
            at("expires", "is before effective_from".into());
        }
        if file.review_by < file.effective_from {
            at("review_by", "is before effective_from".into());
        }
        if file.sender.roles.is_empty() {
            at("sender.roles", "names no user role: nobody could send under it".into());
        }
        if file.sender.systems.is_empty() {
            at("sender.systems", "names no system: nobody could send under it".into());
        }
        for s in &file.sender.systems {
            if !ctx.systems.contains(s) {
                at(
                    "sender.systems",
                    format!("system {s:?} is not registered in the gateway configuration"),
                );
            }
        }
        if !ctx.destinations.contains(&file.recipient.destination) {
            at(
                "recipient.destination",
                format!(
                    "destination {:?} is not defined in the gateway configuration",
                    file.recipient.destination
                ),
            );
        }
        if file.message_types.is_empty() {
            at("message_types", "names no message type".into());
        }
        let schemas: Vec<_> = file
            .message_types
            .iter()
            .filter_map(|m| {
                let s = ctx.schemas.get(m);
                if s.is_none() {
                    at(
                        "message_types",
                        format!("message type {m:?} has no schema in schemas/messages/"),
                    );
                }
                s
            })
            .collect();
        if !(1..=8760).contains(&file.approval.review_within_hours) {
            at(
                "approval.review_within_hours",
                "must be between 1 and 8760 (a year)".into(),
            );
        }
        if file.retention.years == 0 {
            at("retention.years", "must be at least one year".into());
        }
        if let Some(name) = &file.outbound_schema
            && ctx.schemas.outbound(name).is_none()
        {
            at(
                "outbound_schema",
                format!(
                    "rule {}: no schema {name:?} in schemas/outbound/",
                    rules::OUTBOUND_SCHEMA_KNOWN
                ),
            );
        }

        // Fields: pointers, classes, treatments, each checked against the message schemas.
        if file.fields.is_empty() {
            at("fields", "allows no field: nothing could be sent".into());
        }
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        for (i, rule) in file.fields.iter().enumerate() {
            let key = format!("fields[{i}]");
            if !seen.insert(&rule.pointer) {
                at(&format!("{key}.pointer"), format!("{:?} is listed twice", rule.pointer));
            }
            let pattern = match PointerPattern::parse(&rule.pointer) {
                Ok(p) => p,
                Err(e) => {
                    at(&format!("{key}.pointer"), e.to_string());
                    continue;
                }
            };
            let op = match Op::compile(&rule.treatment) {
                Ok(op) => op,
                Err(e) => {
                    at(&format!("{key}.treatment"), e);
                    continue;
                }
            };
            let shapes: Vec<Shape> = schemas.iter().filter_map(|s| s.shape(&pattern)).collect();
            if !schemas.is_empty() && shapes.is_empty() {
                at(
                    &format!("{key}.pointer"),
                    format!(
                        "rule {}: {} names no field of {}",
                        rules::FIELD_IN_SCHEMA,
                        rule.pointer,
                        file.message_types.join(", ")
                    ),
                );
            }
            for shape in &shapes {
                if let Err(why) = fits(&op, shape) {
                    at(
                        &format!("{key}.treatment"),
                        format!("rule {}: {} {why}", rules::TREATMENT_FITS_FIELD, op.name()),
                    );
                }
            }
            if let Op::AgeBand { at: event, .. } = &op
                && !schemas.is_empty()
                && !schemas
                    .iter()
                    .filter_map(|s| s.shape(event))
                    .any(|s| s.format.as_deref() == Some("date"))
            {
                at(
                    &format!("{key}.treatment.at"),
                    format!("{} names no date field", event.as_str()),
                );
            }
            fields.push(CheckedField {
                pattern,
                class: rule.class,
                op,
            });
        }
        if fields.iter().any(|f| f.op == Op::Token) && file.outbound_schema.is_none() {
            at(
                "outbound_schema",
                format!(
                    "rule {}: tokenised fields change the message; name the schema the recipient accepts",
                    rules::TOKEN_NEEDS_OUTBOUND_SCHEMA
                ),
            );
        }
        let mut subject_index = Vec::new();
        for (i, p) in file.subject_index.iter().enumerate() {
            match PointerPattern::parse(p) {
                Ok(pattern) => {
                    let is_nhs = schemas
                        .iter()
                        .filter_map(|s| s.shape(&pattern))
                        .any(|s| s.format.as_deref() == Some("nhs-number"));
                    if !is_nhs {
                        at(
                            &format!("subject_index[{i}]"),
                            format!("{p} is not an NHS number field of the message schemas"),
                        );
                    }
                    subject_index.push(pattern);
                }
                Err(e) => at(&format!("subject_index[{i}]"), e.to_string()),
            }
        }

        // Legal bases and the rules that tie them together.
        let mut legal_bases = Vec::new();
        for (i, code) in file.legal_bases.iter().enumerate() {
            match LegalBasis::parse(code) {
                Ok(b) => legal_bases.push(b),
                Err(e) => at(
                    &format!("legal_bases[{i}]"),
                    format!("rule {}: {e}", rules::UNKNOWN_LEGAL_BASIS),
                ),
            }
        }
        let classes: HashSet<FieldClass> = fields.iter().map(|f| f.class).collect();
        for (rule, message) in legal_rule_breaches(&file, &legal_bases, &classes) {
            at("legal_bases", format!("rule {rule}: {message}"));
        }
        if file.consent.model == ConsentModel::NotRequired
            && file.consent.reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            at(
                "consent.reason",
                format!(
                    "rule {}: say why consent is not required (e.g. the statutory duty)",
                    rules::NOT_REQUIRED_NEEDS_REASON
                ),
            );
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            content_hash: hex::encode(Sha256::digest(text.as_bytes())),
            allowed: fields.iter().map(|f| f.pattern.clone()).collect(),
            fields,
            legal_bases,
            subject_index,
            file,
            source: source.to_path_buf(),
        })
    }
}

/// Whether an operator can work on a field of this shape.
fn fits(op: &Op, shape: &Shape) -> Result<(), &'static str> {
    let is = |t: &str| shape.types.iter().any(|x| x == t);
    match op.needs() {
        Needs::Anything => Ok(()),
        Needs::String if is("string") => Ok(()),
        Needs::String => Err("needs a string field"),
        Needs::Date if is("string") && matches!(shape.format.as_deref(), Some("date" | "date-time")) => Ok(()),
        Needs::Date => Err("needs a date field (format date or date-time)"),
        Needs::Number if is("integer") || is("number") => Ok(()),
        Needs::Number => Err("needs a number field"),
    }
}

/// The legal consistency rules, as (rule, explanation) for each breach.
pub fn legal_rule_breaches(
    file: &AgreementFile,
    bases: &[LegalBasis],
    classes: &HashSet<FieldClass>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let art6: Vec<Art6> = bases
        .iter()
        .filter_map(|b| if let LegalBasis::Art6(a) = b { Some(*a) } else { None })
        .collect();
    let art9: Vec<Art9> = bases
        .iter()
        .filter_map(|b| if let LegalBasis::Art9(a) = b { Some(*a) } else { None })
        .collect();
    let sch1: Vec<Schedule1> = bases
        .iter()
        .filter_map(|b| {
            if let LegalBasis::Schedule1(s) = b {
                Some(*s)
            } else {
                None
            }
        })
        .collect();
    let has_para = |n: u8| sch1.iter().any(|s| s.paragraph() == n);
    let has_part = |p: Schedule1Part| sch1.iter().any(|s| s.part() == p);

    if art6.is_empty() {
        out.push((
            rules::ART6_REQUIRED,
            "every disclosure needs a UK GDPR Art 6(1) lawful basis".to_owned(),
        ));
    }
    if classes.contains(&FieldClass::SpecialCategory) && art9.is_empty() {
        out.push((
            rules::SPECIAL_CATEGORY_NEEDS_ART9,
            "special-category fields are shared but no UK GDPR Art 9(2) condition is named".to_owned(),
        ));
    }
    // DPA 2018 s.10(2)-(3): these Art 9 conditions need a basis in law from Schedule 1.
    for a in &art9 {
        let (needed, ok) = match a {
            Art9::B => ("Part 1 para 1", has_para(1)),
            Art9::H => ("Part 1 para 2", has_para(2)),
            Art9::I => ("Part 1 para 3", has_para(3)),
            Art9::J => ("Part 1 para 4", has_para(4)),
            Art9::G => ("a Part 2 condition", has_part(Schedule1Part::Two)),
            _ => continue,
        };
        if !ok {
            let code = LegalBasis::Art9(*a).code();
            out.push((
                rules::ART9_NEEDS_SCHEDULE1,
                format!("{code} needs DPA 2018 Schedule 1 {needed}"),
            ));
        }
    }
    if has_part(Schedule1Part::Two)
        && file
            .appropriate_policy_document
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        out.push((
            rules::SCHEDULE1_PART2_NEEDS_APD,
            "a Schedule 1 Part 2 condition needs an Appropriate Policy Document (appropriate_policy_document)"
                .to_owned(),
        ));
    }
    if classes.contains(&FieldClass::CriminalOffence) && !has_part(Schedule1Part::Three) {
        out.push((
            rules::CRIMINAL_OFFENCE_NEEDS_PART3,
            "criminal-offence fields (Art 10; allegations count) need a Schedule 1 Part 3 condition".to_owned(),
        ));
    }
    let consent_basis = art6.contains(&Art6::A) || bases.contains(&LegalBasis::CommonLaw(CommonLaw::ExplicitConsent));
    if consent_basis
        && !matches!(
            file.consent.model,
            ConsentModel::Explicit | ConsentModel::AllContributors
        )
    {
        out.push((
            rules::CONSENT_BASIS_NEEDS_EXPLICIT_MODEL,
            "consent is named as a basis, so each transfer must carry consent evidence (consent.model explicit or all_contributors)"
                .to_owned(),
        ));
    }
    if file.sender.public_authority && art6.iter().any(|a| matches!(a, Art6::F | Art6::Ea(_))) {
        out.push((
            rules::PUBLIC_AUTHORITY_NO_LEGITIMATE_INTERESTS,
            "a public authority acting on its official tasks uses Art 6(1)(e), not (ea) or (f)".to_owned(),
        ));
    }
    out
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

/// Every agreement the gateway knows, by id.
#[derive(Debug, Default)]
pub struct Agreements {
    by_id: BTreeMap<String, Arc<Agreement>>,
}

impl Agreements {
    /// Loads every `*.toml` file in `dir`. All problems are reported together; one broken
    /// agreement fails the load, so the gateway never starts with a half-understood set.
    pub fn load(dir: &Path, ctx: &Context<'_>) -> Result<Self, Vec<Problem>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![Problem {
                file: dir.to_path_buf(),
                location: None,
                message: format!("cannot read the agreements folder: {e}"),
            }]
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut problems = Vec::new();
        let mut by_id = BTreeMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem {
                        file: path,
                        location: None,
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            match Agreement::parse(&path, &text, ctx) {
                Ok(a) => {
                    if let Some(other) = by_id.get(a.id()).map(|o: &Arc<Agreement>| o.source().to_path_buf()) {
                        problems.push(Problem {
                            file: path,
                            location: Some("id".into()),
                            message: format!("id {:?} is also used by {}", a.id(), other.display()),
                        });
                    } else {
                        by_id.insert(a.id().to_owned(), Arc::new(a));
                    }
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(Self { by_id })
        } else {
            Err(problems)
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Agreement>> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Agreement>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
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

/// What an information-governance officer sees of an agreement.
#[derive(Debug, Serialize)]
pub struct AgreementView<'a> {
    pub id: &'a str,
    pub version: &'a str,
    pub title: &'a str,
    pub status: AgreementStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<&'a str>,
    /// `in_force`, or why transfers are refused today (`agreement_expired`, …).
    pub state: &'static str,
    pub effective_from: Date,
    pub review_by: Date,
    pub expires: Date,
    /// Days until the review date (negative when overdue).
    pub review_due_in_days: i32,
    /// Warnings 30 days ahead of review or expiry.
    pub warnings: Vec<String>,
    pub purpose: &'a str,
    pub sender: &'a Sender,
    pub recipient: &'a Recipient,
    pub message_types: &'a [String],
    pub legal_bases: Vec<LegalBasisView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appropriate_policy_document: Option<&'a str>,
    pub national_data_opt_out_applies: bool,
    pub consent: &'a ConsentTerms,
    pub transparency: &'a Transparency,
    pub retention: &'a Retention,
    pub fields: &'a [FieldRule],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_schema: Option<&'a str>,
    pub content_hash: &'a str,
}

#[derive(Debug, Serialize)]
pub struct LegalBasisView {
    pub code: String,
    pub title: String,
    pub source: &'static str,
}

/// How far ahead review and expiry are announced.
pub const WARN_DAYS: i32 = 30;

impl Agreement {
    pub fn view(&self, today: Date) -> AgreementView<'_> {
        let f = &self.file;
        let days = |d: Date| (d - today).get_days();
        let mut warnings = Vec::new();
        let (to_review, to_expiry) = (days(f.review_by), days(f.expires));
        if (0..=WARN_DAYS).contains(&to_review) {
            warnings.push(format!("review due in {to_review} day(s), on {}", f.review_by));
        }
        if (0..=WARN_DAYS).contains(&to_expiry) {
            warnings.push(format!("expires in {to_expiry} day(s), on {}", f.expires));
        }
        AgreementView {
            id: &f.id,
            version: &f.version,
            title: &f.title,
            status: f.status,
            status_reason: f.status_reason.as_deref(),
            state: self.in_force(today).err().map_or("in_force", NotInForce::code),
            effective_from: f.effective_from,
            review_by: f.review_by,
            expires: f.expires,
            review_due_in_days: to_review,
            warnings,
            purpose: f.purpose.trim(),
            sender: &f.sender,
            recipient: &f.recipient,
            message_types: &f.message_types,
            legal_bases: self
                .legal_bases
                .iter()
                .map(|b| LegalBasisView {
                    code: b.code(),
                    title: b.title(),
                    source: b.source(),
                })
                .collect(),
            appropriate_policy_document: f.appropriate_policy_document.as_deref(),
            national_data_opt_out_applies: f.national_data_opt_out_applies,
            consent: &f.consent,
            transparency: &f.transparency,
            retention: &f.retention,
            fields: &f.fields,
            outbound_schema: f.outbound_schema.as_deref(),
            content_hash: &self.content_hash,
        }
    }
}
