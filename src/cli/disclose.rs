//! `disclose`: a one-off disclosure through a running gateway's API, as a case system would make
//! it. The request (it holds patient data) is read from standard input, never the command line;
//! the user's bearer token from a file readable by its owner only. The gateway decides and
//! records it exactly as `POST /v1/disclosures`: held for a director.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

pub(super) struct Client<'a> {
    pub gateway: &'a str,
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub token_file: &'a Path,
}

pub(super) async fn disclose(client: &Client<'_>, idempotency_key: Option<&str>) -> Result<ExitCode, String> {
    crate::platform::fs::ensure_private(client.token_file)?;
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(client.token_file)
            .map_err(|e| format!("cannot read {}: {}", client.token_file.display(), e.kind()))?,
    );
    let mut body = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read the request from standard input: {}", e.kind()))?;
    let http =
        crate::delivery::transport::https_client(client.ca, client.cert, client.key, 30).map_err(|e| e.to_string())?;
    let url = format!("{}/v1/disclosures", client.gateway.trim_end_matches('/'));
    let mut request = http
        .post(url)
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect (address, certificates or CA)"
        } else {
            "the request failed"
        };
        format!("the gateway did not answer: {why}")
    })?;
    let status = response.status();
    // The gateway's answers never carry patient data: a receipt, or a refusal naming the rule and
    // the JSON pointers.
    let text = response.text().await.unwrap_or_default();
    println!("{text}");
    if status.as_u16() == 202 {
        eprintln!("held for a director's approval; nothing leaves before it");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("refused: HTTP {status}");
        Ok(ExitCode::FAILURE)
    }
}
