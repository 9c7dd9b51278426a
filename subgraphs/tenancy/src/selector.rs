//! The registry-backed connection selector: tenant id → a ready connection to
//! that tenant's database.
//!
//! Pools are opened on first use, one small pool per tenant database, and
//! kept in a bounded cache: beyond [`PoolLimits::max_pools`] the least
//! recently used pool leaves the cache, and so does a pool idle for
//! [`PoolLimits::idle`]. A pool that left the cache closes its connections as
//! soon as no request holds it any more (its last handle is dropped), so a
//! request that was running on it finishes undisturbed. Once requests finish,
//! an app process holds at most `max_pools × connections_per_pool` tenant
//! connections, however many tenants exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::DatabaseConnection;

use crate::config::PoolLimits;
use crate::error::{Error, Result};
use crate::events::ServiceName;
use crate::hop::{RequestTenant, request_tenant};
use crate::host::{DatabaseHost, PoolOptions};
use crate::ids::TenantId;
use crate::registry::{DatabaseStatus, TenantRegistry};

/// A connection to one tenant's database. Holding one is the only way to
/// reach tenant data, so every query is scoped to the tenant by construction.
#[derive(Clone, Debug)]
pub struct TenantConnection {
    tenant: TenantId,
    db: DatabaseConnection,
}

impl TenantConnection {
    /// The tenant this connection belongs to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The connection to the tenant's own database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// Chooses a tenant's database from the app's registry.
#[derive(Clone)]
pub struct ConnectionSelector {
    inner: Arc<SelectorInner>,
}

struct SelectorInner {
    app: String,
    /// The app as a service name, to read what the gateway said of it.
    service: Option<ServiceName>,
    registry: TenantRegistry,
    hosts: Mutex<HashMap<String, Arc<DatabaseHost>>>,
    pools: moka::future::Cache<TenantId, DatabaseConnection>,
    pool_options: PoolOptions,
}

impl ConnectionSelector {
    /// A selector for `app` over its registry. `default_host` is the
    /// configured host, whose credentials registry entries do not store.
    pub fn new(
        app: &str,
        registry: TenantRegistry,
        default_host: Arc<DatabaseHost>,
        limits: &PoolLimits,
    ) -> Self {
        // Least recently used, not moka's default TinyLFU: TinyLFU may refuse
        // a new entry, evicting the pool just opened for the request that
        // needs it instead of one nobody uses.
        //
        // The listener only logs. The cache holds one handle of a pool that
        // sqlx reference-counts; requests hold others (some clone the bare
        // `DatabaseConnection`), and the pool closes its connections when the
        // last handle is dropped. Closing it here would fail those requests.
        let pools = moka::future::Cache::builder()
            .max_capacity(limits.max_pools)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_idle(limits.idle)
            .eviction_listener(|tenant: Arc<TenantId>, _pool, cause| {
                let tenant_id = tenant.to_string();
                tracing::debug!(target: "tenancy::selector", tenant_id, ?cause, "pool left the cache");
            })
            .build();
        let pool_options = PoolOptions {
            max_connections: limits.connections_per_pool,
            idle: limits.idle,
        };
        let inner = SelectorInner {
            app: app.to_owned(),
            service: ServiceName::parse(app).ok(),
            registry,
            hosts: Mutex::new(HashMap::from([(default_host.url(), default_host)])),
            pools,
            pool_options,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A ready connection to the tenant's database. `ServiceNotEnabled` when
    /// the tenant has no entry (it did not sign up for this app);
    /// `TenantNotReady` while its database is being created.
    pub async fn connection(&self, tenant: TenantId) -> Result<TenantConnection> {
        let inner = &self.inner;
        if let Some(db) = inner.pools.get(&tenant).await {
            return Ok(TenantConnection { tenant, db });
        }

        // Only ready entries get a pool, so a cached pool implies readiness.
        let entry = inner.registry.find(tenant).await?;
        let entry = entry.ok_or_else(|| Error::ServiceNotEnabled(inner.app.clone()))?;
        if entry.status != DatabaseStatus::Ready {
            return Err(Error::TenantNotReady(inner.app.clone()));
        }

        let host = self.host(&entry.host)?;
        let options = inner.pool_options;
        let db = inner
            .pools
            .try_get_with(tenant, async move {
                host.connect(&entry.database_name, options).await
            })
            .await
            .map_err(|error| Error::Internal(anyhow::anyhow!("{error:#}")))?;

        // moka evicts lazily, on later cache activity; a new pool may have
        // pushed the cache past its bound, so evict now, not whenever.
        inner.pools.run_pending_tasks().await;
        Ok(TenantConnection { tenant, db })
    }

    /// A ready connection for the tenant a request acts for. A tenant
    /// without a registry entry that the gateway says signed up for this
    /// app is `TenantNotReady`, not `ServiceNotEnabled`: its signup event has
    /// not been handled yet.
    pub async fn connection_for(&self, request: &RequestTenant) -> Result<TenantConnection> {
        let tenant = request.require()?;
        match self.connection(tenant).await {
            Err(Error::ServiceNotEnabled(app))
                if self.inner.service.and_then(|s| request.signed_up_for(s)) == Some(true) =>
            {
                Err(Error::TenantNotReady(app))
            }
            other => other,
        }
    }

    /// How many tenant pools are open.
    pub async fn open_pools(&self) -> u64 {
        self.inner.pools.run_pending_tasks().await;
        self.inner.pools.entry_count()
    }

    /// Drops the tenant's pool, e.g. after its database was removed.
    pub async fn forget(&self, tenant: TenantId) {
        self.inner.pools.invalidate(&tenant).await;
    }

    /// The host for a registry URL, parsed once and shared.
    fn host(&self, url: &str) -> Result<Arc<DatabaseHost>> {
        let mut hosts = self.inner.hosts.lock().expect("host map poisoned");
        if let Some(host) = hosts.get(url) {
            return Ok(host.clone());
        }
        let host = Arc::new(DatabaseHost::parse(url)?);
        hosts.insert(url.to_owned(), host.clone());
        Ok(host)
    }
}

/// The connection of the tenant a GraphQL request acts for, through the
/// [`ConnectionSelector`] in the schema's data (see
/// [`ConnectionSelector::connection_for`]).
pub async fn request_connection(ctx: &async_graphql::Context<'_>) -> Result<TenantConnection> {
    let selector = ctx.data_unchecked::<ConnectionSelector>();
    selector.connection_for(&request_tenant(ctx)).await
}
