//! Who may connect: mutual TLS, as a specification.

use crate::helpers::{TestApp, client_tls, client_tls_versions, handshake, pki};

#[tokio::test]
async fn accepts_a_registered_client_certificate() {
    let app = TestApp::spawn().await;
    let response = handshake(app.addr, client_tls(Some(&pki().sender))).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn refuses_a_client_without_certificate() {
    let app = TestApp::spawn().await;
    let err = handshake(app.addr, client_tls(None)).await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");
}

#[tokio::test]
async fn refuses_a_certificate_from_an_unknown_ca() {
    let app = TestApp::spawn().await;
    let err = handshake(app.addr, client_tls(Some(&pki().foreign))).await.unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
}

#[tokio::test]
async fn refuses_an_expired_certificate() {
    let app = TestApp::spawn().await;
    let err = handshake(app.addr, client_tls(Some(&pki().expired))).await.unwrap_err();
    assert!(err.contains("CertificateExpired"), "{err}");
}

#[tokio::test]
async fn refuses_a_revoked_certificate() {
    let app = TestApp::spawn().await;
    let err = handshake(app.addr, client_tls(Some(&pki().revoked))).await.unwrap_err();
    assert!(err.contains("CertificateRevoked"), "{err}");
}

/// Runs `openssl s_client` with one protocol version forced; returns whether a session was
/// established. OpenSSL is the independent peer here: rustls cannot speak TLS 1.1 at all.
fn openssl_handshake(port: u16, version_flag: &str) -> bool {
    let p = pki();
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), version_flag])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-CAfile"])
        .arg(&p.ca_cert)
        .arg("-cert")
        .arg(&p.sender.cert)
        .arg("-key")
        .arg(&p.sender.key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl must be installed for this test");
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)")
}

#[tokio::test]
async fn refuses_tls_1_1_and_accepts_tls_1_2() {
    let app = TestApp::spawn().await;
    let port = app.addr.port();
    let (old, new) =
        tokio::task::spawn_blocking(move || (openssl_handshake(port, "-tls1_1"), openssl_handshake(port, "-tls1_2")))
            .await
            .unwrap();
    assert!(!old, "a TLS 1.1 session was established");
    assert!(new, "a TLS 1.2 session was not established");
}

#[tokio::test]
async fn a_valid_certificate_with_an_unregistered_identity_gets_no_access_and_no_detail() {
    let app = TestApp::spawn().await;
    let client = crate::helpers::http_client(&pki().unregistered);
    let body = serde_json::json!({"message_type": "gp_update", "payload": crate::helpers::gp_update()});
    let (status, json, _) = app
        .post_raw(
            &client,
            crate::helpers::GP_AGREEMENT,
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        json,
        serde_json::json!({"code": "forbidden", "message": "Access denied."})
    );
    let (status, _) = app.get(&client, "/v1/agreements/nvtt-gp-update/transfers").await;
    assert_eq!(status, 403);
    // Not authenticated as anyone, so nothing is recorded against anyone.
    assert!(app.entries().await.is_empty());
}

/// Review finding L2: operational endpoints answer registered systems only.
#[tokio::test]
async fn operational_endpoints_need_a_registered_identity() {
    let app = TestApp::spawn().await;
    let client = crate::helpers::http_client(&pki().unregistered);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = app.get(&client, path).await;
        assert_eq!(status, 403, "{path}");
    }
    // Volumes per agreement and destination are for monitoring systems only (issue 13, row 7);
    // any registered system may ask whether the gateway is up.
    for path in ["/readyz", "/metrics"] {
        let (status, _) = app.get(&app.sender, path).await;
        assert_eq!(status, 403, "{path} for a sender");
        let (status, _) = app.get(&app.auditor, path).await;
        assert_eq!(status, 200, "{path} for the monitoring system");
    }
    let (status, _) = app.get(&app.sender, "/healthz").await;
    assert_eq!(status, 200);
}

/// One TLS connection: a request, the whole answer read (so TLS 1.3 tickets, if any were sent,
/// have arrived), then how the handshake went.
async fn connect_and_ask(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> rustls::HandshakeKind {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    tls.get_ref().1.handshake_kind().unwrap()
}

/// A resumed session skips the client certificate's checks (chain, dates, revocation): after a
/// certificate expired or was revoked, a client holding a session could still get in. So the
/// gateway never resumes: the client offers its session (TLS 1.2 session id, or a TLS 1.3 ticket
/// if one was given) and gets a full handshake, certificate and all, every time.
#[tokio::test]
async fn every_connection_proves_its_certificate_none_resumes() {
    let app = TestApp::spawn().await;
    for versions in [&[&rustls::version::TLS12][..], &[&rustls::version::TLS13][..]] {
        // The client keeps a session cache and offers what it holds: it is willing to resume.
        let config = client_tls_versions(Some(&pki().sender), versions);
        let config = std::sync::Arc::new(config);
        for attempt in 0..3 {
            let kind = connect_and_ask(app.addr, config.clone()).await;
            assert_eq!(kind, rustls::HandshakeKind::Full, "{versions:?}, connection {attempt}");
        }
    }
}

/// A certificate revoked while the gateway runs is refused once the new CRL is written, with no
/// restart (issue 13, row 3): the gateway rereads a CRL file when it changes (and on SIGHUP).
#[tokio::test]
async fn a_certificate_revoked_while_running_is_refused_without_a_restart() {
    let app = crate::helpers::TestApp::spawn_with(crate::helpers::Spawn {
        own_crl: true,
        ..crate::helpers::Spawn::default()
    })
    .await;
    assert!(handshake(app.addr, client_tls(Some(&pki().sender))).await.is_ok());
    std::fs::write(app.dir.path().join("ca.crl"), &pki().crl_revoking_sender).unwrap();
    // The gateway checks every second: ask until it refuses, within a bound.
    let mut refused = None;
    for _ in 0..100 {
        if let Err(e) = handshake(app.addr, client_tls(Some(&pki().sender))).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let err = refused.expect("the revoked certificate was still accepted after 10 s");
    assert!(
        err.contains("revoked") || err.contains("Revoked") || err.contains("alert"),
        "{err}"
    );
    // Others are still let in.
    assert!(handshake(app.addr, client_tls(Some(&pki().auditor))).await.is_ok());
    // The CRL now in use has its next-update time on /metrics (the new one: 30 days ahead), so
    // monitoring can warn before it passes and every client is refused.
    let metrics = app.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("isa_crl_next_update_seconds{crl=\"ca.crl\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let next: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let in_days = (next - jiff::Timestamp::now().as_second()) / 86_400;
    assert!((29..=30).contains(&in_days), "{line}");
}

/// A cap on connections per client identity (issue 13, item 6): one system cannot hold every
/// connection. Past the cap its requests get 429 and the connection is closed; others are not
/// affected, and a slot is free again once a connection closes.
#[tokio::test]
async fn connections_past_the_cap_for_one_identity_are_refused_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::TestApp::spawn_with(crate::helpers::Spawn {
        connections_per_identity: 2,
        ..crate::helpers::Spawn::default()
    })
    .await;
    // Two connections held open, each proven live by one answered request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_tls(Some(&pki().sender))));
        let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("\"ok\"") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
        held.push(tls);
    }
    let third = handshake(app.addr, client_tls(Some(&pki().sender))).await.unwrap();
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    assert!(third.contains("too_many_connections"), "{third}");
    // Another system is not held up by this one's connections.
    let other = handshake(app.addr, client_tls(Some(&pki().auditor))).await.unwrap();
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // Closing one frees a slot.
    drop(held.pop());
    let mut again = String::new();
    for _ in 0..100 {
        again = handshake(app.addr, client_tls(Some(&pki().sender))).await.unwrap();
        if again.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}
