//! Who the user is: a bearer JWT from the organisation's identity provider, beside the calling
//! system's client certificate.
//!
//! Trusted issuers are configured with their public keys (PEM or a JWKS file) and the algorithms
//! they use; only asymmetric algorithms are accepted (an `HS256` token "signed" with a public key
//! is refused before any key is tried, and `alg: none` does not parse). `exp`, `nbf`, `iss`, `aud`
//! and `sub` are checked, with a configured leeway. Roles come from a configured claim.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use crate::policy::roles::UserRole;

/// An authenticated user: who (the token's issuer and subject) and the roles that issuer may
/// grant and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub issuer: String,
    pub sub: String,
    pub roles: Vec<UserRole>,
}

impl User {
    pub fn has(&self, role: UserRole) -> bool {
        self.roles.contains(&role)
    }
}

/// `[auth]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The `aud` every token must carry.
    pub audience: String,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The claim that lists the user's roles (a string or an array of strings).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The longest a token may live (`exp` after `iat`, and after now): a stolen token is only
    /// good for so long. Default one hour.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    pub issuers: Vec<IssuerConfig>,
}

fn default_max_token_lifetime() -> u64 {
    3600
}

fn default_leeway() -> u64 {
    30
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` value.
    pub issuer: String,
    /// Accepted algorithms: RS256/384/512, PS256/384/512, ES256/384 or EdDSA.
    pub algorithms: Vec<String>,
    /// A PEM public key (RSA, EC or Ed25519)…
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// …with the key id tokens must name (optional).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Or a JWKS file; tokens must name a `kid` in it.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Development only: the private key `isa-gateway token dev` signs with. Production refuses it.
    #[serde(default)]
    pub dev_signing_key: Option<PathBuf>,
    /// The token type this issuer's access tokens carry in their header (`at+jwt`, RFC 9068), if
    /// it marks them: then a token without it (an ID token, say) is refused.
    #[serde(default)]
    pub token_type: Option<String>,
    /// The roles this issuer may grant. A role in its token outside this list is not granted
    /// (logged): an issuer trusted for practitioners cannot make a director, DPO or auditor.
    pub roles: Vec<UserRole>,
    /// The registered systems its users may act through; a token used through any other system
    /// is refused (`token_issuer_not_for_system`).
    pub systems: Vec<String>,
    /// The console's sign-in client at this issuer (OpenID Connect), if people sign in with it.
    /// Its keys then come from the provider's discovery document.
    #[serde(default)]
    pub oidc: Option<crate::console::OidcClientSettings>,
}

/// Why a token was refused. Codes are stable; none carries token contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token_missing")]
    Missing,
    #[error("token_malformed")]
    Malformed,
    #[error("token_algorithm_not_allowed")]
    AlgorithmNotAllowed,
    #[error("token_wrong_issuer")]
    WrongIssuer,
    #[error("token_unknown_key")]
    UnknownKey,
    #[error("token_bad_signature")]
    BadSignature,
    #[error("token_expired")]
    Expired,
    #[error("token_not_yet_valid")]
    NotYetValid,
    #[error("token_wrong_audience")]
    WrongAudience,
    #[error("token_missing_claim")]
    MissingClaim,
    #[error("token_lifetime_too_long")]
    LifetimeTooLong,
    #[error("token_wrong_type")]
    WrongType,
    #[error("token_issuer_not_for_system")]
    IssuerNotForSystem,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Malformed => "token_malformed",
            Self::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "token_wrong_audience",
            Self::MissingClaim => "token_missing_claim",
            Self::LifetimeTooLong => "token_lifetime_too_long",
            Self::WrongType => "token_wrong_type",
            Self::IssuerNotForSystem => "token_issuer_not_for_system",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("issuer {issuer}: {problem}")]
    Issuer { issuer: String, problem: String },
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

struct Issuer {
    issuer: String,
    algorithms: Vec<Algorithm>,
    keys: Vec<Key>,
    token_type: Option<String>,
    roles: Vec<UserRole>,
    systems: Vec<String>,
}

pub struct Authenticator {
    issuers: Vec<Issuer>,
    audience: String,
    leeway: u64,
    roles_claim: String,
    max_lifetime: u64,
    /// Tokens already verified, by system and token (`super::token_cache`).
    verified: super::token_cache::TokenCache,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn asymmetric(name: &str) -> Option<Algorithm> {
    let alg: Algorithm = name.parse().ok()?;
    (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)).then_some(alg)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))
}

impl Authenticator {
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let mut issuers = Vec::new();
        for i in &settings.issuers {
            let problem = |problem: String| AuthConfigError::Issuer {
                issuer: i.issuer.clone(),
                problem,
            };
            let algorithms = i
                .algorithms
                .iter()
                .map(|a| asymmetric(a).ok_or_else(|| problem(format!("{a:?} is not an accepted asymmetric algorithm"))))
                .collect::<Result<Vec<_>, _>>()?;
            if algorithms.is_empty() {
                return Err(problem("names no algorithm".into()));
            }
            let mut keys = Vec::new();
            if let Some(path) = &i.public_key {
                let pem = read(path).map_err(problem)?;
                let key = match algorithms[0] {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .map_err(|_| {
                    problem(format!(
                        "{} is not a public key for {:?}",
                        path.display(),
                        algorithms[0]
                    ))
                })?;
                keys.push(Key {
                    kid: i.key_id.clone(),
                    key,
                });
            }
            if let Some(path) = &i.jwks {
                let set: JwkSet = serde_json::from_slice(&read(path).map_err(problem)?)
                    .map_err(|_| problem(format!("{} is not a JWKS document", path.display())))?;
                for jwk in &set.keys {
                    let key = DecodingKey::from_jwk(jwk).map_err(|_| problem("a JWKS key cannot be used".into()))?;
                    keys.push(Key {
                        kid: jwk.common.key_id.clone(),
                        key,
                    });
                }
            }
            if keys.is_empty() && i.oidc.is_none() {
                return Err(problem("has no key (public_key or jwks)".into()));
            }
            issuers.push(Issuer {
                issuer: i.issuer.clone(),
                algorithms,
                keys,
                token_type: i.token_type.clone(),
                roles: i.roles.clone(),
                systems: i.systems.clone(),
            });
        }
        Ok(Self {
            issuers,
            audience: settings.audience.clone(),
            leeway: settings.leeway_secs,
            roles_claim: settings.roles_claim.clone(),
            max_lifetime: settings.max_token_lifetime_secs,
            verified: super::token_cache::TokenCache::default(),
        })
    }

    /// Checks an `Authorization` header value (`Bearer <jwt>`) presented through the registered
    /// system `system`.
    pub fn authenticate(&self, authorization: Option<&str>, system: &str) -> Result<User, TokenError> {
        let token = authorization
            .ok_or(TokenError::Missing)?
            .strip_prefix("Bearer ")
            .ok_or(TokenError::Malformed)?
            .trim();
        let now = crate::platform::clock::WallClock::now().as_second().unsigned_abs();
        let cached = super::token_cache::TokenCache::key(system, token);
        if let Some(user) = self.verified.get(&cached, now) {
            return Ok(user);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // Which issuer: read `iss` before verifying, only to choose the keys; verification below
        // checks it again.
        let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
            .map_err(|_| TokenError::Malformed)?
            .claims;
        let iss = unverified
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or(TokenError::MissingClaim)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(TokenError::WrongIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if !issuer.systems.iter().any(|s| s == system) {
            return Err(TokenError::IssuerNotForSystem);
        }
        if let Some(wanted) = &issuer.token_type {
            let typ = header.typ.as_deref().unwrap_or_default().to_ascii_lowercase();
            let typ = typ.strip_prefix("application/").unwrap_or(&typ);
            if typ != wanted.to_ascii_lowercase() {
                return Err(TokenError::WrongType);
            }
        }
        let key = match &header.kid {
            Some(kid) => issuer.keys.iter().find(|k| k.kid.as_deref() == Some(kid.as_str())),
            None if issuer.keys.len() == 1 && issuer.keys[0].kid.is_none() => issuer.keys.first(),
            None => None,
        }
        .ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
            ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
            _ => TokenError::Malformed,
        })?;
        // No token lives longer than the configured maximum, counted from when it was issued and
        // from now (an `iat` claimed in the future does not stretch it).
        let exp = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or(TokenError::MissingClaim)?;
        let issued = data
            .claims
            .get("iat")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(now);
        if exp.saturating_sub(issued.min(now)) > self.max_lifetime + self.leeway {
            return Err(TokenError::LifetimeTooLong);
        }
        let user = self.user_from_claims(issuer, &data.claims)?;
        self.verified
            .put(cached, user.clone(), exp.saturating_add(self.leeway), now);
        Ok(user)
    }

    /// Whether users of this issuer may act through this registered system.
    pub fn issuer_may_use(&self, issuer: &str, system: &str) -> bool {
        self.issuers
            .iter()
            .any(|i| i.issuer == issuer && i.systems.iter().any(|s| s == system))
    }

    /// The user an identity provider vouched for in a verified ID token (the console's sign-in):
    /// the subject, and the roles this issuer may grant among those it claimed.
    pub fn user_from_id_token(&self, issuer: &str, claims: &serde_json::Value) -> Result<User, TokenError> {
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == issuer)
            .ok_or(TokenError::WrongIssuer)?;
        self.user_from_claims(issuer, claims)
    }

    fn user_from_claims(&self, issuer: &Issuer, claims: &serde_json::Value) -> Result<User, TokenError> {
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim)?;
        let roles = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::String(r)) => vec![r.clone()],
            Some(serde_json::Value::Array(rs)) => rs.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        let claimed: HashSet<UserRole> = roles.iter().filter_map(|r| UserRole::parse(r)).collect();
        let mut roles: Vec<UserRole> = claimed.iter().copied().filter(|r| issuer.roles.contains(r)).collect();
        roles.sort();
        if roles.len() < claimed.len() {
            tracing::warn!(issuer = %issuer.issuer, "a token claimed roles its issuer may not grant; they were not granted");
        }
        Ok(User {
            issuer: issuer.issuer.clone(),
            sub: sub.chars().take(128).collect(),
            roles,
        })
    }
}

/// Claims of a development token.
#[derive(Debug, Serialize)]
struct DevClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    roles: Vec<&'static str>,
}

/// Mints a token from the development issuer (ES256, PKCS#8 PEM key). Development only.
pub fn mint_dev_token(
    issuer: &IssuerConfig,
    audience: &str,
    sub: &str,
    roles: &[UserRole],
    ttl_secs: u64,
) -> Result<String, String> {
    let path = issuer
        .dev_signing_key
        .as_ref()
        .ok_or("the issuer has no dev_signing_key")?;
    let pem = zeroize::Zeroizing::new(read(path)?);
    let key = EncodingKey::from_ec_pem(&pem).map_err(|_| format!("{} is not an ES256 private key", path.display()))?;
    let now = crate::platform::clock::WallClock::now().as_second().unsigned_abs();
    let claims = DevClaims {
        iss: &issuer.issuer,
        sub,
        aud: audience,
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
        roles: roles.iter().map(|r| r.as_str()).collect(),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = issuer.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|_| "signing failed".to_owned())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn settings(dir: &Path, jwks: serde_json::Value, key: &rcgen::KeyPair) -> (AuthSettings, IssuerConfig) {
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).unwrap();
        let private = dir.join("issuer.key");
        std::fs::write(&private, key.serialize_pem()).unwrap();
        let issuer = IssuerConfig {
            issuer: "https://idp.example".into(),
            algorithms: vec!["ES256".into()],
            public_key: None,
            key_id: Some("k-2026".into()),
            jwks: Some(jwks_path),
            dev_signing_key: Some(private),
            token_type: None,
            roles: vec![UserRole::Practitioner, UserRole::Director],
            systems: vec!["case-system".into()],
            oidc: None,
        };
        let s = AuthSettings {
            audience: "isa-gateway".into(),
            leeway_secs: 0,
            roles_claim: "groups".into(),
            max_token_lifetime_secs: 3600,
            issuers: vec![issuer.clone()],
        };
        (s, issuer)
    }

    /// The identity provider's keys as a JWKS document (EC P-256: x and y from the raw point).
    fn jwks_for(key: &rcgen::KeyPair, kid: &str) -> serde_json::Value {
        let raw = key.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..65])
        }]})
    }

    #[test]
    fn keys_from_a_jwks_file_verify_tokens_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let (s, issuer) = settings(dir.path(), jwks_for(&key, "k-2026"), &key);
        let auth = Authenticator::from_settings(&s).unwrap();
        // `mint_dev_token` puts the roles in `roles`; this issuer reads `groups`, so none count.
        let token = mint_dev_token(&issuer, "isa-gateway", "alice", &[UserRole::Director], 60).unwrap();
        let user = auth
            .authenticate(Some(&format!("Bearer {token}")), "case-system")
            .unwrap();
        assert_eq!(user.sub, "alice");
        assert!(user.roles.is_empty(), "roles come only from the configured claim");

        let mut other = issuer.clone();
        other.key_id = Some("k-2025".into());
        let unknown = mint_dev_token(&other, "isa-gateway", "alice", &[], 60).unwrap();
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {unknown}")), "case-system"),
            Err(TokenError::UnknownKey)
        );
    }

    /// An issuer that marks its access tokens `at+jwt` (RFC 9068): an ID token or an unmarked
    /// token from it is refused (issue 13, row 8).
    #[test]
    fn an_issuer_that_marks_access_tokens_gets_only_access_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let (mut s, issuer) = settings(dir.path(), jwks_for(&key, "k-2026"), &key);
        s.issuers[0].token_type = Some("at+jwt".into());
        let auth = Authenticator::from_settings(&s).unwrap();
        let now = crate::platform::clock::WallClock::now().as_second();
        let claims = serde_json::json!({"iss": issuer.issuer, "aud": "isa-gateway", "sub": "alice", "iat": now, "exp": now + 60});
        let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        let typed = |typ: Option<&str>| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("k-2026".into());
            header.typ = typ.map(str::to_owned);
            let token = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
            auth.authenticate(Some(&format!("Bearer {token}")), "case-system")
                .map(|u| u.sub)
        };
        assert_eq!(typed(Some("at+jwt")), Ok("alice".into()));
        assert_eq!(typed(Some("application/at+jwt")), Ok("alice".into()));
        assert_eq!(typed(Some("JWT")), Err(TokenError::WrongType));
        assert_eq!(typed(Some("id_token")), Err(TokenError::WrongType));
        assert_eq!(typed(None), Err(TokenError::WrongType));
    }

    #[test]
    fn symmetric_algorithms_cannot_be_configured() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let (mut s, _) = settings(dir.path(), jwks_for(&key, "k"), &key);
        s.issuers[0].algorithms = vec!["HS256".into()];
        let err = Authenticator::from_settings(&s).unwrap_err().to_string();
        assert!(err.contains("HS256") && err.contains("not an accepted"), "{err}");
    }

    #[test]
    fn a_bearer_scheme_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let (s, issuer) = settings(dir.path(), jwks_for(&key, "k-2026"), &key);
        let auth = Authenticator::from_settings(&s).unwrap();
        let token = mint_dev_token(&issuer, "isa-gateway", "alice", &[], 60).unwrap();
        assert_eq!(
            auth.authenticate(Some(&format!("Basic {token}")), "case-system"),
            Err(TokenError::Malformed)
        );
        assert_eq!(auth.authenticate(None, "case-system"), Err(TokenError::Missing));
    }

    /// Roles are bound to issuers and issuers to systems (issue 13, item 5): an issuer grants only
    /// the roles it is trusted for, and its users act only through the systems it is trusted for.
    #[test]
    fn an_issuer_grants_only_its_roles_through_its_systems() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let (mut s, issuer) = settings(dir.path(), jwks_for(&key, "k-2026"), &key);
        s.roles_claim = "roles".into();
        let auth = Authenticator::from_settings(&s).unwrap();
        let token = mint_dev_token(
            &issuer,
            "isa-gateway",
            "alice",
            &[UserRole::Director, UserRole::Dpo, UserRole::Auditor],
            60,
        )
        .unwrap();
        let bearer = format!("Bearer {token}");
        let user = auth.authenticate(Some(&bearer), "case-system").unwrap();
        assert_eq!(
            user.roles,
            vec![UserRole::Director],
            "dpo and auditor are not this issuer's to grant"
        );
        assert_eq!(user.issuer, "https://idp.example");
        assert_eq!(
            auth.authenticate(Some(&bearer), "audit-tool"),
            Err(TokenError::IssuerNotForSystem)
        );
    }
}
