//! End-to-end throughput with the durable outbox on: a real gateway (mutual TLS, SQLite ledger
//! with `synchronous = FULL`, drop-folder destination) taking GP updates from concurrent clients
//! over kept-alive HTTPS connections, until every transfer is accepted and then delivered.
//!
//! Run: `cargo bench --bench throughput` (optionally `-- TRANSFERS CONCURRENCY`, default 2000 32).
//! Prints accepted/s, delivered/s and request latency percentiles; it asserts nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use isa_gateway::app::config::{Config, Overrides};
use isa_gateway::app::startup::Application;
use isa_gateway::platform::clock::Clock;
use isa_gateway::platform::pki::{Ca, Validity, write_file};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config_auth(d: &Path) -> isa_gateway::platform::auth::AuthSettings {
    Config::load(&d.join("gateway.toml"), &Overrides::default())
        .expect("config")
        .auth
}

fn config_issuer(auth: &isa_gateway::platform::auth::AuthSettings) -> isa_gateway::platform::auth::IssuerConfig {
    auth.issuers[0].clone()
}

fn client(ca: &Path, cert: &Path, key: &Path, bearer: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(isa_gateway::platform::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .map(|c| c.expect("cert"))
                .collect(),
            PrivateKeyDer::from_pem_file(key).expect("key"),
        )
        .expect("client auth");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {bearer}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(256)
        .build()
        .expect("client")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let transfers = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(32);
    isa_gateway::platform::tls::install_default_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("bench CA", Validity::days_from_now(2)).expect("ca");
    let server = ca
        .issue_server(&["localhost"], Validity::days_from_now(2))
        .expect("server");
    let sender = ca
        .issue_client("urn:isa-gateway:system:tt-case-system", Validity::days_from_now(2))
        .expect("client");
    let issuer = rcgen::KeyPair::generate().expect("issuer key");
    let issuer_key = issuer.serialize_pem();
    let issuer_pub = issuer.public_key_pem();
    for (name, text, secret) in [
        ("issuer.key", issuer_key.as_str(), true),
        ("issuer.pub.pem", issuer_pub.as_str(), false),
        ("ca.crt", ca.cert_pem.as_str(), false),
        ("server.crt", server.cert_pem.as_str(), false),
        ("server.key", server.key.expose(), true),
        ("sender.crt", sender.cert_pem.as_str(), false),
        ("sender.key", sender.key.expose(), true),
    ] {
        write_file(&d.join(name), text.as_bytes(), secret).expect("write");
    }
    let config = format!(
        r#"profile = "development"
listen = "127.0.0.1:0"
database_url = "sqlite://ledger.db"
agreements_dir = "{agreements}"
schemas_dir = "{schemas}"
keys_dir = "keys"
[limits]
requests_per_sec = 1000000
request_burst = 1000000
[auth]
audience = "isa-gateway"
[[auth.issuers]]
issuer = "urn:bench"
algorithms = ["ES256"]
public_key = "issuer.pub.pem"
dev_signing_key = "issuer.key"
roles = ["practitioner"]
systems = ["tt-case-system"]
[tls]
server_cert = "server.crt"
server_key = "server.key"
client_ca = "ca.crt"
[[systems]]
id = "tt-case-system"
identity = "urn:isa-gateway:system:tt-case-system"
roles = ["sender"]
[[destinations]]
id = "y99001-gp-drop"
transport = "dir"
path = "deliveries"
[destinations.delivery]
concurrency = 16
[[destinations]]
id = "nhse-dataset-drop"
transport = "dir"
path = "d2"
[[destinations]]
id = "mash-drop"
transport = "dir"
path = "d3"
[[destinations]]
id = "lado-drop"
transport = "dir"
path = "d4"
[[destinations]]
id = "funder-drop"
transport = "dir"
path = "d5"
[[destinations]]
id = "disclosures-drop"
transport = "dir"
path = "d6"
"#,
        agreements = repo().join("isa-templates").display(),
        schemas = repo().join("schemas").display(),
    );
    std::fs::write(d.join("gateway.toml"), config).expect("config");
    let config = Config::load(&d.join("gateway.toml"), &Overrides::default()).expect("config");
    let clock = Clock::Fixed("2026-06-01T12:00:00Z".parse().expect("time"));
    let app = Application::build_with_clock(config, clock).await.expect("gateway");
    let url = format!(
        "https://localhost:{}/v1/agreements/nvtt-gp-update/transfers",
        app.port()
    );
    let ledger = app.ledger();
    tokio::spawn(app.run_until_stopped());

    let payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("examples/gp_update.json")).expect("example")).expect("json");
    let body = Arc::new(serde_json::to_vec(&payload).expect("body"));
    let bearer = isa_gateway::platform::auth::mint_dev_token(
        &config_issuer(&config_auth(d)),
        "isa-gateway",
        "bench",
        &[isa_gateway::platform::auth::UserRole::Practitioner],
        3600,
    )
    .expect("token");
    token_checks(d, &bearer);
    let http = client(&d.join("ca.crt"), &d.join("sender.crt"), &d.join("sender.key"), &bearer);
    // Warm the connection pool so handshakes are not what is measured.
    for _ in 0..concurrency {
        let _ = http
            .get(url.replace("/v1/agreements/nvtt-gp-update/transfers", "/healthz"))
            .send()
            .await;
    }

    let started = Instant::now();
    let latencies: Vec<Duration> = futures_util::stream::iter(0..transfers)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                let t = Instant::now();
                let r = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status().as_u16(), 202);
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let accepted_in = started.elapsed();
    loop {
        let depth: i64 = ledger.outbox_depth().await.expect("depth").iter().map(|(_, n)| n).sum();
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered_in = started.elapsed();
    let files = std::fs::read_dir(d.join("deliveries")).expect("deliveries").count();
    assert_eq!(files, transfers);
    let mut sorted = latencies;
    sorted.sort();
    println!("transfers: {transfers}, concurrency: {concurrency}");
    println!(
        "accepted (decided, recorded, queued; each a durable commit): {:.0}/s ({:.2} s)",
        transfers as f64 / accepted_in.as_secs_f64(),
        accepted_in.as_secs_f64()
    );
    println!(
        "delivered (outbox drained, each a second durable commit): {:.0}/s ({:.2} s)",
        transfers as f64 / delivered_in.as_secs_f64(),
        delivered_in.as_secs_f64()
    );
    println!(
        "request latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}

/// The token check alone, on this thread: a token verified for the first time (signature, claims)
/// and one found again among those verified (`platform::token_cache`).
fn token_checks(d: &Path, bearer: &str) {
    let settings = config_auth(d);
    let auth = isa_gateway::platform::auth::Authenticator::from_settings(&settings).expect("auth");
    let n = 2000u32;
    let fresh: Vec<String> = (0..n)
        .map(|i| {
            let token = isa_gateway::platform::auth::mint_dev_token(
                &config_issuer(&settings),
                "isa-gateway",
                &format!("bench-{i}"),
                &[isa_gateway::platform::auth::UserRole::Practitioner],
                3600,
            )
            .expect("token");
            format!("Bearer {token}")
        })
        .collect();
    let t = Instant::now();
    for token in &fresh {
        auth.authenticate(Some(token), "tt-case-system").expect("verified");
    }
    let first = t.elapsed() / n;
    let again = format!("Bearer {bearer}");
    let t = Instant::now();
    for _ in 0..n {
        auth.authenticate(Some(&again), "tt-case-system").expect("verified");
    }
    let cached = t.elapsed() / n;
    println!(
        "token check: {:.1} µs verified the first time, {:.1} µs found again",
        first.as_secs_f64() * 1e6,
        cached.as_secs_f64() * 1e6
    );
}
