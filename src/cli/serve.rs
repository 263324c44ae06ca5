//! `serve`, `check` and `certs dev`: running the gateway and checking what it would run with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::load;
use crate::app::catalogue::load_agreements;
use crate::app::config::{Config, Overrides, Profile};
use crate::app::production::{production_problems, refusal};
use crate::app::startup::Application;
use crate::platform::pki::write_dev_pki;

pub(super) async fn serve(path: &Path, listen: Option<SocketAddr>) -> Result<ExitCode, String> {
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
        // Application::build refuses, listing every problem.
        Profile::Production => {}
    }
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    eprintln!(
        "isa-gateway {} listening on https://{} (mutual TLS)",
        app.gateway_id(),
        app.addr()
    );
    if let Some(console) = app.console_addr() {
        eprintln!("console for people: https://{console}/ (sign in in a browser)");
    }
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

/// Prints every problem with its file and location; returns exit status 1 if there are any.
pub(super) fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if config.profile == Profile::Production {
        let problems = production_problems(&config);
        if !problems.is_empty() {
            println!("{}", refusal(&problems));
            return ExitCode::FAILURE;
        }
    }
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

pub(super) fn certs_dev(path: &Path, out: Option<&Path>) -> Result<ExitCode, String> {
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
