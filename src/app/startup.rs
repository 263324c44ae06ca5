//! Building the running gateway from a checked configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::api::{self, AppState, Systems};
use crate::app::catalogue::{load_agreements, load_keys};
use crate::app::config::{Config, Profile};
use crate::app::keystore::{KeyError, KeyStore};
use crate::audit::checkpointer::Checkpointer;
use crate::delivery::transport::Transports;
use crate::delivery::{Delivery, WorkerSettings};
use crate::ledger::{self, Ledger, LedgerError};
use crate::platform::clock::Clock;
use crate::platform::metrics::Metrics;
use crate::platform::tls::{self, TlsError};
use crate::policy::agreement::Problem;
use crate::policy::decision::Catalogue;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{} problem(s) in agreements or schemas:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Catalogue(Vec<Problem>),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("destination {0}: {1}")]
    Destination(String, TlsError),
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    #[error("the built-in envelope schema does not compile: {0}")]
    Envelope(String),
    #[error("auth: {0}")]
    Auth(#[from] crate::platform::auth::AuthConfigError),
    #[error("{}", crate::app::production::refusal(.0))]
    Production(Vec<String>),
    #[error("console: {0}")]
    Console(String),
    #[error("subject-index keys: {0}")]
    Seeds(#[from] crate::app::fingerprints::SeedError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The folder outside the database where signed checkpoints are also kept, if configured.
pub fn checkpoint_log(config: &Config) -> Option<crate::audit::checkpoint_log::CheckpointLog> {
    config
        .ledger
        .checkpoint_log
        .as_deref()
        .map(|dir| crate::audit::checkpoint_log::CheckpointLog::new(dir, &config.ledger.origin))
}

/// The checkpoints' origin, their log outside the database, and the witnesses who cosign them.
pub fn publication(config: &Config) -> crate::audit::checkpointer::Publication {
    crate::audit::checkpointer::Publication {
        origin: config.ledger.origin.clone(),
        log: checkpoint_log(config),
        // Each was parsed when the configuration was checked; one that does not parse was refused there.
        witnesses: config
            .ledger
            .witnesses
            .iter()
            .filter_map(|w| crate::ledger::cosignature::Witness::parse(w).ok())
            .collect(),
    }
}

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    /// The console's listener, server and shared state, when configured.
    console: Option<(SocketAddr, actix_web::dev::Server, web::Data<crate::console::Console>)>,
    ledger: Arc<dyn Ledger>,
    delivery: Arc<Delivery>,
    checkpointer: Arc<Checkpointer>,
    verifier: Arc<tls::ClientVerifier>,
    crl_reload: Duration,
    /// The handlers' state, for the hourly retention run.
    retention: web::Data<AppState>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Clock::System).await
    }

    /// Loads everything, binds the listener (port 0 picks a free port), and returns a server
    /// ready to run. Fails, saying why, before accepting any connection.
    pub async fn build_with_clock(config: Config, clock: Clock) -> Result<Self, StartupError> {
        tls::install_default_provider();
        if config.profile == Profile::Production {
            let problems = crate::app::production::production_problems(&config);
            if !problems.is_empty() {
                return Err(StartupError::Production(problems));
            }
        }
        let (agreements, schemas) = load_agreements(&config).map_err(StartupError::Catalogue)?;
        let keys = load_keys(&config, &agreements, clock.now())?;
        let catalogue = Catalogue::new(agreements, schemas, keys).map_err(StartupError::Envelope)?;
        let transports = Transports::build(&config.destinations).map_err(|(id, e)| StartupError::Destination(id, e))?;
        let verifier = tls::ClientVerifier::new(&config.tls)?;
        let tls = tls::server_config(&config.tls, verifier.clone())?;
        let crl_reload = Duration::from_secs(config.tls.crl_reload_secs.max(1));
        let ledger = ledger::open(&config.database_url).await?;
        ledger.warm().await?;
        crate::app::fingerprints::check(
            ledger.as_ref(),
            catalogue.keys.subject(),
            &config.gateway_id(),
            clock.now(),
        )
        .await?;
        let listener = std::net::TcpListener::bind(config.listen).map_err(|e| StartupError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(config.listen, e))?;
        let auth = crate::platform::auth::Authenticator::from_settings(&config.auth)?;
        let (checkpoint_key, created) =
            KeyStore::new(&config.keys_dir).checkpoint_key(config.profile == Profile::Development)?;
        if created {
            tracing::warn!(dir = %config.keys_dir.display(), "created a development checkpoint signing key");
        }
        let checkpointer = Arc::new(
            Checkpointer::new(
                ledger.clone(),
                checkpoint_key,
                clock.clone(),
                config.ledger.checkpoint_every_entries.max(1),
                Duration::from_secs(config.ledger.checkpoint_every_secs.max(1)),
                publication(&config),
            )
            .await?,
        );
        let metrics = Arc::new(Metrics::default());
        let delivery = Arc::new(Delivery::new(
            transports,
            &config.destinations,
            ledger.clone(),
            clock.clone(),
            WorkerSettings {
                poll: Duration::from_millis(config.delivery.poll_interval_ms),
                gateway_id: config.gateway_id(),
                held_expiry: Duration::from_secs(config.delivery.held_expiry_secs),
                dead_letter_expiry: Duration::from_secs(config.delivery.dead_letter_expiry_secs),
                expiry_every: Duration::from_millis(config.delivery.expiry_interval_ms.max(1)),
            },
            metrics.clone(),
            &catalogue.agreements,
        ));
        let state = web::Data::new(AppState {
            catalogue,
            systems: Systems::new(&config.systems),
            delivery: delivery.clone(),
            ledger: ledger.clone(),
            clock,
            keys: KeyStore::new(&config.keys_dir),
            limits: config.limits.clone(),
            metrics,
            auth,
            checkpointer: checkpointer.clone(),
            rates: crate::platform::rate_limit::RateLimits::new(
                config.limits.requests_per_sec,
                config.limits.request_burst,
            ),
            tls: verifier.clone(),
        });
        let console = match &config.console {
            Some(settings) => {
                let c = crate::console::Console::new(&config, settings.clone(), ledger.sessions())
                    .map_err(StartupError::Console)?;
                let c = web::Data::new(c);
                let (addr, server) = crate::console::server(&config, settings, state.clone(), c.clone())?;
                Some((addr, server, c))
            }
            None => None,
        };
        let connections = api::Connections::new(config.limits.connections_per_identity.max(1));
        let retention = state.clone();
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(api::routes))
            .on_connect(api::on_connect(connections))
            .workers(2)
            .listen_rustls_0_23(listener, tls)
            .map_err(|e| StartupError::Bind(addr, e))?
            .run();
        Ok(Self {
            addr,
            server,
            console,
            ledger,
            delivery,
            checkpointer,
            verifier,
            crl_reload,
            retention,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where the console listens, when configured.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().map(|(a, _, _)| *a)
    }

    /// This gateway's id, in delivery events, claims, `/readyz` and logs.
    pub fn gateway_id(&self) -> &str {
        self.delivery.gateway_id()
    }

    pub fn ledger(&self) -> Arc<dyn Ledger> {
        self.ledger.clone()
    }

    /// Runs the server and the delivery worker (which resumes every pending delivery).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let worker = tokio::spawn(self.delivery.clone().run());
        let expiry = tokio::spawn(self.delivery.clone().run_expiry());
        let reports = tokio::spawn(self.delivery.watch_reports());
        let checkpoints = tokio::spawn(self.checkpointer.run());
        let crls = tokio::spawn(self.verifier.watch(self.crl_reload));
        let retention = tokio::spawn(retention_hourly(self.retention));
        let console = self
            .console
            .map(|(_, server, c)| (tokio::spawn(server), tokio::spawn(crate::console::expire_sessions(c))));
        let result = self.server.await;
        if let Some((server, sessions)) = console {
            server.abort();
            sessions.abort();
        }
        worker.abort();
        reports.abort();
        expiry.abort();
        checkpoints.abort();
        crls.abort();
        retention.abort();
        result
    }
}

/// Destroys the subject-index keys whose retention has passed, at start-up and then hourly, and
/// takes in what another process (the CLI, another gateway) destroyed. A failure is logged and
/// retried the next hour (nothing is destroyed unrecorded).
async fn retention_hourly(state: web::Data<AppState>) {
    loop {
        let now = state.clock.now();
        if let Err(e) = crate::app::retention::run(
            state.ledger.as_ref(),
            &state.keys,
            &state.catalogue.agreements,
            Some(state.catalogue.keys.subject()),
            now,
            now,
        )
        .await
        {
            tracing::error!(error = %e, "retention: cannot destroy the subject-index keys due; will retry in an hour");
        }
        // The turn of a year: the new year's keys are compared too.
        if let Err(e) = crate::app::fingerprints::check(
            state.ledger.as_ref(),
            state.catalogue.keys.subject(),
            state.delivery.gateway_id(),
            now,
        )
        .await
        {
            tracing::error!(error = %e, "subject-index keys: cannot confirm this gateway's keys are the ones the others use");
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
