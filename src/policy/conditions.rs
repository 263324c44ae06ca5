//! The checks of the decision that depend on the agreement's terms and the payload: the legal
//! bases that applied, the age group they were chosen by, the national data opt-out, and the
//! urgent path.

use serde_json::Value;

use super::{Reason, violation};
use crate::agreement::Agreement;
use crate::roles::UserRole;
use crate::schemas::Violation;

/// The national data opt-out for this transfer: refused where it applies and the person opted out
/// (or the status is not given); otherwise what the ledger records.
pub(super) fn opt_out(agreement: &Agreement, status: Option<&str>) -> Result<String, (Reason, Vec<Violation>)> {
    let terms = agreement.terms();
    if !terms.national_data_opt_out_applies {
        let exemption = terms.national_data_opt_out_exemption.map_or("unstated", |e| e.code());
        return Ok(format!("not_applicable:{exemption}"));
    }
    match status {
        Some("not_opted_out") => Ok("applies:not_opted_out".to_owned()),
        Some("opted_out") => Err((
            Reason::NationalDataOptOut,
            vec![violation(
                "/national_data_opt_out",
                "agreement.national_data_opt_out_applies",
                "the person opted out",
            )],
        )),
        _ => Err((
            Reason::OptOutStatusRequired,
            vec![violation(
                "/national_data_opt_out",
                "required",
                "is required by this agreement",
            )],
        )),
    }
}

/// The urgent path releases a transfer before a director has seen it, so the caller's flag alone
/// never opens it: the agreement must have one, the payload must say the risk is immediate, and
/// the user must act in a role the agreement names for it.
pub(super) fn urgent(
    agreement: &Agreement,
    payload: &Value,
    user_roles: &[UserRole],
) -> Result<(), (Reason, Vec<Violation>)> {
    let approval = &agreement.terms().approval;
    let flag = || {
        vec![violation(
            "/immediate",
            "agreement.approval",
            "the urgent path does not apply",
        )]
    };
    let Some(when) = approval.urgent_when.as_ref().filter(|_| approval.urgent_path) else {
        return Err((Reason::UrgentPathNotAllowed, flag()));
    };
    let says = payload
        .pointer(&when.pointer)
        .and_then(Value::as_str)
        .is_some_and(|v| when.values.iter().any(|w| w == v));
    if !says {
        let v = violation(
            &format!("/payload{}", when.pointer),
            "agreement.approval.urgent_when",
            "does not say the risk is immediate",
        );
        return Err((Reason::UrgentFlagContradictsPayload, vec![v]));
    }
    if !approval.urgent_roles.iter().any(|r| user_roles.contains(r)) {
        return Err((Reason::UrgentRoleNotPermitted, flag()));
    }
    Ok(())
}

/// The legal bases that apply to `payload` under `agreement`: the agreement's own, then each
/// conditional set whose field holds one of its values, in the agreement's order, each once.
pub fn applied_bases(agreement: &Agreement, payload: &Value) -> Vec<String> {
    let terms = agreement.terms();
    let mut bases = terms.legal_bases.clone();
    for c in &terms.conditional_bases {
        let holds = met(c, payload);
        if holds {
            for b in &c.bases {
                if !bases.contains(b) {
                    bases.push(b.clone());
                }
            }
        }
    }
    bases
}

/// Each conditional set the payload meets that names an age group: the person's date of birth (at
/// the set's pointer) must put them in it on `today` (the UTC date, as every date the decision
/// reads). A date of birth that is missing or not a date does not confirm it either: the sender's
/// word alone never chooses the statutory gateway.
pub(super) fn age_agrees(
    agreement: &Agreement,
    payload: &Value,
    today: jiff::civil::Date,
) -> Result<(), (Reason, Vec<Violation>)> {
    for c in &agreement.terms().conditional_bases {
        let Some(band) = &c.age else { continue };
        let holds = met(c, payload);
        if !holds {
            continue;
        }
        let born = payload
            .pointer(&band.date_of_birth)
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<jiff::civil::Date>().ok());
        let Some(born) = born else {
            return Err((
                Reason::AgeGroupNotConfirmed,
                vec![violation(
                    &format!("/payload{}", band.date_of_birth),
                    "conditional_bases.age",
                    &format!("is required, as a date, to confirm /payload{}", c.pointer),
                )],
            ));
        };
        let age = age_on(born, today);
        let inside = band.at_least.is_none_or(|a| age >= i32::from(a)) && band.under.is_none_or(|u| age < i32::from(u));
        if !inside {
            return Err((
                Reason::AgeGroupNotConfirmed,
                vec![violation(
                    &format!("/payload{}", c.pointer),
                    "conditional_bases.age",
                    &format!(
                        "does not agree with the date of birth at /payload{}",
                        band.date_of_birth
                    ),
                )],
            ));
        }
    }
    Ok(())
}

/// Whether `payload` holds one of the conditional set's values at its pointer.
fn met(c: &crate::agreement::ConditionalBases, payload: &Value) -> bool {
    payload
        .pointer(&c.pointer)
        .and_then(Value::as_str)
        .is_some_and(|v| c.values.iter().any(|w| w == v))
}

/// Whole years from `born` to `today` (a birthday on 29 February falls on 1 March in other years;
/// a date of birth after today is a negative age).
fn age_on(born: jiff::civil::Date, today: jiff::civil::Date) -> i32 {
    let mut age = i32::from(today.year()) - i32::from(born.year());
    if (today.month(), today.day()) < (born.month(), born.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::{age_agrees, age_on};
    use jiff::civil::date;
    use serde_json::json;

    /// The check itself, past the schema: a date of birth that is missing or not a date does not
    /// confirm the group (the shipped schema requires one; another agreement's might not).
    #[test]
    fn an_age_group_needs_a_date_of_birth_that_confirms_it() {
        let a = crate::test_support::mash_agreement();
        let today = date(2026, 6, 1);
        let cases = [
            (
                json!({"subject_type": "child", "subject": {"date_of_birth": "2016-05-11"}}),
                None,
            ),
            (
                json!({"subject_type": "child", "subject": {"date_of_birth": "2008-06-01"}}),
                Some("/payload/subject_type"),
            ),
            (
                json!({"subject_type": "child", "subject": {}}),
                Some("/payload/subject/date_of_birth"),
            ),
            (
                json!({"subject_type": "adult", "subject": {"date_of_birth": "1 May 1990"}}),
                Some("/payload/subject/date_of_birth"),
            ),
            (
                json!({"subject_type": "adult", "subject": {"date_of_birth": "2008-06-01"}}),
                None,
            ),
        ];
        for (payload, refused_at) in cases {
            let got = age_agrees(&a, &payload, today).err().map(|(_, v)| v[0].pointer.clone());
            assert_eq!(got.as_deref(), refused_at, "{payload}");
        }
    }

    #[test]
    fn ages_are_whole_years_turning_on_the_birthday() {
        let cases = [
            (date(2008, 6, 1), date(2026, 6, 1), 18),
            (date(2008, 6, 2), date(2026, 6, 1), 17),
            (date(2008, 2, 29), date(2026, 2, 28), 17),
            (date(2008, 2, 29), date(2026, 3, 1), 18),
            (date(2026, 6, 2), date(2026, 6, 1), -1),
        ];
        for (born, today, want) in cases {
            assert_eq!(age_on(born, today), want, "{born} on {today}");
        }
    }
}
