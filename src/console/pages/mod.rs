//! The console's pages and routes.

mod agreement;
mod audit;
mod held;
pub mod layout;
mod ledger;
mod send;
mod told;

pub use self::ledger::VerifyRun;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;
use serde::Deserialize;

use super::session::{self, Signed};
use super::{Console, ConsoleError};
use crate::api::AppState;
use crate::platform::auth::UserRole;

const CSS: &str = include_str!("console.css");
/// The pre-session cookie: binds a sign-in form (development) or an identity provider's answer
/// (its state) to this browser. `Lax`, because the provider's redirect back is a cross-site
/// navigation.
const LOGIN_COOKIE: &str = "__Host-isa-login";

/// Every answer: no script, no third-party origin, no framing, no caching, no referrer.
pub fn headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add((header::CACHE_CONTROL, "no-store"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/console.css", web::get().to(css))
        .route("/", web::get().to(home))
        .route("/sign-in", web::get().to(sign_in))
        .route("/sign-in/dev", web::post().to(dev_sign_in))
        .route("/sign-in/oidc/{n}", web::get().to(oidc_start))
        .route("/auth/callback", web::get().to(oidc_callback))
        .route("/sign-out", web::post().to(sign_out))
        .configure(send::routes)
        .configure(held::routes)
        .configure(audit::routes)
        .configure(agreement::routes)
        .configure(ledger::routes)
        .configure(told::routes)
        .app_data(web::QueryConfig::default().error_handler(|_, _| {
            // The deserialiser's text may echo what was typed: say only that it was not understood.
            ConsoleError::Api(crate::api::ApiError::bad_request(
                "invalid_query",
                "The page's query was not understood.",
            ))
            .into()
        }))
        .default_service(web::to(|| async { Err::<HttpResponse, _>(ConsoleError::NotFound) }));
}

pub(super) fn respond(markup: maud::Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

async fn css() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(CSS)
}

/// A form's fields, in order (repeated names kept).
pub(super) type Fields = web::Form<Vec<(String, String)>>;

pub(super) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn home(who: Signed) -> HttpResponse {
    let card = |href: &'static str, title: &'static str, text: &'static str| {
        html! { li.card { h2 { a href=(href) { (title) } } p { (text) } } }
    };
    respond(layout::page(
        "What do you need to do?",
        &who,
        html! {
            ul.cards {
                @if who.has(UserRole::Practitioner) || who.has(UserRole::SafeguardingLead) {
                    (card("/send", "Send a referral or update", "To the MASH, the LADO, a GP: any message an agreement lets you send."))
                    (card("/mine", "My transfers", "What you sent, and what happened to it."))
                    (card("/told", "People to be told", "Disclosures made on the understanding that the person would be told afterwards."))
                }
                @if who.has(UserRole::Director) {
                    (card("/held", "Held for approval", "Referrals waiting for a director, and urgent ones awaiting review: approve, refuse or review, with a reason."))
                }
                @if who.has(UserRole::Auditor) {
                    (card("/audit", "Audit", "The agreements register, each agreement as a document, its activity over time, every transfer with CSV download."))
                    (card("/audit/ledger", "Ledger", "Entries, the latest signed checkpoint, and verify the record now."))
                }
                @if who.has(UserRole::Dpo) {
                    (card("/dpo", "Subject access", "Who the organisation shared one person's data with (UK GDPR Art 15(1)(c))."))
                }
            }
            @if who.user.roles.is_empty() {
                p { "Your account has no role here. Ask your information governance lead." }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct SignInQuery {
    ended: Option<String>,
}

async fn sign_in(console: web::Data<Console>, q: web::Query<SignInQuery>) -> HttpResponse {
    let token = session::random_token();
    let roles = [
        UserRole::Practitioner,
        UserRole::SafeguardingLead,
        UserRole::Director,
        UserRole::Auditor,
        UserRole::Dpo,
    ];
    let body = html! {
        @if q.ended.is_some() {
            div.notice role="status" { p { "Your session ended (signed out, idle for too long, or over its time limit). Sign in again." } }
        }
        ul.signin {
            @for (n, label) in console.oidc.labels() {
                li { a.button href=(format!("/sign-in/oidc/{n}")) { "Sign in with " (label) } }
            }
        }
        @if console.dev_issuer.is_some() {
            section.dev aria-labelledby="dev-h" {
                h2 id="dev-h" { "Development sign-in" }
                p.warning { strong { "Development profile only." } " Pick a name and a role; no password. Production refuses this." }
                form method="post" action="/sign-in/dev" {
                    input type="hidden" name="csrf" value=(token);
                    div.field { label for="dev-name" { "Name" } input id="dev-name" name="name" type="text" required autocomplete="off"; }
                    div.field {
                        label for="dev-role" { "Role" }
                        select id="dev-role" name="role" {
                            @for r in roles { option value=(r.as_str()) { (r.as_str()) } }
                        }
                    }
                    button type="submit" { "Sign in (development)" }
                }
            }
        }
    };
    let mut response = respond(layout::bare_with("Sign in", body));
    let _ = response.add_cookie(&session::cookie(LOGIN_COOKIE, token));
    response
}

async fn dev_sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    let Some(issuer) = &console.dev_issuer else {
        return Err(ConsoleError::NotFound);
    };
    let bound = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_owned());
    if bound.is_none() || bound.as_deref() != field(&form, "csrf") {
        return Err(ConsoleError::Csrf);
    }
    let name = field(&form, "name")
        .map(str::trim)
        .filter(|n| (1..=64).contains(&n.len()));
    let role = field(&form, "role").and_then(UserRole::parse);
    let (Some(name), Some(role)) = (name, role) else {
        return Err(ConsoleError::SignInFailed("name_and_role"));
    };
    // Exactly what `token dev` does, checked as every token is: the same issuer, roles and
    // systems rules.
    let token = crate::platform::auth::mint_dev_token(issuer, &console.audience, name, &[role], 300)
        .map_err(|_| ConsoleError::SignInFailed("dev_issuer"))?;
    let system = console
        .settings
        .systems
        .iter()
        .find(|s| issuer.systems.contains(s))
        .ok_or(ConsoleError::Forbidden)?;
    let user = state
        .auth
        .authenticate(Some(&format!("Bearer {token}")), system)
        .map_err(|e| ConsoleError::SignInFailed(e.code()))?;
    signed_in(&console, &user, name).await
}

async fn signed_in(
    console: &Console,
    user: &crate::platform::auth::User,
    name: &str,
) -> Result<HttpResponse, ConsoleError> {
    let cookie = session::start(console, user, name).await?;
    // A page that moves on by itself: the session cookie (SameSite=Strict) is sent with the next
    // request, which starts here, not at the identity provider.
    let mut response = respond(layout::bare_with(
        "Signed in",
        html! {
            meta http-equiv="refresh" content="0;url=/";
            p { a href="/" { "Continue" } }
        },
    ));
    let _ = response.add_cookie(&cookie);
    let _ = response.add_removal_cookie(&session::removal(LOGIN_COOKIE));
    Ok(response)
}

async fn oidc_start(console: web::Data<Console>, n: web::Path<usize>) -> Result<HttpResponse, ConsoleError> {
    let (url, sealed) = console.oidc.start(n.into_inner()).await?;
    let mut cookie = session::cookie(LOGIN_COOKIE, sealed);
    cookie.set_same_site(actix_web::cookie::SameSite::Lax);
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url))
        .cookie(cookie)
        .finish())
}

#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn oidc_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    q: web::Query<Callback>,
) -> Result<HttpResponse, ConsoleError> {
    if q.error.is_some() {
        return Err(ConsoleError::SignInFailed("refused_by_provider"));
    }
    let (Some(code), Some(returned)) = (&q.code, &q.state) else {
        return Err(ConsoleError::SignInFailed("no_code"));
    };
    // The provider's answer must come back to the browser that asked: its pre-login cookie holds
    // the sealed sign-in, whose state must be the one returned.
    let bound = req
        .cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or(ConsoleError::SignInFailed("state"))?;
    let signed = console.oidc.finish(&bound, returned, code).await?;
    let user = state
        .auth
        .user_from_id_token(&signed.issuer, &signed.claims)
        .map_err(|e| ConsoleError::SignInFailed(e.code()))?;
    let name = signed
        .claims
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(&user.sub)
        .to_owned();
    signed_in(&console, &user, &name).await
}

async fn sign_out(who: Signed, console: web::Data<Console>, form: Fields) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    who.end(&console).await?;
    tracing::info!(user = ?who.user.sub, "console: signed out");
    let mut response = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/sign-in?ended=1"))
        .finish();
    let _ = response.add_removal_cookie(&session::removal(session::COOKIE));
    Ok(response)
}
