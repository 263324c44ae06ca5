//! The `isa-gateway` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_FILE, DestinationConfig, Overrides, Profile};
use crate::pki::{DEV_CA_COMMON_NAME, write_dev_pki};
use crate::startup::{Application, load_agreements};

#[derive(Debug, Parser)]
#[command(
    name = "isa-gateway",
    version,
    about = "A secure inter-agency information-sharing gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The configuration file (default: ./gateway.toml, the development profile).
    #[arg(long, env = "ISA_GATEWAY_CONFIG", default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen on this address instead of the configured one (e.g. 127.0.0.1:0).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate the configuration, every agreement and every schema; exit 1 on any problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Show every agreement: state, dates, parties, legal bases, fields (warns 30 days ahead of
    /// review or expiry).
    Agreements {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Pseudonymisation and index keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the legal-basis codes with their titles and sources (docs/legal-bases.md).
    LegalBases,
    /// Subject access (DPO): every disclosure about one person. The NHS number is read from
    /// standard input, never the command line (which shells keep in history and `ps` shows).
    SubjectDisclosures {
        #[command(flatten)]
        config: ConfigArg,
        /// Who is asking (recorded in the ledger with the role dpo).
        #[arg(long)]
        by: String,
    },
    /// Transfers, for auditors (reads the database directly).
    Transfers {
        #[command(subcommand)]
        command: TransfersCommand,
    },
    /// Bearer tokens for users.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TransfersCommand {
    /// List the transfers under an agreement (accepted and refused), oldest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        agreement: String,
        #[arg(long)]
        since: Option<jiff::Timestamp>,
        #[arg(long)]
        until: Option<jiff::Timestamp>,
        /// accepted, refused, held, retrying, delivered or undeliverable.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Put an undeliverable transfer (a dead letter) back in the queue once its partner is
    /// fixed: fresh attempts and age, the same bytes. Recorded in the ledger with who did it.
    Requeue {
        #[command(flatten)]
        config: ConfigArg,
        /// The transfer's id.
        transfer_id: uuid::Uuid,
        /// Who is requeueing it (recorded with the role operator).
        #[arg(long)]
        by: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Mint a token from the development issuer (development profile only), e.g.
    /// `isa-gateway token dev --sub alice --role practitioner`.
    Dev {
        #[command(flatten)]
        config: ConfigArg,
        /// The user's id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// A role: practitioner, safeguarding_lead, director, dpo or auditor (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make the first key for an agreement (or the gateway-wide index key with --index).
    New {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, required_unless_present_any = ["index", "checkpoint"])]
        agreement: Option<String>,
        #[arg(long, conflicts_with = "agreement")]
        index: bool,
        /// The ledger's checkpoint signing key (Ed25519).
        #[arg(long, conflicts_with_all = ["agreement", "index"])]
        checkpoint: bool,
    },
    /// Add a new version of an agreement's key; new transfers use it, old versions stay.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        agreement: String,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Make a development PKI: CA, server certificate, a client certificate per registered
    /// system, a CRL. Development only.
    Dev {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write (default: the folder of the configured client CA).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Recompute the hash chain, the Merkle tree and every checkpoint's root and signature; name
    /// the first entry or checkpoint that breaks; exit 1 if one does.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The checkpoint key to verify against (`ed25519:<hex>`); default: the gateway's own.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Sign a checkpoint of the whole ledger now.
    Checkpoint {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write an audit bundle for one agreement: entries, inclusion proofs, checkpoint, public key.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        agreement: String,
        /// RFC 3339; entries recorded at or after.
        #[arg(long)]
        since: Option<jiff::Timestamp>,
        /// RFC 3339; entries recorded before.
        #[arg(long)]
        until: Option<jiff::Timestamp>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an audit bundle offline, without the database; exit 1 if anything fails.
    VerifyBundle {
        dir: PathBuf,
        /// The checkpoint key you trust (`ed25519:<hex>`), from a channel other than the bundle.
        #[arg(long)]
        public_key: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, listen } => serve(&config.config, listen).await,
            Command::Check { config } => Ok(check(&config.config)),
            Command::Certs {
                command: CertsCommand::Dev { config, out },
            } => certs_dev(&config.config, out.as_deref()),
            Command::Ledger { command } => ledger(command).await,
            Command::Agreements { config, format } => agreements(&config.config, format),
            Command::Keys { command } => keys(command),
            Command::Token {
                command:
                    TokenCommand::Dev {
                        config,
                        sub,
                        roles,
                        ttl_secs,
                    },
            } => token_dev(&config.config, &sub, &roles, ttl_secs),
            Command::SubjectDisclosures { config, by } => subject_disclosures(&config.config, &by).await,
            Command::Transfers {
                command:
                    TransfersCommand::List {
                        config,
                        agreement,
                        since,
                        until,
                        status,
                        format,
                    },
            } => transfers_list(&config.config, agreement, since, until, status.as_deref(), format).await,
            Command::Transfers {
                command:
                    TransfersCommand::Requeue {
                        config,
                        transfer_id,
                        by,
                    },
            } => transfers_requeue(&config.config, transfer_id, &by).await,
            Command::LegalBases => {
                print!("{}", crate::legal::reference_markdown());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load(path: &Path, overrides: &Overrides) -> Result<Config, String> {
    Config::load(path, overrides).map_err(|e| e.to_string())
}

async fn serve(path: &Path, listen: Option<SocketAddr>) -> Result<ExitCode, String> {
    let config = load(path, &Overrides { listen })?;
    match config.profile {
        Profile::Development => {
            eprintln!("{}", DEV_BANNER.trim_end());
            let missing: Vec<_> = config
                .tls_files()
                .into_iter()
                .chain(config.auth_files())
                .filter(|p| !p.exists())
                .collect();
            if !missing.is_empty() {
                let dir = dev_certs_dir(&config);
                let ids: Vec<&str> = config.systems.iter().map(|s| s.id.as_str()).collect();
                write_dev_pki(&dir, &ids).map_err(|e| e.to_string())?;
                eprintln!(
                    "created development certificates in {} (see certs/README.md)",
                    dir.display()
                );
            }
        }
        Profile::Production => {
            let problems = production_problems(&config);
            if !problems.is_empty() {
                return Err(format!(
                    "the production profile refuses to start:\n{}",
                    problems
                        .iter()
                        .map(|p| format!("  - {p}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
    }
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    eprintln!("isa-gateway listening on https://{} (mutual TLS)", app.addr());
    app.run_until_stopped().await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

const DEV_BANNER: &str = r"
**********************************************************************
*  DEVELOPMENT PROFILE: self-made certificates, local SQLite ledger,  *
*  drop-folder delivery. Never send real patient data through this.  *
**********************************************************************
";

fn dev_certs_dir(config: &Config) -> PathBuf {
    config
        .tls
        .client_ca
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("certs/dev"))
}

/// A PostgreSQL URL that would carry the ledger and the outbox (patient data) to another host
/// without a verified TLS connection. The URL itself is never repeated: it may hold a password.
fn database_transport_problem(url: &str) -> Option<String> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    // Read it as the driver will (query parameters such as `host=` and `sslmode=` override the
    // rest, the last one winning), not as it looks.
    let Ok(options) = url.parse::<PgConnectOptions>() else {
        return Some("database_url: not a PostgreSQL URL the gateway can read".to_owned());
    };
    // A Unix socket, when set, is what the driver connects to.
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
    let verified = matches!(options.get_ssl_mode(), PgSslMode::VerifyFull);
    (!local && !verified).then(|| {
        "database_url: PostgreSQL on another host needs sslmode=verify-full, with sslrootcert naming the \
         server's CA"
            .to_owned()
    })
}

/// Everything that stops a production start, listed together.
fn production_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut files: Vec<&Path> = config.tls_files();
    files.extend(config.destinations.iter().flat_map(DestinationConfig::files));
    files.extend(config.auth_files());
    for f in files {
        if !f.is_file() {
            problems.push(format!("missing file {}", f.display()));
        }
    }
    for (what, path) in [
        ("client CA", &config.tls.client_ca),
        ("server certificate", &config.tls.server_cert),
    ] {
        if let Ok(names) = crate::tls::common_names(path)
            && names.iter().any(|n| n == DEV_CA_COMMON_NAME)
        {
            problems.push(format!(
                "{what} {} is development material (made by `certs dev`)",
                path.display()
            ));
        }
    }
    if let Some(problem) = database_transport_problem(&config.database_url) {
        problems.push(problem);
    }
    for i in &config.auth.issuers {
        if i.dev_signing_key.is_some() {
            problems.push(format!(
                "token issuer {:?} has a dev_signing_key: development tokens would be accepted",
                i.issuer
            ));
        }
    }
    if config.tls.crls.is_empty() {
        problems.push("no CRL configured (tls.crls): revoked client certificates would be accepted".into());
    }
    problems
}

/// Prints every problem with its file and location; returns exit status 1 if there are any.
fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match load_agreements(&config) {
        Ok((agreements, schemas)) => {
            println!(
                "ok: {} agreement(s), {} message type(s), {} system(s), {} destination(s)",
                agreements.len(),
                schemas.names().count(),
                config.systems.len(),
                config.destinations.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            println!("{} problem(s)", problems.len());
            ExitCode::FAILURE
        }
    }
}

fn certs_dev(path: &Path, out: Option<&Path>) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let dir = out.map_or_else(|| dev_certs_dir(&config), Path::to_path_buf);
    let ids: Vec<&str> = config.systems.iter().map(|s| s.id.as_str()).collect();
    let layout = write_dev_pki(&dir, &ids).map_err(|e| e.to_string())?;
    println!(
        "development PKI written to {} (development only; keys are mode 0600):",
        layout.dir.display()
    );
    for f in &layout.files {
        println!("  {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn ledger(command: LedgerCommand) -> Result<ExitCode, String> {
    use crate::ledger::checkpoint::parse_public_key;
    let pinned = |text: &Option<String>| -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
        text.as_deref()
            .map(|t| parse_public_key(t).ok_or_else(|| "--public-key must be ed25519:<64 hex>".to_owned()))
            .transpose()
    };
    if let LedgerCommand::VerifyBundle { dir, public_key } = &command {
        let report = crate::bundle::verify(dir, pinned(public_key)?.as_ref())
            .map_err(|e| format!("bundle does not verify: {e}"))?;
        println!(
            "ok: {} entries, each in the signed tree of {} entries",
            report.entries, report.tree_size
        );
        if public_key.is_none() {
            println!(
                "note: verified against the bundle's own public_key.txt; pin the key with --public-key to prove origin"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config_path = match &command {
        LedgerCommand::Verify { config, .. }
        | LedgerCommand::Checkpoint { config }
        | LedgerCommand::Export { config, .. } => &config.config,
        LedgerCommand::VerifyBundle { .. } => return Ok(ExitCode::FAILURE),
    };
    let config = load(config_path, &Overrides::default())?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let store = crate::keys::KeyStore::new(&config.keys_dir);
    let key = || store.checkpoint_key(false).map(|(k, _)| k).map_err(|e| e.to_string());
    match command {
        LedgerCommand::Verify { public_key, .. } => {
            let public = match pinned(&public_key)? {
                Some(k) => k,
                None => key()?.public(),
            };
            // The progress bar needs the total, which costs a read of every entry: only for a person.
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let total = if terminal { ledger.tree_size().await } else { 0 };
            let show = terminal && total >= 100_000;
            let mut progress = |done: i64| {
                if show {
                    eprint!("\rverifying: {done}/{total} entries");
                }
            };
            let report = crate::ledger::verify(ledger.as_ref(), &public, &mut progress)
                .await
                .map_err(|e| e.to_string())?;
            if show {
                eprintln!();
            }
            match report.first_break {
                None => {
                    // The chain holds; now the listings and the subject index made from it.
                    if let Some(problem) = crate::ledger::verify_transfers(ledger.as_ref())
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        println!(
                            "BROKEN: {problem} (the {} ledger entries themselves verify)",
                            report.entries
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    println!(
                        "ok: {} entries, chain head {}, {} checkpoint(s) verified; transfer listings and subject \
                         index match the entries",
                        report.entries,
                        hex::encode(report.head),
                        report.checkpoints
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    println!("BROKEN: {b} ({} entries verified before it)", report.entries);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        LedgerCommand::Checkpoint { .. } => {
            let checkpointer = crate::checkpointer::Checkpointer::new(
                ledger,
                key()?,
                crate::clock::Clock::System,
                1,
                std::time::Duration::from_secs(1),
            )
            .await
            .map_err(|e| e.to_string())?;
            match checkpointer.checkpoint_now().await.map_err(|e| e.to_string())? {
                Some(cp) => println!("checkpoint: tree size {}, root {}", cp.tree_size, hex::encode(cp.root)),
                None => println!("the ledger is empty: nothing to checkpoint"),
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Export {
            agreement,
            since,
            until,
            out,
            ..
        } => {
            let key = key()?;
            let checkpointer = crate::checkpointer::Checkpointer::new(
                ledger.clone(),
                key,
                crate::clock::Clock::System,
                1,
                std::time::Duration::from_secs(1),
            )
            .await
            .map_err(|e| e.to_string())?;
            let cp = checkpointer
                .checkpoint_now()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the ledger is empty")?;
            let entries = ledger
                .entries_for(&agreement, since, until)
                .await
                .map_err(|e| e.to_string())?;
            crate::bundle::export(ledger.as_ref(), &entries, &cp, &checkpointer.public_key(), &out)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "wrote {} entries for {agreement} to {} (checkpoint at tree size {}); verify with `isa-gateway ledger verify-bundle {}`",
                entries.len(),
                out.display(),
                cp.tree_size,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::VerifyBundle { .. } => Ok(ExitCode::FAILURE),
    }
}

fn agreements(path: &Path, format: Format) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let (agreements, _) = load_agreements(&config).map_err(|p| {
        format!(
            "{} problem(s); run `isa-gateway check`:\n{}",
            p.len(),
            p.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
        )
    })?;
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let views: Vec<_> = agreements.iter().map(|a| a.view(today)).collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&views).map_err(|e| e.to_string())?),
        Format::Table => {
            println!(
                "{:<22} {:<8} {:<28} {:<11} {:<11} RECIPIENT",
                "ID", "VERSION", "STATE", "REVIEW BY", "EXPIRES"
            );
            for v in &views {
                println!(
                    "{:<22} {:<8} {:<28} {:<11} {:<11} {}",
                    v.id, v.version, v.state, v.review_by, v.expires, v.recipient.organisation
                );
                for w in &v.warnings {
                    println!("  warning: {w}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn keys(command: KeysCommand) -> Result<ExitCode, String> {
    let (path, action) = match &command {
        KeysCommand::New { config, .. } | KeysCommand::Rotate { config, .. } => (&config.config, &command),
    };
    let config = load(path, &Overrides::default())?;
    let store = crate::keys::KeyStore::new(&config.keys_dir);
    match action {
        KeysCommand::New { checkpoint: true, .. } => {
            store.new_checkpoint_key().map_err(|e| e.to_string())?;
            let (key, _) = store.checkpoint_key(false).map_err(|e| e.to_string())?;
            println!(
                "made the checkpoint key in {} (mode 0600); its public key for auditors: {}",
                config.keys_dir.display(),
                crate::ledger::checkpoint::public_key_text(&key.public())
            );
        }
        KeysCommand::New { index: true, .. } => {
            store.new_index_key().map_err(|e| e.to_string())?;
            println!("made the index key in {} (mode 0600)", config.keys_dir.display());
        }
        KeysCommand::New {
            agreement: Some(id), ..
        } => {
            let v = store.new_key(id).map_err(|e| e.to_string())?;
            println!(
                "made key agreement/{id}/v{v} in {} (mode 0600)",
                config.keys_dir.display()
            );
        }
        KeysCommand::New { .. } => return Err("name --agreement ID or --index".into()),
        KeysCommand::Rotate { agreement, .. } => {
            let v = store.rotate(agreement).map_err(|e| e.to_string())?;
            println!(
                "added key agreement/{agreement}/v{v}; new transfers use it, older versions stay for verification"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token_dev(path: &Path, sub: &str, roles: &[String], ttl_secs: u64) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    if config.profile != Profile::Development {
        return Err("development tokens are for the development profile only".into());
    }
    let roles = roles
        .iter()
        .map(|r| {
            crate::auth::UserRole::parse(r).ok_or_else(|| {
                format!("unknown role {r:?}: use practitioner, safeguarding_lead, director, dpo or auditor")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let issuer = config
        .auth
        .issuers
        .iter()
        .find(|i| i.dev_signing_key.is_some())
        .ok_or("no issuer in the configuration has a dev_signing_key")?;
    if issuer.dev_signing_key.as_ref().is_some_and(|k| !k.exists()) {
        return Err(
            "the development issuer's key does not exist yet: run `isa-gateway certs dev` (or `serve`) first".into(),
        );
    }
    println!(
        "{}",
        crate::auth::mint_dev_token(issuer, &config.auth.audience, sub, &roles, ttl_secs)?
    );
    Ok(ExitCode::SUCCESS)
}

async fn subject_disclosures(path: &Path, by: &str) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
    let nhs = crate::nhs_number::NhsNumber::parse(line.trim())
        .map_err(|_| "standard input must hold an NHS number: ten digits with a valid check digit".to_owned())?;
    let (ring, _) = crate::keys::KeyStore::new(&config.keys_dir)
        .load(&[], false)
        .map_err(|e| e.to_string())?;
    let index = ring.index().ok_or("no index key")?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let answer = crate::subject_access::lookup(ledger.as_ref(), index, &nhs, "cli", by, jiff::Timestamp::now())
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

async fn transfers_requeue(path: &Path, transfer_id: uuid::Uuid, by: &str) -> Result<ExitCode, String> {
    use crate::ledger::{Event, EventKind, TransferStatus, ledger_time};
    let config = load(path, &Overrides::default())?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let record = ledger
        .transfer(transfer_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no transfer {transfer_id}"))?;
    let not_dead = || {
        format!(
            "transfer {transfer_id} is {}, not undeliverable: nothing to requeue",
            record.status.as_str()
        )
    };
    if record.status != TransferStatus::Undeliverable {
        return Err(not_dead());
    }
    // The bytes were permitted under the agreement as it was then: send them only while that
    // same agreement (version and content) is in force and its destination still configured.
    let (agreements, _) = load_agreements(&config)
        .map_err(|p| format!("{} problem(s) with the agreements; run `isa-gateway check`", p.len()))?;
    let decided = ledger
        .entries_of(&[transfer_id])
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .map(|e| e.event)
        .ok_or_else(|| format!("no decision for transfer {transfer_id}"))?;
    let agreement = agreements
        .iter()
        .find(|a| a.id() == record.agreement_id)
        .ok_or_else(|| format!("agreement {} is no longer loaded: not requeued", record.agreement_id))?;
    if decided.agreement_hash.as_deref() != Some(agreement.content_hash()) {
        return Err(format!(
            "agreement {} has changed since the transfer was permitted (version {} then, {} now): not requeued; \
             send it again so it is decided under the agreement in force",
            record.agreement_id,
            decided.agreement_version.as_deref().unwrap_or("?"),
            agreement.version()
        ));
    }
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    if let Err(not) = agreement.in_force(today) {
        return Err(format!("{} Not requeued.", not.explain()));
    }
    if config.destination(&agreement.terms().recipient.destination).is_none() {
        return Err(format!(
            "destination {} is no longer configured: not requeued",
            agreement.terms().recipient.destination
        ));
    }
    let mut event = Event::new(
        ledger_time(jiff::Timestamp::now()),
        transfer_id,
        EventKind::Delivery,
        TransferStatus::Accepted,
        &record.agreement_id,
        "cli",
    );
    event.message_type = record.message_type.clone();
    event.recipient = record.recipient.clone();
    event.reason_code = Some("requeued".into());
    event.detail = Some("requeued by an operator".into());
    event.user_sub = Some(by.to_owned());
    event.user_role = Some("operator".into());
    match ledger.requeue(event).await.map_err(|e| e.to_string())? {
        Some(receipt) => {
            println!(
                "requeued transfer {transfer_id} (ledger entry {}); a running gateway sends it at its next poll",
                receipt.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        // Undeliverable with nothing queued: the partner took it, then reported non-delivery
        // (a MESH report); the outbound bytes are no longer held.
        None => Err(format!(
            "transfer {transfer_id} was delivered and then reported undelivered by the partner; its outbound \
             bytes are no longer held, so it cannot be requeued: send it again"
        )),
    }
}

async fn transfers_list(
    path: &Path,
    agreement: String,
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    status: Option<&str>,
    format: ListFormat,
) -> Result<ExitCode, String> {
    use crate::ledger::{TransferQuery, TransferStatus};
    let config = load(path, &Overrides::default())?;
    let status = status
        .map(|s| TransferStatus::parse(s).ok_or_else(|| format!("unknown status {s:?}")))
        .transpose()?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut after_seq = None;
    loop {
        let query = TransferQuery {
            agreement_id: Some(agreement.clone()),
            status,
            since,
            until,
            limit: 1000,
            after_seq,
        };
        let page = ledger.list_transfers(&query).await.map_err(|e| e.to_string())?;
        let done = page.len() < 1000;
        after_seq = page.last().map(|t| t.ledger_seq);
        rows.extend(page);
        if done {
            break;
        }
    }
    match format {
        ListFormat::Table => print!("{}", crate::report::table(&rows)),
        ListFormat::Csv => print!("{}", crate::report::csv(&rows)),
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::database_transport_problem;

    #[test]
    fn postgres_elsewhere_needs_verified_tls() {
        for ok in [
            "sqlite://var/isa-gateway.db",
            "postgres://isa@localhost/isa",
            "postgres://isa:secret@127.0.0.1:5432/isa",
            "postgresql://isa@[::1]:5432/isa",
            "postgres://isa@db.internal/isa?sslmode=verify-full&sslrootcert=/etc/isa/db-ca.pem",
            "postgres:///isa?host=/run/postgresql",
            // The socket, once given, is what the driver connects to.
            "postgres://isa@localhost/isa?host=/run/pg&host=db.internal",
        ] {
            assert_eq!(database_transport_problem(ok), None, "{ok}");
        }
        for bad in [
            "postgres://isa:secret@db.internal/isa",
            "postgres://isa@db.internal/isa?sslmode=require",
            "postgres://isa@10.0.0.5:5432/isa?sslmode=prefer",
            // verify-ca does not check the server's name.
            "postgres://isa@db.internal/isa?sslrootcert=/etc/ca.pem&sslmode=verify-ca",
            // What the driver reads, not what the URL looks like: the last parameter wins.
            "postgres://isa@localhost/isa?host=db.internal",
            "postgres://isa@db.internal/isa?sslmode=verify-full&sslmode=prefer",
            "postgres://isa@db.internal/isa?sslmode=verify-full&ssl-mode=disable",
        ] {
            let problem = database_transport_problem(bad).unwrap_or_else(|| panic!("accepted: {bad}"));
            assert!(
                !problem.contains("secret") && !problem.contains("db.internal"),
                "{problem}"
            );
        }
    }
}
