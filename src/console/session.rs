//! Signed-in sessions: a random id in a `__Host-` cookie (`HttpOnly; Secure; SameSite=Strict`),
//! its SHA-256 in the session table, an idle limit and an absolute limit, and a CSRF token that
//! every form carries.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use jiff::{SignedDuration, Timestamp};

use super::{Console, ConsoleError};
use crate::ledger::StoredSession;
use crate::platform::auth::{User, UserRole};
use crate::platform::clock::WallClock;
use crate::policy::decision::sha256_hex;

pub const COOKIE: &str = "__Host-isa-session";

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator; without it nothing here is safe, so stop.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random generator answers");
    hex::encode(bytes)
}

/// A cookie only this origin, over HTTPS, sends back, never to scripts, never cross-site.
pub fn cookie(name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

/// The same cookie, expired.
pub fn removal(name: &'static str) -> Cookie<'static> {
    let mut c = cookie(name, String::new());
    c.make_removal();
    c
}

/// The signed-in person on this request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: User,
    pub name: String,
    pub csrf: String,
    id_sha256: String,
}

impl Signed {
    pub fn has(&self, role: UserRole) -> bool {
        self.user.has(role)
    }

    /// The form's CSRF token must be this session's (compared by digest: constant in time).
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), ConsoleError> {
        match sent {
            Some(t) if sha256_hex(t.as_bytes()) == sha256_hex(self.csrf.as_bytes()) => Ok(()),
            _ => {
                tracing::warn!(user = ?self.user.sub, "console: a form without this session's CSRF token was refused");
                Err(ConsoleError::Csrf)
            }
        }
    }

    pub async fn end(&self, console: &Console) -> Result<(), ConsoleError> {
        Ok(console.sessions.remove(&self.id_sha256).await?)
    }
}

/// Starts a session for `user`; returns the cookie to set.
pub async fn start(console: &Console, user: &User, name: &str) -> Result<Cookie<'static>, ConsoleError> {
    let id = random_token();
    let now = WallClock::now();
    let stored = StoredSession {
        issuer: user.issuer.clone(),
        sub: user.sub.clone(),
        name: name.chars().take(80).collect(),
        roles: user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" "),
        csrf: random_token(),
        created: now,
        seen: now,
    };
    console.sessions.put(&sha256_hex(id.as_bytes()), &stored).await?;
    tracing::info!(issuer = ?user.issuer, user = ?user.sub, "console: signed in");
    Ok(cookie(COOKIE, id))
}

fn expired(s: &StoredSession, now: Timestamp, console: &Console) -> bool {
    let (idle, absolute) = (console.settings.idle(), console.settings.absolute());
    now.duration_since(s.seen) > idle || now.duration_since(s.created) > absolute
}

impl FromRequest for Signed {
    type Error = ConsoleError;
    type Future = LocalBoxFuture<'static, Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let console = req.app_data::<web::Data<Console>>().cloned();
        let id = req.cookie(COOKIE).map(|c| c.value().to_owned());
        Box::pin(async move {
            let (Some(console), Some(id)) = (console, id) else {
                return Err(ConsoleError::SignIn);
            };
            let id_sha256 = sha256_hex(id.as_bytes());
            let Some(stored) = console.sessions.get(&id_sha256).await? else {
                return Err(ConsoleError::SignIn);
            };
            let now = WallClock::now();
            if expired(&stored, now, &console) {
                console.sessions.remove(&id_sha256).await?;
                return Err(ConsoleError::SignIn);
            }
            // One write a minute at most per session (sooner with a short idle limit), not one
            // per page.
            let every = (console.settings.idle() / 4).min(SignedDuration::from_secs(60));
            if now.duration_since(stored.seen) >= every {
                console.sessions.touch(&id_sha256, now).await?;
            }
            Ok(Signed {
                user: User {
                    issuer: stored.issuer,
                    sub: stored.sub,
                    roles: stored.roles.split(' ').filter_map(UserRole::parse).collect(),
                },
                name: stored.name,
                csrf: stored.csrf,
                id_sha256,
            })
        })
    }
}
