//! Typed settings every service shares, read from the environment with
//! documented defaults and validated at start-up with a message that names the
//! bad setting.

use std::time::Duration;

use anyhow::{Context, bail};

/// Where embedded mode keeps its files when `DATA_DIR` is not set.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Settings shared by every subgraph and provisioner.
#[derive(Clone, Debug)]
pub struct TenancyConfig {
    /// `DATABASE_URL`: the default host new tenant databases are placed on,
    /// and where the control databases (meta, registries) live. Unset, it is
    /// `sqlite://$DATA_DIR` (embedded mode: one file per database).
    pub database_url: String,
    /// `DATABASE_PREFIX`: prepended to control database names and consumer
    /// groups, so several stacks (or tests) can share one cluster. Empty by
    /// default. Tenant databases are never prefixed: their names are public.
    pub database_prefix: String,
    /// `KAFKA_BROKERS`: `host:port[,host:port]`. Unset, events go through the
    /// in-process bus, kept in the `events` database (see [`crate::local_bus`]).
    pub kafka_brokers: Option<String>,
    /// `GATEWAY_HOP_SECRET`: the credential the gateway adds to every
    /// subgraph request; requests without it are refused.
    pub hop_secret: String,
    /// `TENANT_SIGNUPS_TOPIC` (default `tenant.signups`).
    pub signups_topic: String,
    /// `TENANT_PROVISIONING_TOPIC` (default `tenant.provisioning`): apps
    /// report each tenant database's status here.
    pub provisioning_topic: String,
    /// Limits of the per-tenant connection pools.
    pub pools: PoolLimits,
}

/// Bounds on tenant connections, so thousands of tenants never exhaust the
/// cluster's `max_connections`: at most `max_pools × connections_per_pool`
/// connections per app process.
#[derive(Clone, Debug)]
pub struct PoolLimits {
    /// `TENANT_POOL_CONNECTIONS` (default 2): connections per tenant pool.
    pub connections_per_pool: u32,
    /// `TENANT_POOLS_MAX` (default 16): tenant pools kept open at once; the
    /// least recently used is closed beyond that.
    pub max_pools: u64,
    /// `TENANT_POOL_IDLE_SECONDS` (default 300): a pool unused this long is
    /// closed.
    pub idle: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            connections_per_pool: 2,
            max_pools: 16,
            idle: Duration::from_secs(300),
        }
    }
}

impl TenancyConfig {
    /// Reads the settings from the environment; `GATEWAY_HOP_SECRET` must be
    /// set (a service running alone shares it with the gateway).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_env_with_secret(None)
    }

    /// Reads the settings, using `fallback_secret` when `GATEWAY_HOP_SECRET`
    /// is unset (the launcher, whose gateway and subgraphs share a process).
    pub fn from_env_with_secret(fallback_secret: Option<&str>) -> anyhow::Result<Self> {
        let defaults = PoolLimits::default();
        let database_url = match std::env::var("DATABASE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            Some(url) => url,
            None => format!("sqlite://{}", data_dir()?.display()),
        };
        let hop_secret = std::env::var("GATEWAY_HOP_SECRET")
            .ok()
            .or_else(|| fallback_secret.map(str::to_owned))
            .context(
                "GATEWAY_HOP_SECRET is not set: every service needs the gateway's hop secret",
            )?;
        let config = Self {
            database_url,
            database_prefix: env_or("DATABASE_PREFIX", ""),
            kafka_brokers: std::env::var("KAFKA_BROKERS")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            hop_secret,
            signups_topic: env_or("TENANT_SIGNUPS_TOPIC", "tenant.signups"),
            provisioning_topic: env_or("TENANT_PROVISIONING_TOPIC", "tenant.provisioning"),
            pools: PoolLimits {
                connections_per_pool: env_parse(
                    "TENANT_POOL_CONNECTIONS",
                    defaults.connections_per_pool,
                )?,
                max_pools: env_parse("TENANT_POOLS_MAX", defaults.max_pools)?,
                idle: Duration::from_secs(env_parse("TENANT_POOL_IDLE_SECONDS", 300u64)?),
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Whether databases are embedded SQLite files.
    pub fn is_embedded(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::host::DatabaseHost::parse(&self.database_url).context("DATABASE_URL is invalid")?;
        if self.hop_secret.len() < 16 {
            bail!("GATEWAY_HOP_SECRET must be at least 16 characters");
        }
        if !self
            .database_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("DATABASE_PREFIX may hold only lower-case letters, digits and underscores");
        }
        if self.pools.connections_per_pool == 0 || self.pools.max_pools == 0 {
            bail!("TENANT_POOL_CONNECTIONS and TENANT_POOLS_MAX must be at least 1");
        }
        Ok(())
    }

    /// The name of a control database (`tenant_meta`, `fact_registry`, …)
    /// with this stack's prefix.
    pub fn control_database(&self, name: &str) -> String {
        format!("{}{}", self.database_prefix, name)
    }

    /// The consumer group of a component (`fact-provisioner`, …) with this
    /// stack's prefix.
    pub fn consumer_group(&self, name: &str) -> String {
        format!("{}{}", self.database_prefix, name)
    }

    /// The Kafka brokers, or an error naming the missing setting.
    pub fn require_kafka(&self) -> anyhow::Result<&str> {
        self.kafka_brokers
            .as_deref()
            .context("KAFKA_BROKERS is not set")
    }
}

/// `DATA_DIR` (default `./data`), created if missing and made absolute, so
/// the `sqlite://` hosts stored in registries do not depend on the working
/// directory of a later start.
pub fn data_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = env_or("DATA_DIR", DEFAULT_DATA_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("DATA_DIR {dir}: cannot create it"))?;
    std::fs::canonicalize(&dir).with_context(|| format!("DATA_DIR {dir}: cannot resolve it"))
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn env_parse<T: std::str::FromStr>(key: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(key) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{key} is not a valid number: {value:?}")),
        _ => Ok(default),
    }
}
