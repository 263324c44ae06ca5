//! The witness's calls to a gateway's API, over mutual TLS with a bearer token: the latest
//! checkpoint, a consistency proof, and handing in a cosignature.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{WitnessError, failed};
use crate::ledger::Hash;
use crate::ledger::cosignature::Cosignature;

/// How to reach a gateway: its base URL, the CA its server certificate chains to, the witness
/// organisation's client certificate and key, and a file holding its bearer token.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub base_url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub token_file: PathBuf,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `Bearer <token>`; never printed.
    authorization: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.base)
    }
}

#[derive(Deserialize)]
struct Latest {
    note: String,
}

#[derive(Deserialize)]
struct Proof {
    path: Vec<String>,
}

#[derive(Deserialize)]
struct Problem {
    code: String,
    message: String,
}

impl Client {
    pub fn new(settings: &ClientSettings) -> Result<Self, WitnessError> {
        crate::platform::tls::install_default_provider();
        crate::platform::fs::ensure_private(&settings.token_file).map_err(failed)?;
        let token = zeroize::Zeroizing::new(
            std::fs::read_to_string(&settings.token_file)
                .map_err(|e| failed(format!("{}: {}", settings.token_file.display(), e.kind())))?,
        );
        let tls = crate::platform::tls::client_config(&settings.ca, &settings.cert, &settings.key).map_err(failed)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| failed(format!("cannot build the HTTPS client: {e}")))?;
        Ok(Self {
            http,
            base: settings.base_url.trim_end_matches('/').to_owned(),
            authorization: zeroize::Zeroizing::new(format!("Bearer {}", token.trim())),
        })
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WitnessError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, self.authorization.as_str())
            .send()
            .await
            .map_err(|e| failed(format!("{what}: cannot reach the gateway at {}: {e}", self.base)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| failed(format!("{what}: {e}")))?;
        if !status.is_success() {
            let why = serde_json::from_slice::<Problem>(&bytes)
                .map(|p| format!("{}: {}", p.code, p.message))
                .unwrap_or_default();
            return Err(failed(format!("{what}: the gateway answered {status} {why}")));
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| failed(format!("{what}: the gateway's answer is not what its API documents")))
    }

    /// The gateway's latest checkpoint, as a signed note.
    pub async fn latest_note(&self) -> Result<String, WitnessError> {
        let url = format!("{}/v1/ledger/checkpoint", self.base);
        let latest: Latest = self.send("the latest checkpoint", self.http.get(url)).await?;
        Ok(latest.note)
    }

    /// The proof that the tree of `from` entries is a prefix of the tree of `to`.
    pub async fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, WitnessError> {
        let url = format!("{}/v1/ledger/proof/consistency?from={from}&to={to}", self.base);
        let proof: Proof = self.send("the consistency proof", self.http.get(url)).await?;
        proof
            .path
            .iter()
            .map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| failed("the consistency proof is not a list of 32-byte hex hashes"))
    }

    /// Hands the cosignature of the checkpoint (`tree_size`, `root`) to the gateway.
    pub async fn submit(&self, tree_size: u64, root: &Hash, cosignature: &Cosignature) -> Result<(), WitnessError> {
        let url = format!("{}/v1/ledger/cosignatures", self.base);
        let body = serde_json::json!({
            "tree_size": tree_size,
            "root": hex::encode(root),
            "cosignature": cosignature.line(),
        });
        let answer: serde_json::Value = self
            .send("handing in the cosignature", self.http.post(url).json(&body))
            .await?;
        // Kept means served back: the gateway's note for this tree must carry our own line (a row
        // put there first in our name must not shadow it).
        let line = cosignature.line();
        let kept = answer
            .get("note")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|note| note.lines().any(|l| l == line));
        if !kept {
            return Err(failed(
                "the gateway did not serve back our cosignature with the checkpoint",
            ));
        }
        Ok(())
    }
}
