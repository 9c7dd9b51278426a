//! Typed gateway configuration, read from environment variables.
//!
//! Every setting has a documented default except the hop secret: a gateway
//! that cannot prove itself to the subgraphs would refuse every request, so
//! starting without one is a configuration error named at startup.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};

/// One subgraph the gateway composes: its name in the supergraph and the URL
/// of its GraphQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphEndpoint {
    /// Name of the subgraph in the supergraph (`tenant`, `fact`, `org`, `todo`).
    pub name: String,
    /// URL of its GraphQL endpoint, e.g. `http://127.0.0.1:4001/graphql`.
    pub url: String,
}

/// Everything the gateway needs to run.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Address to listen on (`GATEWAY_ADDR`, default `127.0.0.1:4000`).
    pub address: SocketAddr,
    /// The subgraphs to compose, in a stable order; unset URLs are left out.
    pub subgraphs: Vec<SubgraphEndpoint>,
    /// Shared secret sent as `X-Gateway-Auth` on every subgraph request
    /// (`GATEWAY_HOP_SECRET`, required).
    pub hop_secret: String,
    /// Where the tenant service publishes its signing keys (`JWKS_URL`, default
    /// the tenant subgraph's origin + `/.well-known/jwks.json`).
    pub jwks_url: Option<String>,
    /// Origin of the tenant service, which answers token revocation checks at
    /// `/internal/tokens/{jti}`; derived from the tenant subgraph URL, else from
    /// the JWKS URL.
    pub tenant_service_origin: Option<String>,
    /// Time limit for one subgraph call (`GATEWAY_SUBGRAPH_TIMEOUT_MS`, default 10 s).
    pub subgraph_timeout: Duration,
    /// How often the gateway refetches subgraph schemas and recomposes when
    /// one changed (`GATEWAY_RECOMPOSE_INTERVAL_SECONDS`, default 30 s).
    pub recompose_interval: Duration,
    /// Largest accepted request body (`GATEWAY_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Deepest accepted selection nesting (`GATEWAY_MAX_QUERY_DEPTH`, default 15).
    pub max_query_depth: usize,
    /// Most fields one operation may select, counted after expanding fragments
    /// (`GATEWAY_MAX_QUERY_FIELDS`, default 2000).
    pub max_query_fields: usize,
    /// Worker threads of the standalone binary's runtime
    /// (`GATEWAY_WORKER_THREADS`, default one per CPU). The launcher runs
    /// every service on one runtime and ignores this.
    pub worker_threads: Option<usize>,
}

impl std::fmt::Debug for GatewayConfig {
    /// Everything but the hop secret, so the configuration can be logged.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GatewayConfig")
            .field("address", &self.address)
            .field("subgraphs", &self.subgraphs)
            .field("hop_secret", &"<redacted>")
            .field("jwks_url", &self.jwks_url)
            .field("tenant_service_origin", &self.tenant_service_origin)
            .field("subgraph_timeout", &self.subgraph_timeout)
            .field("recompose_interval", &self.recompose_interval)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_query_depth", &self.max_query_depth)
            .field("max_query_fields", &self.max_query_fields)
            .field("worker_threads", &self.worker_threads)
            .finish()
    }
}

/// Shortest hop secret accepted, the same rule the subgraphs apply.
const MIN_HOP_SECRET_LENGTH: usize = 16;

/// The environment variable that names each subgraph's URL, with the
/// subgraph's name in the supergraph.
const SUBGRAPH_URL_VARIABLES: [(&str, &str); 4] = [
    ("tenant", "TENANT_SUBGRAPH_URL"),
    ("fact", "FACT_SUBGRAPH_URL"),
    ("org", "ORG_SUBGRAPH_URL"),
    ("todo", "TODO_SUBGRAPH_URL"),
];

impl GatewayConfig {
    /// A configuration with the defaults, the given secret and subgraphs; the
    /// JWKS URL and tenant origin are derived from the `tenant` subgraph.
    pub fn new(hop_secret: impl Into<String>, subgraphs: Vec<SubgraphEndpoint>) -> Self {
        let tenant_service_origin = subgraphs
            .iter()
            .find(|subgraph| subgraph.name == "tenant")
            .and_then(|subgraph| origin_of(&subgraph.url));
        let jwks_url = tenant_service_origin
            .as_ref()
            .map(|origin| format!("{origin}/.well-known/jwks.json"));
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 4000)),
            subgraphs,
            hop_secret: hop_secret.into(),
            jwks_url,
            tenant_service_origin,
            subgraph_timeout: Duration::from_secs(10),
            recompose_interval: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            max_query_depth: 15,
            max_query_fields: 2000,
            worker_threads: None,
        }
    }

    /// Reads the configuration from the environment, naming the variable at
    /// fault when one is missing or malformed.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`from_env`](Self::from_env), using `fallback_secret` when
    /// `GATEWAY_HOP_SECRET` is unset: the launcher, whose gateway and
    /// subgraphs share a process, can make one up.
    pub fn from_env_with_secret(fallback_secret: Option<&str>) -> anyhow::Result<Self> {
        Self::from_lookup(|key| {
            let value = std::env::var(key)
                .ok()
                .filter(|value| !value.trim().is_empty());
            match (key, value) {
                ("GATEWAY_HOP_SECRET", None) => fallback_secret.map(str::to_owned),
                (_, value) => value,
            }
        })
    }

    /// Reads the configuration through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let non_empty = |key: &str| lookup(key).filter(|value| !value.trim().is_empty());

        let Some(hop_secret) = non_empty("GATEWAY_HOP_SECRET") else {
            bail!("GATEWAY_HOP_SECRET must be set: subgraphs refuse calls without it");
        };
        // The subgraphs refuse to start with a shorter one; say so here too
        // rather than let every call fail.
        if hop_secret.len() < MIN_HOP_SECRET_LENGTH {
            bail!("GATEWAY_HOP_SECRET must be at least {MIN_HOP_SECRET_LENGTH} characters");
        }
        let mut subgraphs = Vec::new();
        for (name, variable) in SUBGRAPH_URL_VARIABLES {
            if let Some(url) = non_empty(variable) {
                if origin_of(&url).is_none() {
                    bail!("{variable} must be an http:// URL, got {url:?}");
                }
                subgraphs.push(SubgraphEndpoint {
                    name: name.to_owned(),
                    url,
                });
            }
        }
        let mut config = Self::new(hop_secret, subgraphs);

        if let Some(address) = non_empty("GATEWAY_ADDR") {
            config.address = address
                .parse()
                .with_context(|| format!("GATEWAY_ADDR must be host:port, got {address:?}"))?;
        }
        if let Some(jwks_url) = non_empty("JWKS_URL") {
            if config.tenant_service_origin.is_none() {
                config.tenant_service_origin = origin_of(&jwks_url);
            }
            config.jwks_url = Some(jwks_url);
        }
        let number = |key: &str, default: u64| -> anyhow::Result<u64> {
            match non_empty(key) {
                None => Ok(default),
                Some(value) => value
                    .parse()
                    .with_context(|| format!("{key} must be a whole number, got {value:?}")),
            }
        };
        config.subgraph_timeout =
            Duration::from_millis(number("GATEWAY_SUBGRAPH_TIMEOUT_MS", 10_000)?);
        config.recompose_interval =
            Duration::from_secs(number("GATEWAY_RECOMPOSE_INTERVAL_SECONDS", 30)?);
        config.max_body_bytes = number("GATEWAY_MAX_BODY_BYTES", 1024 * 1024)? as usize;
        config.max_query_depth = number("GATEWAY_MAX_QUERY_DEPTH", 15)? as usize;
        config.max_query_fields = number("GATEWAY_MAX_QUERY_FIELDS", 2000)? as usize;
        if non_empty("GATEWAY_WORKER_THREADS").is_some() {
            match number("GATEWAY_WORKER_THREADS", 0)? {
                0 => bail!("GATEWAY_WORKER_THREADS must be at least 1"),
                threads => config.worker_threads = Some(threads as usize),
            }
        }
        Ok(config)
    }
}

/// `scheme://host:port` of an http(s) URL, or `None` when it is not one.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_hop_secret_is_required() {
        let error = GatewayConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(error.to_string().contains("GATEWAY_HOP_SECRET"));
    }

    #[test]
    fn a_short_hop_secret_is_refused() {
        let error =
            GatewayConfig::from_lookup(lookup(&[("GATEWAY_HOP_SECRET", "short")])).unwrap_err();
        assert!(error.to_string().contains("at least 16"));
    }

    #[test]
    fn the_jwks_url_defaults_to_the_tenant_service_origin() {
        let config = GatewayConfig::from_lookup(lookup(&[
            ("GATEWAY_HOP_SECRET", "a-long-enough-secret"),
            ("TENANT_SUBGRAPH_URL", "http://127.0.0.1:4001/graphql"),
            ("FACT_SUBGRAPH_URL", "http://127.0.0.1:4002/graphql"),
        ]))
        .unwrap();
        assert_eq!(
            config.jwks_url.as_deref(),
            Some("http://127.0.0.1:4001/.well-known/jwks.json")
        );
        assert_eq!(
            config.tenant_service_origin.as_deref(),
            Some("http://127.0.0.1:4001")
        );
        assert_eq!(config.address.to_string(), "127.0.0.1:4000");
        let names: Vec<_> = config.subgraphs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tenant", "fact"]);
    }

    #[test]
    fn a_malformed_address_names_the_variable() {
        let error = GatewayConfig::from_lookup(lookup(&[
            ("GATEWAY_HOP_SECRET", "a-long-enough-secret"),
            ("GATEWAY_ADDR", "nowhere"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("GATEWAY_ADDR"));
    }

    #[test]
    fn worker_threads_default_to_the_runtime_and_must_be_positive() {
        let secret = ("GATEWAY_HOP_SECRET", "a-long-enough-secret");
        let config = GatewayConfig::from_lookup(lookup(&[secret])).unwrap();
        assert_eq!(config.worker_threads, None);

        let one = GatewayConfig::from_lookup(lookup(&[secret, ("GATEWAY_WORKER_THREADS", "1")]));
        assert_eq!(one.unwrap().worker_threads, Some(1));
        for bad in ["0", "two"] {
            let error =
                GatewayConfig::from_lookup(lookup(&[secret, ("GATEWAY_WORKER_THREADS", bad)]))
                    .unwrap_err();
            assert!(
                error.to_string().contains("GATEWAY_WORKER_THREADS"),
                "{bad}"
            );
        }
    }
}
