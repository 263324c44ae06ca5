//! Sign-in with the organisation's identity provider: OpenID Connect authorization code flow with
//! PKCE (S256) and a nonce, through the `openidconnect` crate, against the issuers configured in
//! `[auth]` that have an `oidc` client. The provider's metadata and keys come from its discovery
//! document. The flow's secrets (state, nonce, PKCE verifier) wait here, in memory, for at most
//! ten minutes, bound to the browser by a cookie holding the state.
//!
//! This and `delivery::transport` are the only code that calls out; this calls only the identity
//! providers, without following redirects.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
};

use super::ConsoleError;
use crate::platform::auth::IssuerConfig;

/// How long a sign-in may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// The most sign-ins waiting at once (a flood of sign-in starts cannot grow memory).
const MAX_PENDING: usize = 10_000;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// One sign-in under way.
struct Pending {
    provider: usize,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    started: Instant,
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
}

/// The identity providers people sign in with.
pub struct Providers {
    providers: Vec<Provider>,
    pending: Mutex<HashMap<String, Pending>>,
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
            providers.push(Provider {
                issuer: i.issuer.clone(),
                issuer_url: IssuerUrl::new(i.issuer.clone()).map_err(|_| problem("the issuer is not a URL"))?,
                label: o.label.clone(),
                client_id: o.client_id.clone(),
                secret: crate::platform::tls::read_secret(&o.client_secret_file, "a sign-in client secret")
                    .map_err(|e| problem(&e.to_string()))?,
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
        Ok(Self {
            providers,
            pending: Mutex::default(),
            http,
        })
    }

    /// The sign-in buttons: index and label.
    pub fn labels(&self) -> impl Iterator<Item = (usize, &str)> {
        self.providers.iter().enumerate().map(|(n, p)| (n, p.label.as_str()))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Starts a sign-in at provider `n`: the URL to send the browser to, and the state to bind to
    /// it (a cookie).
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
        let mut pending = self.pending();
        pending.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        if pending.len() >= MAX_PENDING {
            return Err(ConsoleError::Busy);
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                provider: n,
                nonce,
                verifier,
                started: Instant::now(),
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// The provider sent the browser back: the code is exchanged (with the PKCE verifier) and the
    /// ID token verified (signature by the provider's published keys, issuer, audience, expiry,
    /// nonce).
    pub async fn finish(&self, state: &str, code: &str) -> Result<SignedInClaims, ConsoleError> {
        let pending = self
            .pending()
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_FOR)
            .ok_or(ConsoleError::SignInFailed("state"))?;
        let client = self.client(pending.provider).await?;
        let http = |r| fetch(self.http.clone(), r);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| ConsoleError::SignInFailed("token_endpoint"))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "console: the code exchange failed");
                ConsoleError::SignInFailed("code_exchange")
            })?;
        use openidconnect::TokenResponse as _;
        let id_token = token.id_token().ok_or(ConsoleError::SignInFailed("no_id_token"))?;
        let verifier = client.id_token_verifier();
        id_token.claims(&verifier, &pending.nonce).map_err(|e| {
            tracing::warn!(error = %e, "console: the ID token did not verify");
            ConsoleError::SignInFailed("id_token")
        })?;
        // Verified above: its payload is now the provider's word. Read the claims the core types
        // do not carry (the roles claim) from it.
        let jwt = id_token.to_string();
        let payload = jwt.split('.').nth(1).ok_or(ConsoleError::SignInFailed("id_token"))?;
        use base64::Engine as _;
        let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(ConsoleError::SignInFailed("id_token"))?;
        Ok(SignedInClaims {
            issuer: self.providers[pending.provider].issuer.clone(),
            claims,
        })
    }
}
