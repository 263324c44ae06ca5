//! What stops a production start, shared by `serve`, `check` and [`Application::build`]
//! (crate::app::startup::Application::build): every problem, listed together.

use std::path::Path;

use crate::app::config::{Config, DestinationConfig};
use crate::platform::pki::DEV_CA_COMMON_NAME;

/// A PostgreSQL URL that would carry the ledger and the outbox (patient data) to another host
/// without a verified TLS connection. The URL itself is never repeated: it may hold a password.
pub fn database_transport_problem(url: &str) -> Option<String> {
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
pub fn production_problems(config: &Config) -> Vec<String> {
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
        if let Ok(names) = crate::platform::tls::common_names(path)
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
    if let Some(console) = &config.console {
        problems.extend(console.production_problems(config));
    }
    if config.tls.crls.is_empty() {
        problems.push("no CRL configured (tls.crls): revoked client certificates would be accepted".into());
    }
    problems.extend(keys_in_environment(std::env::vars().map(|(name, _)| name)));
    problems
}

/// Keys given as values in the environment: the gateway cannot take them back out of its own
/// environment (that needs `unsafe`, which this code forbids), so for as long as it runs they are
/// readable wherever its environment is (`/proc/<pid>/environ`, crash reports, child processes).
/// Production takes keys only from files: the `_FILE` variables, or the key folder.
fn keys_in_environment(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter(|n| {
            (n.starts_with("ISA_GATEWAY_KEY_") || n == "ISA_GATEWAY_INDEX_KEY" || n == "ISA_GATEWAY_CHECKPOINT_KEY")
                && !n.ends_with("_FILE")
        })
        .map(|n| format!("{n} holds a key in the environment: give it as {n}_FILE (a file only the service can read)"))
        .collect()
}

/// The message a refused production start gives, one problem a line.
pub fn refusal(problems: &[String]) -> String {
    format!(
        "the production profile refuses to start:\n{}",
        problems
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::{database_transport_problem, keys_in_environment};

    #[test]
    fn production_takes_keys_from_files_not_the_environment() {
        let names = [
            "ISA_GATEWAY_KEY_NVTT_GP_UPDATE_V1",
            "ISA_GATEWAY_KEY_NVTT_GP_UPDATE_V2_FILE",
            "ISA_GATEWAY_INDEX_KEY",
            "ISA_GATEWAY_CHECKPOINT_KEY_FILE",
            "ISA_GATEWAY__LISTEN",
            "PATH",
        ];
        let problems = keys_in_environment(names.iter().map(|n| (*n).to_owned()));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("ISA_GATEWAY_KEY_NVTT_GP_UPDATE_V1_FILE"));
        assert!(problems[1].starts_with("ISA_GATEWAY_INDEX_KEY holds a key"));
    }

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
