//! Sign-in with the organisation's identity provider: OpenID Connect authorization code flow with
//! PKCE (S256) and a nonce, through the `openidconnect` crate, against the issuers configured in
//! `[auth]` that have an `oidc` client. The provider's metadata and keys come from its discovery
//! document.
//!
//! The flow's secrets (state, nonce, PKCE verifier) wait in the browser, not here: sealed with
//! AES-256-GCM into the pre-login cookie under a key derived from the provider's client secret.
//! Nothing is stored per sign-in, so a flood of sign-in starts costs no memory and cannot crowd
//! out real sign-ins, and with several gateways sharing a configuration the provider's answer may
//! come back to any of them. A sealed state is good for ten minutes.
//!
//! This and `delivery::transport` are the only code that calls out; this calls only the identity
//! providers, without following redirects.

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce as AeadNonce, UnboundKey};
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};

use super::ConsoleError;
use crate::platform::auth::IssuerConfig;

/// How long a sign-in may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// One sign-in under way, as sealed into the browser's pre-login cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    /// The `state` the provider must send back.
    state: String,
    nonce: String,
    verifier: String,
    /// When the sign-in started (Unix seconds).
    started: i64,
}

struct Provider {
    issuer: String,
    issuer_url: IssuerUrl,
    label: String,
    client_id: String,
    /// Read once, at start-up.
    secret: zeroize::Zeroizing<String>,
    redirect: RedirectUrl,
    metadata: tokio::sync::OnceCell<CoreProviderMetadata>,
    /// Seals the pending sign-in into the cookie: AES-256-GCM under HMAC-SHA256(client secret,
    /// a label naming this use and the issuer).
    seal: LessSafeKey,
}

/// The identity providers people sign in with.
pub struct Providers {
    providers: Vec<Provider>,
    http: reqwest::Client,
}

/// The identity provider's answer, once verified: who, by the provider's word.
pub struct SignedInClaims {
    pub issuer: String,
    pub claims: serde_json::Value,
}

async fn fetch(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.without_url().to_string()))?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpError(e.without_url().to_string()))?;
    builder.body(body.to_vec()).map_err(|e| HttpError(e.to_string()))
}

impl Providers {
    /// The providers of the issuers with a sign-in client: their URLs checked and their client
    /// secrets read now, so that a console that cannot sign anyone in does not start.
    pub fn new(issuers: &[IssuerConfig]) -> Result<Self, String> {
        let mut providers = Vec::new();
        for (i, o) in issuers.iter().filter_map(|i| Some((i, i.oidc.as_ref()?))) {
            let problem = |what: &str| format!("sign-in issuer {:?}: {what}", i.issuer);
            let secret = crate::platform::tls::read_secret(&o.client_secret_file, "a sign-in client secret")
                .map_err(|e| problem(&e.to_string()))?;
            providers.push(Provider {
                seal: sealing_key(secret.trim(), &i.issuer),
                issuer: i.issuer.clone(),
                issuer_url: IssuerUrl::new(i.issuer.clone()).map_err(|_| problem("the issuer is not a URL"))?,
                label: o.label.clone(),
                client_id: o.client_id.clone(),
                secret,
                redirect: RedirectUrl::new(o.redirect_url.clone()).map_err(|_| problem("redirect_url is not a URL"))?,
                metadata: tokio::sync::OnceCell::new(),
            });
        }
        let tls = crate::platform::tls::public_client_config(None).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("cannot build the sign-in HTTP client: {e}"))?;
        Ok(Self { providers, http })
    }

    /// The sign-in buttons: index and label.
    pub fn labels(&self) -> impl Iterator<Item = (usize, &str)> {
        self.providers.iter().enumerate().map(|(n, p)| (n, p.label.as_str()))
    }

    async fn client(
        &self,
        n: usize,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ConsoleError,
    > {
        let p = self.providers.get(n).ok_or(ConsoleError::NotFound)?;
        let http = |r| fetch(self.http.clone(), r);
        let metadata =
            p.metadata
                .get_or_try_init(|| async {
                    CoreProviderMetadata::discover_async(p.issuer_url.clone(), &http).await.map_err(|e| {
                    tracing::warn!(issuer = %p.issuer, error = %e, "console: identity provider discovery failed");
                    ConsoleError::SignInFailed("discovery")
                })
                })
                .await?
                .clone();
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            Some(ClientSecret::new(p.secret.trim().to_owned())),
        )
        .set_redirect_uri(p.redirect.clone()))
    }

    /// Starts a sign-in at provider `n`: the URL to send the browser to, and the sealed pending
    /// sign-in to bind to it (the pre-login cookie's value).
    pub async fn start(&self, n: usize) -> Result<(String, String), ConsoleError> {
        let client = self.client(n).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            started: jiff::Timestamp::now().as_second(),
        };
        let sealed = self.seal(n, &pending)?;
        Ok((url.to_string(), sealed))
    }

    fn seal(&self, n: usize, pending: &Pending) -> Result<String, ConsoleError> {
        let p = self.providers.get(n).ok_or(ConsoleError::NotFound)?;
        seal(&p.seal, n, pending).ok_or(ConsoleError::Unavailable)
    }

    fn open(&self, cookie: &str) -> Option<(usize, Pending)> {
        open(
            &|n| self.providers.get(n).map(|p| &p.seal),
            cookie,
            jiff::Timestamp::now(),
        )
    }

    /// The provider sent the browser back with `state` and `code`; `cookie` is the pre-login
    /// cookie that browser holds. The state must be the one sealed in it; the code is exchanged
    /// (with the PKCE verifier) and the ID token verified (signature by the provider's published
    /// keys, issuer, audience, expiry, nonce).
    pub async fn finish(&self, cookie: &str, state: &str, code: &str) -> Result<SignedInClaims, ConsoleError> {
        let (n, pending) = self.open(cookie).ok_or(ConsoleError::SignInFailed("state"))?;
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(ConsoleError::SignInFailed("state"));
        }
        let client = self.client(n).await?;
        let http = |r| fetch(self.http.clone(), r);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| ConsoleError::SignInFailed("token_endpoint"))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "console: the code exchange failed");
                ConsoleError::SignInFailed("code_exchange")
            })?;
        use openidconnect::TokenResponse as _;
        let id_token = token.id_token().ok_or(ConsoleError::SignInFailed("no_id_token"))?;
        let verifier = client.id_token_verifier();
        id_token.claims(&verifier, &Nonce::new(pending.nonce)).map_err(|e| {
            tracing::warn!(error = %e, "console: the ID token did not verify");
            ConsoleError::SignInFailed("id_token")
        })?;
        // Verified above: its payload is now the provider's word. Read the claims the core types
        // do not carry (the roles claim) from it.
        let jwt = id_token.to_string();
        let payload = jwt.split('.').nth(1).ok_or(ConsoleError::SignInFailed("id_token"))?;
        let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(ConsoleError::SignInFailed("id_token"))?;
        Ok(SignedInClaims {
            issuer: self.providers[n].issuer.clone(),
            claims,
        })
    }
}

/// The key that seals pending sign-ins for one provider: HMAC-SHA256 of a label naming this use
/// and the issuer, keyed by the client secret (which every gateway sharing the configuration has,
/// and nobody else but the provider).
fn sealing_key(client_secret: &str, issuer: &str) -> LessSafeKey {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(client_secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"isa-gateway console sign-in state v1\n");
    mac.update(issuer.as_bytes());
    let key = mac.finalize().into_bytes();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32 bytes is an AES-256 key"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `{n}.{base64url(nonce ‖ ciphertext ‖ tag)}`; the provider's index is also the AAD.
fn seal(key: &LessSafeKey, n: usize, pending: &Pending) -> Option<String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).ok()?;
    let mut sealed = serde_json::to_vec(pending).ok()?;
    key.seal_in_place_append_tag(
        AeadNonce::assume_unique_for_key(nonce),
        Aad::from(n.to_string().as_bytes()),
        &mut sealed,
    )
    .ok()?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Some(format!(
        "{n}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    ))
}

/// The pending sign-in sealed in `cookie`, if it opens under its provider's key and is not older
/// than [`PENDING_FOR`] at `now`.
fn open<'k>(
    key_of: &dyn Fn(usize) -> Option<&'k LessSafeKey>,
    cookie: &str,
    now: jiff::Timestamp,
) -> Option<(usize, Pending)> {
    let (n, sealed) = cookie.split_once('.')?;
    let n: usize = n.parse().ok()?;
    let key = key_of(n)?;
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let mut body = bytes.split_off(NONCE_LEN);
    let nonce = AeadNonce::try_assume_unique_for_key(&bytes).ok()?;
    let plain = key
        .open_in_place(nonce, Aad::from(n.to_string().as_bytes()), &mut body)
        .ok()?;
    let pending: Pending = serde_json::from_slice(plain).ok()?;
    // A minute's grace for a gateway whose clock is behind the one that started the sign-in.
    let age = now.as_second().checked_sub(pending.started)?;
    let fresh = age >= -60 && age < PENDING_FOR.as_secs().cast_signed();
    fresh.then_some((n, pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_sign_in_opens_only_intact_fresh_and_under_its_own_provider() {
        let keys = [
            sealing_key("secret-a", "https://idp-a"),
            sealing_key("secret-b", "https://idp-b"),
        ];
        let key_of = |n: usize| keys.get(n);
        let now = jiff::Timestamp::now();
        let pending = Pending {
            state: "the-state".into(),
            nonce: "the-nonce".into(),
            verifier: "the-verifier".into(),
            started: now.as_second(),
        };
        let cookie = seal(&keys[0], 0, &pending).unwrap();
        assert!(
            !cookie.contains("the-state") && !cookie.contains("the-verifier"),
            "sealed, not signed"
        );
        let (n, opened) = open(&key_of, &cookie, now).unwrap();
        assert_eq!(
            (n, opened.state.as_str(), opened.verifier.as_str()),
            (0, "the-state", "the-verifier")
        );
        // Two seals of one sign-in differ (a fresh nonce each time).
        assert_ne!(seal(&keys[0], 0, &pending).unwrap(), cookie);
        // Ten minutes later it no longer opens.
        assert!(open(&key_of, &cookie, now + jiff::SignedDuration::from_secs(600)).is_none());
        // Named as the other provider's, or with one character changed, it does not open.
        assert!(open(&key_of, &cookie.replacen("0.", "1.", 1), now).is_none());
        let mut flipped = cookie.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(open(&key_of, &String::from_utf8(flipped).unwrap(), now).is_none());
        for junk in ["", ".", "0.", "9.abc", "0.!!!!", "x.abcd"] {
            assert!(open(&key_of, junk, now).is_none(), "{junk:?}");
        }
    }
}
