//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types they answer with. Served at `GET /openapi.json` (to registered systems, like every
//! endpoint), printed by `isa-gateway openapi`, and checked in as `docs/openapi.json` (a test
//! fails when it is stale).

use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use super::{ApiError, AppState, agreements, caller, follow_ups, ledger, listings, transfers};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "isa-gateway",
        description = "A secure inter-agency information-sharing gateway. Every caller presents a \
            client certificate (mutual TLS) registered as a system; every request but the \
            operational ones also carries the user's bearer token (JWT). Errors share one shape, \
            `ErrorBody`: a stable `code`, a `message` for people, and `violations` naming JSON \
            pointers and rules, never the values sent.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        transfers::submit,
        transfers::disclose,
        listings::list_for_agreement,
        listings::counts,
        listings::list_all,
        transfers::show,
        follow_ups::approve,
        follow_ups::refuse,
        follow_ups::review,
        follow_ups::subject_informed,
        follow_ups::held,
        follow_ups::overdue_reviews,
        follow_ups::notifications_due,
        agreements::list,
        agreements::show,
        super::subject_disclosures,
        ledger::latest,
        ledger::cosign,
        ledger::make,
        ledger::inclusion,
        ledger::consistency,
        super::healthz,
        super::readyz,
        super::metrics,
        serve,
    ),
    modifiers(&Security),
    tags(
        (name = "transfers", description = "Send under an agreement; list and count what was sent (auditors)."),
        (name = "follow-ups", description = "What people must do after a decision: approve, refuse, review, tell the person."),
        (name = "agreements", description = "What each agreement allows, and whether it is in force today."),
        (name = "subject access", description = "Who the organisation shared one person's data with (DPO)."),
        (name = "ledger", description = "Signed checkpoints and Merkle proofs, for auditors and witnesses."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
struct ApiDoc;

/// The security schemes, and the answers every operation can give whatever its own: 403 for a
/// certificate that is not a registered system, 401 for a missing or unacceptable token, 429 over
/// the system's request rate.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "mutual_tls",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate from the configured CA whose URI SAN is a registered system.".into(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        bearer.description =
            Some("The user's access token (`typ` at+jwt) from a configured issuer, with roles.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                let bearer = op
                    .security
                    .iter()
                    .flatten()
                    .any(|s| serde_json::to_value(s).is_ok_and(|v| v.get("bearer").is_some()));
                let has_body = op.request_body.is_some();
                let responses = &mut op.responses.responses;
                if has_body {
                    responses.entry("400".into()).or_insert_with(|| {
                        error("The body is not JSON, or has unknown or missing fields (`invalid_request`; a transfer's `malformed_json` is recorded).").into()
                    });
                }
                responses.entry("429".into()).or_insert_with(|| {
                    error("The system is over its request rate (`rate_limited`); see `Retry-After`. Not recorded.")
                        .into()
                });
                responses.entry("403".into()).or_insert_with(|| {
                    error("The client certificate is not a registered system (`forbidden`), or the role is missing.")
                        .into()
                });
                if bearer {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("The bearer token is missing or refused; `code` names the check that failed.").into()
                    });
                }
            }
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as `docs/openapi.json` holds it: pretty JSON and a final newline.
pub fn pretty_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(("mutual_tls" = [])),
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object)))]
pub async fn serve(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state)?;
    Ok(HttpResponse::Ok().content_type("application/json").body(pretty_json()))
}
