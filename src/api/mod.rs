//! The HTTP API. Handlers translate between HTTP and the decision core, the ledger and delivery;
//! they hold no SQL and make no outbound calls.

mod agreements;
mod error;
mod follow_ups;
mod ledger;
mod transfers;

use std::any::Any;
use std::collections::HashMap;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::{HttpRequest, HttpResponse, web};

pub use error::{ApiError, ErrorBody};

use crate::app::config::{Limits, SystemConfig, SystemRole};
use crate::delivery::Delivery;
use crate::ledger::Ledger;
use crate::platform::clock::Clock;
use crate::policy::decision::Catalogue;

/// The registered calling systems, by certificate identity.
#[derive(Debug, Default)]
pub struct Systems {
    by_identity: HashMap<String, SystemConfig>,
}

impl Systems {
    pub fn new(systems: &[SystemConfig]) -> Self {
        Self {
            by_identity: systems.iter().map(|s| (s.identity.clone(), s.clone())).collect(),
        }
    }

    fn find(&self, identities: &[String]) -> Option<&SystemConfig> {
        identities.iter().find_map(|i| self.by_identity.get(i))
    }
}

/// Everything the handlers share.
pub struct AppState {
    pub catalogue: Catalogue,
    pub systems: Systems,
    pub ledger: std::sync::Arc<dyn Ledger>,
    pub delivery: std::sync::Arc<Delivery>,
    pub clock: Clock,
    pub limits: Limits,
    pub metrics: std::sync::Arc<crate::platform::metrics::Metrics>,
    pub auth: crate::platform::auth::Authenticator,
    pub checkpointer: std::sync::Arc<crate::audit::checkpointer::Checkpointer>,
}

/// The URI SANs of the client certificate verified on this connection.
#[derive(Debug, Clone)]
struct PeerIdentities(Vec<String>);

/// Runs once per connection, after the TLS handshake (so the certificate is already verified):
/// keeps the caller's identities for the handlers.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() {
        let (_, session) = tls.get_ref();
        if let Some(cert) = session.peer_certificates().and_then(|c| c.first()) {
            ext.insert(PeerIdentities(crate::platform::tls::uri_sans(cert)));
        }
    }
}

/// The registered system behind this request, or 403 with no detail.
fn caller<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a SystemConfig, ApiError> {
    let Some(ids) = req.conn_data::<PeerIdentities>() else {
        return Err(ApiError::forbidden());
    };
    state.systems.find(&ids.0).ok_or_else(|| {
        tracing::warn!(identities = ?ids.0, "client certificate verified but its identity is not registered");
        ApiError::forbidden()
    })
}

/// The user behind this request, from its bearer token, or 401 naming the failed check.
fn user(req: &HttpRequest, state: &AppState) -> Result<crate::platform::auth::User, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.auth.authenticate(header).map_err(|why| {
        tracing::warn!(code = why.code(), "bearer token refused");
        ApiError::unauthorized(why)
    })
}

/// An auditor: a system registered with the auditor role, used by a user with the auditor role.
fn auditor<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a SystemConfig, ApiError> {
    let system = caller(req, state)?;
    if !has_role(system, SystemRole::Auditor) {
        return Err(ApiError::forbidden());
    }
    if !user(req, state)?.has(crate::platform::auth::UserRole::Auditor) {
        return Err(ApiError::role_required(crate::platform::auth::UserRole::Auditor));
    }
    Ok(system)
}

fn has_role(system: &SystemConfig, role: SystemRole) -> bool {
    system.roles.contains(&role)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/agreements")
            .route(web::get().to(agreements::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/agreements/{agreement_id}")
            .route(web::get().to(agreements::show))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/v1/agreements/{agreement_id}/transfers/counts").route(web::get().to(transfers::counts)))
    .service(
        web::resource("/v1/agreements/{agreement_id}/transfers")
            .route(web::post().to(transfers::submit))
            .route(web::get().to(transfers::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/transfers")
            .route(web::get().to(transfers::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/v1/transfers/{transfer_id}/approve").route(web::post().to(follow_ups::approve)))
    .service(web::resource("/v1/transfers/{transfer_id}/refuse").route(web::post().to(follow_ups::refuse)))
    .service(web::resource("/v1/transfers/{transfer_id}/review").route(web::post().to(follow_ups::review)))
    .service(
        web::resource("/v1/transfers/{transfer_id}/subject-informed")
            .route(web::post().to(follow_ups::subject_informed)),
    )
    .service(web::resource("/v1/held").route(web::get().to(follow_ups::held)))
    .service(web::resource("/v1/subject-disclosures").route(web::post().to(subject_disclosures)))
    .service(web::resource("/v1/ledger/checkpoint").route(web::get().to(ledger::latest)))
    .service(web::resource("/v1/ledger/checkpoints").route(web::post().to(ledger::make)))
    .service(web::resource("/v1/ledger/proof/inclusion").route(web::get().to(ledger::inclusion)))
    .service(web::resource("/v1/ledger/proof/consistency").route(web::get().to(ledger::consistency)))
    .service(web::resource("/v1/reviews/overdue").route(web::get().to(follow_ups::overdue_reviews)))
    .service(web::resource("/v1/notifications/due").route(web::get().to(follow_ups::notifications_due)))
    .service(
        web::resource("/v1/transfers/{transfer_id}")
            .route(web::get().to(transfers::show))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/healthz").route(web::get().to(healthz)))
    .service(web::resource("/readyz").route(web::get().to(readyz)))
    .service(web::resource("/metrics").route(web::get().to(metrics)))
    .app_data(web::QueryConfig::default().error_handler(|_, _| {
        // The deserialiser's text may echo the query's values; say which parameters exist instead.
        ApiError::bad_request(
            "invalid_query",
            "Unknown or malformed query parameter. Accepted: status, since, until (RFC 3339), limit, cursor.",
        )
        .into()
    }))
    .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::not_found().into()))
    .app_data(web::JsonConfig::default().limit(4096).error_handler(|_, _| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be JSON with the documented fields only.",
        )
        .into()
    }))
    .default_service(web::to(not_found));
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectQuery {
    nhs_number: String,
}

/// `POST /v1/subject-disclosures` (DPO): every disclosure about the person whose NHS number is in
/// the body (never the URL). The lookup is recorded in the ledger without the number.
async fn subject_disclosures(
    req: HttpRequest,
    body: web::Json<SubjectQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    let user = user(&req, &state)?;
    if !user.has(crate::platform::auth::UserRole::Dpo) {
        return Err(ApiError::role_required(crate::platform::auth::UserRole::Dpo));
    }
    let Ok(nhs) = crate::policy::nhs_number::NhsNumber::parse(&body.nhs_number) else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_nhs_number",
            "The NHS number is not ten digits with a valid check digit.",
        )
        .with_violations(vec![crate::policy::schemas::Violation {
            pointer: "/nhs_number".into(),
            rule: "format".into(),
            message: "value is not a \"nhs-number\"".into(),
        }]));
    };
    let index = state
        .catalogue
        .keys
        .index()
        .ok_or_else(|| ApiError::internal(&"no index key loaded"))?;
    let answer = crate::audit::subject_access::lookup(
        state.ledger.as_ref(),
        index,
        &nhs,
        &system.id,
        &user.sub,
        state.clock.now(),
    )
    .await
    .map_err(|e| ApiError::ledger_unavailable(&e))?;
    tracing::info!(lookup_id = %answer.lookup_id, found = answer.disclosures.len(), "subject access lookup");
    Ok(HttpResponse::Ok().json(answer))
}

/// Operational endpoints, like every other, answer registered systems only.
async fn healthz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok"})))
}

/// Ready to accept transfers: the ledger answers. Destinations whose circuit breaker is open are
/// listed (transfers to them are still accepted and queued, but operators should know).
async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    let ledger_ok = state.ledger.outbox_depth().await.is_ok();
    let breakers: serde_json::Map<String, serde_json::Value> = state
        .delivery
        .breakers()
        .into_iter()
        .map(|(id, s)| (id, serde_json::json!(s)))
        .collect();
    let body = serde_json::json!({"ready": ledger_ok, "ledger": if ledger_ok { "ok" } else { "unavailable" }, "destinations": breakers});
    Ok(if ledger_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    // Gauges are read at scrape time: never stale, and no work on the delivery path.
    let breakers = state.delivery.breakers();
    for (id, s) in &breakers {
        state.metrics.set_breaker(id, *s == crate::delivery::BreakerState::Open);
    }
    if let Ok(depth) = state.ledger.outbox_depth().await {
        let ids: Vec<String> = breakers.into_iter().map(|(id, _)| id).collect();
        state.metrics.set_outbox_depth(&depth, &ids);
    }
    if let Ok(overdue) = state
        .ledger
        .follow_ups(crate::ledger::FollowUp::ReviewsOverdue(state.clock.now()), None, 10_000)
        .await
    {
        state.metrics.set_reviews_overdue(overdue.len());
    }
    Ok(HttpResponse::Ok()
        .content_type(crate::platform::metrics::CONTENT_TYPE)
        .body(state.metrics.render()))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}
