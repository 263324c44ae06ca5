//! `[console]` in the configuration, and each issuer's `[auth.issuers.oidc]` sign-in client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[console]`: off unless configured (on in the development profile).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Where people connect (HTTPS, no client certificate).
    pub listen: SocketAddr,
    /// The registered systems the console acts through: for each action, the first with the
    /// role it needs (sender, auditor, dpo) whose users' issuer is trusted for it.
    pub systems: Vec<String>,
    /// Development only: sign in by picking a name and a role. Production refuses it.
    #[serde(default)]
    pub dev_sign_in: bool,
    /// A session unused this long ends (default 15 minutes).
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in, however busy (default 8 hours).
    #[serde(default = "default_absolute")]
    pub absolute_timeout_secs: u64,
    /// Each signed-in person's request rate (sustained per second, and burst): their own, not
    /// a share of the rate of the system the console acts through (default 5 and 30).
    #[serde(default = "default_person_rate")]
    pub requests_per_sec_per_person: u32,
    #[serde(default = "default_person_burst")]
    pub request_burst_per_person: u32,
    /// The console's own certificate and key; default the gateway's server certificate.
    #[serde(default)]
    pub server_cert: Option<PathBuf>,
    #[serde(default)]
    pub server_key: Option<PathBuf>,
}

fn default_idle() -> u64 {
    15 * 60
}

fn default_absolute() -> u64 {
    8 * 60 * 60
}

fn default_person_rate() -> u32 {
    5
}

fn default_person_burst() -> u32 {
    30
}

/// `[auth.issuers.oidc]`: the console's client at that identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcClientSettings {
    /// What the sign-in button says ("NHS Care Identity", "Council staff").
    pub label: String,
    pub client_id: String,
    /// The client secret, in a file (0600).
    pub client_secret_file: PathBuf,
    /// This console's `/auth/callback` as the provider knows it.
    pub redirect_url: String,
}

impl ConsoleSettings {
    /// How long a session may go unused.
    pub fn idle(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(i64::try_from(self.idle_timeout_secs).unwrap_or(i64::MAX))
    }

    /// How long a session may last in all.
    pub fn absolute(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(i64::try_from(self.absolute_timeout_secs).unwrap_or(i64::MAX))
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.server_cert, &mut self.server_key].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// What makes this console unusable, in words an operator can act on.
    pub fn problems(&self, config: &crate::app::config::Config) -> Vec<String> {
        let mut problems = Vec::new();
        if self.systems.is_empty() {
            problems.push("console.systems names no system for the console to act through".to_owned());
        }
        for id in self
            .systems
            .iter()
            .filter(|id| !config.systems.iter().any(|s| &s.id == *id))
        {
            problems.push(format!("console.systems names {id:?}, which is not registered"));
        }
        if self.server_cert.is_some() != self.server_key.is_some() {
            problems.push("console.server_cert and console.server_key go together".to_owned());
        }
        if self.requests_per_sec_per_person == 0 || self.request_burst_per_person == 0 {
            problems
                .push("console.requests_per_sec_per_person and request_burst_per_person must be positive".to_owned());
        }
        if self.idle_timeout_secs == 0 || self.idle_timeout_secs > self.absolute_timeout_secs {
            problems.push("console.idle_timeout_secs must be positive and at most absolute_timeout_secs".to_owned());
        }
        problems
    }

    /// What stops a production start.
    pub fn production_problems(&self, config: &crate::app::config::Config) -> Vec<String> {
        let mut problems = Vec::new();
        if self.dev_sign_in {
            problems.push("console.dev_sign_in is on: anyone could sign in as anyone".to_owned());
        }
        for i in config.auth.issuers.iter().filter(|i| i.oidc.is_some()) {
            if !i.issuer.starts_with("https://") {
                problems.push(format!("sign-in issuer {:?} is not https", i.issuer));
            }
        }
        problems
    }
}
