//! Bearer token verification: signature against the tenant service's JWKS,
//! claims, then revocation.
//!
//! Keys are cached and refetched when a token names an unknown `kid`, at most
//! once per [`JWKS_REFRESH_INTERVAL`] so a stream of forged key ids cannot
//! turn the gateway into a load generator against the tenant service.
//! Revocation is asked of the tenant service per token id: an active answer
//! is trusted for [`ACTIVE_TOKEN_CACHE`] (a revoked token is refused within
//! that time), a revoked one until the token expires anyway. When the tenant
//! service cannot answer and nothing is cached the request is refused
//! (fail closed).

use std::{
    collections::HashMap,
    sync::Mutex,
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
/// Time limit for a call to the tenant service (JWKS or token status).
const TENANT_SERVICE_TIMEOUT: Duration = Duration::from_secs(3);
/// Clock skew tolerated on `exp`.
const LEEWAY_SECONDS: u64 = 5;
/// Revocation answers kept before the cache starts over.
const TOKEN_STATUS_CACHE_CAPACITY: usize = 100_000;

/// The claims of a verified token the gateway relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The tenant the token was issued to.
    pub tenant_id: Uuid,
    /// The token's id, which revocation refers to.
    pub token_id: Uuid,
}

#[derive(Debug, Deserialize)]
struct Claims {
    tenant_id: Uuid,
    jti: Uuid,
    #[allow(dead_code, reason = "required to be present; its value is not used")]
    iat: i64,
    exp: i64,
    #[allow(dead_code, reason = "required to be present; its value is not used")]
    sub: String,
}

#[derive(Deserialize)]
struct TokenStatus {
    active: bool,
}

struct CachedStatus {
    active: bool,
    valid_until: Instant,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    http: reqwest::Client,
    hop_secret: String,
    jwks_url: Option<String>,
    tenant_service_origin: Option<String>,
    keys: tokio::sync::RwLock<HashMap<String, DecodingKey>>,
    /// Serializes JWKS fetches and remembers when the last one ran.
    last_jwks_fetch: tokio::sync::Mutex<Option<Instant>>,
    token_status: Mutex<HashMap<Uuid, CachedStatus>>,
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
            keys: tokio::sync::RwLock::new(HashMap::new()),
            last_jwks_fetch: tokio::sync::Mutex::new(None),
            token_status: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the value of an `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<VerifiedToken, GatewayError> {
        let token = authorization
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(GatewayError::Unauthenticated("no bearer token"))?;

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
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => GatewayError::Unauthenticated("expired token"),
                ErrorKind::InvalidSignature => GatewayError::Unauthenticated("bad signature"),
                _ => GatewayError::Unauthenticated("invalid token or claims"),
            })?
            .claims;

        if !self.is_active(&claims).await? {
            return Err(GatewayError::Unauthenticated("revoked token"));
        }
        Ok(VerifiedToken {
            tenant_id: claims.tenant_id,
            token_id: claims.jti,
        })
    }

    /// The decoding key for `key_id`, fetching the JWKS when it is unknown.
    async fn key(&self, key_id: &str) -> Result<DecodingKey, GatewayError> {
        if let Some(key) = self.keys.read().await.get(key_id) {
            return Ok(key.clone());
        }

        let mut last_fetch = self.last_jwks_fetch.lock().await;
        // Another request may have refreshed the keys while this one waited.
        if let Some(key) = self.keys.read().await.get(key_id) {
            return Ok(key.clone());
        }
        let never_fetched = last_fetch.is_none();
        if last_fetch.is_some_and(|at| at.elapsed() < JWKS_REFRESH_INTERVAL) {
            return Err(GatewayError::Unauthenticated("unknown signing key"));
        }
        let fetched = self.fetch_keys().await;
        match fetched {
            Ok(keys) => {
                *last_fetch = Some(Instant::now());
                let found = keys.get(key_id).cloned();
                *self.keys.write().await = keys;
                found.ok_or(GatewayError::Unauthenticated("unknown signing key"))
            }
            Err(error) => {
                tracing::warn!(target: "gateway::auth", "fetching the JWKS failed: {error:#}");
                // Without any key nothing can be verified: that is the tenant
                // service being down, not the client's fault.
                if never_fetched {
                    Err(GatewayError::UpstreamUnavailable)
                } else {
                    *last_fetch = Some(Instant::now());
                    Err(GatewayError::Unauthenticated("unknown signing key"))
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

    /// Whether the tenant service still considers the token active.
    async fn is_active(&self, claims: &Claims) -> Result<bool, GatewayError> {
        if let Some(cached) = self.lock_status().get(&claims.jti)
            && cached.valid_until > Instant::now()
        {
            return Ok(cached.active);
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
        let active = match response {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                match response.json::<TokenStatus>().await {
                    Ok(status) => status.active,
                    Err(error) => {
                        tracing::warn!(target: "gateway::auth", "token status unreadable: {error}");
                        return Err(GatewayError::UpstreamUnavailable);
                    }
                }
            }
            // A token id the tenant service never issued cannot be active.
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => false,
            Ok(response) => {
                tracing::warn!(target: "gateway::auth", status = %response.status(), "token status check failed");
                return Err(GatewayError::UpstreamUnavailable);
            }
            Err(error) => {
                tracing::warn!(target: "gateway::auth", "token status check failed: {error}");
                return Err(GatewayError::UpstreamUnavailable);
            }
        };

        let valid_until = if active {
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
                active,
                valid_until,
            },
        );
        Ok(active)
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CachedStatus>> {
        self.token_status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Seconds from now until a Unix timestamp (zero when it has passed).
fn seconds_until(timestamp: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (timestamp - now).max(0) as u64
}
