//! The test harness: an in-memory PKI made once per run, a gateway per test on its own port with
//! its own database and folders, a real mTLS HTTPS receiver, and raw TLS clients.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use isa_gateway::app::config::{Config, Overrides};
use isa_gateway::app::startup::Application;
use isa_gateway::ledger::{Entry, Ledger};
use isa_gateway::platform::clock::Clock;
use isa_gateway::platform::pki::{Ca, Issued, Validity};
use isa_gateway::platform::tls::provider;
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SENDER: &str = "tt-case-system";
pub const AUDITOR: &str = "ig-audit";
/// Registered, may send, but named in no agreement.
pub const OTHER_SENDER: &str = "other-case-system";
pub const GP_AGREEMENT: &str = "nvtt-gp-update";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A certificate and key written to disk, for configurations and clients.
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub issued: Issued,
}

/// The test PKI: made once per test run, shared by every test.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca_cert: PathBuf,
    pub crl: PathBuf,
    /// A CRL from the test CA revoking `revoked` and `sender` too (for a gateway that rereads
    /// its CRL while running).
    pub crl_revoking_sender: String,
    pub server: Files,
    pub sender: Files,
    pub auditor: Files,
    pub other_sender: Files,
    pub unregistered: Files,
    pub expired: Files,
    pub revoked: Files,
    pub foreign: Files,
    /// The gateway's outbound client certificate (issued by the gateway CA).
    pub gateway_client: Files,
    /// The receiver's own CA and server certificate.
    pub receiver_ca_cert: PathBuf,
    pub receiver_server: Files,
    /// The token issuer's ES256 key pair (PKCS#8 private, SPKI public), and an impostor's.
    pub issuer_key: PathBuf,
    pub issuer_pub: PathBuf,
    pub foreign_issuer_key: PathBuf,
}

/// The token issuer every test gateway trusts (the development issuer's name and key id).
pub const ISSUER: &str = "urn:isa-gateway:dev-issuer";
pub const KEY_ID: &str = "dev-1";
pub const AUDIENCE: &str = "isa-gateway";

/// Claims for a token valid now for an hour.
pub fn claims(sub: &str, roles: &[&str]) -> Value {
    let now = jiff::Timestamp::now().as_second();
    serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + 3600, "roles": roles})
}

/// Signs `claims` with ES256 under `key` (a PKCS#8 PEM file), naming `kid`.
pub fn sign(claims: &Value, kid: Option<&str>, key: &Path) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(key).unwrap()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A valid token from the trusted issuer.
pub fn token(sub: &str, roles: &[&str]) -> String {
    sign(&claims(sub, roles), Some(KEY_ID), &pki().issuer_key)
}

fn put(dir: &Path, name: &str, issued: Issued) -> Files {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    isa_gateway::platform::pki::write_file(&key, issued.key.expose().as_bytes(), true).unwrap();
    Files { cert, key, issued }
}

pub fn identity(system: &str) -> String {
    format!("urn:isa-gateway:system:{system}")
}

pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        isa_gateway::platform::tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let year = Validity::days_from_now(365);
        let ca = Ca::new("isa-gateway test CA", year).unwrap();
        let ca_cert = d.join("ca.crt");
        std::fs::write(&ca_cert, &ca.cert_pem).unwrap();
        let client = |id: &str, v: Validity| ca.issue_client(&identity(id), v).unwrap();
        let revoked = put(d, "revoked", client("revoked-system", year));
        let crl = d.join("ca.crl");
        std::fs::write(&crl, ca.crl(&[&revoked.issued.serial], 30).unwrap()).unwrap();
        let sender = put(d, SENDER, client(SENDER, year));
        let crl_revoking_sender = ca.crl(&[&revoked.issued.serial, &sender.issued.serial], 30).unwrap();
        let foreign_ca = Ca::new("some other CA", year).unwrap();
        let receiver_ca = Ca::new("receiver CA", year).unwrap();
        let receiver_ca_cert = d.join("receiver-ca.crt");
        std::fs::write(&receiver_ca_cert, &receiver_ca.cert_pem).unwrap();
        let issuer = rcgen::KeyPair::generate().unwrap();
        let issuer_key = d.join("token-issuer.key");
        let issuer_pub = d.join("token-issuer.pub.pem");
        isa_gateway::platform::pki::write_file(&issuer_key, issuer.serialize_pem().as_bytes(), true).unwrap();
        std::fs::write(&issuer_pub, issuer.public_key_pem()).unwrap();
        let foreign_issuer_key = d.join("foreign-issuer.key");
        isa_gateway::platform::pki::write_file(
            &foreign_issuer_key,
            rcgen::KeyPair::generate().unwrap().serialize_pem().as_bytes(),
            true,
        )
        .unwrap();
        TestPki {
            issuer_key,
            issuer_pub,
            foreign_issuer_key,
            server: put(d, "server", ca.issue_server(&["localhost", "127.0.0.1"], year).unwrap()),
            sender,
            crl_revoking_sender,
            auditor: put(d, AUDITOR, client(AUDITOR, year)),
            other_sender: put(d, OTHER_SENDER, client(OTHER_SENDER, year)),
            unregistered: put(d, "unregistered", client("unregistered-system", year)),
            expired: put(d, "expired", client(SENDER, Validity::expired())),
            revoked,
            foreign: put(d, "foreign", foreign_ca.issue_client(&identity(SENDER), year).unwrap()),
            gateway_client: put(
                d,
                "gateway-client",
                ca.issue_client("urn:isa-gateway:gateway", year).unwrap(),
            ),
            receiver_server: put(
                d,
                "receiver-server",
                receiver_ca.issue_server(&["localhost", "127.0.0.1"], year).unwrap(),
            ),
            receiver_ca_cert,
            ca_cert,
            crl,
            _dir: dir,
        }
    })
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn roots(path: &Path) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for c in certs(path) {
        store.add(c).unwrap();
    }
    store
}

/// A TLS client configuration trusting the gateway's CA, presenting `client` if given.
pub fn client_tls(client: Option<&Files>) -> ClientConfig {
    client_tls_versions(client, rustls::DEFAULT_VERSIONS)
}

/// The same, speaking only `versions`.
pub fn client_tls_versions(
    client: Option<&Files>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(&pki().ca_cert));
    match client {
        Some(f) => builder
            .with_client_auth_cert(certs(&f.cert), PrivateKeyDer::from_pem_file(&f.key).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// A client presenting `client`'s certificate and a practitioner's token (alice).
pub fn http_client(client: &Files) -> reqwest::Client {
    http_client_as(client, &token("alice", &["practitioner", "safeguarding_lead"]))
}

/// A client presenting `client`'s certificate and the given bearer token.
pub fn http_client_as(client: &Files, bearer: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {bearer}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .tls_backend_preconfigured(client_tls(Some(client)))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Options for one test gateway.
pub struct Spawn {
    pub clock: Clock,
    /// Extra agreement files: (file name, TOML text).
    pub agreements: Vec<(String, String)>,
    /// Extra `[[destinations]]` TOML.
    pub destinations: String,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_read_secs: u64,
    /// The gateway's own copy of the CRL (rewritten by the test), checked every second; by
    /// default the shared test CRL, checked every minute.
    pub own_crl: bool,
    /// The ledger's database (default: SQLite in the test's directory).
    pub database_url: String,
    /// The key store (default: `keys` in the test's directory). Gateways sharing a database
    /// share their keys.
    pub keys_dir: Option<PathBuf>,
    /// Per-system requests per second and burst (default: high enough never to matter).
    pub rate: (u32, u32),
    /// Transfers held for a director per agreement at once.
    pub held_per_agreement: u64,
    /// Connections one client identity may hold open.
    pub connections_per_identity: usize,
    pub expiry: Expiry,
}

/// When held transfers and dead letters lose their bytes, and how often that is looked for.
pub struct Expiry {
    pub held_secs: u64,
    pub dead_letter_secs: u64,
    pub every_ms: u64,
}

impl Default for Expiry {
    fn default() -> Self {
        Self {
            held_secs: 7 * 24 * 3600,
            dead_letter_secs: 30 * 24 * 3600,
            every_ms: 60_000,
        }
    }
}

impl Default for Spawn {
    fn default() -> Self {
        Self {
            // Inside every shipped agreement's dates, whenever the tests run.
            clock: Clock::Fixed(at("2026-06-01T12:00:00Z")),
            agreements: Vec::new(),
            destinations: String::new(),
            max_body_bytes: 64 * 1024,
            body_read_secs: 10,
            own_crl: false,
            database_url: "sqlite://ledger.db".into(),
            keys_dir: None,
            rate: (100_000, 100_000),
            held_per_agreement: 200,
            connections_per_identity: 10_000,
            expiry: Expiry::default(),
        }
    }
}

pub fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ledger: Arc<dyn Ledger>,
    pub config_path: PathBuf,
    pub sender: reqwest::Client,
    pub auditor: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Spawn::default()).await
    }

    pub async fn spawn_with(opts: Spawn) -> Self {
        let p = pki();
        let dir = tempfile::tempdir().unwrap();
        let agreements = dir.path().join("agreements");
        std::fs::create_dir_all(&agreements).unwrap();
        for entry in std::fs::read_dir(repo().join("isa-templates")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, agreements.join(path.file_name().unwrap())).unwrap();
            }
        }
        for (name, text) in &opts.agreements {
            std::fs::write(agreements.join(name), text).unwrap();
        }
        let crl = if opts.own_crl {
            let own = dir.path().join("ca.crl");
            std::fs::copy(&p.crl, &own).unwrap();
            own
        } else {
            p.crl.clone()
        };
        let config_path = dir.path().join("gateway.toml");
        let config = format!(
            r#"
profile = "development"
listen = "127.0.0.1:0"
database_url = "{database_url}"
agreements_dir = "agreements"
schemas_dir = "{schemas}"
keys_dir = "{keys_dir}"

[auth]
audience = "{AUDIENCE}"

[[auth.issuers]]
issuer = "{ISSUER}"
algorithms = ["ES256"]
public_key = "{issuer_pub}"
key_id = "{KEY_ID}"
roles = ["practitioner", "safeguarding_lead", "director", "dpo", "auditor"]
systems = ["{SENDER}", "{AUDITOR}", "{OTHER_SENDER}"]

[tls]
server_cert = "{server_cert}"
server_key = "{server_key}"
client_ca = "{ca}"
crls = ["{crl}"]
crl_reload_secs = {crl_reload}

[limits]
max_body_bytes = {max_body}
body_read_secs = {body_secs}
requests_per_sec = {rate}
request_burst = {burst}
held_per_agreement = {held_quota}
connections_per_identity = {connections}

[delivery]
poll_interval_ms = 50
held_expiry_secs = {held_expiry}
dead_letter_expiry_secs = {dead_expiry}
expiry_interval_ms = {expiry_every}

[[systems]]
id = "{SENDER}"
identity = "{sender_id}"
roles = ["sender"]

[[systems]]
id = "{AUDITOR}"
identity = "{auditor_id}"
roles = ["auditor", "dpo", "monitor"]

[[systems]]
id = "{OTHER_SENDER}"
identity = "{other_id}"
roles = ["sender"]

[[destinations]]
id = "y99001-gp-drop"
transport = "dir"
path = "deliveries/y99001-gp"

[[destinations]]
id = "nhse-dataset-drop"
transport = "dir"
path = "deliveries/nhse-dataset"

[[destinations]]
id = "mash-drop"
transport = "dir"
path = "deliveries/mash"

[[destinations]]
id = "lado-drop"
transport = "dir"
path = "deliveries/lado"

[[destinations]]
id = "disclosures-drop"
transport = "dir"
path = "deliveries/disclosures"

[[destinations]]
id = "funder-drop"
transport = "dir"
path = "deliveries/funder"

{extra}
"#,
            schemas = repo().join("schemas").display(),
            issuer_pub = p.issuer_pub.display(),
            server_cert = p.server.cert.display(),
            server_key = p.server.key.display(),
            ca = p.ca_cert.display(),
            crl = crl.display(),
            crl_reload = if opts.own_crl { 1 } else { 60 },
            max_body = opts.max_body_bytes,
            body_secs = opts.body_read_secs,
            rate = opts.rate.0,
            burst = opts.rate.1,
            held_quota = opts.held_per_agreement,
            connections = opts.connections_per_identity,
            held_expiry = opts.expiry.held_secs,
            dead_expiry = opts.expiry.dead_letter_secs,
            expiry_every = opts.expiry.every_ms,
            sender_id = identity(SENDER),
            auditor_id = identity(AUDITOR),
            other_id = identity(OTHER_SENDER),
            extra = opts.destinations,
            database_url = opts.database_url,
            keys_dir = opts.keys_dir.unwrap_or_else(|| dir.path().join("keys")).display(),
        );
        std::fs::File::create(&config_path)
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        let config = Config::load(&config_path, &Overrides::default()).unwrap();
        let app = Application::build_with_clock(config, opts.clock).await.unwrap();
        let addr = app.addr();
        let ledger = app.ledger();
        tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            dir,
            ledger,
            config_path,
            sender: http_client(&p.sender),
            auditor: http_client_as(&p.auditor, &token("ivan", &["auditor"])),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// POSTs raw bytes as a transfer; returns the status and the JSON body.
    pub async fn post_raw(&self, client: &reqwest::Client, agreement: &str, body: Vec<u8>) -> (u16, Value, String) {
        let response = client
            .post(self.url(&format!("/v1/agreements/{agreement}/transfers")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, json, text)
    }

    pub async fn post(&self, agreement: &str, message_type: &str, payload: &Value) -> (u16, Value, String) {
        let body = serde_json::json!({"message_type": message_type, "payload": payload});
        self.post_raw(&self.sender, agreement, serde_json::to_vec(&body).unwrap())
            .await
    }

    /// POSTs a whole envelope (message type, payload, consent, subject_informed).
    pub async fn post_envelope(&self, agreement: &str, envelope: &Value) -> (u16, Value, String) {
        self.post_raw(&self.sender, agreement, serde_json::to_vec(envelope).unwrap())
            .await
    }

    /// The delivered document for a transfer, once delivered.
    pub async fn delivered(&self, folder: &str, transfer_id: &str) -> Value {
        let settled = self.settled(transfer_id).await;
        assert_eq!(settled["status"], "delivered", "{settled}");
        let path = self
            .dir
            .path()
            .join("deliveries")
            .join(folder)
            .join(format!("{transfer_id}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    pub async fn get(&self, client: &reqwest::Client, path: &str) -> (u16, Value) {
        let response = client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls the transfer until delivery has finished one way or the other (it is asynchronous).
    pub async fn settled(&self, transfer_id: &str) -> Value {
        for _ in 0..400 {
            let (status, body) = self.get(&self.auditor, &format!("/v1/transfers/{transfer_id}")).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] != "accepted" && body["status"] != "retrying" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("transfer {transfer_id} never settled");
    }

    /// The Prometheus text at `/metrics`, as the auditing system reads it.
    pub async fn metrics(&self) -> String {
        self.auditor
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn entries(&self) -> Vec<Entry> {
        self.ledger.entries_after(0, 10_000).await.unwrap()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }
}

pub fn fixture(message_type: &str, kind: &str, name_prefix: &str) -> Value {
    let dir = repo().join("tests/fixtures/messages").join(message_type).join(kind);
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let path = paths
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(name_prefix))
        .unwrap_or_else(|| panic!("no fixture {name_prefix} in {}", dir.display()));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn gp_update() -> Value {
    fixture("gp_update", "valid", "01")
}

/// Connects with raw TLS, sends `GET /healthz`, returns the response head or the error text.
pub async fn handshake(addr: SocketAddr, config: ClientConfig) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    if text.is_empty() {
        Err("connection closed with no response".into())
    } else {
        Ok(text)
    }
}

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
pub struct Received {
    pub transfer_id: Option<String>,
    pub agreement_id: Option<String>,
    pub body: Vec<u8>,
}

/// How a test receiver behaves.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverOpts {
    /// Listen on this port (for "down, then up" tests); a free one if `None`.
    pub port: Option<u16>,
    pub answer: u16,
    /// Wait this long before answering (for "hangs" tests).
    pub delay: Duration,
}

impl Default for ReceiverOpts {
    fn default() -> Self {
        Self {
            port: None,
            answer: 200,
            delay: Duration::ZERO,
        }
    }
}

/// A real HTTPS receiver on loopback that requires a client certificate from the gateway's CA.
pub struct Receiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Receiver {
    pub async fn start(answer: u16) -> Self {
        Self::start_with(ReceiverOpts {
            answer,
            ..ReceiverOpts::default()
        })
        .await
    }

    pub async fn start_with(opts: ReceiverOpts) -> Self {
        let p = pki();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&p.ca_cert)), provider())
            .build()
            .unwrap();
        let tls = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certs(&p.receiver_server.cert),
                PrivateKeyDer::from_pem_file(&p.receiver_server.key).unwrap(),
            )
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = received.clone();
        let listener = std::net::TcpListener::bind(("127.0.0.1", opts.port.unwrap_or(0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new().route(
                "/inbox",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let shared = shared.clone();
                    async move {
                        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                        tokio::time::sleep(opts.delay).await;
                        shared.lock().unwrap().push(Received {
                            transfer_id: header("x-isa-transfer-id"),
                            agreement_id: header("x-isa-agreement-id"),
                            body: body.to_vec(),
                        });
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(opts.answer).unwrap()).finish()
                    }
                }),
            )
        })
        .workers(2)
        .disable_signals()
        .listen_rustls_0_23(listener, tls)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { port, received }
    }

    /// Transfer ids received, in order (with repeats if any).
    pub fn ids(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.transfer_id.clone())
            .collect()
    }

    /// The `[[destinations]]` TOML for this receiver.
    pub fn destination(&self, id: &str) -> String {
        https_destination(id, self.port)
    }
}

/// An HTTPS destination on a loopback port, with quick retries for tests.
pub fn https_destination(id: &str, port: u16) -> String {
    let p = pki();
    format!(
        "[[destinations]]\nid = \"{id}\"\ntransport = \"https\"\nurl = \"https://localhost:{port}/inbox\"\nca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\ntimeout_secs = 2\n\n[destinations.delivery]\nmax_attempts = 3\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\nbreaker_threshold = 100\n",
        p.receiver_ca_cert.display(),
        p.gateway_client.cert.display(),
        p.gateway_client.key.display()
    )
}

/// The GP agreement, retargeted: a new id, another destination, other fields or dates.
pub fn gp_agreement_variant(id: &str, edit: impl Fn(String) -> String) -> (String, String) {
    let text = std::fs::read_to_string(repo().join("isa-templates/nvtt-gp-update.toml")).unwrap();
    let text = text.replace("id = \"nvtt-gp-update\"", &format!("id = \"{id}\""));
    (format!("{id}.toml"), edit(text))
}

/// The real `isa-gateway serve` process, with its log captured.
pub struct GatewayProcess {
    child: std::process::Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl GatewayProcess {
    /// Starts `serve --config <config> --listen 127.0.0.1:0` and waits until it listens.
    pub async fn start(config: &Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        for _ in 0..400 {
            let port = log
                .lock()
                .unwrap()
                .split("listening on https://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(' ').next().and_then(|p| p.parse::<u16>().ok()));
            if let Some(port) = port {
                return Self {
                    child,
                    port,
                    log,
                    reader: Some(reader),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("gateway exited with {status}:\n{}", log.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gateway did not start:\n{}", log.lock().unwrap());
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The console's address, as the gateway announced it.
    pub fn console_url(&self) -> String {
        let log = self.log.lock().unwrap();
        let rest = log.split("console for people: ").nth(1).expect("the console listens");
        rest.split('/').take(3).collect::<Vec<_>>().join("/")
    }

    /// SIGKILL: no shutdown, no flushing, nothing graceful.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for GatewayProcess {
    /// A test that fails leaves no gateway running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a transfer's JSON body to `url` (with `headers`), expects 202, returns the transfer id.
pub async fn post_accepted(client: reqwest::Client, url: String, body: Vec<u8>, headers: &[(&str, &str)]) -> String {
    let mut request = client.post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    r.json::<Value>().await.unwrap()["transfer_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The shipped development configuration, rewritten to run in `dir` with the test PKI.
pub fn dev_config_in(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let p = pki();
    let config = std::fs::read_to_string(repo().join("gateway.toml"))
        .unwrap()
        .replace(
            "agreements_dir = \"isa-templates\"",
            &format!("agreements_dir = \"{}\"", repo().join("isa-templates").display()),
        )
        .replace(
            "schemas_dir = \"schemas\"",
            &format!("schemas_dir = \"{}\"", repo().join("schemas").display()),
        )
        .replace("certs/dev/server.crt", &p.server.cert.display().to_string())
        .replace("certs/dev/server.key", &p.server.key.display().to_string())
        .replace("certs/dev/ca.crt", &p.ca_cert.display().to_string())
        .replace("certs/dev/ca.crl", &p.crl.display().to_string())
        .replace("certs/dev/token-issuer.pub.pem", &p.issuer_pub.display().to_string())
        .replace("certs/dev/token-issuer.key", &p.issuer_key.display().to_string())
        // Tests run side by side: each console on a port of its own.
        .replace("listen = \"127.0.0.1:8444\"", "listen = \"127.0.0.1:0\"");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, edit(config)).unwrap();
    path
}
