//! `GET /v1/agreements` and `GET /v1/agreements/{id}`: what each agreement allows, for any
//! registered system (an information-governance dashboard, a case system checking before it sends).

use actix_web::{HttpRequest, HttpResponse, web};

use super::{ApiError, AppState, caller, user};

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    user(&req, &state)?;
    let today = state.clock.today();
    let views: Vec<_> = state.catalogue.agreements.iter().map(|a| a.view(today)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "agreements": views })))
}

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
