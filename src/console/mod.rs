//! The console: the gateway for the people who use it, in a browser. A second listener beside the
//! API (HTTPS, no client certificate; people sign in with the organisation's identity provider),
//! in the same process, calling the same application functions as the API's handlers
//! (`api::transfers::submit_as`, `api::follow_ups::judge`, `api::subject_access`, …): no HTTP
//! call to itself, no second copy of a rule.
//!
//! Pages are server-rendered with maud (checked at compile time); the one stylesheet is embedded;
//! no script at all, so the Content-Security-Policy allows none. Sessions live in a table beside
//! the ledger (`ledger::SessionStore`); every form carries the session's CSRF token; cookies are
//! `__Host-`, `HttpOnly; Secure; SameSite=Strict`. No patient data goes into a URL, a page title or
//! a log line: the referral form and the DPO's lookup are POSTs.

mod error;
mod form;
mod oidc;
mod pages;
mod session;
mod settings;

use actix_web::{App, HttpServer, web};

pub use self::error::ConsoleError;
pub use self::settings::{ConsoleSettings, OidcClientSettings};
use crate::api::AppState;
use crate::app::config::{Config, SystemConfig, SystemRole};
use crate::platform::auth::User;

/// What the console's pages share, beside the API's [`AppState`].
pub struct Console {
    pub settings: ConsoleSettings,
    sessions: crate::ledger::SessionStore,
    oidc: oidc::Providers,
    /// The development issuer the development sign-in mints tokens from (development only).
    dev_issuer: Option<crate::platform::auth::IssuerConfig>,
    audience: String,
    /// Each person's own request rate, keyed by issuer and subject (console review F4: people
    /// no longer spend the acting system's rate, which belongs to its real API client).
    people: crate::platform::rate_limit::RateLimits,
    /// The last "verify now" run from the console, and the lock that lets one run at a time.
    last_verify: tokio::sync::Mutex<Option<pages::VerifyRun>>,
    verifying: tokio::sync::Mutex<()>,
}

impl Console {
    /// Fails, saying why, when a sign-in issuer's URLs or client secret are unusable.
    pub fn new(
        config: &Config,
        settings: ConsoleSettings,
        sessions: crate::ledger::SessionStore,
    ) -> Result<Self, String> {
        let dev_issuer = (settings.dev_sign_in && config.profile == crate::app::config::Profile::Development)
            .then(|| {
                config
                    .auth
                    .issuers
                    .iter()
                    .find(|i| i.dev_signing_key.is_some())
                    .cloned()
            })
            .flatten();
        Ok(Self {
            oidc: oidc::Providers::new(&config.auth.issuers)?,
            people: crate::platform::rate_limit::RateLimits::new(
                settings.requests_per_sec_per_person,
                settings.request_burst_per_person,
            ),
            last_verify: tokio::sync::Mutex::new(None),
            verifying: tokio::sync::Mutex::new(()),
            settings,
            sessions,
            dev_issuer,
            audience: config.auth.audience.clone(),
        })
    }

    /// The registered system the console acts through for `role`: the first of its systems that
    /// has the role, that `permits` accepts (an agreement's sending systems, say), and that the
    /// user's issuer is trusted for. Within the person's own request rate.
    fn system_for<'a>(
        &self,
        state: &'a AppState,
        user: &User,
        role: SystemRole,
        permits: impl Fn(&SystemConfig) -> bool,
    ) -> Result<&'a SystemConfig, ConsoleError> {
        let system = self
            .settings
            .systems
            .iter()
            .filter_map(|id| state.systems.by_id(id))
            .find(|s| crate::api::has_role(s, role) && permits(s) && state.auth.issuer_may_use(&user.issuer, &s.id))
            .ok_or(ConsoleError::Forbidden)?;
        self.within_rate(user)?;
        Ok(system)
    }
}

impl Console {
    /// Every registered system the console may act through for `role` on this person's behalf
    /// (their issuer trusted for it), for pages that list what those systems' people must do:
    /// the same scope as the API's lists, which show a system its own. Within the person's rate.
    fn within_rate(&self, user: &User) -> Result<(), ConsoleError> {
        self.people
            .check(&format!("{}\n{}", user.issuer, user.sub))
            .map_err(|_| ConsoleError::Busy)
    }

    fn systems_for<'a>(
        &self,
        state: &'a AppState,
        user: &User,
        role: SystemRole,
    ) -> Result<Vec<&'a SystemConfig>, ConsoleError> {
        self.within_rate(user)?;
        Ok(self
            .settings
            .systems
            .iter()
            .filter_map(|id| state.systems.by_id(id))
            .filter(|s| crate::api::has_role(s, role) && state.auth.issuer_may_use(&user.issuer, &s.id))
            .collect())
    }
}

/// Binds the console's listener: HTTPS with the gateway's server certificate (or the console's
/// own), no client certificate.
pub fn server(
    config: &Config,
    settings: &ConsoleSettings,
    state: web::Data<AppState>,
    console: web::Data<Console>,
) -> Result<(std::net::SocketAddr, actix_web::dev::Server), crate::app::startup::StartupError> {
    use crate::app::startup::StartupError;
    let tls = crate::platform::tls::console_server_config(
        settings.server_cert.as_deref().unwrap_or(&config.tls.server_cert),
        settings.server_key.as_deref().unwrap_or(&config.tls.server_key),
    )?;
    let listener = std::net::TcpListener::bind(settings.listen).map_err(|e| StartupError::Bind(settings.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartupError::Bind(settings.listen, e))?;
    let max_form = config.limits.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(console.clone())
            .app_data(web::FormConfig::default().limit(max_form))
            .wrap(pages::headers())
            .configure(pages::routes)
    })
    .workers(1)
    .listen_rustls_0_23(listener, tls)
    .map_err(|e| StartupError::Bind(addr, e))?
    .run();
    Ok((addr, server))
}

/// Ends sessions idle or old past their limits, every minute.
pub async fn expire_sessions(console: web::Data<Console>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = crate::platform::clock::WallClock::now();
        let s = &console.settings;
        if let Err(e) = console.sessions.expire(now - s.idle(), now - s.absolute()).await {
            tracing::warn!(error = %e, "console sessions could not be expired; will try again");
        }
        console.people.forget_idle();
    }
}
