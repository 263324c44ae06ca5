//! NHS MESH through the real `mesh-sandbox` (PyPI, pinned), over mutual TLS, read back with NHS
//! Digital's own `mesh_client`. The sandbox's virtual environment is made on first use by
//! `scripts/mesh-sandbox-venv.sh` (PyPI only), so `cargo test` works on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Spawn, TestApp, fixture, free_port, pki, repo};

fn venv() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let path = std::env::var_os("MESH_SANDBOX_VENV")
            .map_or_else(|| repo().join("target/mesh-sandbox-venv"), PathBuf::from);
        let out = Command::new("bash")
            .arg(repo().join("scripts/mesh-sandbox-venv.sh"))
            .arg(&path)
            .output()
            .expect("bash must be available");
        assert!(
            out.status.success(),
            "cannot install mesh-sandbox:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
}

/// The sandbox: memory store, full HMAC checks with the shared key `TestKey`, one worker, TLS
/// with the receiver's server certificate, client certificates required from the gateway's CA.
struct Sandbox {
    child: Child,
    port: u16,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    async fn start() -> Self {
        let p = pki();
        let port = free_port();
        let child = Command::new(venv().join("bin/uvicorn"))
            .args([
                "mesh_sandbox.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--ssl-certfile")
            .arg(&p.receiver_server.cert)
            .arg("--ssl-keyfile")
            .arg(&p.receiver_server.key)
            .arg("--ssl-ca-certs")
            .arg(&p.ca_cert)
            .args(["--ssl-cert-reqs", "2"])
            .envs([
                ("STORE_MODE", "memory"),
                ("AUTH_MODE", "full"),
                ("SHARED_KEY", "TestKey"),
                ("PYTHONWARNINGS", "ignore"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sandbox = Self { child, port };
        let client = sandbox.admin_client();
        for _ in 0..300 {
            if client
                .get(sandbox.url("/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return sandbox;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mesh-sandbox did not start on port {port}");
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// A client for the sandbox's admin endpoints (which take no MESH token).
    fn admin_client(&self) -> reqwest::Client {
        let p = pki();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&p.receiver_ca_cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        use rustls::pki_types::pem::PemObject;
        let tls = rustls::ClientConfig::builder_with_provider(isa_gateway::platform::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                rustls::pki_types::CertificateDer::pem_file_iter(&p.gateway_client.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_file(&p.gateway_client.key).unwrap(),
            )
            .unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
    }

    /// Reads and acknowledges a mailbox with NHS Digital's mesh_client.
    fn read_inbox(&self, mailbox: &str) -> Vec<Value> {
        let p = pki();
        let out = Command::new(venv().join("bin/python"))
            .arg(repo().join("tests/mesh/read_inbox.py"))
            .args([&self.url(""), mailbox, "password", "TestKey"])
            .args([&p.gateway_client.cert, &p.gateway_client.key, &p.receiver_ca_cert])
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mesh_client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Sends `count` data messages from `from` to `to` with NHS Digital's mesh_client.
    fn send_messages(&self, from: &str, to: &str, count: usize) {
        let p = pki();
        let out = Command::new(venv().join("bin/python"))
            .arg(repo().join("tests/mesh/send_messages.py"))
            .args([&self.url(""), from, "password", "TestKey"])
            .args([&p.gateway_client.cert, &p.gateway_client.key, &p.receiver_ca_cert])
            .args([to, &count.to_string()])
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mesh_client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The destination TOML for sending from X26ABC1 to X26ABC2.
    fn destination(&self, id: &str, dir: &Path, chunk_size: usize, compress: bool) -> String {
        let p = pki();
        let password = dir.join(format!("{id}-password"));
        let key = dir.join(format!("{id}-shared-key"));
        isa_gateway::platform::pki::write_file(&password, b"password\n", true).unwrap();
        isa_gateway::platform::pki::write_file(&key, b"TestKey\n", true).unwrap();
        format!(
            "[[destinations]]\nid = \"{id}\"\ntransport = \"mesh\"\nurl = \"{url}\"\nmailbox = \"X26ABC1\"\nto = \"X26ABC2\"\n\
             workflow_id = \"TEST_WORKFLOW\"\npassword_file = \"{password}\"\nshared_key_file = \"{key}\"\nca = \"{ca}\"\n\
             client_cert = \"{cert}\"\nclient_key = \"{ckey}\"\nchunk_size = {chunk_size}\ncompress = {compress}\n\
             inbox_poll_ms = 100\ntimeout_secs = 5\n\n[destinations.delivery]\nmax_attempts = 5\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\n",
            url = self.url(""),
            password = password.display(),
            key = key.display(),
            ca = p.receiver_ca_cert.display(),
            cert = p.gateway_client.cert.display(),
            ckey = p.gateway_client.key.display(),
        )
    }
}

/// The dataset-return agreement, sending through a MESH destination.
fn dataset_over(destination: &str, id: &str) -> (String, String) {
    let text = std::fs::read_to_string(repo().join("isa-templates/nvtt-nhse-dataset.toml"))
        .unwrap()
        .replace("id = \"nvtt-nhse-dataset\"", &format!("id = \"{id}\""))
        .replace(
            "destination = \"nhse-dataset-drop\"",
            &format!("destination = \"{destination}\""),
        );
    (format!("{id}.toml"), text)
}

async fn app_with_mesh(sandbox: &Sandbox, chunk_size: usize, compress: bool) -> TestApp {
    let keys = tempfile::tempdir().unwrap().keep();
    TestApp::spawn_with(Spawn {
        agreements: vec![dataset_over("nhse-mesh", "dataset-over-mesh")],
        destinations: sandbox.destination("nhse-mesh", &keys, chunk_size, compress),
        ..Spawn::default()
    })
    .await
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test]
async fn a_transfer_arrives_in_the_recipients_mailbox_with_its_headers() {
    let sandbox = Sandbox::start().await;
    let app = app_with_mesh(&sandbox, 20_000_000, false).await;
    let (status, body, _) = app
        .post(
            "dataset-over-mesh",
            "nhs_dataset_return",
            &fixture("nhs_dataset_return", "valid", "01"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["transfer_id"].as_str().unwrap().to_owned();
    let settled = app.settled(&id).await;
    assert_eq!(settled["status"], "delivered", "{settled}");

    let inbox = sandbox.read_inbox("X26ABC2");
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert_eq!(m["headers"]["workflowid"], "TEST_WORKFLOW");
    assert_eq!(m["headers"]["localid"], id.as_str());
    assert_eq!(m["headers"]["filename"], format!("{id}.json"));
    assert_eq!(m["headers"]["from"], "X26ABC1");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m["body"].as_str().unwrap())
        .unwrap();
    let recorded = app.entries().await[0].event.sent_sha256.clone().unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        recorded,
        "the bytes MESH delivered are the bytes the ledger recorded"
    );
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(doc["payload"]["nhs_number"].as_str().unwrap().starts_with("pt-v1-"));
    let reference = settled["history"][1]["detail"].as_str().unwrap();
    assert_eq!(reference, format!("partner reference {}", m["id"].as_str().unwrap()));
}

#[tokio::test]
async fn a_large_transfer_goes_in_ordered_gzipped_chunks() {
    let sandbox = Sandbox::start().await;
    let app = app_with_mesh(&sandbox, 512, true).await;
    let mut payload = fixture("nhs_dataset_return", "valid", "01");
    payload["care_contacts"] = json!(
        (1..=28)
            .map(|d| json!({"date": format!("2025-02-{d:02}"), "attended": "5"}))
            .collect::<Vec<_>>()
    );
    let (status, body, _) = app.post("dataset-over-mesh", "nhs_dataset_return", &payload).await;
    assert_eq!(status, 202, "{body}");
    let id = body["transfer_id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "delivered");
    let inbox = sandbox.read_inbox("X26ABC2");
    assert_eq!(inbox.len(), 1);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(inbox[0]["body"].as_str().unwrap())
        .unwrap();
    assert!(
        bytes.len() > 3 * 512,
        "it needed at least four chunks: {} bytes",
        bytes.len()
    );
    assert_eq!(
        sha256_hex(&bytes),
        app.entries().await[0].event.sent_sha256.clone().unwrap()
    );
}

#[tokio::test]
async fn a_non_delivery_report_marks_the_transfer_undeliverable() {
    let sandbox = Sandbox::start().await;
    let app = app_with_mesh(&sandbox, 20_000_000, false).await;
    let (_, body, _) = app
        .post(
            "dataset-over-mesh",
            "nhs_dataset_return",
            &fixture("nhs_dataset_return", "valid", "02"),
        )
        .await;
    let id = body["transfer_id"].as_str().unwrap().to_owned();
    let settled = app.settled(&id).await;
    let mesh_id = settled["history"][1]["detail"]
        .as_str()
        .unwrap()
        .trim_start_matches("partner reference ")
        .to_owned();

    // MESH's own non-delivery report (the recipient never collected it), simulated by the sandbox.
    let r = sandbox
        .admin_client()
        .post(sandbox.url("/messageexchange/admin/report"))
        .json(&json!({
            "mailbox_id": "X26ABC1",
            "code": "14",
            "description": "Message not collected by recipient after 5 days",
            "workflow_id": "TEST_WORKFLOW",
            "subject": "NDR",
            "linked_message_id": mesh_id,
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, t) = app.get(&app.auditor, &format!("/v1/transfers/{id}")).await;
        if t["status"] == "undeliverable" {
            last = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(last["status"], "undeliverable", "the report never marked the transfer");
    assert_eq!(last["reason_code"], "mesh_non_delivery");
    let detail = last["history"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.starts_with("MESH non-delivery report 14"), "{detail}");
    // The report was acknowledged: the gateway's own inbox is empty again.
    assert!(sandbox.read_inbox("X26ABC1").is_empty());
}

#[tokio::test]
async fn a_wrong_shared_key_is_refused_and_retried_not_lost() {
    let sandbox = Sandbox::start().await;
    let keys = tempfile::tempdir().unwrap();
    let destination = sandbox
        .destination("nhse-mesh", keys.path(), 20_000_000, false)
        .replace("max_attempts = 5", "max_attempts = 2");
    isa_gateway::platform::pki::write_file(&keys.path().join("nhse-mesh-shared-key"), b"BackBone\n", true).unwrap();
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![dataset_over("nhse-mesh", "dataset-over-mesh")],
        destinations: destination,
        ..Spawn::default()
    })
    .await;
    let (_, body, _) = app
        .post(
            "dataset-over-mesh",
            "nhs_dataset_return",
            &fixture("nhs_dataset_return", "valid", "01"),
        )
        .await;
    let settled = app.settled(body["transfer_id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "undeliverable");
    let detail = settled["history"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("handshake answered 403"), "{detail}");
    assert!(!detail.contains("BackBone") && !detail.contains("password"));
}

/// The gateway's own inbox done properly (issue 13, item 9): data messages a partner sent to the
/// gateway's mailbox, more than one inbox page of them, are kept unread in quarantine (0600),
/// noted in the ledger without their content, and acknowledged, so they cannot starve reports.
#[tokio::test]
async fn data_messages_to_the_gateway_are_quarantined_unread_across_inbox_pages() {
    let sandbox = Sandbox::start().await;
    let keys = tempfile::tempdir().unwrap().keep();
    let destination = sandbox
        .destination("nhse-mesh", &keys, 20_000_000, false)
        // One read only (at start): every page must be read in it.
        .replace(
            "inbox_poll_ms = 100",
            "inbox_poll_ms = 600000\ninbox_page_size = 10\nquarantine = \"quarantine\"",
        );
    // Eleven messages: two pages of ten.
    sandbox.send_messages("X26ABC2", "X26ABC1", 11);
    let app = TestApp::spawn_with(Spawn {
        agreements: vec![dataset_over("nhse-mesh", "dataset-over-mesh")],
        destinations: destination,
        ..Spawn::default()
    })
    .await;
    let folder = app.dir.path().join("quarantine/nhse-mesh");
    let mut kept = 0;
    // Whole messages only: one still being written has a hidden temporary name.
    let whole = |folder: &std::path::Path| {
        std::fs::read_dir(folder)
            .map(|d| {
                d.flatten()
                    .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    for _ in 0..400 {
        kept = whole(&folder);
        if kept == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(kept, 11, "every message of both pages is kept");
    for f in std::fs::read_dir(&folder).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(f.path())
                .unwrap()
                .starts_with("partner message ")
        );
    }
    // Noted in the ledger, digest and size only, never the content.
    let mut notes = Vec::new();
    for _ in 0..200 {
        notes = app
            .entries()
            .await
            .into_iter()
            .filter(|e| e.event.kind == isa_gateway::ledger::EventKind::Inbound)
            .collect();
        if notes.len() == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(notes.len(), 11);
    for n in &notes {
        let text = serde_json::to_string(&n.event).unwrap();
        assert!(!text.contains("partner message"), "{text}");
        assert!(n.event.received_sha256.is_some());
    }
    // Acknowledged: the gateway's inbox is empty.
    assert!(sandbox.read_inbox("X26ABC1").is_empty());
}
