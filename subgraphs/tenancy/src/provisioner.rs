//! The provisioner: turns `tenant.signups` into ready tenant databases.
//!
//! For an event that names its app, each step is safe to repeat, so any
//! delivery repairs whatever an earlier, interrupted one left behind:
//!
//! 1. take the tenant's provisioning lock (one instance at a time per tenant);
//! 2. register the tenant as `provisioning` unless it already has an entry;
//! 3. create the database unless it exists (`CREATE DATABASE` cannot run in a
//!    transaction, so "exists" is checked, and a racing creator tolerated);
//! 4. run the tenant migrations (they record what they applied);
//! 5. mark the entry `ready` and report the status on `tenant.provisioning`.
//!
//! A step that keeps failing is retried a few times, then the entry is marked
//! `failed` (durably, with the error) and reported, and the signup's offset
//! is committed: the signup was handled, and holding it would block every
//! later one. No later delivery comes for it, so the provisioner repairs on
//! its own: every repair interval ([`REPAIR_INTERVAL`] in the apps) it takes
//! the `failed` entries, and those left `provisioning` by an instance that
//! stopped, through the same steps again, backing off per tenant while one
//! keeps failing. So `TENANT_PROVISIONING` ("retry shortly") stays true: a
//! failed tenant becomes ready once its cause is gone, without a new event.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use migration::MigratorTrait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Delivery, EventBus};
use crate::consumer::MessageHandler;
use crate::events::{EVENT_VERSION, ProvisioningEvent, ServiceName, SignupEvent};
use crate::host::{DatabaseHost, PoolOptions};
use crate::ids::TenantId;
use crate::registry::{DatabaseStatus, TenantLock, TenantRegistry};

/// How often a failing step is tried before the tenant is marked failed.
const ATTEMPTS: u32 = 3;

/// How often the apps' provisioners look for entries to repair.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(30);

/// The longest a tenant whose repairs keep failing waits for the next one,
/// in repair intervals (five minutes at [`REPAIR_INTERVAL`]).
const MOST_REPAIR_INTERVALS: u32 = 10;

/// Provisions one app's tenant databases, migrating them with `M`.
pub struct Provisioner<M> {
    service: ServiceName,
    registry: TenantRegistry,
    default_host: Arc<DatabaseHost>,
    bus: Arc<dyn EventBus>,
    status_topic: String,
    repair_interval: Duration,
    migrator: PhantomData<fn() -> M>,
}

impl<M: MigratorTrait> Provisioner<M> {
    /// A provisioner for `service` that places new tenants on `default_host`,
    /// reports statuses to `status_topic`, and, once [`Self::spawn_repairs`]
    /// runs, looks for entries to repair every `repair_interval`.
    pub fn new(
        service: ServiceName,
        registry: TenantRegistry,
        default_host: Arc<DatabaseHost>,
        bus: Arc<dyn EventBus>,
        status_topic: &str,
        repair_interval: Duration,
    ) -> Self {
        Self {
            service,
            registry,
            default_host,
            bus,
            status_topic: status_topic.to_owned(),
            repair_interval,
            migrator: PhantomData,
        }
    }

    /// The schema version a ready database has: the last migration's name.
    pub fn schema_version() -> String {
        M::migrations()
            .last()
            .map(|m| m.name().to_owned())
            .unwrap_or_default()
    }

    /// Provisions the tenant's database (every step idempotent) and reports
    /// the outcome. `Err` only when not even the failure could be recorded.
    pub async fn provision(&self, tenant: TenantId) -> anyhow::Result<DatabaseStatus> {
        let lock = self
            .registry
            .lock(self.service.as_str(), tenant)
            .await
            .context("taking the provisioning lock")?;
        self.provision_locked(tenant, lock).await
    }

    /// Steps 2–5, under the tenant's lock.
    #[tracing::instrument(name = "provision", skip(self, tenant, lock), fields(service = self.service.as_str(), tenant_id = %tenant))]
    async fn provision_locked(
        &self,
        tenant: TenantId,
        lock: TenantLock,
    ) -> anyhow::Result<DatabaseStatus> {
        let app = self.service.as_str();
        let database = tenant.database_name(app);
        let entry = self
            .registry
            .claim(tenant, &self.default_host.url(), &database)
            .await?;

        let status = match entry.status {
            // A repeat: report again, in case the first report was lost.
            DatabaseStatus::Ready => DatabaseStatus::Ready,
            DatabaseStatus::Provisioning | DatabaseStatus::Failed => {
                if entry.status == DatabaseStatus::Failed {
                    self.registry.mark_provisioning(tenant).await?;
                }
                self.create_and_migrate(tenant, &entry.host, &entry.database_name)
                    .await?
            }
        };
        lock.release().await?;

        let error = self.registry.find(tenant).await?.and_then(|e| e.error);
        self.report(tenant, status, error).await?;
        Ok(status)
    }

    /// Repairs unfinished entries every repair interval until `shutdown`.
    pub fn spawn_repairs(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()>
    where
        M: 'static,
    {
        tokio::spawn(async move {
            let mut waits = HashMap::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(self.repair_interval) => {}
                }
                if let Err(error) = self.repair(&mut waits, &shutdown).await {
                    tracing::warn!(target: "tenancy::provisioner", service = self.service.as_str(), error = format!("{error:#}"), "repair pass failed; will retry");
                }
            }
        })
    }

    /// One repair pass: provisions again each `failed` entry, and each one
    /// `provisioning` for a whole interval, unless it is waiting out its
    /// backoff or another instance holds its lock (it is being provisioned).
    async fn repair(
        &self,
        waits: &mut HashMap<TenantId, RepairWait>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let app = self.service.as_str();
        let stalled_before = Utc::now() - chrono::Duration::from_std(self.repair_interval)?;
        let entries = self
            .registry
            .unfinished(stalled_before)
            .await
            .context("listing unfinished tenant databases")?;
        waits.retain(|tenant, _| entries.iter().any(|entry| entry.tenant_id == *tenant));

        for entry in entries {
            let tenant = entry.tenant_id;
            if shutdown.is_cancelled() {
                break;
            }
            if waits
                .get(&tenant)
                .is_some_and(|wait| wait.until > Instant::now())
            {
                continue;
            }
            let Some(lock) = self.registry.try_lock(app, tenant).await? else {
                continue;
            };

            tracing::info!(target: "tenancy::provisioner", service = app, tenant_id = %tenant, status = entry.status.as_str(), "repairing tenant database");
            let outcome = self.provision_locked(tenant, lock).await;
            if let Ok(DatabaseStatus::Ready) = outcome {
                waits.remove(&tenant);
                continue;
            }
            if let Err(error) = outcome {
                tracing::warn!(target: "tenancy::provisioner", service = app, tenant_id = %tenant, error = format!("{error:#}"), "repair failed");
            }

            // Still failing: wait twice as long as last time before the
            // next try, up to a bound, so a hopeless tenant costs little
            // and a fixed one is found again within minutes.
            let wait = waits.entry(tenant).or_insert(RepairWait {
                delay: self.repair_interval,
                until: Instant::now(),
            });
            wait.until = Instant::now() + wait.delay;
            wait.delay = (wait.delay * 2).min(self.repair_interval * MOST_REPAIR_INTERVALS);
        }
        Ok(())
    }

    /// Steps 3–5 with retries; records the outcome in the registry.
    async fn create_and_migrate(
        &self,
        tenant: TenantId,
        host: &str,
        database: &str,
    ) -> anyhow::Result<DatabaseStatus> {
        let host = if host == self.default_host.url() {
            self.default_host.clone()
        } else {
            Arc::new(DatabaseHost::parse(host)?)
        };

        let mut last_error = None;
        for attempt in 1..=ATTEMPTS {
            match Self::create_and_migrate_once(&host, database).await {
                Ok(()) => {
                    self.registry
                        .mark_ready(tenant, &Self::schema_version())
                        .await?;
                    tracing::info!(target: "tenancy::provisioner", database, "tenant database ready");
                    return Ok(DatabaseStatus::Ready);
                }
                Err(error) => {
                    tracing::warn!(target: "tenancy::provisioner", database, attempt, error = format!("{error:#}"), "provisioning step failed");
                    last_error = Some(error);
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }

        let error = last_error.map(|e| format!("{e:#}")).unwrap_or_default();
        tracing::error!(target: "tenancy::provisioner", database, error, "provisioning failed");
        self.registry
            .mark_failed(tenant, "the tenant database could not be created")
            .await?;
        Ok(DatabaseStatus::Failed)
    }

    async fn create_and_migrate_once(host: &DatabaseHost, database: &str) -> anyhow::Result<()> {
        let created = host.ensure_database(database).await?;
        tracing::debug!(target: "tenancy::provisioner", database, created, "database present");
        let db = host
            .connect(
                database,
                PoolOptions {
                    max_connections: 1,
                    idle: Duration::from_secs(5),
                },
            )
            .await?;
        let migrated = M::up(&db, None)
            .await
            .with_context(|| format!("migrating {database}"));
        db.close().await.ok();
        migrated
    }

    async fn report(
        &self,
        tenant: TenantId,
        status: DatabaseStatus,
        error: Option<String>,
    ) -> anyhow::Result<()> {
        let event = ProvisioningEvent {
            event_id: Uuid::now_v7(),
            version: EVENT_VERSION,
            tenant_id: tenant,
            service: self.service,
            status: status.as_str().to_owned(),
            error,
            occurred_at: Utc::now(),
        };
        let payload = serde_json::to_vec(&event)?;
        self.bus
            .publish(&self.status_topic, &tenant.to_string(), &payload)
            .await
    }
}

/// When a tenant whose repair failed is tried again.
struct RepairWait {
    /// How long the wait after the next failure is.
    delay: Duration,
    /// Not before this.
    until: Instant,
}

#[async_trait]
impl<M: MigratorTrait + 'static> MessageHandler for Provisioner<M> {
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        // A payload no version of us can read is logged and skipped: retrying
        // it would block every later signup on the partition.
        let event: SignupEvent = match serde_json::from_slice(&delivery.payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(target: "tenancy::provisioner", offset = delivery.offset, partition = delivery.partition, %error, "unreadable signup event skipped");
                return Ok(());
            }
        };
        if event.version != EVENT_VERSION {
            tracing::warn!(target: "tenancy::provisioner", version = event.version, offset = delivery.offset, "signup event of an unknown version skipped");
            return Ok(());
        }
        if !event.includes(self.service) {
            return Ok(());
        }
        self.provision(event.tenant_id).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_bus::LocalBus;
    use migration::{BusMigrator, FactMigrator, RegistryMigrator};

    #[tokio::test]
    async fn an_embedded_tenant_that_failed_is_repaired_once_its_cause_is_gone() {
        let dir = std::env::temp_dir().join(format!("repairs-{}", Uuid::new_v4()));
        let host = Arc::new(DatabaseHost::parse(&format!("sqlite://{}", dir.display())).unwrap());
        let registry = TenantRegistry::new(
            host.open_control_database::<RegistryMigrator>("fact_registry")
                .await
                .unwrap(),
        );
        let bus = LocalBus::new(
            host.open_control_database::<BusMigrator>("events")
                .await
                .unwrap(),
        );
        let provisioner = Arc::new(Provisioner::<FactMigrator>::new(
            ServiceName::Fact,
            registry.clone(),
            host.clone(),
            Arc::new(bus),
            "provisioning",
            Duration::from_millis(200),
        ));

        // A directory where the database file belongs: it cannot be opened.
        let tenant = TenantId::new();
        let file = dir.join(format!("{}.db", tenant.database_name("fact")));
        std::fs::create_dir_all(&file).unwrap();
        let status = provisioner.provision(tenant).await.unwrap();
        assert_eq!(status, DatabaseStatus::Failed);

        let shutdown = CancellationToken::new();
        let repairs = provisioner.clone().spawn_repairs(shutdown.clone());
        std::fs::remove_dir(&file).unwrap();
        let started = Instant::now();
        loop {
            let entry = registry.find(tenant).await.unwrap().unwrap();
            if entry.status == DatabaseStatus::Ready {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{entry:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        repairs.await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
