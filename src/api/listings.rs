//! The read side of transfers, for auditors: `GET /v1/agreements/{id}/transfers`,
//! `GET /v1/transfers` (JSON or CSV, paged) and the counts by status and legal basis.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use jiff::Timestamp;
use serde::Deserialize;

use super::bodies::{TransferCounts, TransferPage};
use super::{ApiError, AppState, ErrorBody, auditor};
use crate::ledger::{TransferQuery, TransferStatus};
use crate::policy::schemas::Violation;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// accepted, held, refused, retrying, delivered or undeliverable.
    #[param(value_type = Option<TransferStatus>)]
    pub(crate) status: Option<String>,
    /// RFC 3339; decisions at or after.
    #[param(format = DateTime)]
    pub(crate) since: Option<String>,
    /// RFC 3339; decisions before.
    #[param(format = DateTime)]
    pub(crate) until: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[param(minimum = 0)]
    pub(crate) cursor: Option<i64>,
    /// Only this message type.
    #[param(max_length = 64)]
    pub(crate) message_type: Option<String>,
    /// Only transfers sent by this registered system.
    #[param(max_length = 128)]
    pub(crate) sender_system: Option<String>,
    /// Only transfers asked for by this user (the token's subject).
    #[param(max_length = 256)]
    pub(crate) user: Option<String>,
    /// Only transfers under which this legal basis applied (a code from docs/legal-bases.md).
    #[param(max_length = 128)]
    pub(crate) legal_basis: Option<String>,
}

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `GET /v1/agreements/{id}/transfers`: one agreement's transfers, for auditors.
#[utoipa::path(get, path = "/v1/agreements/{agreement_id}/transfers", tag = "transfers",
    params(("agreement_id" = String, Path), ListParams), security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "A page of transfers (JSON, or CSV with `Accept: text/csv` and the cursor in `X-Next-Cursor`).",
        content((TransferPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Malformed query (`invalid_query`, with `violations`).", body = ErrorBody)))]
pub async fn list_for_agreement(
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    list(req, Some(path.into_inner()), params.into_inner(), state).await
}

/// `GET /v1/transfers` across agreements (e.g. `?status=undeliverable`, the dead letters an
/// operator must act on), for auditors.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers", params(ListParams),
    security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "A page of transfers (JSON, or CSV with `Accept: text/csv` and the cursor in `X-Next-Cursor`).",
        content((TransferPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Malformed query (`invalid_query`, with `violations`).", body = ErrorBody)))]
pub async fn list_all(
    req: HttpRequest,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    list(req, None, params.into_inner(), state).await
}

async fn list(
    req: HttpRequest,
    agreement_id: Option<String>,
    params: ListParams,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let (transfers, next_cursor) = page(&state, agreement_id.as_deref(), &params).await?;
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
    Ok(HttpResponse::Ok().json(TransferPage {
        agreement_id,
        transfers,
        next_cursor,
    }))
}

/// A page of transfers (for an auditor: the caller checks), with the cursor of the next page.
pub(crate) async fn page(
    state: &AppState,
    agreement_id: Option<&str>,
    params: &ListParams,
) -> Result<(Vec<crate::ledger::TransferRecord>, Option<i64>), ApiError> {
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
                "must be one of accepted, held, refused, retrying, delivered, undeliverable",
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
    if params.cursor.is_some_and(|c| c < 0) {
        bad("cursor", "must be an earlier page's next_cursor (0 or more)");
    }
    for (name, value, max) in [
        ("message_type", &params.message_type, 64),
        ("sender_system", &params.sender_system, 128),
        ("user", &params.user, 256),
    ] {
        if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > max) {
            bad(name, &format!("must be 1 to {max} characters"));
        }
    }
    // A code as the ledger writes it (its canonical spelling), or a 400 naming the parameter.
    let legal_basis = params.legal_basis.as_deref().and_then(|code| {
        let parsed = crate::policy::legal::LegalBasis::parse(code).ok().map(|b| b.code());
        if parsed.is_none() {
            bad("legal_basis", "must be a legal-basis code (docs/legal-bases.md)");
        }
        parsed
    });
    if !violations.is_empty() {
        return Err(
            ApiError::bad_request("invalid_query", "The query parameters are not valid.").with_violations(violations),
        );
    }
    // One more than asked for tells whether there is a next page.
    let query = TransferQuery {
        agreement_id: agreement_id.map(str::to_owned),
        status,
        since,
        until,
        limit: limit + 1,
        after_seq: params.cursor,
        message_type: params.message_type.clone(),
        sender_system: params.sender_system.clone(),
        user_sub: params.user.clone(),
        legal_basis,
    };
    let mut transfers = state.ledger.list_transfers(&query).await?;
    let next_cursor = if transfers.len() > limit as usize {
        transfers.truncate(limit as usize);
        transfers.last().map(|t| t.ledger_seq)
    } else {
        None
    };
    Ok((transfers, next_cursor))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountParams {
    /// RFC 3339.
    since: Option<Timestamp>,
    /// RFC 3339.
    until: Option<Timestamp>,
}

/// `GET /v1/agreements/{id}/transfers/counts?since=&until=`: by status and by legal basis.
#[utoipa::path(get, path = "/v1/agreements/{agreement_id}/transfers/counts", tag = "transfers",
    params(("agreement_id" = String, Path), CountParams), security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The counts.", body = TransferCounts),
        (status = 400, description = "Malformed query (`invalid_query`).", body = ErrorBody)))]
pub async fn counts(
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<CountParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let agreement_id = path.into_inner();
    let counts = state.ledger.counts(&agreement_id, params.since, params.until).await?;
    Ok(HttpResponse::Ok().json(TransferCounts {
        agreement_id,
        since: params.since,
        until: params.until,
        by_status: counts.by_status,
        by_legal_basis: counts.by_legal_basis,
    }))
}
