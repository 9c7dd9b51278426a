//! Bearer token verification: signature against the tenant service's JWKS,
//! claims, then revocation.
//!
//! Keys are cached and refetched when a token names an unknown `kid`, at most
//! once per [`JWKS_REFRESH_INTERVAL`] so a stream of forged key ids cannot
//! turn the gateway into a load generator against the tenant service, and
//! when the cached set is older than [`KEY_SET_MAX_AGE`], so a key the tenant
//! service stopped publishing stops verifying tokens.
//! Revocation is asked of the tenant service per token id: an active answer
//! is trusted for [`ACTIVE_TOKEN_CACHE`] (a revoked token is refused within
//! that time), a revoked one until the token expires anyway. An active
//! answer also names the token's tenant, which must be the claimed one, and
//! the apps that tenant signed up for, which the subgraphs are told. When the tenant
//! service cannot answer and nothing is cached the request is refused
//! (fail closed).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind, jwk::JwkSet,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{error::GatewayError, federation::client::GATEWAY_AUTH_HEADER};

/// Least time between two JWKS fetches triggered by unknown key ids.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How long an "active" revocation answer is trusted.
pub const ACTIVE_TOKEN_CACHE: Duration = Duration::from_secs(2);
/// How long a fetched key set is trusted before it is asked for again.
pub const KEY_SET_MAX_AGE: Duration = Duration::from_secs(300);
/// The issuer every token of the tenant service names.
pub const ISSUER: &str = "hybrid-tenancy";
/// Time limit for a call to the tenant service (JWKS or token status).
const TENANT_SERVICE_TIMEOUT: Duration = Duration::from_secs(3);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 5;
/// Revocation answers kept before the cache starts over.
const TOKEN_STATUS_CACHE_CAPACITY: usize = 100_000;
/// Verified tokens kept before that cache starts over (each ~0.5 KB).
const VERIFIED_TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The claims of a verified token the gateway relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The tenant the token was issued to.
    pub tenant_id: Uuid,
    /// The token's id, which revocation refers to.
    pub token_id: Uuid,
    /// The apps the tenant signed up for, comma-separated canonical names.
    pub services: Arc<str>,
}

#[derive(Debug, Clone, Deserialize)]
struct Claims {
    tenant_id: Uuid,
    jti: Uuid,
    iat: i64,
    exp: i64,
    #[allow(dead_code, reason = "required to be present; its value is not used")]
    sub: String,
}

#[derive(Deserialize)]
struct TokenStatus {
    active: bool,
    /// The tenant an active token belongs to.
    #[serde(default)]
    tenant_id: Option<Uuid>,
    /// The apps that tenant signed up for.
    #[serde(default)]
    services: Vec<String>,
}

struct CachedStatus {
    /// The tenant's apps while the token is active; `None` once revoked.
    services: Option<Arc<str>>,
    valid_until: Instant,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    http: reqwest::Client,
    hop_secret: String,
    jwks_url: Option<String>,
    tenant_service_origin: Option<String>,
    keys: tokio::sync::RwLock<KeySet>,
    /// Serializes JWKS fetches.
    jwks_fetch: tokio::sync::Mutex<()>,
    key_set_max_age: Duration,
    token_status: Mutex<HashMap<Uuid, CachedStatus>>,
    verified: Mutex<HashMap<String, VerifiedEntry>>,
}

/// A token whose signature and claims were checked.
struct VerifiedEntry {
    claims: Claims,
    valid_until: Instant,
}

/// The signing keys last fetched, and when they were last asked for.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// When the JWKS was last asked for, whether or not it answered.
    asked_at: Option<Instant>,
}

impl KeySet {
    /// The key, unless the set is too old to be trusted without asking.
    fn fresh_key(&self, key_id: &str, max_age: Duration) -> Option<DecodingKey> {
        let fresh = self.asked_at.is_some_and(|at| at.elapsed() < max_age);
        fresh.then(|| self.keys.get(key_id).cloned()).flatten()
    }
}

impl Authenticator {
    /// An authenticator that reads keys from `jwks_url` and asks
    /// `{tenant_service_origin}/internal/tokens/{jti}` about revocation.
    pub fn new(
        http: reqwest::Client,
        hop_secret: impl Into<String>,
        jwks_url: Option<String>,
        tenant_service_origin: Option<String>,
    ) -> Self {
        Self {
            http,
            hop_secret: hop_secret.into(),
            jwks_url,
            tenant_service_origin,
            keys: tokio::sync::RwLock::new(KeySet::default()),
            jwks_fetch: tokio::sync::Mutex::new(()),
            key_set_max_age: KEY_SET_MAX_AGE,
            token_status: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the value of an `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<VerifiedToken, GatewayError> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = authorization
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(GatewayError::Unauthenticated("no bearer token"))?;

        let claims = self.verified_claims(token).await?;
        let Some(services) = self.active_services(&claims).await? else {
            return Err(GatewayError::Unauthenticated("revoked token"));
        };
        Ok(VerifiedToken {
            tenant_id: claims.tenant_id,
            token_id: claims.jti,
            services,
        })
    }

    /// The claims of `token` once its signature and claims check out. A
    /// token seen before is looked up instead of verified again (Ed25519
    /// verification is most of a cheap request's cost), for as long as its
    /// key set would be trusted without asking and the token has not expired.
    async fn verified_claims(&self, token: &str) -> Result<Claims, GatewayError> {
        if let Some(entry) = self.lock_verified().get(token)
            && entry.valid_until > Instant::now()
        {
            return Ok(entry.claims.clone());
        }

        // `decode_header` rejects `alg: none` (not an algorithm it knows);
        // anything but EdDSA is refused before a key is even looked up.
        let header =
            decode_header(token).map_err(|_| GatewayError::Unauthenticated("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(GatewayError::Unauthenticated("algorithm not allowed"));
        }
        let key_id = header
            .kid
            .ok_or(GatewayError::Unauthenticated("token names no key"))?;
        let key = self.key(&key_id).await?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => GatewayError::Unauthenticated("expired token"),
                ErrorKind::InvalidSignature => GatewayError::Unauthenticated("bad signature"),
                ErrorKind::ImmatureSignature => {
                    GatewayError::Unauthenticated("token not valid yet")
                }
                ErrorKind::InvalidIssuer => {
                    GatewayError::Unauthenticated("token of another issuer")
                }
                _ => GatewayError::Unauthenticated("invalid token or claims"),
            })?
            .claims;
        // A token issued in the future is not one the tenant service made.
        if claims.iat > unix_now() + LEEWAY_SECONDS as i64 {
            return Err(GatewayError::Unauthenticated("token issued in the future"));
        }

        let lifetime = Duration::from_secs(seconds_until(claims.exp)).min(self.key_set_max_age);
        let mut cache = self.lock_verified();
        if cache.len() >= VERIFIED_TOKEN_CACHE_CAPACITY {
            // Forgetting costs one verification per token; growing without
            // bound could cost the process.
            cache.clear();
        }
        cache.insert(
            token.to_owned(),
            VerifiedEntry {
                claims: claims.clone(),
                valid_until: Instant::now() + lifetime,
            },
        );
        Ok(claims)
    }

    /// The decoding key for `key_id`, fetching the JWKS when the key is
    /// unknown or the cached set is too old to trust.
    async fn key(&self, key_id: &str) -> Result<DecodingKey, GatewayError> {
        let max_age = self.key_set_max_age;
        if let Some(key) = self.keys.read().await.fresh_key(key_id, max_age) {
            return Ok(key);
        }

        let _fetching = self.jwks_fetch.lock().await;
        // Another request may have refreshed the keys while this one waited.
        let (known, asked_at) = {
            let set = self.keys.read().await;
            if let Some(key) = set.fresh_key(key_id, max_age) {
                return Ok(key);
            }
            (set.keys.get(key_id).cloned(), set.asked_at)
        };
        // Unknown key ids refetch at most once per interval.
        if known.is_none() && asked_at.is_some_and(|at| at.elapsed() < JWKS_REFRESH_INTERVAL) {
            return Err(GatewayError::Unauthenticated("unknown signing key"));
        }

        let fetched = self.fetch_keys().await;
        let mut set = self.keys.write().await;
        set.asked_at = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                set.keys = keys;
                set.keys
                    .get(key_id)
                    .cloned()
                    .ok_or(GatewayError::Unauthenticated("unknown signing key"))
            }
            Err(error) => {
                tracing::warn!(target: "gateway::auth", "fetching the JWKS failed: {error:#}");
                match known {
                    // The tenant service is away: the keys it published last
                    // stay trusted until the next time they are asked for.
                    Some(key) => Ok(key),
                    // Without any key nothing can be verified: that is the
                    // tenant service being down, not the client's fault.
                    None if asked_at.is_none() => Err(GatewayError::UpstreamUnavailable),
                    None => Err(GatewayError::Unauthenticated("unknown signing key")),
                }
            }
        }
    }

    async fn fetch_keys(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let url = self
            .jwks_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no JWKS_URL configured"))?;
        let response = self
            .http
            .get(url)
            .timeout(TENANT_SERVICE_TIMEOUT)
            .send()
            .await?;
        let key_set: JwkSet = response.error_for_status()?.json().await?;

        let mut keys = HashMap::new();
        for jwk in &key_set.keys {
            let Some(key_id) = &jwk.common.key_id else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(key_id.clone(), key);
                }
                Err(error) => {
                    tracing::warn!(target: "gateway::auth", key_id, "unusable JWK: {error}")
                }
            }
        }
        tracing::info!(target: "gateway::auth", count = keys.len(), "signing keys loaded");
        Ok(keys)
    }

    /// The apps of the token's tenant while the tenant service still
    /// considers the token active; `None` when it does not.
    async fn active_services(&self, claims: &Claims) -> Result<Option<Arc<str>>, GatewayError> {
        if let Some(cached) = self.lock_status().get(&claims.jti)
            && cached.valid_until > Instant::now()
        {
            return Ok(cached.services.clone());
        }

        let origin = self
            .tenant_service_origin
            .as_deref()
            .ok_or(GatewayError::UpstreamUnavailable)?;
        let url = format!("{origin}/internal/tokens/{}", claims.jti);
        let response = self
            .http
            .get(&url)
            .header(GATEWAY_AUTH_HEADER, &self.hop_secret)
            .timeout(TENANT_SERVICE_TIMEOUT)
            .send()
            .await;
        let services = match response {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                match response.json::<TokenStatus>().await {
                    // A token row of another tenant than its claims say is
                    // not a token the tenant service issued for that tenant.
                    Ok(status) if status.tenant_id.is_some_and(|t| t != claims.tenant_id) => {
                        tracing::warn!(target: "gateway::auth", jti = %claims.jti, "token claims another tenant than its record");
                        None
                    }
                    Ok(status) => status.active.then(|| status.services.join(",").into()),
                    Err(error) => {
                        tracing::warn!(target: "gateway::auth", "token status unreadable: {error}");
                        return Err(GatewayError::UpstreamUnavailable);
                    }
                }
            }
            // A token id the tenant service never issued cannot be active.
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => None,
            Ok(response) => {
                tracing::warn!(target: "gateway::auth", status = %response.status(), "token status check failed");
                return Err(GatewayError::UpstreamUnavailable);
            }
            Err(error) => {
                tracing::warn!(target: "gateway::auth", "token status check failed: {error}");
                return Err(GatewayError::UpstreamUnavailable);
            }
        };

        let valid_until = if services.is_some() {
            Instant::now() + ACTIVE_TOKEN_CACHE
        } else {
            Instant::now() + Duration::from_secs(seconds_until(claims.exp))
        };
        let mut cache = self.lock_status();
        if cache.len() >= TOKEN_STATUS_CACHE_CAPACITY {
            let now = Instant::now();
            cache.retain(|_, status| status.valid_until > now);
            // Still full of live answers: forgetting them costs only a
            // re-check each, while growing without bound could cost the process.
            if cache.len() >= TOKEN_STATUS_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            claims.jti,
            CachedStatus {
                services: services.clone(),
                valid_until,
            },
        );
        Ok(services)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, VerifiedEntry>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CachedStatus>> {
        self.token_status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Seconds from now until a Unix timestamp (zero when it has passed).
fn seconds_until(timestamp: i64) -> u64 {
    (timestamp - unix_now()).max(0) as u64
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{Json, Router, routing::get};
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    const KEY_ID: &str = "unit-key";

    /// A tenant service stand-in: publishes whatever JWKS the test sets
    /// (or fails when it is `null`) and calls every token active.
    async fn tenant_service(jwks: Arc<Mutex<Value>>) -> String {
        let router = Router::new()
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    let jwks = jwks.lock().unwrap().clone();
                    async move {
                        if jwks.is_null() {
                            Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
                        } else {
                            Ok(Json(jwks))
                        }
                    }
                }),
            )
            .route(
                "/internal/tokens/{jti}",
                get(|| async { Json(json!({"active": true})) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        origin
    }

    fn jwks_of(key: &SigningKey) -> Value {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": KEY_ID, "x": x}]})
    }

    fn sign(key: &SigningKey, claims: &Value) -> String {
        let der = key.to_pkcs8_der().unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KEY_ID.to_owned());
        let token =
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()));
        format!("Bearer {}", token.unwrap())
    }

    fn claims() -> Value {
        let now = unix_now();
        json!({"tenant_id": Uuid::new_v4(), "jti": Uuid::new_v4(), "sub": "t",
               "iss": ISSUER, "iat": now, "exp": now + 600})
    }

    async fn authenticator(key: &SigningKey) -> (Authenticator, Arc<Mutex<Value>>) {
        let jwks = Arc::new(Mutex::new(jwks_of(key)));
        let origin = tenant_service(jwks.clone()).await;
        let authenticator = Authenticator::new(
            reqwest::Client::new(),
            "unit-hop-secret-0123",
            Some(format!("{origin}/.well-known/jwks.json")),
            Some(origin),
        );
        (authenticator, jwks)
    }

    #[tokio::test]
    async fn tokens_of_another_issuer_or_from_the_future_are_refused() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let (authenticator, _) = authenticator(&key).await;
        let verify = |header: String| {
            let authenticator = &authenticator;
            async move { authenticator.authenticate(Some(&header)).await }
        };

        assert!(verify(sign(&key, &claims())).await.is_ok());
        let upper_case = sign(&key, &claims()).replacen("Bearer", "BEARER", 1);
        assert!(
            verify(upper_case).await.is_ok(),
            "the scheme is case-insensitive"
        );

        let mut other_issuer = claims();
        other_issuer["iss"] = json!("someone-else");
        let mut no_issuer = claims();
        no_issuer.as_object_mut().unwrap().remove("iss");
        let mut issued_later = claims();
        issued_later["iat"] = json!(unix_now() + 3600);
        let mut not_yet_valid = claims();
        not_yet_valid["nbf"] = json!(unix_now() + 3600);
        for (name, claims) in [
            ("another issuer", other_issuer),
            ("no issuer", no_issuer),
            ("issued in the future", issued_later),
            ("not valid before a later time", not_yet_valid),
        ] {
            let refused = verify(sign(&key, &claims)).await;
            assert!(
                matches!(refused, Err(GatewayError::Unauthenticated(_))),
                "{name}"
            );
        }
        let basic = verify("Basic dXNlcjpwYXNz".to_owned()).await;
        assert!(matches!(basic, Err(GatewayError::Unauthenticated(_))));
    }

    #[tokio::test]
    async fn a_key_the_tenant_service_stopped_publishing_stops_verifying() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let (mut authenticator, jwks) = authenticator(&key).await;
        authenticator.key_set_max_age = Duration::from_millis(200);
        let token = sign(&key, &claims());
        assert!(authenticator.authenticate(Some(&token)).await.is_ok());

        // The tenant service is away when the set is due: the keys it
        // published last keep working.
        *jwks.lock().unwrap() = Value::Null;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(authenticator.authenticate(Some(&token)).await.is_ok());

        // It answers again without the key: tokens signed with it are refused.
        let rotated = SigningKey::generate(&mut rand::rngs::OsRng);
        *jwks.lock().unwrap() = jwks_of(&rotated);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let refused = authenticator.authenticate(Some(&token)).await;
        assert!(matches!(refused, Err(GatewayError::Unauthenticated(_))));
        assert!(
            authenticator
                .authenticate(Some(&sign(&rotated, &claims())))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_token_verified_before_is_still_refused_once_it_expires() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let (authenticator, _) = authenticator(&key).await;
        let mut short_lived = claims();
        short_lived["exp"] = json!(unix_now() + 1);
        let token = sign(&key, &short_lived);
        assert!(authenticator.authenticate(Some(&token)).await.is_ok());
        assert!(
            authenticator.authenticate(Some(&token)).await.is_ok(),
            "served again"
        );

        // Past exp and the leeway: the cached verification must not outlive it.
        tokio::time::sleep(Duration::from_secs(LEEWAY_SECONDS + 2)).await;
        let refused = authenticator.authenticate(Some(&token)).await;
        assert!(matches!(refused, Err(GatewayError::Unauthenticated(_))));
    }
}
