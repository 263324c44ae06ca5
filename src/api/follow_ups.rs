//! What people must do after a decision: directors approve or refuse held transfers (never their
//! own: two people), review urgent ones afterwards, and practitioners record that the person was
//! told. Each is a ledger event with the user and role.
//!
//! Reasons and outcomes are codes, and notes are references into the case record, never free
//! text: the ledger holds no patient data.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::bodies::{FollowUps, Receipt};
use super::{ApiError, AppState, ErrorBody, caller, user};
use crate::ledger::{DecisionKind, Entry, Event, EventKind, FollowUp, TransferRecord, TransferStatus, ledger_time};
use crate::platform::auth::{User, UserRole};
use crate::policy::follow_up::{
    ApproveReason, Code, Person, RefuseReason, ReviewOutcome, TwoPersonRule, approvable, is_case_reference,
};
use crate::policy::schemas::Violation;

/// A director's judgement: a reason code (approve, refuse) or an outcome code (review; sent as
/// `outcome` or `reason`), and where in the case record the full note is kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Judgement {
    /// A reason or outcome code (the 422 names the allowed ones).
    #[serde(alias = "outcome")]
    pub(crate) reason: String,
    /// A reference in the case record where the full note is kept.
    #[serde(default)]
    pub(crate) note_ref: Option<String>,
}

/// That the person was told, and where in the case record that is noted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Informed {
    /// A case-record reference (letters, digits, `._:/-`), never the note itself.
    #[serde(default)]
    pub(crate) note_ref: Option<String>,
}

fn invalid(pointer: &str, rule: &str, message: String) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "The request is not valid.",
    )
    .with_violations(vec![Violation {
        pointer: pointer.into(),
        rule: rule.into(),
        message,
    }])
}

fn check_note_ref(note: Option<&String>) -> Result<(), ApiError> {
    match note {
        Some(n) if !is_case_reference(n) => Err(invalid(
            "/note_ref",
            "pattern",
            "must be a case-record reference (letters, digits, ._:/-), not a note".into(),
        )),
        _ => Ok(()),
    }
}

/// The code in `body`, if it is one of `C`'s; otherwise the violation naming the allowed codes.
fn code<C: Code>(body: &Judgement, pointer: &str) -> Result<C, ApiError> {
    C::parse(&body.reason).ok_or_else(|| invalid(pointer, "enum", format!("must be one of {}", C::list())))
}

fn require(user: &User, role: UserRole) -> Result<(), ApiError> {
    if user.has(role) {
        Ok(())
    } else {
        Err(ApiError::role_required(role))
    }
}

/// The transfer, if the calling system belongs to the organisation that sent it (it is one of the
/// agreement's sending systems). Others learn nothing, not even that it exists.
async fn record(state: &AppState, id: &str, system: &str) -> Result<TransferRecord, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found())?;
    let r = state.ledger.transfer(id).await?.ok_or_else(ApiError::not_found)?;
    let ours = r.sender_system == system
        || state
            .catalogue
            .agreements
            .get(&r.agreement_id)
            .is_some_and(|a| a.permits_system(system));
    if ours { Ok(r) } else { Err(ApiError::not_found()) }
}

/// The transfer's decision as the ledger recorded it, its entry re-hashed: who asked is read from
/// there, never from the read model's copy (a table an insider could edit).
async fn decision_of(state: &AppState, r: &TransferRecord) -> Result<Event, ApiError> {
    let unverifiable = || {
        conflict(
            "record_unverifiable",
            "The transfer's record does not verify; nothing was done. Run `isa-gateway ledger verify`.",
        )
    };
    // Exactly one decision, and its own bytes must name this transfer (the index column it was
    // found by is a column an insider can edit).
    let mut decisions: Vec<Entry> = state
        .ledger
        .entries_of(&[r.transfer_id])
        .await?
        .into_iter()
        .filter(|e| e.event.kind == EventKind::Decision)
        .collect();
    if decisions.len() != 1 || decisions[0].event.transfer_id != r.transfer_id {
        tracing::error!(transfer_id = %r.transfer_id, found = decisions.len(), "ALERT: the transfer's decision entries do not add up");
        return Err(unverifiable());
    }
    let entry = decisions.remove(0);
    let held = state.ledger.holds(std::slice::from_ref(&entry)).await?;
    if !held || Entry::compute_hash(entry.seq, &entry.prev_hash, &entry.event) != entry.hash {
        tracing::error!(transfer_id = %r.transfer_id, seq = entry.seq, "ALERT: a decision entry does not hash to its stored hash");
        return Err(unverifiable());
    }
    Ok(entry.event)
}

/// The two-person rule on (issuer, subject), case and spacing aside.
fn two_people(decision: &Event, user: &User) -> Result<(), ApiError> {
    let asked_by = decision.user_sub.as_deref().map(|sub| Person {
        issuer: decision.user_issuer.as_deref(),
        sub,
    });
    let deciding = Person {
        issuer: Some(&user.issuer),
        sub: &user.sub,
    };
    crate::policy::follow_up::two_people(asked_by, deciding).map_err(|TwoPersonRule| {
        ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            TwoPersonRule::CODE,
            TwoPersonRule::MESSAGE,
        )
    })
}

fn event(
    state: &AppState,
    r: &TransferRecord,
    kind: EventKind,
    status: TransferStatus,
    system: &str,
    user: &User,
    role: UserRole,
) -> Event {
    let mut e = Event::new(
        ledger_time(state.clock.now()),
        r.transfer_id,
        kind,
        status,
        &r.agreement_id,
        system,
    );
    e.message_type = r.message_type.clone();
    e.recipient = r.recipient.clone();
    e.user_sub = Some(user.sub.clone());
    e.user_issuer = Some(user.issuer.clone());
    e.user_role = Some(role.as_str().to_owned());
    e
}

fn receipt(r: &TransferRecord, status: TransferStatus, seq: i64) -> Receipt {
    Receipt {
        transfer_id: r.transfer_id,
        status,
        ledger_seq: seq,
    }
}

fn conflict(code: &str, message: &str) -> ApiError {
    ApiError::new(actix_web::http::StatusCode::CONFLICT, code, message)
}

async fn judge_held(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Judgement>,
    state: web::Data<AppState>,
    approve: bool,
) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    let user = user(&req, &state)?;
    let receipt = judge(&state, system, &user, &path.into_inner(), &body, approve).await?;
    Ok(HttpResponse::Ok().json(receipt))
}

/// A director approves or refuses a held transfer: the steps every edge shares.
pub(crate) async fn judge(
    state: &AppState,
    system: &crate::app::config::SystemConfig,
    user: &User,
    transfer_id: &str,
    body: &Judgement,
    approve: bool,
) -> Result<Receipt, ApiError> {
    require(user, UserRole::Director)?;
    let r = record(state, transfer_id, &system.id).await?;
    let reason = if approve {
        code::<ApproveReason>(body, "/reason")?.code()
    } else {
        code::<RefuseReason>(body, "/reason")?.code()
    };
    check_note_ref(body.note_ref.as_ref())?;
    if r.status != TransferStatus::Held {
        return Err(conflict("not_held", "This transfer is not waiting for approval."));
    }
    let decision = decision_of(state, &r).await?;
    two_people(&decision, user)?;
    if approve {
        let agreement = state.catalogue.agreements.get(&r.agreement_id).map(AsRef::as_ref);
        approvable(agreement, decision.agreement_hash.as_deref(), state.clock.today())
            .map_err(|why| conflict(why.code(), why.explain()))?;
    }
    let status = if approve {
        TransferStatus::Accepted
    } else {
        TransferStatus::Refused
    };
    let mut e = event(
        state,
        &r,
        EventKind::Approval,
        status,
        &system.id,
        user,
        UserRole::Director,
    );
    e.decision = Some(if approve {
        DecisionKind::Permit
    } else {
        DecisionKind::Deny
    });
    // The recipient as the verified decision names it, not the read model's copy.
    e.recipient = decision.recipient.clone();
    e.reason_code = Some(reason.to_owned());
    e.detail = body
        .note_ref
        .as_deref()
        .map(|n| state.catalogue.reference_in(&r.agreement_id, r.created_at, n));
    let receipt = if approve {
        state.ledger.release(e).await
    } else {
        state.ledger.withdraw(e).await
    }?
    .ok_or_else(|| conflict("not_held", "This transfer is not waiting for approval."))?;
    if approve {
        state.delivery.wake();
    }
    tracing::info!(transfer_id = %r.transfer_id, approved = approve, seq = receipt.seq, "held transfer decided by a director");
    Ok(self::receipt(&r, status, receipt.seq))
}

/// A director approves a held transfer, which is then queued for delivery. Never their own.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/approve", tag = "follow-ups", params(("transfer_id" = Uuid, Path)), request_body = Judgement, security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "Approved and queued.", body = Receipt),
        (status = 409, description = "Not held, or the agreement changed since the decision (`agreement_changed`).", body = ErrorBody),
        (status = 404, description = "No such transfer sent by this organisation.", body = ErrorBody),
        (status = 403, description = "Not a director (`role_required`), or the director asked for it (`two_person_rule`).", body = ErrorBody),
        (status = 422, description = "Unknown code or a note instead of a reference (`violations`).", body = ErrorBody)))]
pub async fn approve(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Judgement>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    judge_held(req, path, body, state, true).await
}

/// A director refuses a held transfer; nothing leaves.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/refuse", tag = "follow-ups", params(("transfer_id" = Uuid, Path)), request_body = Judgement, security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "Refused.", body = Receipt),
        (status = 409, description = "Not held.", body = ErrorBody),
        (status = 404, description = "No such transfer sent by this organisation.", body = ErrorBody),
        (status = 403, description = "Not a director (`role_required`), or the director asked for it (`two_person_rule`).", body = ErrorBody),
        (status = 422, description = "Unknown code or a note instead of a reference (`violations`).", body = ErrorBody)))]
pub async fn refuse(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Judgement>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    judge_held(req, path, body, state, false).await
}

/// A director reviews an urgent transfer after the event. Never their own.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/review", tag = "follow-ups", params(("transfer_id" = Uuid, Path)), request_body = Judgement, security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "Review recorded.", body = Receipt),
        (status = 409, description = "No review outstanding (`no_review_due`).", body = ErrorBody),
        (status = 404, description = "No such transfer sent by this organisation.", body = ErrorBody),
        (status = 403, description = "Not a director (`role_required`), or the director asked for it (`two_person_rule`).", body = ErrorBody),
        (status = 422, description = "Unknown code or a note instead of a reference (`violations`).", body = ErrorBody)))]
pub async fn review(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Judgement>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    let user = user(&req, &state)?;
    let receipt = review_as(&state, system, &user, &path.into_inner(), &body).await?;
    Ok(HttpResponse::Ok().json(receipt))
}

/// A director reviews an urgent transfer after the event: the steps every edge shares.
pub(crate) async fn review_as(
    state: &AppState,
    system: &crate::app::config::SystemConfig,
    user: &User,
    transfer_id: &str,
    body: &Judgement,
) -> Result<Receipt, ApiError> {
    require(user, UserRole::Director)?;
    let r = record(state, transfer_id, &system.id).await?;
    two_people(&decision_of(state, &r).await?, user)?;
    let outcome = code::<ReviewOutcome>(body, "/outcome")?;
    check_note_ref(body.note_ref.as_ref())?;
    let mut e = event(
        state,
        &r,
        EventKind::Review,
        r.status,
        &system.id,
        user,
        UserRole::Director,
    );
    e.reason_code = Some(outcome.code().to_owned());
    e.detail = body
        .note_ref
        .as_deref()
        .map(|n| state.catalogue.reference_in(&r.agreement_id, r.created_at, n));
    let receipt = state
        .ledger
        .follow_up(e)
        .await?
        .ok_or_else(|| conflict("no_review_due", "This transfer has no review outstanding."))?;
    Ok(self::receipt(&r, r.status, receipt.seq))
}

/// Someone who may send under the agreement records that the person was told.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/subject-informed", tag = "follow-ups", params(("transfer_id" = Uuid, Path)), request_body = Informed, security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "Recorded.", body = Receipt),
        (status = 403, description = "No sending role under the agreement (`role_required`).", body = ErrorBody),
        (status = 404, description = "No such transfer sent by this organisation.", body = ErrorBody),
        (status = 409, description = "No notification outstanding (`no_notification_due`).", body = ErrorBody),
        (status = 422, description = "A note instead of a reference (`violations`).", body = ErrorBody)))]
pub async fn subject_informed(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Informed>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    let user = user(&req, &state)?;
    let receipt = informed(&state, system, &user, &path.into_inner(), &body).await?;
    Ok(HttpResponse::Ok().json(receipt))
}

/// Someone who may send under the agreement records that the person was told: the steps every
/// edge shares.
pub(crate) async fn informed(
    state: &AppState,
    system: &crate::app::config::SystemConfig,
    user: &User,
    transfer_id: &str,
    body: &Informed,
) -> Result<Receipt, ApiError> {
    let r = record(state, transfer_id, &system.id).await?;
    // Whoever may send under the agreement may record that the person was told.
    let role = state
        .catalogue
        .agreements
        .get(&r.agreement_id)
        .and_then(|a| a.acting_role(&user.roles))
        .ok_or(ApiError::role_required(UserRole::Practitioner))?;
    check_note_ref(body.note_ref.as_ref())?;
    let mut e = event(state, &r, EventKind::Notification, r.status, &system.id, user, role);
    e.detail = body
        .note_ref
        .as_deref()
        .map(|n| state.catalogue.reference_in(&r.agreement_id, r.created_at, n));
    let receipt = state
        .ledger
        .follow_up(e)
        .await?
        .ok_or_else(|| conflict("no_notification_due", "This transfer has no notification outstanding."))?;
    Ok(self::receipt(&r, r.status, receipt.seq))
}

/// The calling system's own follow-ups only.
async fn list(state: &AppState, which: FollowUp, system: &str) -> Result<HttpResponse, ApiError> {
    let rows = follow_ups_of(state, which, system).await?;
    Ok(HttpResponse::Ok().json(FollowUps { transfers: rows }))
}

/// A system's follow-ups of one kind (held, reviews overdue, notifications due), soonest first.
pub(crate) async fn follow_ups_of(
    state: &AppState,
    which: FollowUp,
    system: &str,
) -> Result<Vec<TransferRecord>, ApiError> {
    Ok(state.ledger.follow_ups(which, Some(system), 1000).await?)
}

/// Directors may see the held queue and overdue reviews; 403 naming the role otherwise.
pub(crate) fn director(user: &User) -> Result<(), ApiError> {
    require(user, UserRole::Director)
}

/// Who may see notifications due: those who send.
pub(crate) fn notifier(user: &User) -> Result<(), ApiError> {
    if user.has(UserRole::Practitioner) || user.has(UserRole::SafeguardingLead) {
        Ok(())
    } else {
        Err(ApiError::role_required(UserRole::Practitioner))
    }
}

/// Held transfers, for directors.
#[utoipa::path(get, path = "/v1/held", tag = "follow-ups", security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "This system's held transfers.", body = FollowUps),
        (status = 403, description = "Not a director (`role_required`).", body = ErrorBody)))]
pub async fn held(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    director(&user(&req, &state)?)?;
    list(&state, FollowUp::Held, &system.id).await
}

/// Urgent transfers whose review is overdue, for directors.
#[utoipa::path(get, path = "/v1/reviews/overdue", tag = "follow-ups", security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "This system's overdue reviews.", body = FollowUps),
        (status = 403, description = "Not a director (`role_required`).", body = ErrorBody)))]
pub async fn overdue_reviews(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    director(&user(&req, &state)?)?;
    list(&state, FollowUp::ReviewsOverdue(state.clock.now()), &system.id).await
}

/// People still to be told, soonest due first, for those who send.
#[utoipa::path(get, path = "/v1/notifications/due", tag = "follow-ups", security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "This system's notifications due.", body = FollowUps),
        (status = 403, description = "Neither practitioner nor safeguarding lead (`role_required`).", body = ErrorBody)))]
pub async fn notifications_due(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    notifier(&user(&req, &state)?)?;
    list(&state, FollowUp::NotificationsDue, &system.id).await
}
