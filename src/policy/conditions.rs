//! Two checks of the decision that depend on the agreement's terms and the payload: the national
//! data opt-out, and the urgent path.

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
