//! From an agreement file's text to a checked [`Agreement`]: every problem found, with where it is.

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    Agreement, AgreementFile, AgreementStatus, CheckedField, ConsentModel, Context, FieldClass, Problem,
    legal_rule_breaches, rules,
};
use crate::fields::PointerPattern;
use crate::ids::is_slug;
use crate::legal::LegalBasis;
use crate::pseudonymise::{Needs, Op};
use crate::schemas::Shape;

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
        if file.id == crate::keys::SUBJECT_ACCESS_SCOPE || file.id == "unknown" {
            // The subject access lookups' key scope, and what the ledger records for an id that
            // names no agreement.
            at("id", format!("{:?} is reserved by the gateway", file.id));
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
        if file.approval.urgent_path {
            let rule = rules::URGENT_PATH_NEEDS_CONDITION;
            match &file.approval.urgent_when {
                None => at(
                    "approval.urgent_when",
                    format!("rule {rule}: the urgent path needs the payload field and values that mean immediate risk"),
                ),
                Some(when) => {
                    let named = PointerPattern::parse(&when.pointer)
                        .ok()
                        .is_some_and(|p| !schemas.is_empty() && schemas.iter().all(|s| s.shape(&p).is_some()));
                    if !named || when.values.is_empty() {
                        at(
                            "approval.urgent_when",
                            format!(
                                "rule {rule}: {:?} must name a field of every message type, with at least one value",
                                when.pointer
                            ),
                        );
                    }
                }
            }
            if file.approval.urgent_roles.is_empty()
                || file
                    .approval
                    .urgent_roles
                    .iter()
                    .any(|r| !file.sender.roles.contains(r))
            {
                at(
                    "approval.urgent_roles",
                    format!("rule {rule}: name the sender roles that may use the urgent path"),
                );
            }
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
        // Every identified flow is findable: an NHS number that leaves as it is must be indexed
        // for subject access.
        for f in fields.iter().filter(|f| f.op == Op::Keep) {
            let is_nhs = schemas
                .iter()
                .filter_map(|s| s.shape(&f.pattern))
                .any(|s| s.format.as_deref() == Some("nhs-number"));
            if is_nhs && !file.subject_index.iter().any(|p| p == f.pattern.as_str()) {
                at(
                    "subject_index",
                    format!(
                        "rule {}: {} leaves as it is, so it must be in subject_index for subject access",
                        rules::IDENTIFIED_NHS_NUMBER_IS_INDEXED,
                        f.pattern.as_str()
                    ),
                );
            }
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
        // The agreement's own bases must stand alone: a conditional field may be absent.
        for (rule, message) in legal_rule_breaches(&file, &legal_bases, &classes) {
            at("legal_bases", format!("rule {rule}: {message}"));
        }
        // Conditional bases: every value the schemas allow at each conditional field resolves to
        // a complete set, checked by the same rules; `check` names the uncovered case.
        let mut conditional = Vec::new();
        for (i, c) in file.conditional_bases.iter().enumerate() {
            let key = format!("conditional_bases[{i}]");
            let mut bases = Vec::new();
            for code in &c.bases {
                match LegalBasis::parse(code) {
                    Ok(b) => bases.push(b),
                    Err(e) => at(&key, format!("rule {}: {e}", rules::UNKNOWN_LEGAL_BASIS)),
                }
            }
            conditional.push((c, bases));
            if let Some(band) = &c.age {
                let one_field = !band.date_of_birth.contains('*')
                    && !band
                        .date_of_birth
                        .split('/')
                        .any(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
                let named = PointerPattern::parse(&band.date_of_birth)
                    .ok()
                    .filter(|_| one_field)
                    .is_some_and(|p| {
                        !schemas.is_empty()
                            && schemas
                                .iter()
                                .all(|s| s.shape(&p).is_some_and(|shape| shape.format.as_deref() == Some("date")))
                    });
                let bounded = match (band.at_least, band.under) {
                    (None, None) => false,
                    (Some(a), Some(u)) => a < u,
                    _ => true,
                };
                if !named || !bounded {
                    at(
                        &key,
                        format!(
                            "rule {}: `age` must name the date of birth, one field (no `*`, no index) of every message \
                             type with format `date`, \
                             and an age group (`at_least`, `under`, or `at_least` below `under`)",
                            rules::AGE_GROUP_NAMES_A_DATE_OF_BIRTH
                        ),
                    );
                }
            }
        }
        let mut pointers: Vec<&str> = file.conditional_bases.iter().map(|c| c.pointer.as_str()).collect();
        pointers.sort_unstable();
        pointers.dedup();
        for pointer in pointers {
            let rule = rules::CONDITIONAL_BASES_COVER_EVERY_VALUE;
            let values: Option<Vec<String>> = PointerPattern::parse(pointer)
                .ok()
                .filter(|_| !pointer.contains('*'))
                .and_then(|p| {
                    let shapes: Vec<Shape> = schemas.iter().filter_map(|s| s.shape(&p)).collect();
                    (!schemas.is_empty() && shapes.len() == schemas.len())
                        .then(|| shapes.into_iter().flat_map(|s| s.values.unwrap_or_default()).collect())
                });
            let Some(mut values) = values.filter(|v: &Vec<String>| !v.is_empty()) else {
                at(
                    "conditional_bases",
                    format!(
                        "rule {rule}: {pointer:?} must name one field (no `*`) with an enum of values in every message type"
                    ),
                );
                continue;
            };
            values.sort();
            values.dedup();
            for value in values {
                let matching: Vec<_> = conditional
                    .iter()
                    .filter(|(c, _)| c.pointer == pointer && c.values.contains(&value))
                    .collect();
                if matching.is_empty() {
                    at(
                        "conditional_bases",
                        format!("rule {rule}: {pointer} = {value:?} has no conditional basis"),
                    );
                    continue;
                }
                let mut applied = legal_bases.clone();
                applied.extend(matching.iter().flat_map(|(_, b)| b.iter().cloned()));
                for (rule, message) in legal_rule_breaches(&file, &applied, &classes) {
                    at(
                        "conditional_bases",
                        format!("rule {rule}: when {pointer} = {value:?}: {message}"),
                    );
                }
            }
        }
        // Statistical returns leave only under a rule that hides small numbers: secondary
        // suppression, and rounding (without it, chains of suppressed cells can be solved exactly).
        let statistical = file.message_types.iter().any(|m| m == "funder_return");
        match &file.suppression {
            Some(rule) if rule.smallest > rule.largest || rule.round_to < 2 || !rule.secondary => at(
                "suppression",
                format!(
                    "rule {}: smallest must not exceed largest, round_to must be at least 2, and secondary must be on",
                    rules::STATISTICS_NEED_SUPPRESSION
                ),
            ),
            None if statistical => at(
                "suppression",
                format!(
                    "rule {}: a statistical return needs a [suppression] rule",
                    rules::STATISTICS_NEED_SUPPRESSION
                ),
            ),
            _ => {}
        }
        if let Some(code) = &file.consent.overriding_basis {
            let overrides = matches!(
                LegalBasis::parse(code),
                Ok(LegalBasis::CommonLaw(
                    crate::legal::CommonLaw::OverridingPublicInterest
                        | crate::legal::CommonLaw::LegalRequirement
                        | crate::legal::CommonLaw::Section251
                ) | LegalBasis::Statute(_))
            );
            if !overrides || file.consent.model != ConsentModel::Implied {
                at(
                    "consent.overriding_basis",
                    format!(
                        "rule {}: only under implied consent, and only the overriding public interest, a legal \
                         requirement, s.251 support or a statutory gateway overrides an objection",
                        rules::OVERRIDING_BASIS_OVERRIDES
                    ),
                );
            }
        }
        // An exemption from the national data opt-out must be what the agreement's own terms say.
        if let Some(exemption) = file.national_data_opt_out_exemption {
            use super::OptOutExemption as E;
            use crate::legal::{Art9, CommonLaw, LegalBasis as B};
            let has = |f: &dyn Fn(&B) -> bool| legal_bases.iter().any(f);
            let fits = match exemption {
                E::Consent => matches!(
                    file.consent.model,
                    ConsentModel::Explicit | ConsentModel::AllContributors
                ),
                // Individual care: a health or care purpose, or a person being treated in an
                // emergency who cannot consent (vital interests).
                E::DirectCare => has(&|b| matches!(b, B::Art9(Art9::H | Art9::C))),
                E::OverridingPublicInterest => has(&|b| matches!(b, B::CommonLaw(CommonLaw::OverridingPublicInterest))),
                E::Safeguarding => has(&|b| matches!(b, B::Schedule1(s) if s.paragraph() == 18)),
                E::LegalRequirement => has(&|b| matches!(b, B::CommonLaw(CommonLaw::LegalRequirement) | B::Statute(_))),
                E::Anonymised => {
                    file.subject_index.is_empty()
                        && !fields
                            .iter()
                            .any(|f| f.class == FieldClass::Identifying && f.op != Op::Drop)
                }
            };
            if !fits {
                at(
                    "national_data_opt_out_exemption",
                    format!(
                        "rule {}: {} does not fit this agreement (consent needs an explicit or all-contributors \
                         model; direct_care an Art 9(2)(h) or (c) condition; safeguarding Sch 1 para 18; \
                         legal_requirement a legal requirement or statutory gateway; anonymised no identifying \
                         field and no subject index; overriding_public_interest that common-law basis)",
                        rules::OPT_OUT_EXEMPTION_FITS,
                        exemption.code()
                    ),
                );
            }
        }
        if file.national_data_opt_out_applies == file.national_data_opt_out_exemption.is_some() {
            at(
                "national_data_opt_out_exemption",
                format!(
                    "rule {}: say either that the national data opt-out applies, or why it does not (direct_care, \
                     safeguarding, legal_requirement, consent, anonymised)",
                    rules::OPT_OUT_APPLIES_OR_EXEMPT
                ),
            );
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
        for (key, message) in crate::disclosure::template_problems(&file, &ctx.destinations) {
            at(key, message);
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

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}
