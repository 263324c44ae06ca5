//! The legal consistency rules an agreement must satisfy to load (domain reference §1; ICO
//! guidance on special category and criminal offence data).

use std::collections::HashSet;

use super::{AgreementFile, ConsentModel, FieldClass};
use crate::legal::{Art6, Art9, CommonLaw, LegalBasis, Schedule1, Schedule1Part};

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
    pub const URGENT_PATH_NEEDS_CONDITION: &str = "urgent_path_needs_payload_condition_and_roles";
    pub const CONDITIONAL_BASES_COVER_EVERY_VALUE: &str = "conditional_bases_cover_every_value";
    pub const AGE_GROUP_NAMES_A_DATE_OF_BIRTH: &str = "age_group_names_a_date_of_birth";
    pub const IDENTIFIED_NHS_NUMBER_IS_INDEXED: &str = "identified_nhs_number_is_indexed";
    pub const OPT_OUT_APPLIES_OR_EXEMPT: &str = "national_data_opt_out_applies_or_is_exempt";
    pub const OVERRIDING_BASIS_OVERRIDES: &str = "overriding_basis_is_common_law_or_statute";
    pub const STATISTICS_NEED_SUPPRESSION: &str = "statistical_returns_need_suppression";
    pub const OPT_OUT_EXEMPTION_FITS: &str = "opt_out_exemption_fits_the_agreement";
    pub const ONE_OFF_NAMES_ITS_BASES: &str = "one_off_names_the_bases_of_its_kind";
    pub const ONE_OFF_DESTINATIONS_CONFIGURED: &str = "one_off_destinations_configured";
    pub const ONE_OFF_NAMES_ITS_REQUESTERS: &str = "one_off_names_its_requesters";
    pub const ONE_OFF_HELD_AND_TOLD: &str = "one_off_is_held_and_the_person_told";
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
