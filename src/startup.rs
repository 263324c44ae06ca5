//! Building the running gateway from a checked configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::agreement::{Agreements, Context, Problem};
use crate::api::{self, AppState, Systems};
use crate::checkpointer::Checkpointer;
use crate::clock::Clock;
use crate::config::{Config, Profile};
use crate::decision::Catalogue;
use crate::delivery::Delivery;
use crate::keys::{KeyError, KeyRing, KeyStore};
use crate::ledger::{self, Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::schemas::MessageSchemas;
use crate::tls::{self, TlsError};
use crate::transport::Transports;

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
    Auth(#[from] crate::auth::AuthConfigError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Loads message schemas and agreements and checks each agreement against the configuration
/// and the schemas.
pub fn load_agreements(config: &Config) -> Result<(Agreements, MessageSchemas), Vec<Problem>> {
    let (schemas, mut problems) = match MessageSchemas::load(&config.schemas_dir) {
        Ok(s) => (s, Vec::new()),
        Err(p) => (MessageSchemas::default(), p),
    };
    let ctx = Context {
        systems: config.systems.iter().map(|s| s.id.clone()).collect(),
        destinations: config.destinations.iter().map(|d| d.id().to_owned()).collect(),
        schemas: &schemas,
    };
    match Agreements::load(&config.agreements_dir, &ctx) {
        Ok(agreements) if problems.is_empty() => Ok((agreements, schemas)),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.extend(p);
            Err(problems)
        }
    }
}

/// Loads the keys the agreements need; development makes missing ones and says so.
pub fn load_keys(config: &Config, agreements: &Agreements) -> Result<KeyRing, KeyError> {
    let needing: Vec<&str> = agreements.iter().filter(|a| a.needs_key()).map(|a| a.id()).collect();
    let dev = config.profile == Profile::Development;
    let (ring, created) = KeyStore::new(&config.keys_dir).load(&needing, dev)?;
    for k in created {
        tracing::warn!(key = %k, dir = %config.keys_dir.display(), "created a development key");
    }
    Ok(ring)
}

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    ledger: Arc<dyn Ledger>,
    delivery: Arc<Delivery>,
    checkpointer: Arc<Checkpointer>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Clock::System).await
    }

    /// Loads everything, binds the listener (port 0 picks a free port), and returns a server
    /// ready to run. Fails, saying why, before accepting any connection.
    pub async fn build_with_clock(config: Config, clock: Clock) -> Result<Self, StartupError> {
        tls::install_default_provider();
        let (agreements, schemas) = load_agreements(&config).map_err(StartupError::Catalogue)?;
        let keys = load_keys(&config, &agreements)?;
        let catalogue = Catalogue::new(agreements, schemas, keys).map_err(StartupError::Envelope)?;
        let transports = Transports::build(&config.destinations).map_err(|(id, e)| StartupError::Destination(id, e))?;
        let tls = tls::server_config(&config.tls)?;
        let ledger = ledger::open(&config.database_url).await?;
        ledger.warm().await?;
        let listener = std::net::TcpListener::bind(config.listen).map_err(|e| StartupError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(config.listen, e))?;
        let auth = crate::auth::Authenticator::from_settings(&config.auth)?;
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
            )
            .await?,
        );
        let metrics = Arc::new(Metrics::default());
        let delivery = Arc::new(Delivery::new(
            transports,
            &config.destinations,
            ledger.clone(),
            clock.clone(),
            Duration::from_millis(config.delivery.poll_interval_ms),
            metrics.clone(),
        ));
        let state = web::Data::new(AppState {
            catalogue,
            systems: Systems::new(&config.systems),
            delivery: delivery.clone(),
            ledger: ledger.clone(),
            clock,
            limits: config.limits.clone(),
            metrics,
            auth,
            checkpointer: checkpointer.clone(),
        });
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(api::routes))
            .on_connect(api::on_connect)
            .workers(2)
            .listen_rustls_0_23(listener, tls)
            .map_err(|e| StartupError::Bind(addr, e))?
            .run();
        Ok(Self {
            addr,
            server,
            ledger,
            delivery,
            checkpointer,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ledger(&self) -> Arc<dyn Ledger> {
        self.ledger.clone()
    }

    /// Runs the server and the delivery worker (which resumes every pending delivery).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let worker = tokio::spawn(self.delivery.clone().run());
        let reports = tokio::spawn(self.delivery.watch_reports());
        let checkpoints = tokio::spawn(self.checkpointer.run());
        let result = self.server.await;
        worker.abort();
        reports.abort();
        checkpoints.abort();
        result
    }
}
