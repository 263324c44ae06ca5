//! `POST /v1/agreements/{id}/transfers`, `POST /v1/disclosures`, `GET /v1/transfers/{id}`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use uuid::Uuid;

use super::bodies::{Receipt, TransferDetail};
use super::{ApiError, AppState, ErrorBody, caller, has_role, user};
use crate::app::config::{SystemConfig, SystemRole};
use crate::ledger::record::{self, Actor, Attempt};
use crate::ledger::{
    Enqueue, Event, HeldQuota, IdempotencyKey, IdempotentOriginal, LedgerError, TransferStatus, ledger_time,
};
use crate::platform::auth::{User, UserRole};
use crate::platform::clock::WallClock;
use crate::policy::decision::{Body, ConsentRecord, Decision, Disposition, Reason, Refusal, Request, sha256_hex};

/// A request body as read within its limits.
pub(crate) enum ReadBody {
    Complete(web::BytesMut),
    TooLarge,
}

/// Reads the body up to `limit` bytes within `deadline`; stops reading as soon as it is over
/// either.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<ReadBody, ApiError> {
    tokio::time::timeout(deadline, read_body_within(req, payload, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                actix_web::http::StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "The request body was not sent in time.",
            ))
        })
}

async fn read_body_within(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<ReadBody, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(ReadBody::TooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("body_unreadable", "The request body could not be read."))?;
        if body.len() + chunk.len() > limit {
            return Ok(ReadBody::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(ReadBody::Complete(body))
}

/// The header a client sends to make a retried POST safe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(k.to_owned())),
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 200 printable ASCII characters without spaces.",
        )),
    }
}

/// What binds an idempotency key: the agreement and the exact body.
fn request_digest(agreement_id: &str, body: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(agreement_id.len() + 1 + body.len());
    bytes.extend_from_slice(agreement_id.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(body);
    sha256_hex(&bytes)
}

/// What a submission came to: recorded and queued or held, or answered from an earlier request
/// with the same idempotency key.
#[derive(Debug)]
pub(crate) struct Submitted {
    pub receipt: Receipt,
    pub replayed: bool,
}

fn accepted(transfer_id: Uuid, status: TransferStatus, ledger_seq: i64) -> Submitted {
    Submitted {
        receipt: Receipt {
            transfer_id,
            status,
            ledger_seq,
        },
        replayed: false,
    }
}

impl Submitted {
    fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::Accepted().json(self.receipt);
        if self.replayed {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
                actix_web::http::header::HeaderValue::from_static("true"),
            );
        }
        response
    }
}

/// What to do with a request, once its idempotency key (if any) is looked up.
enum NextAction {
    /// No key, or a key not seen before: decide the request.
    Decide,
    /// The key is bound to an earlier transfer: answer from it, never decide twice.
    Replay(IdempotentOriginal),
}

async fn next_action(state: &AppState, system: &str, key: Option<&str>) -> Result<NextAction, ApiError> {
    let Some(key) = key else {
        return Ok(NextAction::Decide);
    };
    // Stored as a keyed hash, like every reference a caller types.
    let original = state
        .ledger
        .idempotent_original(system, &state.catalogue.reference(key))
        .await?;
    Ok(original.map_or(NextAction::Decide, NextAction::Replay))
}

/// Answers a request whose idempotency key is already bound: the original transfer if the
/// request is the same, a recorded refusal if it is not.
async fn replay(
    state: &AppState,
    original: IdempotentOriginal,
    digest: &str,
    attempt: &Attempt<'_>,
    actor: Actor<'_>,
) -> Result<Submitted, ApiError> {
    if original.request_sha256 == digest {
        let status = state
            .ledger
            .transfer(original.transfer_id)
            .await?
            .map_or(TransferStatus::Accepted, |r| r.status);
        let mut submitted = accepted(original.transfer_id, status, original.ledger_seq);
        submitted.replayed = true;
        return Ok(submitted);
    }
    let reason = Reason::IdempotencyKeyReused;
    let receipt = state
        .ledger
        .append(record::refused(attempt, Some(actor), reason.code()))
        .await?;
    let refusal = Refusal {
        reason,
        violations: Vec::new(),
        agreement: None,
        message_type: None,
        schema_hash: None,
        consent: ConsentRecord::default(),
    };
    Err(ApiError::refused(refusal, attempt.transfer_id, receipt.seq))
}

/// A transfer, in named steps: who is calling (a system that may send, within its rate), the user
/// (refusals so far are counted and logged, not recorded: nobody is accountable for them), the
/// idempotency key, the body within its limits, the decision (pure), then the record — decision,
/// outbox entry and key in one durable commit — before the answer.
#[utoipa::path(post, path = "/v1/agreements/{agreement_id}/transfers", tag = "transfers",
    params(("agreement_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,200}$", description = "Makes a retried POST safe: 1 to 200 printable ASCII characters.")),
    request_body = crate::policy::decision::Envelope, security(("mutual_tls" = [], "bearer" = [])),
    responses(
        (status = 202, description = "Permitted, recorded and queued (`accepted`), or held for a director (`held`).", body = Receipt,
            headers(("Idempotent-Replayed" = String, description = "`true` when answered from an earlier request with the same key"))),
        (status = 403, description = "Refused and recorded: not a party, not in force, role or consent (code names the rule); or, not recorded, a system that may not send (`forbidden`).", body = ErrorBody),
        (status = 404, description = "No such agreement (recorded with the agreement `unknown`, never the id typed).", body = ErrorBody),
        (status = 408, description = "The body was not sent in time.", body = ErrorBody),
        (status = 409, description = "The agreement is not in force (recorded), or too many transfers under it are held for a director (`held_quota_exceeded`, recorded).", body = ErrorBody),
        (status = 413, description = "The body is over the limit (recorded).", body = ErrorBody),
        (status = 422, description = "The envelope or payload breaks the schema: `violations` name JSON pointers and rules, never values (recorded).", body = ErrorBody),
        (status = 503, description = "The ledger does not answer: nothing recorded or sent; retry with the same key.", body = ErrorBody)))]
pub async fn submit(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let (system, user, key, body) = accountable_request(&req, payload, &state).await?;
    Ok(
        submit_as(&state, system, &user, &path.into_inner(), &body, key, started)
            .await?
            .into_response(),
    )
}

/// The steps before a transfer is decided, shared by both ways of asking: who is calling (a
/// system that may send) and the user (a valid token) — nothing is read or recorded before
/// someone is accountable; refusals before that are counted and logged only — then the
/// idempotency key and the body within its limits.
async fn accountable_request<'s>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &'s AppState,
) -> Result<(&'s SystemConfig, User, Option<String>, ReadBody), ApiError> {
    let system = caller(req, state)?;
    let user = user(req, state)?;
    may_send(state, system)?;
    let key = idempotency_key(req)?;
    let deadline = std::time::Duration::from_secs(state.limits.body_read_secs);
    let body = read_body(req, payload, state.limits.max_body_bytes, deadline).await?;
    Ok((system, user, key, body))
}

/// `POST /v1/disclosures`: a one-off disclosure (a court order, a coroner's notice, a police
/// request, a hospital in an emergency) under a one-off template named in the body. The steps are
/// a transfer's; the template makes it held for a director, whoever asks.
#[utoipa::path(post, path = "/v1/disclosures", tag = "transfers",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,200}$", description = "Makes a retried POST safe: 1 to 200 printable ASCII characters.")),
    request_body(content = crate::policy::decision::Envelope, description = "A transfer envelope with `template` (a one-off template's id) and `disclosure` (the requester and the destination)."),
    security(("mutual_tls" = [], "bearer" = [])),
    responses(
        (status = 202, description = "Recorded and held for a director (`held`).", body = Receipt),
        (status = 403, description = "Refused and recorded: not a party, role; or, not recorded, a system that may not send.", body = ErrorBody),
        (status = 400, description = "The body is not JSON (`malformed_json`; recorded with the agreement `unknown`).", body = ErrorBody),
        (status = 404, description = "`template` names no one-off template (`unknown_agreement`, violation at `/template`; recorded with the agreement `unknown`).", body = ErrorBody),
        (status = 408, description = "The body was not sent in time.", body = ErrorBody),
        (status = 409, description = "The template is not in force, or too many are held (recorded).", body = ErrorBody),
        (status = 413, description = "The body is over the limit (`body_too_large`; recorded with the agreement `unknown`).", body = ErrorBody),
        (status = 422, description = "The envelope, the disclosure block or the payload breaks a rule: `violations` name JSON pointers and rules, never values (recorded).", body = ErrorBody),
        (status = 503, description = "The ledger does not answer: nothing recorded or sent; retry with the same key.", body = ErrorBody)))]
pub async fn disclose(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    #[derive(serde::Deserialize)]
    struct Named {
        template: Option<String>,
    }
    let started = std::time::Instant::now();
    let (system, user, key, body) = accountable_request(&req, payload, &state).await?;
    // Only a one-off template is taken from the body; anything else is decided (and recorded)
    // as naming no agreement.
    let template = match &body {
        ReadBody::Complete(b) => serde_json::from_slice::<Named>(b).ok().and_then(|n| n.template),
        ReadBody::TooLarge => None,
    }
    .filter(|t| state.catalogue.agreements.get(t).is_some_and(|a| a.one_off().is_some()))
    .unwrap_or_default();
    Ok(submit_as(&state, system, &user, &template, &body, key, started)
        .await?
        .into_response())
}

/// The system may send (its registration gives it the sender role); otherwise 403, counted and
/// logged, not recorded.
pub(crate) fn may_send(state: &AppState, system: &SystemConfig) -> Result<(), ApiError> {
    if has_role(system, SystemRole::Sender) {
        return Ok(());
    }
    state.metrics.refused_unrecorded(&system.id, "not_a_sender");
    tracing::warn!(system = %system.id, "transfer refused: the system may not send (not recorded)");
    Err(ApiError::forbidden())
}

/// A transfer asked for by `user` through `system` (already identified, and allowed to send),
/// with its body read: the steps every edge shares (the API, the console).
pub(crate) async fn submit_as(
    state: &AppState,
    system: &SystemConfig,
    user: &User,
    agreement_id: &str,
    body: &ReadBody,
    key: Option<String>,
    started: std::time::Instant,
) -> Result<Submitted, ApiError> {
    let (body, received_sha256, digest) = match body {
        ReadBody::Complete(b) => (
            Body::Complete(b),
            Some(sha256_hex(b)),
            Some(request_digest(agreement_id, b)),
        ),
        ReadBody::TooLarge => (Body::TooLarge, None, None),
    };
    // The one look-up of the agreement in the handler (the core does its own). An id that names
    // no agreement is recorded as `unknown`: never the text typed, nor a digest of it (it may be
    // anything, a spreadsheet formula or an NHS number, whose digest a search reverses).
    let agreement = state.catalogue.agreements.get(agreement_id);
    let recorded_id = agreement.map_or("unknown", |a| a.id()).to_owned();
    let attempt = Attempt {
        at: ledger_time(state.clock.now()),
        transfer_id: Uuid::now_v7(),
        agreement_id: &recorded_id,
        system_id: &system.id,
        received_sha256,
    };
    let role = agreement
        .and_then(|a| a.acting_role(&user.roles))
        .or(user.roles.first().copied())
        .map(UserRole::as_str);
    let actor = Actor {
        issuer: Some(&user.issuer),
        sub: &user.sub,
        role,
    };
    let key = key.filter(|_| digest.is_some());
    if let NextAction::Replay(original) = next_action(state, &system.id, key.as_deref()).await? {
        return replay(state, original, digest.as_deref().unwrap_or_default(), &attempt, actor).await;
    }
    let decision = state.catalogue.decide(&Request {
        transfer_id: attempt.transfer_id,
        now: attempt.at,
        system_id: &system.id,
        system_may_send: has_role(system, SystemRole::Sender),
        user_roles: &user.roles,
        agreement_id,
        body,
    });
    let event = record::decided(&attempt, Some(actor), &decision);
    let metric_agreement = agreement.map_or("unknown", |a| a.id());
    match decision {
        Decision::Permit(permit) => {
            let bound = key.zip(digest.clone()).map(|(key, request_sha256)| IdempotencyKey {
                system: system.id.clone(),
                key: state.catalogue.reference(&key),
                request_sha256,
            });
            let enqueue = Enqueue {
                destination: permit.destination.clone(),
                body: permit.outbound,
                now: WallClock::now(),
                held: permit.disposition == Disposition::Hold,
                held_quota: Some(HeldQuota {
                    per_agreement: state.limits.held_per_agreement,
                    per_user: state.limits.held_per_user,
                }),
            };
            match commit_permit(state, event, enqueue, bound).await? {
                Committed::Recorded { status, seq } => {
                    let outcome = if status == TransferStatus::Held {
                        "held"
                    } else {
                        "accepted"
                    };
                    state
                        .metrics
                        .transfer(metric_agreement, outcome, "", started.elapsed().as_secs_f64());
                    tracing::info!(transfer_id = %attempt.transfer_id, agreement = %permit.agreement.id(), seq, "transfer accepted");
                    Ok(accepted(attempt.transfer_id, status, seq))
                }
                // A concurrent request with the same key won the race: answer as a replay. A
                // fresh refusal record, so nothing of the permit (follow-ups, subject index)
                // attaches to a transfer that was never made.
                Committed::KeyTaken(original) => {
                    replay(state, original, digest.as_deref().unwrap_or_default(), &attempt, actor).await
                }
                Committed::HeldQuotaExceeded => held_quota_exceeded(state, &attempt, actor, metric_agreement).await,
            }
        }
        Decision::Refuse(refusal) => {
            let receipt = state.ledger.append(event).await?;
            state.metrics.transfer(
                metric_agreement,
                "refused",
                refusal.reason.code(),
                started.elapsed().as_secs_f64(),
            );
            tracing::info!(transfer_id = %attempt.transfer_id, agreement = %recorded_id, reason = refusal.reason.code(),
                seq = receipt.seq, "transfer refused");
            Err(ApiError::refused(*refusal, attempt.transfer_id, receipt.seq))
        }
    }
}

/// Too many transfers under the agreement (or asked for by this user) wait for a director: this one
/// is refused, and recorded (the user is accountable), rather than adding to a queue nobody is
/// clearing.
async fn held_quota_exceeded(
    state: &AppState,
    attempt: &Attempt<'_>,
    actor: Actor<'_>,
    metric_agreement: &str,
) -> Result<Submitted, ApiError> {
    const CODE: &str = "held_quota_exceeded";
    let receipt = state.ledger.append(record::refused(attempt, Some(actor), CODE)).await?;
    state.metrics.transfer(metric_agreement, "refused", CODE, 0.0);
    tracing::warn!(transfer_id = %attempt.transfer_id, agreement = %metric_agreement, seq = receipt.seq,
        "transfer refused: too many held for a director under this agreement");
    Err(ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        CODE,
        "Too many transfers under this agreement, or asked for by you, are waiting for a director's decision; \
         nothing was sent. Ask a director to decide the held ones, then send again.",
    )
    .with_ledger(attempt.transfer_id, receipt.seq))
}

enum Committed {
    Recorded {
        status: TransferStatus,
        seq: i64,
    },
    KeyTaken(IdempotentOriginal),
    /// Too many held under the agreement, or for the user: nothing was written.
    HeldQuotaExceeded,
}

/// Decision, outbox entry and idempotency key commit together, durably, before anything leaves
/// and before the client hears "accepted".
async fn commit_permit(
    state: &AppState,
    event: Event,
    enqueue: Enqueue,
    bound: Option<IdempotencyKey>,
) -> Result<Committed, ApiError> {
    let status = event.status;
    let key = bound.as_ref().map(|b| (b.system.clone(), b.key.clone()));
    match state.ledger.accept(event, enqueue, bound).await {
        Ok(receipt) => {
            state.delivery.wake();
            Ok(Committed::Recorded {
                status,
                seq: receipt.seq,
            })
        }
        Err(LedgerError::HeldQuotaExceeded) => Ok(Committed::HeldQuotaExceeded),
        Err(LedgerError::IdempotencyKeyTaken) => {
            let (system, key) = key.unwrap_or_default();
            state
                .ledger
                .idempotent_original(&system, &key)
                .await?
                .map(Committed::KeyTaken)
                .ok_or_else(|| ApiError::internal(&"idempotency key vanished"))
        }
        Err(e) => Err(ApiError::ledger_unavailable(&e)),
    }
}

/// One transfer and its history: the sending system's own, or any for an auditor.
#[utoipa::path(get, path = "/v1/transfers/{transfer_id}", tag = "transfers",
    params(("transfer_id" = Uuid, Path)), security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The transfer.", body = TransferDetail),
        (status = 404, description = "No such transfer visible to this caller.", body = ErrorBody)))]
pub async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    let user = user(&req, &state)?;
    let Ok(id) = Uuid::parse_str(&path.into_inner()) else {
        return Err(ApiError::not_found());
    };
    let record = state.ledger.transfer(id).await?;
    // A system's users see its own transfers; auditors (system and user) see all. Others learn
    // nothing, not even existence.
    let auditor = has_role(system, SystemRole::Auditor) && user.has(UserRole::Auditor);
    let Some(record) = record.filter(|r| r.sender_system == system.id || auditor) else {
        return Err(ApiError::not_found());
    };
    let history = state.ledger.history(id).await?;
    Ok(HttpResponse::Ok().json(TransferDetail { record, history }))
}
