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
    /// Legal-basis codes for the disclosure (see README, "Legal bases").
    pub legal_bases: Vec<String>,
    pub retention: Retention,
    /// The fields that may leave, by JSON pointer into the payload. Anything else is refused.
    pub fields: Vec<FieldRule>,
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
}

/// The data classification of a field (ICO Data Sharing Code: data items and their treatment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldClass {
    Identifying,
    QuasiIdentifier,
    SpecialCategory,
    CriminalOffence,
    ThirdParty,
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

/// A checked agreement.
#[derive(Debug)]
pub struct Agreement {
    file: AgreementFile,
    allowed: Vec<PointerPattern>,
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
    pub fn allowed_fields(&self) -> &[PointerPattern] {
        &self.allowed
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
            AgreementStatus::Draft | AgreementStatus::Terminated => {
                return Err(NotInForce::NotActive);
            }
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
/// message types.
#[derive(Debug, Default)]
pub struct Context {
    pub systems: HashSet<String>,
    pub destinations: HashSet<String>,
    pub message_types: HashSet<String>,
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

impl Agreement {
    /// Parses and checks one agreement file's text.
    pub fn parse(source: &Path, text: &str, ctx: &Context) -> Result<Self, Vec<Problem>> {
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
        let mut at =
            |key: &str, message: String| problems.push(problem(Some(key.to_owned()), message));

        if !is_slug(&file.id) {
            at(
                "id",
                "must be lower-case letters, digits and '-' (at most 64)".into(),
            );
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
        if matches!(
            file.status,
            AgreementStatus::Suspended | AgreementStatus::Terminated
        ) && file
            .status_reason
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
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
        if file.sender.systems.is_empty() {
            at(
                "sender.systems",
                "names no system: nobody could send under it".into(),
            );
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
        for m in &file.message_types {
            if !ctx.message_types.contains(m) {
                at(
                    "message_types",
                    format!("message type {m:?} has no schema in schemas/messages/"),
                );
            }
        }
        if file.legal_bases.is_empty() {
            at(
                "legal_bases",
                "names no legal basis: nothing may be shared without one".into(),
            );
        }
        if file.retention.years == 0 {
            at("retention.years", "must be at least one year".into());
        }
        if file.fields.is_empty() {
            at("fields", "allows no field: nothing could be sent".into());
        }
        let mut allowed = Vec::new();
        let mut seen = HashSet::new();
        for (i, rule) in file.fields.iter().enumerate() {
            match PointerPattern::parse(&rule.pointer) {
                Ok(p) => allowed.push(p),
                Err(e) => at(&format!("fields[{i}].pointer"), e.to_string()),
            }
            if !seen.insert(&rule.pointer) {
                at(
                    &format!("fields[{i}].pointer"),
                    format!("{:?} is listed twice", rule.pointer),
                );
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            content_hash: hex::encode(Sha256::digest(text.as_bytes())),
            allowed,
            file,
            source: source.to_path_buf(),
        })
    }
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
    pub fn load(dir: &Path, ctx: &Context) -> Result<Self, Vec<Problem>> {
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
                    if let Some(other) = by_id
                        .get(a.id())
                        .map(|o: &Arc<Agreement>| o.source().to_path_buf())
                    {
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
