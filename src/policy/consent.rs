//! Consent and telling the person: what the sender recorded, checked against the agreement's
//! consent model and transparency terms.

use serde::Deserialize;

use crate::agreement::{Agreement, ConsentModel};
use crate::decision::{Reason, violation};
use crate::schemas::Violation;

/// Whether consent was sought and given (`schemas/envelope.json` allows exactly these).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Obtained,
    Refused,
    NotSought,
    NotApplicable,
}

impl ConsentStatus {
    pub fn code(self) -> &'static str {
        match self {
            Self::Obtained => "obtained",
            Self::Refused => "refused",
            Self::NotSought => "not_sought",
            Self::NotApplicable => "not_applicable",
        }
    }
}

/// Whether the person was told of the disclosure: before, after (by a date), or not (with a reason).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InformedStatus {
    Before,
    After,
    NotInformed,
}

impl InformedStatus {
    pub fn code(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
            Self::NotInformed => "not_informed",
        }
    }
}

/// Consent as the sender recorded it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct ConsentBlock {
    pub status: ConsentStatus,
    #[serde(default)]
    pub given_by: Option<String>,
    #[serde(default)]
    pub reason_not_sought: Option<String>,
    #[serde(default)]
    pub evidence_ref: Option<String>,
    /// Where the capacity decision is recorded (a reference).
    #[serde(default)]
    pub capacity_ref: Option<String>,
    #[serde(default)]
    pub contributors: Vec<Contributor>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct Contributor {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default)]
    pub relationship: Option<String>,
    pub consented: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct SubjectInformed {
    pub status: InformedStatus,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub due_by: Option<String>,
}

/// What the ledger records of consent and transparency (codes and references only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentRecord {
    pub status: Option<String>,
    pub reason: Option<String>,
    pub evidence_ref: Option<String>,
    /// Who gave consent (a role code: subject, parent_or_carer, …).
    pub given_by: Option<String>,
    /// Where the capacity decision is recorded (a reference).
    pub capacity_ref: Option<String>,
    pub subject_informed: Option<String>,
    /// Why the person was not told (a code), when they were not.
    pub subject_informed_reason: Option<String>,
}

/// The agreement's consent model and transparency terms against what the sender recorded.
pub(crate) fn check_consent(
    agreement: &Agreement,
    consent: Option<&ConsentBlock>,
    informed: Option<&SubjectInformed>,
) -> Result<(), (Reason, Vec<Violation>)> {
    let terms = &agreement.terms().consent;
    let required = || {
        (
            Reason::ConsentRequired,
            vec![violation("/consent", "required", "is required by this agreement")],
        )
    };
    let status = consent.map(|c| c.status);
    match terms.model {
        ConsentModel::Implied => {
            // Direct care rests on the person's reasonable expectations; an objection ends them.
            if status == Some(ConsentStatus::Refused) && terms.overriding_basis.is_none() {
                return Err((
                    Reason::ConsentRefused,
                    vec![violation("/consent/status", "consent.model", "the person objected")],
                ));
            }
        }
        ConsentModel::Explicit => {
            let c = consent.ok_or_else(required)?;
            if c.status != ConsentStatus::Obtained {
                return Err((
                    Reason::ConsentRefused,
                    vec![violation(
                        "/consent/status",
                        "consent.model",
                        "explicit consent is required",
                    )],
                ));
            }
            if c.evidence_ref.is_none() {
                return Err((
                    Reason::ConsentIncomplete,
                    vec![violation(
                        "/consent/evidence_ref",
                        "required",
                        "explicit consent needs its evidence reference",
                    )],
                ));
            }
        }
        ConsentModel::AllContributors => {
            let c = consent.ok_or_else(required)?;
            if c.contributors.is_empty() {
                return Err((
                    Reason::ConsentIncomplete,
                    vec![violation(
                        "/consent/contributors",
                        "required",
                        "list everyone whose information is included",
                    )],
                ));
            }
            let missing: Vec<Violation> = c
                .contributors
                .iter()
                .enumerate()
                .filter(|(_, x)| !x.consented)
                .map(|(i, _)| {
                    violation(
                        &format!("/consent/contributors/{i}/consented"),
                        "consent.all_contributors",
                        "this contributor has not consented",
                    )
                })
                .collect();
            if !missing.is_empty() {
                return Err((Reason::ConsentNotAllContributors, missing));
            }
        }
        ConsentModel::NotRequired => {
            if terms.record_per_transfer && consent.is_none() {
                return Err(required());
            }
        }
    }
    if let Some(c) = consent {
        let mut incomplete = Vec::new();
        if c.status == ConsentStatus::NotSought && c.reason_not_sought.is_none() {
            incomplete.push(violation(
                "/consent/reason_not_sought",
                "required",
                "say why consent was not sought",
            ));
        }
        if c.status == ConsentStatus::Obtained && c.given_by.is_none() {
            incomplete.push(violation("/consent/given_by", "required", "say who gave consent"));
        }
        if !incomplete.is_empty() {
            return Err((Reason::ConsentIncomplete, incomplete));
        }
    }
    if agreement.terms().transparency.subject_informed_required {
        let Some(s) = informed else {
            return Err((
                Reason::SubjectInformedRequired,
                vec![violation(
                    "/subject_informed",
                    "required",
                    "is required by this agreement",
                )],
            ));
        };
        if s.status == InformedStatus::NotInformed && s.reason.is_none() {
            return Err((
                Reason::SubjectInformedRequired,
                vec![violation(
                    "/subject_informed/reason",
                    "required",
                    "say why the person will not be told",
                )],
            ));
        }
        if s.status == InformedStatus::After && s.due_by.is_none() {
            return Err((
                Reason::SubjectInformedRequired,
                vec![violation(
                    "/subject_informed/due_by",
                    "required",
                    "say when the person will be told",
                )],
            ));
        }
    }
    Ok(())
}
