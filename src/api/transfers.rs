//! `POST /v1/agreements/{id}/transfers`, `GET /v1/agreements/{id}/transfers`, `GET /v1/transfers/{id}`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use jiff::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use super::{ApiError, AppState, auditor, caller, has_role, user};
use crate::app::config::SystemRole;
use crate::ledger::{
    Enqueue, Event, EventKind, IdempotencyKey, IdempotentOriginal, LedgerError, TransferQuery, TransferStatus,
    ledger_time,
};
use crate::platform::auth::UserRole;
use crate::policy::decision::{Body, ConsentRecord, Decision, Disposition, Reason, Refusal, Request, sha256_hex};
use crate::policy::schemas::Violation;

enum ReadBody {
    Complete(web::BytesMut),
    TooLarge,
}

/// Reads the body up to `limit` bytes; stops reading as soon as it is over.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<ReadBody, ApiError> {
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

/// An agreement id from the URL as the ledger may hold it: printable ASCII, bounded length.
fn recordable(id: &str) -> String {
    id.chars()
        .take(128)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
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

fn accepted(transfer_id: Uuid, status: TransferStatus, ledger_seq: i64) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({
        "transfer_id": transfer_id,
        "status": status,
        "ledger_seq": ledger_seq,
    }))
}

/// Answers a request whose idempotency key is already bound: the original transfer if the
/// request is the same, a recorded refusal if it is not.
async fn replay(
    state: &AppState,
    original: IdempotentOriginal,
    digest: &str,
    mut refusal_event: Event,
) -> Result<HttpResponse, ApiError> {
    if original.request_sha256 == digest {
        let status = state
            .ledger
            .transfer(original.transfer_id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_or(TransferStatus::Accepted, |r| r.status);
        let mut response = accepted(original.transfer_id, status, original.ledger_seq);
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
        return Ok(response);
    }
    let reason = Reason::IdempotencyKeyReused;
    refusal_event.reason_code = Some(reason.code().to_owned());
    let transfer_id = refusal_event.transfer_id;
    let receipt = state
        .ledger
        .append(refusal_event)
        .await
        .map_err(|e| ApiError::ledger_unavailable(&e))?;
    let refusal = Refusal {
        reason,
        violations: Vec::new(),
        agreement: None,
        message_type: None,
        schema_hash: None,
        consent: ConsentRecord::default(),
    };
    Err(ApiError::refused(refusal, transfer_id, receipt.seq))
}

pub async fn submit(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let system = caller(&req, &state)?;
    let agreement_id = path.into_inner();
    let key = idempotency_key(&req)?;
    let body = read_body(&req, payload, state.limits.max_body_bytes).await?;
    let transfer_id = Uuid::now_v7();
    let now = ledger_time(state.clock.now());
    let (body, received_sha256, digest) = match &body {
        ReadBody::Complete(b) => (
            Body::Complete(b),
            Some(sha256_hex(b)),
            Some(request_digest(&agreement_id, b)),
        ),
        ReadBody::TooLarge => (Body::TooLarge, None, None),
    };
    let mut event = Event::new(
        now,
        transfer_id,
        EventKind::Decision,
        TransferStatus::Refused,
        &recordable(&agreement_id),
        &system.id,
    );
    event.decision = Some("deny".into());
    event.received_sha256 = received_sha256;

    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let user = match state.auth.authenticate(authorization) {
        Ok(u) => u,
        Err(why) => {
            // The system is authenticated, so the attempt is recorded against it.
            event.reason_code = Some(why.code().to_owned());
            let receipt = state
                .ledger
                .append(event)
                .await
                .map_err(|e| ApiError::ledger_unavailable(&e))?;
            tracing::warn!(%transfer_id, code = why.code(), seq = receipt.seq, "transfer refused: bearer token");
            return Err(ApiError::unauthorized(why).with_ledger(transfer_id, receipt.seq));
        }
    };
    event.user_sub = Some(user.sub.clone());
    event.user_role = state
        .catalogue
        .agreements
        .get(&agreement_id)
        .and_then(|a| a.acting_role(&user.roles))
        .or(user.roles.first().copied())
        .map(|r| r.as_str().to_owned());
    if let (Some(k), Some(d)) = (&key, &digest) {
        let original = state
            .ledger
            .idempotent_original(&system.id, k)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        if let Some(original) = original {
            return replay(&state, original, d, event).await;
        }
    }
    let decision = state.catalogue.decide(&Request {
        transfer_id,
        now,
        system_id: &system.id,
        system_may_send: has_role(system, SystemRole::Sender),
        user_roles: &user.roles,
        agreement_id: &agreement_id,
        body,
    });
    let metric_agreement = state
        .catalogue
        .agreements
        .get(&agreement_id)
        .map_or("unknown", |a| a.id())
        .to_owned();
    match decision {
        Decision::Permit(permit) => {
            let terms = permit.agreement.terms();
            event.status = TransferStatus::Accepted;
            event.decision = Some("permit".into());
            event.agreement_version = Some(permit.agreement.version().to_owned());
            event.agreement_hash = Some(permit.agreement.content_hash().to_owned());
            event.message_type = Some(permit.message_type.clone());
            event.schema_hash = Some(permit.schema_hash.clone());
            event.recipient = Some(terms.recipient.organisation.clone());
            event.legal_bases = terms.legal_bases.clone();
            event.sent_sha256 = Some(permit.outbound_sha256.clone());
            event.pointers_removed = permit.pointers_removed.clone();
            event.treatments = permit.treatments.clone();
            event.data_classes = permit.data_classes.clone();
            event.key_ref = permit.key_ref.clone();
            event.subject_index = permit.subject_index.clone();
            event.subject_informed_due = permit.subject_informed_due.clone();
            let held = permit.disposition == Disposition::Hold;
            if held {
                event.status = TransferStatus::Held;
                event.decision = Some("hold".into());
            }
            if let Disposition::SendForReview { review_by } = permit.disposition {
                event.review_due = Some(review_by.to_string());
            }
            record_consent(&mut event, &permit.consent);
            let enqueue = Enqueue {
                destination: terms.recipient.destination.clone(),
                body: permit.outbound,
                now: Timestamp::now(),
                held,
            };
            let bound = key.zip(digest.clone()).map(|(key, request_sha256)| IdempotencyKey {
                system: system.id.clone(),
                key,
                request_sha256,
            });
            let key_for_replay = bound.as_ref().map(|b| b.key.clone());
            // Decision, outbox entry and idempotency key commit together, durably, before anything
            // leaves and before the client hears "accepted".
            match state.ledger.accept(event.clone(), enqueue, bound).await {
                Ok(receipt) => {
                    state.delivery.wake();
                    let outcome = if held { "held" } else { "accepted" };
                    state
                        .metrics
                        .transfer(&metric_agreement, outcome, "", started.elapsed().as_secs_f64());
                    tracing::info!(%transfer_id, agreement = %permit.agreement.id(), seq = receipt.seq, "transfer accepted");
                    Ok(accepted(transfer_id, event.status, receipt.seq))
                }
                Err(LedgerError::IdempotencyKeyTaken) => {
                    // A concurrent request with the same key won the race.
                    let key = key_for_replay.unwrap_or_default();
                    let original = state
                        .ledger
                        .idempotent_original(&system.id, &key)
                        .await
                        .map_err(|e| ApiError::internal(&e))?
                        .ok_or_else(|| ApiError::internal(&"idempotency key vanished"))?;
                    // A fresh refusal record: nothing of the permit (follow-ups, subject index)
                    // may attach to a transfer that was never made.
                    let mut refusal = Event::new(
                        now,
                        transfer_id,
                        EventKind::Decision,
                        TransferStatus::Refused,
                        &recordable(&agreement_id),
                        &system.id,
                    );
                    refusal.decision = Some("deny".into());
                    refusal.user_sub = event.user_sub.clone();
                    refusal.user_role = event.user_role.clone();
                    refusal.received_sha256 = event.received_sha256.clone();
                    replay(&state, original, digest.as_deref().unwrap_or_default(), refusal).await
                }
                Err(e) => Err(ApiError::ledger_unavailable(&e)),
            }
        }
        Decision::Refuse(refusal) => {
            if let Some(a) = &refusal.agreement {
                event.agreement_version = Some(a.version().to_owned());
                event.agreement_hash = Some(a.content_hash().to_owned());
                event.recipient = Some(a.terms().recipient.organisation.clone());
            }
            event.message_type = refusal.message_type.clone();
            event.schema_hash = refusal.schema_hash.clone();
            event.reason_code = Some(refusal.reason.code().to_owned());
            record_consent(&mut event, &refusal.consent);
            let receipt = state
                .ledger
                .append(event)
                .await
                .map_err(|e| ApiError::ledger_unavailable(&e))?;
            state.metrics.transfer(
                &metric_agreement,
                "refused",
                refusal.reason.code(),
                started.elapsed().as_secs_f64(),
            );
            tracing::info!(%transfer_id, agreement = %recordable(&agreement_id), reason = refusal.reason.code(),
                seq = receipt.seq, "transfer refused");
            Err(ApiError::refused(refusal, transfer_id, receipt.seq))
        }
    }
}

fn record_consent(event: &mut Event, consent: &ConsentRecord) {
    event.consent_status = consent.status.clone();
    event.consent_reason = consent.reason.clone();
    event.consent_evidence_ref = consent.evidence_ref.clone();
    event.subject_informed = consent.subject_informed.clone();
}

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
    let record = state.ledger.transfer(id).await.map_err(|e| ApiError::internal(&e))?;
    // A system's users see its own transfers; auditors (system and user) see all. Others learn
    // nothing, not even existence.
    let auditor = has_role(system, SystemRole::Auditor) && user.has(UserRole::Auditor);
    let Some(record) = record.filter(|r| r.sender_system == system.id || auditor) else {
        return Err(ApiError::not_found());
    };
    let history = state.ledger.history(id).await.map_err(|e| ApiError::internal(&e))?;
    let mut body = serde_json::to_value(&record).map_err(|e| ApiError::internal(&e))?;
    body["history"] = serde_json::to_value(&history).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<i64>,
}

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `GET /v1/agreements/{id}/transfers`, and `GET /v1/transfers` across agreements (e.g.
/// `?status=undeliverable`, the dead letters an operator must act on).
pub async fn list(
    req: HttpRequest,
    path: Option<web::Path<String>>,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let params = params.into_inner();
    let mut violations = Vec::new();
    let mut bad = |name: &str, message: &str| {
        violations.push(Violation {
            pointer: format!("?{name}"),
            rule: "query".into(),
            message: message.into(),
        });
    };
    let status = params.status.as_deref().and_then(|s| {
        let parsed = TransferStatus::parse(s);
        if parsed.is_none() {
            bad(
                "status",
                "must be one of accepted, refused, retrying, delivered, undeliverable",
            );
        }
        parsed
    });
    let mut time = |name: &str, v: Option<&str>| {
        v.and_then(|s| {
            let parsed = s.parse::<Timestamp>().ok();
            if parsed.is_none() {
                bad(name, "must be an RFC 3339 timestamp, e.g. 2026-11-22T00:00:00Z");
            }
            parsed
        })
    };
    let since = time("since", params.since.as_deref());
    let until = time("until", params.until.as_deref());
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        bad("limit", "must be between 1 and 1000");
    }
    if !violations.is_empty() {
        return Err(
            ApiError::bad_request("invalid_query", "The query parameters are not valid.").with_violations(violations),
        );
    }
    let agreement_id = path.map(web::Path::into_inner);
    // One more than asked for tells whether there is a next page.
    let query = TransferQuery {
        agreement_id: agreement_id.clone(),
        status,
        since,
        until,
        limit: limit + 1,
        after_seq: params.cursor,
    };
    let mut transfers = state
        .ledger
        .list_transfers(&query)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let next_cursor = if transfers.len() > limit as usize {
        transfers.truncate(limit as usize);
        transfers.last().map(|t| t.ledger_seq)
    } else {
        None
    };
    let wants_csv = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        let mut response = HttpResponse::Ok();
        response.content_type("text/csv; charset=utf-8");
        if let Some(c) = next_cursor {
            response.insert_header(("x-next-cursor", c.to_string()));
        }
        return Ok(response.body(crate::audit::report::csv(&transfers)));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "agreement_id": agreement_id,
        "transfers": transfers,
        "next_cursor": next_cursor,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

/// `GET /v1/agreements/{id}/transfers/counts?since=&until=`: by status and by legal basis.
pub async fn counts(
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<CountParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let agreement_id = path.into_inner();
    let counts = state
        .ledger
        .counts(&agreement_id, params.since, params.until)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "agreement_id": agreement_id,
        "since": params.since,
        "until": params.until,
        "by_status": counts.by_status,
        "by_legal_basis": counts.by_legal_basis,
    })))
}
