//! The `isa-gateway` command line: the arguments and one dispatch here, one file per command
//! family beside it. Rules (production checks, requeue) live in `app`, not here.

mod agreements;
mod disclose;
mod keys;
mod ledger;
mod serve;
mod transfers;
mod witness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::config::{Config, DEFAULT_CONFIG_FILE, Overrides};

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
    /// Print the HTTP API's OpenAPI 3.1 document (docs/openapi.json; also served at /openapi.json).
    Openapi,
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
    /// A one-off disclosure (a court order, a coroner's notice, a police request, a hospital in an
    /// emergency) through a running gateway, as `POST /v1/disclosures`: the request is read from
    /// standard input (it holds patient data); it is held for a director.
    Disclose {
        /// The gateway's API, e.g. https://localhost:8443.
        #[arg(long, env = "ISA_GATEWAY_URL")]
        gateway: String,
        /// The CA that signed the gateway's certificate.
        #[arg(long, env = "ISA_GATEWAY_CA_FILE")]
        ca: PathBuf,
        /// This system's client certificate and key (the key readable by its owner only).
        #[arg(long, env = "ISA_GATEWAY_CLIENT_CERT_FILE")]
        cert: PathBuf,
        #[arg(long, env = "ISA_GATEWAY_CLIENT_KEY_FILE")]
        key: PathBuf,
        /// The user's bearer token, in a file readable by its owner only.
        #[arg(long, env = "ISA_GATEWAY_TOKEN_FILE")]
        token_file: PathBuf,
        /// Makes a retry safe: the same key and request give the same transfer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Retention of the subject index: list each scope's live years and when the earliest goes,
    /// and destroy the keys whose agreement's retention period has passed (recorded in the
    /// ledger). The running gateway also does this hourly.
    Retention {
        #[command(flatten)]
        config: ConfigArg,
        /// Judge what is due as of this time (RFC 3339) rather than now, e.g. to see what a date
        /// will bring. Destructions are recorded at the real time; with --destroy, a time still
        /// to come is refused outside the development profile.
        #[arg(long)]
        as_of: Option<jiff::Timestamp>,
        /// Destroy what is due (without it, only list).
        #[arg(long)]
        destroy: bool,
    },
    /// Witness a gateway's ledger: cosign its checkpoints (C2SP tlog-cosignature), refusing forks.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
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
    /// Make the first key for an agreement (or the gateway-wide index key with --index, the
    /// subject-index seeds with --subject).
    New {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, required_unless_present_any = ["index", "checkpoint", "subject"])]
        agreement: Option<String>,
        #[arg(long, conflicts_with = "agreement")]
        index: bool,
        /// The ledger's checkpoint signing key (Ed25519).
        #[arg(long, conflicts_with_all = ["agreement", "index"])]
        checkpoint: bool,
        /// The subject-index seed of every agreement that indexes an NHS number (and of subject
        /// access lookups) that has none yet, starting this year.
        #[arg(long, conflicts_with_all = ["agreement", "index", "checkpoint"])]
        subject: bool,
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
        /// A checkpoint you kept (a C2SP signed note): the ledger must still extend it.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// A witness you trust (its C2SP verifier key, `name+keyid+base64`; repeatable): it must
        /// have cosigned a checkpoint, and the ledger must still extend the largest it cosigned.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
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
        /// Check integrity only, against the bundle's own key: proves nothing about who made it.
        #[arg(long)]
        allow_unpinned: bool,
        /// A witness you trust (its C2SP verifier key, `name+keyid+base64`; repeatable): it must
        /// have cosigned the bundle's checkpoint.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// The ledger's origin (its checkpoints' first line) you expect; required with --witness
        /// and no --public-key, since then the bundle's own key vouches for nothing and a
        /// witness's cosignature is only worth the origin it names.
        #[arg(long)]
        origin: Option<String>,
        /// The agreement and period you asked for: the bundle must be of exactly these (it
        /// proves it holds every entry of its own agreement and period, whatever they are).
        #[arg(long)]
        agreement: Option<String>,
        #[arg(long)]
        since: Option<jiff::Timestamp>,
        #[arg(long)]
        until: Option<jiff::Timestamp>,
    },
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Make this witness's Ed25519 key (0600) in its state folder and print its verifier key,
    /// which the gateway's operator adds to `ledger.witnesses` and auditors pass as `--witness`.
    Init {
        #[command(flatten)]
        state: witness::StateArg,
        /// The witness's name, e.g. `audit.partner.example/witness` (no spaces, no '+').
        #[arg(long)]
        name: String,
    },
    /// Print this witness's verifier key.
    Show {
        #[command(flatten)]
        state: witness::StateArg,
    },
    /// Fetch the gateway's latest checkpoint and the consistency proof from the last one this
    /// witness cosigned, verify both, and only then cosign it and send the cosignature to the
    /// gateway. Refuses (exit 1, nothing signed, state kept) a checkpoint that does not extend
    /// the last one cosigned.
    Cosign(witness::CosignArgs),
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
            Command::Serve { config, listen } => serve::serve(&config.config, listen).await,
            Command::Check { config } => Ok(serve::check(&config.config)),
            Command::Certs {
                command: CertsCommand::Dev { config, out },
            } => serve::certs_dev(&config.config, out.as_deref()),
            Command::Ledger { command } => ledger::ledger(command).await,
            Command::Agreements { config, format } => agreements::agreements(&config.config, format),
            Command::Keys { command } => keys::keys(command),
            Command::Token {
                command:
                    TokenCommand::Dev {
                        config,
                        sub,
                        roles,
                        ttl_secs,
                    },
            } => keys::token_dev(&config.config, &sub, &roles, ttl_secs),
            Command::SubjectDisclosures { config, by } => transfers::subject_disclosures(&config.config, &by).await,
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
            } => transfers::transfers_list(&config.config, agreement, since, until, status.as_deref(), format).await,
            Command::Transfers {
                command:
                    TransfersCommand::Requeue {
                        config,
                        transfer_id,
                        by,
                    },
            } => transfers::transfers_requeue(&config.config, transfer_id, &by).await,
            Command::Disclose {
                gateway,
                ca,
                cert,
                key,
                token_file,
                idempotency_key,
            } => {
                let client = disclose::Client {
                    gateway: &gateway,
                    ca: &ca,
                    cert: &cert,
                    key: &key,
                    token_file: &token_file,
                };
                disclose::disclose(&client, idempotency_key.as_deref()).await
            }
            Command::Witness { command } => witness::witness(command).await,
            Command::Retention { config, as_of, destroy } => keys::retention(&config.config, as_of, destroy).await,
            Command::LegalBases => {
                print!("{}", crate::policy::legal::reference_markdown());
                Ok(ExitCode::SUCCESS)
            }
            Command::Openapi => {
                print!("{}", crate::api::openapi::pretty_json());
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

/// The configured agreements, or every problem that stops them loading.
fn load_agreements(config: &Config) -> Result<crate::policy::agreement::Agreements, String> {
    let (agreements, _) = crate::app::catalogue::load_agreements(config).map_err(|p| {
        format!(
            "{} problem(s); run `isa-gateway check`:\n{}",
            p.len(),
            p.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
        )
    })?;
    Ok(agreements)
}
