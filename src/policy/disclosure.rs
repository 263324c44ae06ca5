//! One-off disclosures: a request from outside any standing agreement (a court order, a coroner's
//! notice, a police request about a serious crime, a hospital needing information about someone
//! who cannot decide for themselves).
//!
//! A one-off template is an agreement file with a `[one_off]` section: the kind of request it
//! serves (which fixes the legal bases it rests on), and the configured destinations the sender
//! may choose from. Each disclosure names the requester (organisation and their reference) and is
//! always held for a director; the two-person rule, the ledger, delivery and subject access are
//! those of every transfer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decision::{Reason, violation};
use crate::schemas::Violation;

/// The kind of request a one-off template serves. Each rests on a fixed set of legal bases that
/// the template must name (load rule `one_off_names_the_bases_of_its_kind`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A court orders the records disclosed.
    CourtOrder,
    /// A senior coroner's notice requires evidence or documents for an inquest.
    CoronersNotice,
    /// The police ask about a serious crime; disclosing is a power, weighed case by case.
    PoliceCrime,
    /// A hospital needs information about someone who cannot decide for themselves.
    VitalInterests,
}

impl RequestKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::CourtOrder => "court_order",
            Self::CoronersNotice => "coroners_notice",
            Self::PoliceCrime => "police_crime",
            Self::VitalInterests => "vital_interests",
        }
    }

    /// Who asks.
    pub fn requester(self) -> &'static str {
        match self {
            Self::CourtOrder => "court",
            Self::CoronersNotice => "coroner",
            Self::PoliceCrime => "police",
            Self::VitalInterests => "hospital",
        }
    }

    /// The legal bases a disclosure of this kind rests on: a UK GDPR Art 6 basis, an Art 9
    /// condition (with its Schedule 1 condition where one is needed), the Schedule 2 exemption
    /// that lets it be made without the usual transparency, and the common-law basis.
    pub fn bases(self) -> &'static [&'static str] {
        match self {
            Self::CourtOrder => &[
                "uk-gdpr/6.1.c",
                "uk-gdpr/9.2.f",
                "dpa-2018/sch2/5",
                "common-law/legal-requirement",
                "statute/court-order",
            ],
            Self::CoronersNotice => &[
                "uk-gdpr/6.1.c",
                "uk-gdpr/9.2.f",
                "dpa-2018/sch2/5",
                "common-law/legal-requirement",
                "statute/coroners-and-justice-act-2009/sch5",
            ],
            Self::PoliceCrime => &[
                "uk-gdpr/6.1.e",
                "uk-gdpr/9.2.g",
                "dpa-2018/sch1/10",
                "dpa-2018/sch2/2",
                "common-law/overriding-public-interest",
            ],
            Self::VitalInterests => &["uk-gdpr/6.1.d", "uk-gdpr/9.2.c", "common-law/best-interests"],
        }
    }
}

/// The `[one_off]` section of a one-off template.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffTerms {
    pub kind: RequestKind,
    /// The configured destinations a disclosure may be delivered to (the recipient's destination
    /// is the default and must be one of them).
    pub destinations: Vec<String>,
    /// The organisations that may ask under this template (the courts, the coroner's office, the
    /// police force, the hospitals). A request names one by id, so what the ledger keeps is the
    /// organisation written here, never text a sender typed.
    #[serde(default)]
    pub requesters: Vec<KnownRequester>,
}

/// An organisation a one-off template lets ask.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownRequester {
    /// Lower-case letters, digits and '-', e.g. `northvale-family-court`.
    pub id: String,
    pub organisation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
}

/// The load rules of a one-off template, as (key, message) for each breach.
pub(crate) fn template_problems(
    file: &crate::agreement::AgreementFile,
    destinations: &std::collections::HashSet<String>,
) -> Vec<(&'static str, String)> {
    use crate::agreement::rules;
    let Some(terms) = &file.one_off else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Exactly the kind's bases: another basis (or one the payload switches on) would let a
    // disclosure be recorded as resting on what its kind does not.
    let mut named: Vec<&str> = file.legal_bases.iter().map(String::as_str).collect();
    let mut wanted = terms.kind.bases().to_vec();
    named.sort_unstable();
    wanted.sort_unstable();
    if named != wanted || !file.conditional_bases.is_empty() {
        out.push((
            "legal_bases",
            format!(
                "rule {}: a {} disclosure rests on exactly {} (and no conditional_bases)",
                rules::ONE_OFF_NAMES_ITS_BASES,
                terms.kind.code(),
                terms.kind.bases().join(", ")
            ),
        ));
    }
    let mut ids = std::collections::HashSet::new();
    let bad_requester = terms
        .requesters
        .iter()
        .any(|r| !crate::ids::is_slug(&r.id) || !ids.insert(r.id.as_str()) || r.organisation.trim().is_empty());
    if terms.requesters.is_empty() || bad_requester {
        out.push((
            "one_off.requesters",
            format!(
                "rule {}: list the organisations that may ask, each with a unique id (lower-case letters, digits \
                 and '-') and its name",
                rules::ONE_OFF_NAMES_ITS_REQUESTERS
            ),
        ));
    }
    let unknown: Vec<&str> = terms
        .destinations
        .iter()
        .filter(|d| !destinations.contains(*d))
        .map(String::as_str)
        .collect();
    if terms.destinations.is_empty() || !unknown.is_empty() || !terms.destinations.contains(&file.recipient.destination)
    {
        out.push((
            "one_off.destinations",
            format!(
                "rule {}: list the configured destinations a disclosure may go to, including recipient.destination                  (not configured: {})",
                rules::ONE_OFF_DESTINATIONS_CONFIGURED,
                if unknown.is_empty() { "none".to_owned() } else { unknown.join(", ") }
            ),
        ));
    }
    if file.approval.urgent_path || !file.transparency.subject_informed_required {
        out.push((
            "approval",
            format!(
                "rule {}: a one-off disclosure always waits for a director (no urgent path) and says how the                  person was told (transparency.subject_informed_required = true)",
                rules::ONE_OFF_HELD_AND_TOLD
            ),
        ));
    }
    out
}

/// What a one-off disclosure request says of the requester and where it goes (the envelope's
/// `disclosure` block).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureBlock {
    pub requester: Requester,
    /// One of the template's destinations; the template's recipient destination when absent.
    #[serde(default)]
    pub destination: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    /// One of the template's requesters, by id.
    pub id: String,
    /// The requester's own reference (claim number, coroner's or police reference): kept in the
    /// ledger as a keyed hash, sent to the destination as written.
    pub reference: String,
}

/// What a permitted one-off disclosure records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOff {
    pub kind: RequestKind,
    /// The requester's organisation as the template names it.
    pub organisation: String,
    pub ods_code: Option<String>,
    /// The reference as written (it leaves with the disclosure; the ledger keeps a keyed hash).
    pub reference: String,
    pub destination: String,
}

/// The envelope's `disclosure` block against the agreement: required exactly when the agreement
/// is a one-off template, and its destination must be one the template offers.
pub(crate) fn check(
    terms: Option<&OneOffTerms>,
    default_destination: &str,
    block: Option<&DisclosureBlock>,
) -> Result<Option<OneOff>, (Reason, Vec<Violation>)> {
    match (terms, block) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err((
            Reason::NotAOneOffTemplate,
            vec![violation(
                "/disclosure",
                "agreement.one_off",
                "is only for one-off disclosure templates",
            )],
        )),
        (Some(_), None) => Err((
            Reason::DisclosureDetailsRequired,
            vec![violation(
                "/disclosure",
                "required",
                "is required by a one-off disclosure template",
            )],
        )),
        (Some(terms), Some(block)) => {
            let destination = block.destination.as_deref().unwrap_or(default_destination);
            if !terms.destinations.iter().any(|d| d == destination) {
                return Err((
                    Reason::DestinationNotOffered,
                    vec![violation(
                        "/disclosure/destination",
                        "agreement.one_off.destinations",
                        "is not a destination this template offers",
                    )],
                ));
            }
            let Some(requester) = terms.requesters.iter().find(|r| r.id == block.requester.id) else {
                return Err((
                    Reason::RequesterNotListed,
                    vec![violation(
                        "/disclosure/requester/id",
                        "agreement.one_off.requesters",
                        "is not a requester this template lists",
                    )],
                ));
            };
            Ok(Some(OneOff {
                kind: terms.kind,
                organisation: requester.organisation.clone(),
                ods_code: requester.ods_code.clone(),
                reference: block.requester.reference.clone(),
                destination: destination.to_owned(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legal::LegalBasis;

    #[test]
    fn every_kind_names_known_bases() {
        for kind in [
            RequestKind::CourtOrder,
            RequestKind::CoronersNotice,
            RequestKind::PoliceCrime,
            RequestKind::VitalInterests,
        ] {
            for code in kind.bases() {
                assert!(LegalBasis::parse(code).is_ok(), "{code}");
            }
        }
    }

    #[test]
    fn the_block_is_required_exactly_for_one_off_templates() {
        let terms = OneOffTerms {
            kind: RequestKind::CourtOrder,
            destinations: vec!["legal-drop".into(), "court-mesh".into()],
            requesters: vec![KnownRequester {
                id: "northvale-family-court".into(),
                organisation: "Northvale Family Court".into(),
                ods_code: None,
            }],
        };
        let block = |d: Option<&str>| DisclosureBlock {
            requester: Requester {
                id: "northvale-family-court".into(),
                reference: "NV26F00123".into(),
            },
            destination: d.map(str::to_owned),
        };
        let code = |r: Result<Option<OneOff>, (Reason, Vec<Violation>)>| r.err().map(|(r, _)| r.code());
        assert_eq!(
            code(check(None, "x", Some(&block(None)))),
            Some("not_a_one_off_template")
        );
        assert_eq!(
            code(check(Some(&terms), "legal-drop", None)),
            Some("disclosure_details_required")
        );
        assert_eq!(
            code(check(Some(&terms), "legal-drop", Some(&block(Some("mash-drop"))))),
            Some("destination_not_offered")
        );
        let ok = check(Some(&terms), "legal-drop", Some(&block(Some("court-mesh"))))
            .unwrap()
            .unwrap();
        assert_eq!(ok.destination, "court-mesh");
        let default = check(Some(&terms), "legal-drop", Some(&block(None))).unwrap().unwrap();
        assert_eq!(default.destination, "legal-drop");
        assert_eq!(default.organisation, "Northvale Family Court");
        let mut stranger = block(None);
        stranger.requester.id = "jordan-ashworth".into();
        assert_eq!(
            code(check(Some(&terms), "legal-drop", Some(&stranger))),
            Some("requester_not_listed")
        );
        assert_eq!(check(None, "x", None).unwrap(), None);
    }
}
