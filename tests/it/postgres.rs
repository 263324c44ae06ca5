//! Two real gateway processes sharing one PostgreSQL database: transfers posted to both at
//! once end up in one gap-free chain that `isa-gateway ledger verify` accepts, each delivered
//! exactly once — counted at the partner (one real HTTPS receiver both gateways send to), not only
//! in the ledger, which records a second delivery as "already recorded".

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::backends::PgDatabase;
use crate::helpers::{
    GatewayProcess, Receiver, dev_config_in, gp_update, http_client, https_destination, pki, post_accepted,
};

/// The shipped configuration for gateway `id` on the shared database and key store, its GP
/// destination the shared HTTPS receiver on `port`, and no rate limit in the way of a load test.
fn shared_config(dir: &Path, id: &str, db: &PgDatabase, keys: &Path, port: u16) -> PathBuf {
    let destination = https_destination("y99001-gp-drop", port).replace("max_attempts = 3", "max_attempts = 1000");
    dev_config_in(dir, |c| {
        let start = c.find("[[destinations]]\nid = \"y99001-gp-drop\"").unwrap();
        let end = start + c[start..].find("\n\n").unwrap();
        format!(
            "gateway_id = \"{id}\"\n{}{}{}",
            &c[..start],
            destination.trim_end(),
            &c[end..]
        )
        .replace(
            "[limits]\n",
            "[limits]\nrequests_per_sec = 100000\nrequest_burst = 100000\nconnections_per_identity = 100000\n",
        )
        .replace(
            "database_url = \"sqlite://var/isa-gateway.db\"",
            &format!("database_url = \"{}\"", db.url),
        )
        .replace("keys_dir = \"var/keys\"", &format!("keys_dir = \"{}\"", keys.display()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_writing_at_once_keep_one_verifiable_chain() {
    let db = PgDatabase::create().await;
    let shared_keys = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(200).await;
    // Two gateways on one host, both on port 0: each needs its own id.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config_a = shared_config(dir_a.path(), "gw-a", &db, shared_keys.path(), receiver.port);
    let config_b = shared_config(dir_b.path(), "gw-b", &db, shared_keys.path(), receiver.port);
    // The first makes the development keys; the second finds them.
    let a = GatewayProcess::start(&config_a).await;
    let b = GatewayProcess::start(&config_b).await;

    // 1,000 transfers from 16 kept-alive clients, alternating between the gateways.
    const TRANSFERS: usize = 1000;
    let client = http_client(&pki().sender);
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    let urls = [&a, &b].map(|g| g.url("/v1/agreements/nvtt-gp-update/transfers"));
    let clients = (0..16).map(|c| {
        let (client, body, urls) = (client.clone(), body.clone(), urls.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (c..TRANSFERS).step_by(16) {
                ids.push(post_accepted(client.clone(), urls[i % 2].clone(), body.clone(), &[]).await);
            }
            ids
        })
    });
    let mut ids = HashSet::new();
    for c in clients.collect::<Vec<_>>() {
        ids.extend(c.await.unwrap());
    }
    assert_eq!(ids.len(), TRANSFERS);

    let ledger = isa_gateway::ledger::open(&db.url).await.unwrap();
    let delivered_in_ledger = || async {
        let entries = ledger.entries_after(0, 10_000).await.unwrap();
        entries
            .iter()
            .filter(|e| e.event.status == isa_gateway::ledger::TransferStatus::Delivered)
            .count()
    };
    for _ in 0..1200 {
        if delivered_in_ledger().await == TRANSFERS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered_in_ledger().await, TRANSFERS, "every delivery recorded");
    // What the partner received, every request counted.
    let all = receiver.ids();
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct, ids, "every transfer reached the partner");
    assert_eq!(
        all.len(),
        TRANSFERS,
        "each exactly once: {} duplicate(s) at the partner",
        all.len() - distinct.len()
    );
    // Both gateways sent some, and their delivery events say which sent what.
    let mut by_gateway = HashMap::new();
    for e in ledger.entries_after(0, 10_000).await.unwrap() {
        if e.event.status == isa_gateway::ledger::TransferStatus::Delivered {
            assert_eq!(e.event.destination.as_deref(), Some("y99001-gp-drop"));
            *by_gateway.entry(e.event.gateway.clone().unwrap()).or_insert(0) += 1;
        }
    }
    assert_eq!(
        by_gateway.keys().map(String::as_str).collect::<HashSet<_>>(),
        HashSet::from(["gw-a", "gw-b"]),
        "{by_gateway:?}"
    );

    a.kill();
    b.kill();
    for config in [&config_a, &config_b] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_isa-gateway"))
            .args(["ledger", "verify", "--config"])
            .arg(config)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("ok: 2000 entries"), "{text}");
    }
}

/// The ledger reaches PostgreSQL over TLS, verifying the server's certificate and name against
/// the CA it is given, and refuses a server that CA did not sign. (The test server's certificate is the one
/// PostgreSQL is configured with: on Debian, the self-signed "snakeoil" certificate.)
#[tokio::test]
async fn the_ledger_reaches_postgresql_over_verified_tls() {
    use sqlx::{Connection, Row};
    let db = PgDatabase::create().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let settings = sqlx::query("SELECT current_setting('ssl') AS ssl, current_setting('ssl_cert_file') AS cert")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (ssl, cert): (String, String) = (settings.get("ssl"), settings.get("cert"));
    assert_eq!(
        ssl, "on",
        "this test needs the PostgreSQL server to offer TLS (Debian's default, with its snakeoil certificate)"
    );
    // verify-full: the certificate names `localhost`, so connect by that name.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={cert}",
        db.url.replace("@127.0.0.1:", "@localhost:")
    );
    let ledger = isa_gateway::ledger::open(&url).await.unwrap();
    let e = isa_gateway::ledger::Event::new(
        jiff::Timestamp::now(),
        uuid::Uuid::now_v7(),
        isa_gateway::ledger::EventKind::Decision,
        isa_gateway::ledger::TransferStatus::Refused,
        "a",
        "s",
    );
    assert_eq!(ledger.append(e).await.unwrap().seq, 1);
    let mut tls = sqlx::PgConnection::connect(&url).await.unwrap();
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut tls)
        .await
        .unwrap();
    assert!(encrypted);
    // Another CA (the test PKI's) does not vouch for this server: no connection.
    let wrong = url.replace(&cert, &pki().ca_cert.display().to_string());
    let refused = isa_gateway::ledger::open(&wrong)
        .await
        .err()
        .expect("a server the CA did not sign");
    assert!(refused.to_string().contains("certificate"), "{refused}");
}

/// Issue 17, row 2: backend connections cut during a burst (a failover, an operator's
/// `pg_terminate_backend`). Every answer is 202 or a clean 503 `ledger_unavailable` with
/// `Retry-After` (never a 500, which a client may not retry), and every 202 is in the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_during_a_burst_give_only_202_or_503() {
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_in(dir.path(), |c| {
        c.replace(
            "database_url = \"sqlite://var/isa-gateway.db\"",
            &format!("database_url = \"{}\"", db.url),
        )
        .replace(
            "[limits]\n",
            "[limits]\nrequests_per_sec = 100000\nrequest_burst = 100000\nconnections_per_identity = 100000\n",
        )
    });
    let gateway = GatewayProcess::start(&config).await;
    let client = http_client(&pki().sender);
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    let url = gateway.url("/v1/agreements/nvtt-gp-update/transfers");
    let posts: Vec<_> = (0..400)
        .map(|i| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(i * 2)).await;
                // Half with an Idempotency-Key: its lookup is a database read on the request path.
                let mut request = client.post(url).header("content-type", "application/json");
                if i % 2 == 0 {
                    request = request.header("idempotency-key", format!("burst-{i}"));
                }
                let r = request.body(body).send().await.unwrap();
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                (status, retry_after, v)
            })
        })
        .collect();
    let mut cut = 0;
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        cut += db.terminate_connections().await;
    }
    let mut accepted = HashSet::new();
    let mut unavailable = 0;
    for p in posts {
        let (status, retry_after, v) = p.await.unwrap();
        match status {
            202 => {
                accepted.insert(v["transfer_id"].as_str().unwrap().to_owned());
            }
            503 => {
                assert_eq!(v["code"], "ledger_unavailable", "{v}");
                assert!(retry_after, "a 503 says when to retry");
                unavailable += 1;
            }
            other => panic!("answered {other}: {v}"),
        }
    }
    eprintln!("connections cut: {cut}; 202: {}; 503: {unavailable}", accepted.len());
    assert!(cut > 0, "the test cut no connection");
    let ledger = isa_gateway::ledger::open(&db.url).await.unwrap();
    let recorded: HashSet<String> = ledger
        .entries_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.transfer_id.to_string())
        .collect();
    assert!(accepted.is_subset(&recorded), "every 202 is in the ledger");
    gateway.kill();
}

/// Issue 17, row 1 with crashes: two gateways on one database, one of them killed (SIGKILL) twice
/// mid-burst and restarted. Nothing accepted is lost, and a transfer reaches the partner twice
/// only where a kill fell between sending and recording: at most kills × the destination's
/// concurrency (4) duplicates, counted at the receivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_one_killed_mid_burst_lose_nothing_and_duplicate_only_at_kills() {
    const TRANSFERS: usize = 600;
    const KILLS: usize = 2;
    let db = PgDatabase::create().await;
    let shared_keys = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(200).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config_a = shared_config(dir_a.path(), "gw-a", &db, shared_keys.path(), receiver.port);
    let config_b = shared_config(dir_b.path(), "gw-b", &db, shared_keys.path(), receiver.port);
    let a = GatewayProcess::start(&config_a).await;
    let b = GatewayProcess::start(&config_b).await;
    let path = "/v1/agreements/nvtt-gp-update/transfers";
    let urls = std::sync::Arc::new(std::sync::RwLock::new([a.url(path), b.url(path)]));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let client = http_client(&pki().sender);
    let body = serde_json::to_vec(&json!({"message_type": "gp_update", "payload": gp_update()})).unwrap();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (client, body, urls, answered) = (client.clone(), body.clone(), urls.clone(), answered.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (c..TRANSFERS).step_by(16) {
                    // The same Idempotency-Key on whichever gateway answers: a retry after a
                    // crash is the same transfer, never a second one.
                    let key = format!("t-{i}");
                    let mut id = None;
                    for attempt in 0..200 {
                        let url = urls.read().unwrap()[(i + attempt) % 2].clone();
                        let sent = client
                            .post(url)
                            .header("content-type", "application/json")
                            .header("idempotency-key", &key)
                            .body(body.clone())
                            .send()
                            .await;
                        if let Ok(r) = sent
                            && r.status().as_u16() == 202
                            && let Ok(v) = r.json::<serde_json::Value>().await
                        {
                            id = v["transfer_id"].as_str().map(str::to_owned);
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    ids.push(id.expect("accepted by one gateway or the other"));
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                ids
            })
        })
        .collect();
    // Kill A mid-burst, restart it, twice.
    let mut a = Some(a);
    for k in 1..=KILLS {
        while answered.load(std::sync::atomic::Ordering::Relaxed) < k * TRANSFERS / (KILLS + 1) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        a.take().unwrap().kill();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let restarted = GatewayProcess::start(&config_a).await;
        urls.write().unwrap()[0] = restarted.url(path);
        a = Some(restarted);
    }
    let mut accepted = HashSet::new();
    for c in clients {
        accepted.extend(c.await.unwrap());
    }
    assert_eq!(accepted.len(), TRANSFERS, "one transfer per key");

    let ledger = isa_gateway::ledger::open(&db.url).await.unwrap();
    let mut delivered = HashSet::new();
    for _ in 0..1200 {
        delivered = ledger
            .entries_after(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event.status == isa_gateway::ledger::TransferStatus::Delivered)
            .map(|e| e.event.transfer_id.to_string())
            .collect();
        if delivered.len() == TRANSFERS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, accepted, "nothing accepted is lost");
    let files = receiver.ids();
    let distinct: HashSet<String> = files.iter().cloned().collect();
    assert_eq!(distinct, accepted, "every transfer reached the partner");
    let duplicates = files.len() - distinct.len();
    eprintln!("kills: {KILLS}; duplicates at the partner: {duplicates}");
    assert!(duplicates <= KILLS * 4, "{duplicates} duplicates after {KILLS} kills");
    a.take().unwrap().kill();
    b.kill();
}
