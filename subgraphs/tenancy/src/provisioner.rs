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
//! `failed` (durably, with the error) and reported; the next delivery of a
//! signup for that tenant tries again.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use migration::MigratorTrait;
use uuid::Uuid;

use crate::bus::{Delivery, EventBus};
use crate::consumer::MessageHandler;
use crate::events::{EVENT_VERSION, ProvisioningEvent, ServiceName, SignupEvent};
use crate::host::{DatabaseHost, PoolOptions};
use crate::ids::TenantId;
use crate::registry::{DatabaseStatus, TenantRegistry};

/// How often a failing step is tried before the tenant is marked failed.
const ATTEMPTS: u32 = 3;

/// Provisions one app's tenant databases, migrating them with `M`.
pub struct Provisioner<M> {
    service: ServiceName,
    registry: TenantRegistry,
    default_host: Arc<DatabaseHost>,
    bus: Arc<dyn EventBus>,
    status_topic: String,
    migrator: PhantomData<fn() -> M>,
}

impl<M: MigratorTrait> Provisioner<M> {
    /// A provisioner for `service` that places new tenants on `default_host`
    /// and reports statuses to `status_topic`.
    pub fn new(
        service: ServiceName,
        registry: TenantRegistry,
        default_host: Arc<DatabaseHost>,
        bus: Arc<dyn EventBus>,
        status_topic: &str,
    ) -> Self {
        Self {
            service,
            registry,
            default_host,
            bus,
            status_topic: status_topic.to_owned(),
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
    #[tracing::instrument(name = "provision", skip(self, tenant), fields(service = self.service.as_str(), tenant_id = %tenant))]
    pub async fn provision(&self, tenant: TenantId) -> anyhow::Result<DatabaseStatus> {
        let app = self.service.as_str();
        let lock = self
            .registry
            .lock(app, tenant)
            .await
            .context("taking the provisioning lock")?;
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
