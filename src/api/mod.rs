//! The HTTP API. Handlers translate between HTTP and the decision core, the ledger and delivery;
//! they hold no SQL and make no outbound calls.

mod agreements;
pub(crate) mod bodies;
mod error;
pub(crate) mod follow_ups;
mod ledger;
pub(crate) mod listings;
pub mod openapi;
pub(crate) mod transfers;

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

    /// A registered system by its id.
    pub fn by_id(&self, id: &str) -> Option<&SystemConfig> {
        self.by_identity.values().find(|s| s.id == id)
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
    /// Where the subject-index keys are (subject access reads them at the time of asking).
    pub keys: crate::app::keystore::KeyStore,
    pub limits: Limits,
    pub metrics: std::sync::Arc<crate::platform::metrics::Metrics>,
    pub auth: crate::platform::auth::Authenticator,
    pub checkpointer: std::sync::Arc<crate::audit::checkpointer::Checkpointer>,
    /// Per-system request rates.
    pub rates: crate::platform::rate_limit::RateLimits,
    /// The client-certificate verifier (its CRLs' next-update times, for `/metrics`).
    pub tls: std::sync::Arc<crate::platform::tls::ClientVerifier>,
}

/// The URI SANs of the client certificate verified on this connection.
#[derive(Debug, Clone)]
struct PeerIdentities(Vec<String>);

/// Open connections per client identity, and the most one identity may hold at once: a system
/// that opens connections without end cannot take every worker from the others.
#[derive(Debug)]
pub struct Connections {
    cap: usize,
    open: std::sync::Mutex<HashMap<String, usize>>,
}

impl Connections {
    pub fn new(cap: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            cap,
            open: std::sync::Mutex::default(),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Kept with the connection while it lives; counts it against its identity.
struct Slot {
    connections: std::sync::Arc<Connections>,
    identity: String,
    /// Opened when the identity already held its cap: its requests are refused, and it is closed.
    over: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.connections.open();
        if let Some(n) = open.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.identity);
            }
        }
    }
}

/// Runs once per connection, after the TLS handshake (so the certificate is already verified):
/// keeps the caller's identities for the handlers, and counts the connection against them.
pub fn on_connect(connections: std::sync::Arc<Connections>) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync {
    move |conn, ext| {
        let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() else {
            return;
        };
        let (_, session) = tls.get_ref();
        let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
            return;
        };
        let identities = crate::platform::tls::uri_sans(cert);
        let identity = identities.join(" ");
        let over = {
            let mut open = connections.open();
            let n = open.entry(identity.clone()).or_insert(0);
            *n += 1;
            *n > connections.cap
        };
        ext.insert(Slot {
            connections: connections.clone(),
            identity,
            over,
        });
        ext.insert(PeerIdentities(identities));
    }
}

/// The registered system behind the verified certificate of this request's connection.
fn system_of<'a>(req: &HttpRequest, state: &'a AppState) -> Option<&'a SystemConfig> {
    state.systems.find(&req.conn_data::<PeerIdentities>()?.0)
}

/// The registered system behind this request, or 403 with no detail; 429 when it is over its
/// request rate (counted, not recorded).
fn caller<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a SystemConfig, ApiError> {
    let Some(system) = system_of(req, state) else {
        if let Some(ids) = req.conn_data::<PeerIdentities>() {
            tracing::warn!(identities = ?ids.0, "client certificate verified but its identity is not registered");
        }
        return Err(ApiError::forbidden());
    };
    if req.conn_data::<Slot>().is_some_and(|slot| slot.over) {
        state.metrics.refused_unrecorded(&system.id, "too_many_connections");
        tracing::warn!(system = %system.id, "request refused: the system holds too many connections (not recorded)");
        return Err(ApiError::too_many_connections());
    }
    state.rates.check(&system.id).map_err(|wait| {
        state.metrics.refused_unrecorded(&system.id, "rate_limited");
        tracing::warn!(system = %system.id, "request refused: over the system's rate limit (not recorded)");
        ApiError::rate_limited(wait)
    })?;
    Ok(system)
}

/// The user behind this request, from its bearer token, or 401 naming the failed check. A refusal
/// is counted and logged against the system, never written to the ledger: nobody is accountable
/// for it.
fn user(req: &HttpRequest, state: &AppState) -> Result<crate::platform::auth::User, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let system = system_of(req, state).map_or("unregistered", |s| s.id.as_str());
    state.auth.authenticate(header, system).map_err(|why| {
        state.metrics.refused_unrecorded(system, why.code());
        tracing::warn!(%system, code = why.code(), "bearer token refused (not recorded)");
        ApiError::unauthorized(why)
    })
}

/// An auditor: a system registered with the auditor role, used by a user with the auditor role.
fn auditor<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a SystemConfig, ApiError> {
    let system = caller(req, state)?;
    // The token first, as on every endpoint: without one the answer is 401 whatever the system.
    let user = user(req, state)?;
    if !has_role(system, SystemRole::Auditor) {
        return Err(ApiError::forbidden());
    }
    if !user.has(crate::platform::auth::UserRole::Auditor) {
        return Err(ApiError::role_required(crate::platform::auth::UserRole::Auditor));
    }
    Ok(system)
}

/// A monitoring system (Prometheus): per-agreement volumes and destinations are for it alone.
fn monitor<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a SystemConfig, ApiError> {
    let system = caller(req, state)?;
    if has_role(system, SystemRole::Monitor) {
        Ok(system)
    } else {
        Err(ApiError::forbidden())
    }
}

pub(crate) fn has_role(system: &SystemConfig, role: SystemRole) -> bool {
    system.roles.contains(&role)
}

/// A resource whose other methods answer 405 with `Allow` naming the ones it has.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || method_not_allowed(allow)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/agreements", "GET").route(web::get().to(agreements::list)))
        .service(resource("/v1/agreements/{agreement_id}", "GET").route(web::get().to(agreements::show)))
        .service(
            resource("/v1/agreements/{agreement_id}/transfers/counts", "GET").route(web::get().to(listings::counts)),
        )
        .service(
            resource("/v1/agreements/{agreement_id}/transfers", "GET, POST")
                .route(web::post().to(transfers::submit))
                .route(web::get().to(listings::list_for_agreement)),
        )
        .service(resource("/v1/disclosures", "POST").route(web::post().to(transfers::disclose)))
        .service(resource("/v1/transfers", "GET").route(web::get().to(listings::list_all)))
        .service(resource("/v1/transfers/{transfer_id}/approve", "POST").route(web::post().to(follow_ups::approve)))
        .service(resource("/v1/transfers/{transfer_id}/refuse", "POST").route(web::post().to(follow_ups::refuse)))
        .service(resource("/v1/transfers/{transfer_id}/review", "POST").route(web::post().to(follow_ups::review)))
        .service(
            resource("/v1/transfers/{transfer_id}/subject-informed", "POST")
                .route(web::post().to(follow_ups::subject_informed)),
        )
        .service(resource("/v1/held", "GET").route(web::get().to(follow_ups::held)))
        .service(resource("/v1/subject-disclosures", "POST").route(web::post().to(subject_disclosures)))
        .service(resource("/v1/ledger/checkpoint", "GET").route(web::get().to(ledger::latest)))
        .service(resource("/v1/ledger/checkpoints", "POST").route(web::post().to(ledger::make)))
        .service(resource("/v1/ledger/cosignatures", "POST").route(web::post().to(ledger::cosign)))
        .service(resource("/v1/ledger/proof/inclusion", "GET").route(web::get().to(ledger::inclusion)))
        .service(resource("/v1/ledger/proof/consistency", "GET").route(web::get().to(ledger::consistency)))
        .service(resource("/v1/reviews/overdue", "GET").route(web::get().to(follow_ups::overdue_reviews)))
        .service(resource("/v1/notifications/due", "GET").route(web::get().to(follow_ups::notifications_due)))
        .service(resource("/v1/transfers/{transfer_id}", "GET").route(web::get().to(transfers::show)))
        .service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi::serve)))
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

/// Whose disclosures to find. In the body, never the URL: an NHS number is patient data.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectQuery {
    /// Ten digits with a valid check digit (modulus 11).
    #[schema(pattern = "^[0-9]{10}$")]
    nhs_number: String,
}

/// `POST /v1/subject-disclosures` (DPO): every disclosure about the person whose NHS number is in
/// the body (never the URL). The lookup is recorded in the ledger without the number.
#[utoipa::path(post, path = "/v1/subject-disclosures", tag = "subject access", request_body = SubjectQuery,
    security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "Every disclosure found, and the ledger entry recording the lookup.",
        body = crate::audit::subject_access::Answer),
        (status = 403, description = "Not the DPO's system (`forbidden`) or not a DPO (`role_required`).", body = ErrorBody),
        (status = 422, description = "Not a valid NHS number (`invalid_nhs_number`).", body = ErrorBody)))]
async fn subject_disclosures(
    req: HttpRequest,
    body: web::Json<SubjectQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let system = caller(&req, &state)?;
    let user = user(&req, &state)?;
    let answer = subject_access(&state, system, &user, &body.nhs_number).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// Every disclosure about the person with this NHS number, asked by a DPO through the DPO's
/// system; the lookup is recorded without the number. The steps every edge shares.
pub(crate) async fn subject_access(
    state: &AppState,
    system: &SystemConfig,
    user: &crate::platform::auth::User,
    nhs_number: &str,
) -> Result<crate::audit::subject_access::Answer, ApiError> {
    // Only through the DPO's own system, by a user with the DPO role.
    if !has_role(system, SystemRole::Dpo) {
        return Err(ApiError::forbidden());
    }
    if !user.has(crate::platform::auth::UserRole::Dpo) {
        return Err(ApiError::role_required(crate::platform::auth::UserRole::Dpo));
    }
    let Ok(nhs) = crate::policy::nhs_number::NhsNumber::parse(nhs_number) else {
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
    let answer = crate::audit::subject_access::lookup(
        state.ledger.as_ref(),
        &state.keys,
        &nhs,
        crate::audit::subject_access::Asker {
            system: &system.id,
            user: &user.sub,
            issuer: Some(&user.issuer),
        },
        state.clock.now(),
    )
    .await
    .map_err(|e| match e {
        crate::audit::subject_access::LookupError::Ledger(e) => ApiError::from(e),
        crate::audit::subject_access::LookupError::Keys(e) => ApiError::internal(&e),
    })?;
    tracing::info!(lookup_id = %answer.lookup_id, found = answer.disclosures.len(), "subject access lookup");
    Ok(answer)
}

/// Operational endpoints, like every other, answer registered systems only.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(("mutual_tls" = [])),
    responses((status = 200, description = "The process answers.", body = bodies::Health)))]
async fn healthz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    Ok(HttpResponse::Ok().json(bodies::Health { status: "ok" }))
}

/// Ready to accept transfers: the ledger answers. Destinations whose circuit breaker is open are
/// listed (transfers to them are still accepted and queued, but operators should know).
#[utoipa::path(get, path = "/readyz", tag = "operations", security(("mutual_tls" = [])),
    description = "For systems with the `monitor` role.",
    responses((status = 200, description = "Ready.", body = bodies::Readiness),
        (status = 503, description = "The ledger does not answer.", body = bodies::Readiness)))]
async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    monitor(&req, &state)?;
    let ledger_ok = state.ledger.outbox_depth().await.is_ok();
    let body = bodies::Readiness {
        ready: ledger_ok,
        gateway: state.delivery.gateway_id().to_owned(),
        ledger: if ledger_ok { "ok" } else { "unavailable" },
        destinations: state.delivery.breakers().into_iter().collect(),
    };
    Ok(if ledger_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

/// Prometheus text exposition; labels carry agreement ids, destinations and reason codes only.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("mutual_tls" = [])),
    description = "For systems with the `monitor` role.",
    responses((status = 200, description = "Prometheus text format 0.0.4.", content_type = "text/plain", body = String)))]
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    monitor(&req, &state)?;
    // Gauges are read at scrape time: never stale, and no work on the delivery path.
    for (crl, next) in state.tls.next_updates() {
        state.metrics.set_crl_next_update(&crl, next);
    }
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

async fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed(allow))
}
