//! `GET /v1/agreements` and `GET /v1/agreements/{id}`: what each agreement allows, for any
//! registered system (an information-governance dashboard, a case system checking before it sends).

use actix_web::{HttpRequest, HttpResponse, web};

use super::{ApiError, AppState, ErrorBody, bodies, caller, user};

/// Every agreement, with its state today (in force, or why transfers are refused).
#[utoipa::path(get, path = "/v1/agreements", tag = "agreements", security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The agreements.", body = bodies::Agreements)))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    user(&req, &state)?;
    let today = state.clock.today();
    let views: Vec<_> = state.catalogue.agreements.iter().map(|a| a.view(today)).collect();
    Ok(HttpResponse::Ok().json(bodies::Agreements { agreements: views }))
}

/// One agreement: parties, legal bases, consent and transparency terms, fields and retention.
#[utoipa::path(get, path = "/v1/agreements/{agreement_id}", tag = "agreements",
    params(("agreement_id" = String, Path)), security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The agreement.", body = crate::policy::agreement::AgreementView),
        (status = 404, description = "No such agreement.", body = ErrorBody)))]
pub async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    user(&req, &state)?;
    let agreement = state
        .catalogue
        .agreements
        .get(&path.into_inner())
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(agreement.view(state.clock.today())))
}
