//! Gateway configuration: a TOML file, then environment overrides, then command-line flags.
//!
//! Every setting can be overridden from the environment as `ISA_GATEWAY__<KEY>`, nested keys
//! joined by a double underscore (`ISA_GATEWAY__TLS__SERVER_KEY=/run/secrets/server.key`). Arrays
//! of tables take an inline value (`ISA_GATEWAY__SYSTEMS='[{id="a", identity="urn:…", roles=["sender"]}]'`).
//! Unknown keys are refused wherever they come from. Relative paths are resolved against the
//! directory of the configuration file, so the gateway behaves the same from any working directory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use super::delivery_settings::{DeliveryPolicy, DeliverySettings};
pub use super::limits::Limits;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use crate::policy::ids::is_slug;

/// The environment prefix for overrides.
pub const ENV_PREFIX: &str = "ISA_GATEWAY__";
/// The configuration file used when none is named: the development profile checked in at the
/// top of the repository.
pub const DEFAULT_CONFIG_FILE: &str = "gateway.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Creates missing development certificates and says so loudly.
    Development,
    /// Refuses to start with generated or missing material.
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub profile: Profile,
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative to the configuration file) or `postgres://…`.
    pub database_url: String,
    pub agreements_dir: PathBuf,
    pub schemas_dir: PathBuf,
    /// Pseudonymisation and index keys (see `keys`); secrets, kept 0600.
    pub keys_dir: PathBuf,
    pub tls: TlsSettings,
    #[serde(default)]
    pub limits: Limits,
    pub systems: Vec<SystemConfig>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// Users: trusted token issuers, audience, roles claim.
    pub auth: crate::platform::auth::AuthSettings,
    #[serde(default)]
    pub ledger: LedgerSettings,
    /// This gateway's name, in delivery events, outbox claims, `/readyz` and logs, so that an
    /// operator of several gateways on one ledger can tell which sent what. Unique among the
    /// gateways on one ledger, and the same across restarts. Default: the host name and the
    /// configured listen port (set it when several gateways on one host listen on port 0).
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// The console for people (a second listener), if configured.
    #[serde(default)]
    pub console: Option<crate::console::ConsoleSettings>,
}

/// Signed checkpoints over the ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// Sign a checkpoint once this many entries were added since the last…
    pub checkpoint_every_entries: u64,
    /// …or once this long has passed with any new entry.
    pub checkpoint_every_secs: u64,
    /// A folder outside the database where every signed checkpoint is also written (C2SP signed
    /// notes); the gateway refuses to start, sign or export if the ledger does not extend the
    /// latest one there. Put it where whoever can write the database cannot.
    pub checkpoint_log: Option<PathBuf>,
    /// The checkpoints' origin line: this ledger's name for auditors and witnesses.
    pub origin: String,
    /// Witnesses whose cosignatures the gateway accepts (`POST /v1/ledger/cosignatures`) and
    /// serves with its checkpoints: each a C2SP verifier key of type cosignature/v1,
    /// `<name>+<key id>+<base64>`, as `isa-gateway witness init` prints it.
    pub witnesses: Vec<String>,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            checkpoint_every_entries: 1000,
            checkpoint_every_secs: 300,
            checkpoint_log: None,
            origin: "isa-gateway".to_owned(),
            witnesses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The gateway's server certificate chain (PEM).
    pub server_cert: PathBuf,
    /// The server certificate's private key (PEM). A secret: keep it 0600.
    pub server_key: PathBuf,
    /// The CA bundle (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM) from those CAs. Production requires at least one.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// How often the CRL files are checked for a new version (also reread on SIGHUP).
    #[serde(default = "default_crl_reload_secs")]
    pub crl_reload_secs: u64,
}

fn default_crl_reload_secs() -> u64 {
    60
}

/// A calling system (a case-management system, an audit tool), known by its client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// The name agreements use for this system.
    pub id: String,
    /// The `uniformResourceIdentifier` subject alternative name its client certificate carries,
    /// e.g. `urn:isa-gateway:system:tt-case-system`. See ARCHITECTURE.md, "Who is calling".
    pub identity: String,
    pub roles: Vec<SystemRole>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemRole {
    /// May send transfers under agreements that name it.
    Sender,
    /// May list transfers under any agreement.
    Auditor,
    /// The data protection officer's system: the only one through which subject access requests
    /// are answered.
    Dpo,
    /// Monitoring (Prometheus): `/metrics` and `/readyz`, which show volumes per agreement and
    /// destination; no user token needed, nothing else allowed.
    Monitor,
}

/// Where transfers go once permitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum DestinationConfig {
    /// A drop folder: each transfer becomes one file, written then renamed into place.
    Dir {
        id: String,
        path: PathBuf,
        #[serde(default)]
        delivery: DeliveryPolicy,
    },
    /// An HTTPS endpoint that requires the gateway's client certificate.
    Https {
        id: String,
        url: String,
        /// The only CA trusted for this destination's server certificate.
        ca: PathBuf,
        /// The gateway's client certificate for this destination.
        client_cert: PathBuf,
        /// Its private key. A secret: keep it 0600.
        client_key: PathBuf,
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
        #[serde(default)]
        delivery: DeliveryPolicy,
    },
    /// NHS MESH (API v2): the gateway's own mailbox sends to the recipient's mailbox.
    Mesh {
        id: String,
        /// The MESH base URL, e.g. `https://mesh-sync.spineservices.nhs.uk`.
        url: String,
        /// The gateway's mailbox id (upper case).
        mailbox: String,
        /// The recipient's mailbox id.
        to: String,
        workflow_id: String,
        /// File holding the mailbox password. A secret: keep it 0600.
        password_file: PathBuf,
        /// File holding the MESH environment's shared key (HMAC secret). A secret: keep it 0600.
        shared_key_file: PathBuf,
        /// The only CA trusted for the MESH server.
        ca: PathBuf,
        /// The gateway's MESH client certificate and key (issued per environment).
        client_cert: PathBuf,
        client_key: PathBuf,
        /// Messages larger than this are sent in chunks, in order.
        #[serde(default = "default_chunk_size")]
        chunk_size: usize,
        /// Gzip the message (each chunk) before sending.
        #[serde(default)]
        compress: bool,
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
        /// How often the gateway reads its own inbox for reports (MESH asks for at most every 5 minutes).
        #[serde(default = "default_inbox_poll_ms")]
        inbox_poll_ms: u64,
        /// Messages listed per inbox page (MESH allows 10 to 5000); every page is read.
        #[serde(default = "default_inbox_page_size")]
        inbox_page_size: u32,
        /// Where data messages partners send to the gateway's own mailbox are put, unread (files
        /// 0600, one per message id), before they are acknowledged: the gateway receives nothing,
        /// but nothing is left to starve its reports either.
        #[serde(default = "default_quarantine")]
        quarantine: PathBuf,
        #[serde(default)]
        delivery: DeliveryPolicy,
    },
}

fn default_chunk_size() -> usize {
    20_000_000
}

fn default_inbox_page_size() -> u32 {
    500
}

fn default_quarantine() -> PathBuf {
    PathBuf::from("var/mesh-quarantine")
}

fn default_inbox_poll_ms() -> u64 {
    300_000
}

fn default_timeout_secs() -> u64 {
    30
}

impl DestinationConfig {
    pub fn id(&self) -> &str {
        match self {
            Self::Dir { id, .. } | Self::Https { id, .. } | Self::Mesh { id, .. } => id,
        }
    }

    /// How long a claimed attempt is this gateway's alone: longer than the transport can take, so
    /// that no other gateway sends the same transfer while this one still may be.
    pub fn lease(&self) -> std::time::Duration {
        let secs = match self {
            Self::Dir { .. } => 60,
            Self::Https { timeout_secs, .. } => timeout_secs.saturating_mul(2).saturating_add(30),
            // Chunked sends make several requests, each with the timeout.
            Self::Mesh { timeout_secs, .. } => timeout_secs.saturating_mul(4).saturating_add(60),
        };
        std::time::Duration::from_secs(secs)
    }

    pub fn policy(&self) -> &DeliveryPolicy {
        match self {
            Self::Dir { delivery, .. } | Self::Https { delivery, .. } | Self::Mesh { delivery, .. } => delivery,
        }
    }

    /// The files the transport reads: CA, client certificate and key, MESH secrets.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Self::Dir { .. } => Vec::new(),
            Self::Https {
                ca,
                client_cert,
                client_key,
                ..
            } => vec![ca, client_cert, client_key],
            Self::Mesh {
                ca,
                client_cert,
                client_key,
                password_file,
                shared_key_file,
                ..
            } => vec![ca, client_cert, client_key, password_file, shared_key_file],
        }
        .into_iter()
        .map(PathBuf::as_path)
        .collect()
    }

    /// Every path in the destination (its files, and a drop folder), to resolve.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Self::Dir { path, .. } => vec![path],
            Self::Https {
                ca,
                client_cert,
                client_key,
                ..
            } => vec![ca, client_cert, client_key],
            Self::Mesh {
                ca,
                client_cert,
                client_key,
                password_file,
                shared_key_file,
                quarantine,
                ..
            } => vec![ca, client_cert, client_key, password_file, shared_key_file, quarantine],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} not found")]
    NotFound(PathBuf),
    #[error("{0}")]
    Parse(Box<figment::Error>),
    #[error("{file}: {problems}", problems = .problems.join("; "))]
    Invalid { file: PathBuf, problems: Vec<String> },
}

/// Settings given on the command line, applied last.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Loads `path`, applies the environment and `overrides`, resolves relative paths and checks
    /// the whole configuration, reporting every problem at once.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(path, overrides, Env::prefixed(ENV_PREFIX).split("__"))
    }

    fn load_with_env(path: &Path, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound(path.to_path_buf()));
        }
        let mut config: Config = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                problems,
            })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut self.agreements_dir);
        rebase(&mut self.schemas_dir);
        rebase(&mut self.keys_dir);
        if let Some(log) = &mut self.ledger.checkpoint_log {
            rebase(log);
        }
        for i in &mut self.auth.issuers {
            for p in [&mut i.public_key, &mut i.jwks, &mut i.dev_signing_key]
                .into_iter()
                .flatten()
                .chain(i.oidc.as_mut().map(|o| &mut o.client_secret_file))
            {
                rebase(p);
            }
        }
        if let Some(console) = &mut self.console {
            console.resolve_paths(base);
        }
        rebase(&mut self.tls.server_cert);
        rebase(&mut self.tls.server_key);
        rebase(&mut self.tls.client_ca);
        self.tls.crls.iter_mut().for_each(rebase);
        for d in &mut self.destinations {
            d.paths_mut().into_iter().for_each(rebase);
        }
        if let Some(rest) = self.database_url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(":memory:")
        {
            self.database_url = format!("sqlite://{}", base.join(rest).display());
        }
    }

    /// Problems that make the configuration unusable, in words an operator can act on.
    /// The configured gateway id, or the host name and the configured listen port: the same
    /// across restarts, which lets a restarted gateway release the claims it held.
    pub fn gateway_id(&self) -> String {
        let port = self.listen.port();
        self.gateway_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| is_gateway_id(h))
                .unwrap_or_else(|| "gateway".to_owned());
            format!("{host}:{port}")
        })
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.gateway_id.as_deref().is_some_and(|id| !is_gateway_id(id)) {
            problems.push("gateway_id must be 1 to 64 characters: letters, digits and . _ : -".to_owned());
        }
        if !crate::ledger::cosignature::is_key_name(&self.ledger.origin) {
            problems
                .push("ledger.origin must be non-empty, without spaces or '+' (a signed note's key name)".to_owned());
        }
        let mut witness_keys: Vec<crate::ledger::cosignature::Witness> = Vec::new();
        for w in &self.ledger.witnesses {
            match crate::ledger::cosignature::Witness::parse(w) {
                // One key under two names would count one witness twice.
                Ok(w) if witness_keys.iter().any(|o| o.public == w.public || o.name == w.name) => {
                    problems.push(format!(
                        "ledger.witnesses: {:?} repeats a witness's key or name: each witness once",
                        w.name
                    ))
                }
                Ok(w) => witness_keys.push(w),
                Err(e) => problems.push(format!(
                    "ledger.witnesses: {:?}: {e}",
                    w.chars().take(80).collect::<String>()
                )),
            }
        }
        for i in &self.auth.issuers {
            if i.roles.is_empty() {
                problems.push(format!("issuer {:?} grants no role (auth.issuers.roles)", i.issuer));
            }
            if i.systems.is_empty() {
                problems.push(format!("issuer {:?} names no system its users act through", i.issuer));
            }
            for system in i.systems.iter().filter(|s| !self.systems.iter().any(|r| &r.id == *s)) {
                problems.push(format!(
                    "issuer {:?} names system {system:?}, which is not registered",
                    i.issuer
                ));
            }
        }
        if self.limits.requests_per_sec == 0 || self.limits.request_burst == 0 {
            problems.push("limits.requests_per_sec and limits.request_burst must be positive".to_owned());
        }
        if self.systems.is_empty() {
            problems.push("no [[systems]] registered: nobody could call the gateway".to_owned());
        }
        let mut ids = HashSet::new();
        let mut identities = HashSet::new();
        for s in &self.systems {
            if !is_slug(&s.id) {
                problems.push(format!(
                    "system id {:?} must be lower-case letters, digits and '-'",
                    s.id
                ));
            }
            if !ids.insert(&s.id) {
                problems.push(format!("system id {:?} is registered twice", s.id));
            }
            if !identities.insert(&s.identity) {
                problems.push(format!("identity {:?} is registered for two systems", s.identity));
            }
            if !s.identity.contains(':') {
                problems.push(format!(
                    "system {:?}: identity must be a URI (e.g. urn:isa-gateway:system:{})",
                    s.id, s.id
                ));
            }
            if s.roles.is_empty() {
                problems.push(format!("system {:?} has no roles", s.id));
            }
        }
        let mut dest_ids = HashSet::new();
        for d in &self.destinations {
            if !dest_ids.insert(d.id()) {
                problems.push(format!("destination id {:?} is defined twice", d.id()));
            }
            let p = d.policy();
            if p.max_attempts == 0 || p.concurrency == 0 || p.breaker_threshold == 0 {
                problems.push(format!(
                    "destination {:?}: delivery.max_attempts, concurrency and breaker_threshold must be positive",
                    d.id()
                ));
            }
            if p.backoff_initial_ms == 0 || p.backoff_initial_ms > p.backoff_max_ms {
                problems.push(format!(
                    "destination {:?}: delivery backoff must satisfy 0 < initial <= max",
                    d.id()
                ));
            }
            match d {
                DestinationConfig::Https {
                    id, url, timeout_secs, ..
                }
                | DestinationConfig::Mesh {
                    id, url, timeout_secs, ..
                } => {
                    if !url.starts_with("https://") {
                        problems.push(format!("destination {id:?}: url must start with https://"));
                    }
                    if *timeout_secs == 0 {
                        problems.push(format!("destination {id:?}: timeout_secs must be positive"));
                    }
                }
                DestinationConfig::Dir { .. } => {}
            }
            if let DestinationConfig::Mesh {
                id,
                mailbox,
                to,
                chunk_size,
                inbox_page_size,
                ..
            } = d
            {
                for (what, m) in [("mailbox", mailbox), ("to", to)] {
                    if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                        problems.push(format!(
                            "destination {id:?}: {what} must be an upper-case MESH mailbox id"
                        ));
                    }
                }
                if *chunk_size < 512 {
                    problems.push(format!("destination {id:?}: chunk_size must be at least 512 bytes"));
                }
                if !(10..=5000).contains(inbox_page_size) {
                    problems.push(format!("destination {id:?}: inbox_page_size must be 10 to 5000"));
                }
            }
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            problems.push("database_url must start with sqlite:// or postgres://".to_owned());
        }
        if self.limits.body_read_secs == 0 {
            problems.push("limits.body_read_secs must be positive".to_owned());
        }
        if self.limits.max_body_bytes == 0 {
            problems.push("limits.max_body_bytes must be positive".to_owned());
        }
        problems.extend(self.console.iter().flat_map(|c| c.problems(self)));
        problems
    }

    pub fn destination(&self, id: &str) -> Option<&DestinationConfig> {
        self.destinations.iter().find(|d| d.id() == id)
    }

    /// Every file the token issuers' keys are read from.
    pub fn auth_files(&self) -> Vec<&Path> {
        self.auth
            .issuers
            .iter()
            .flat_map(|i| [&i.public_key, &i.jwks, &i.dev_signing_key])
            .filter_map(|p| p.as_deref())
            .collect()
    }

    /// Every file the TLS set-up reads, for start-up checks.
    pub fn tls_files(&self) -> Vec<&Path> {
        let mut files = vec![
            self.tls.server_cert.as_path(),
            self.tls.server_key.as_path(),
            self.tls.client_ca.as_path(),
        ];
        files.extend(self.tls.crls.iter().map(PathBuf::as_path));
        files
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

fn is_gateway_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
