//! `witness init | show | cosign`: what a partner or auditor organisation runs to witness a
//! gateway's ledger (see `crate::witness`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::WitnessCommand;
use crate::witness::{Client, ClientSettings, State, WitnessError};

#[derive(Debug, clap::Args)]
pub(super) struct StateArg {
    /// The witness's state folder: its key (0600), its verifier key, the last checkpoint cosigned.
    #[arg(long, env = "ISA_GATEWAY_WITNESS_STATE")]
    state: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct CosignArgs {
    #[command(flatten)]
    state: StateArg,
    /// The gateway's base URL, e.g. https://gateway.example:8443.
    #[arg(long)]
    gateway: String,
    /// The gateway's checkpoint origin (its `ledger.origin`).
    #[arg(long)]
    origin: String,
    /// The gateway's checkpoint key (`ed25519:<hex>`), obtained from its operator out of band.
    #[arg(long)]
    gateway_key: String,
    /// The CA bundle (PEM) the gateway's server certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// This organisation's client certificate (PEM), registered at the gateway as an auditor system.
    #[arg(long)]
    cert: PathBuf,
    /// The client certificate's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// A file (0600) holding the bearer token of a user with the auditor role.
    #[arg(long, env = "ISA_GATEWAY_WITNESS_TOKEN_FILE")]
    token_file: PathBuf,
}

pub(super) async fn witness(command: WitnessCommand) -> Result<ExitCode, String> {
    match command {
        WitnessCommand::Init { state, name } => {
            let witness = State::init(&state.state, &name).map_err(|e| e.to_string())?;
            println!("{}", witness.vkey());
            eprintln!(
                "witness key made in {} (0600); give the line above (the verifier key) to the gateway's operator \
                 (ledger.witnesses) and to auditors (--witness)",
                state.state.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Show { state } => {
            let state = State::open(&state.state).map_err(|e| e.to_string())?;
            println!("{}", state.witness().vkey());
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Cosign(args) => {
            let gateway = crate::ledger::checkpoint::parse_public_key(&args.gateway_key)
                .ok_or("--gateway-key must be ed25519:<64 hex>")?;
            let state = State::open(&args.state.state).map_err(|e| e.to_string())?;
            let client = Client::new(&ClientSettings {
                base_url: args.gateway.clone(),
                ca: args.ca,
                cert: args.cert,
                key: args.key,
                token_file: args.token_file,
            })
            .map_err(|e| e.to_string())?;
            let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
            match crate::witness::cosign(&state, &client, &args.origin, &gateway, now).await {
                Ok(done) => {
                    let since = match done.previous {
                        Some(n) if n == done.tree_size => format!("the tree this witness had cosigned ({n} entries)"),
                        Some(n) => {
                            format!("an extension of the {n} entries cosigned before (consistency proof verified)")
                        }
                        None => {
                            "the first checkpoint this witness has seen of this gateway (trusted on first use)".into()
                        }
                    };
                    println!(
                        "cosigned: {} at tree size {}, root {}: {since}; kept in {}",
                        args.origin,
                        done.tree_size,
                        hex::encode(done.root),
                        state.checkpoint_path(&args.origin, &gateway).display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ WitnessError::Refused(_)) => {
                    println!("{e}; nothing cosigned, the witness's state is unchanged");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }
}
