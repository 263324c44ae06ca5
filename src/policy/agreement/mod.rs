//! Information Sharing Agreements: the TOML files under `isa-templates/`, checked into an
//! [`Agreement`] whose invariants hold by construction.
//!
//! [`file`] is the format (`AgreementFile`); [`check`] turns a file into an [`Agreement`] — dates in
//! order, known systems, a known destination, known message types, well-formed field pointers that
//! name real fields, treatments that fit them, and a content hash the ledger records;
//! [`legal_rules`] are the legal consistency rules checked at load; [`view`] is what an IG officer
//! reads. No IO: the caller reads the files ([`Agreements::from_files`]).

mod check;
pub mod file;
pub mod legal_rules;
mod view;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::Date;

pub use self::file::*;
pub use self::legal_rules::{legal_rule_breaches, rules};
pub use self::view::{AgreementView, ConditionalBasesView, LegalBasisView, WARN_DAYS};
use crate::fields::PointerPattern;
use crate::legal::LegalBasis;
pub use crate::problem::{Problem, SourceFile};
use crate::pseudonymise::Op;
use crate::roles::UserRole;
use crate::schemas::MessageSchemas;

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
    pub fn acting_role(&self, user_roles: &[UserRole]) -> Option<UserRole> {
        self.file.sender.roles.iter().copied().find(|r| user_roles.contains(r))
    }

    pub fn permits_system(&self, system_id: &str) -> bool {
        self.file.sender.systems.iter().any(|s| s == system_id)
    }
    /// Whether this is a one-off disclosure template (not a standing agreement).
    pub fn one_off(&self) -> Option<&crate::disclosure::OneOffTerms> {
        self.file.one_off.as_ref()
    }
    /// Where a transfer under this agreement goes: the destination its decision named (a one-off
    /// disclosure's choice), else the recipient's.
    pub fn destination_of<'a>(&'a self, decided: Option<&'a str>) -> &'a str {
        decided.unwrap_or(&self.file.recipient.destination)
    }
    /// Whether a transfer under this agreement may be delivered to `destination`: the recipient's,
    /// or for a one-off template one of those it offers.
    pub fn offers_destination(&self, destination: &str) -> bool {
        self.file.recipient.destination == destination
            || self
                .one_off()
                .is_some_and(|o| o.destinations.iter().any(|d| d == destination))
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

/// The UTC calendar date of an instant: the one way "today" is computed, since agreements'
/// dates (in force from, review by, expires) are UTC calendar dates.
pub fn utc_date(t: jiff::Timestamp) -> Date {
    t.to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// Every agreement the gateway knows, by id.
#[derive(Debug, Default)]
pub struct Agreements {
    by_id: BTreeMap<String, Arc<Agreement>>,
}

impl Agreements {
    /// Checks every agreement file given (the caller read them: `*.toml` in a folder). All
    /// problems are reported together; one broken agreement fails the load, so the gateway never
    /// starts with a half-understood set.
    pub fn from_files(files: Vec<SourceFile>, ctx: &Context<'_>) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut by_id = BTreeMap::new();
        for SourceFile { path, bytes } in files {
            let Ok(text) = String::from_utf8(bytes) else {
                problems.push(Problem {
                    file: path,
                    location: None,
                    message: "not UTF-8 text".into(),
                });
                continue;
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
