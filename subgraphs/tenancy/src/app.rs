//! Starting an app subgraph's tenancy machinery: its registry, its connection
//! selector and its provisioner, consuming `tenant.signups` and repairing
//! what failed.

use std::sync::Arc;

use anyhow::Context;
use migration::{MigratorTrait, RegistryMigrator};
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::config::TenancyConfig;
use crate::consumer::spawn_consumer;
use crate::events::ServiceName;
use crate::host::DatabaseHost;
use crate::provisioner::{Provisioner, REPAIR_INTERVAL};
use crate::registry::TenantRegistry;
use crate::selector::ConnectionSelector;

/// What an app subgraph runs on.
pub struct AppRuntime<M> {
    /// Picks the caller's tenant database.
    pub selector: ConnectionSelector,
    /// The app's registry.
    pub registry: TenantRegistry,
    /// The provisioner, also callable directly (benchmarks, repair).
    pub provisioner: Arc<Provisioner<M>>,
    /// The provisioner's tasks, its consumer and its repairs; ends after
    /// `shutdown`.
    pub consumer: tokio::task::JoinHandle<()>,
}

/// Opens (creating and migrating) the app's registry database
/// `<prefix><app>_registry`, creates the topics it uses, and starts its
/// provisioner in consumer group `<prefix><app>-provisioner`, with repairs
/// every [`REPAIR_INTERVAL`].
pub async fn start_app<M: MigratorTrait + 'static>(
    service: ServiceName,
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) -> anyhow::Result<AppRuntime<M>> {
    let app = service.as_str();
    let host = Arc::new(DatabaseHost::parse(&config.database_url).context("DATABASE_URL")?);
    let registry_name = config.control_database(&format!("{app}_registry"));
    let registry_db = host
        .open_control_database::<RegistryMigrator>(&registry_name)
        .await
        .with_context(|| format!("opening the {app} registry (DATABASE_URL)"))?;
    let registry = TenantRegistry::new(registry_db);
    let selector = ConnectionSelector::new(app, registry.clone(), host.clone(), &config.pools);

    bus.ensure_topics(&[&config.signups_topic, &config.provisioning_topic])
        .await
        .context("creating the event topics (KAFKA_BROKERS)")?;
    let provisioner = Arc::new(Provisioner::<M>::new(
        service,
        registry.clone(),
        host,
        bus.clone(),
        &config.provisioning_topic,
        REPAIR_INTERVAL,
    ));
    let signups = spawn_consumer(
        bus,
        config.signups_topic.clone(),
        config.consumer_group(&format!("{app}-provisioner")),
        provisioner.clone(),
        shutdown.clone(),
    );
    let repairs = provisioner.clone().spawn_repairs(shutdown);
    let consumer = tokio::spawn(async move {
        let _ = tokio::join!(signups, repairs);
    });
    Ok(AppRuntime {
        selector,
        registry,
        provisioner,
        consumer,
    })
}

/// Serves an app subgraph's `router` on `listener` until `shutdown`, then
/// waits for its provisioner to commit and stop. `app` names it in the log.
pub async fn serve_app<M>(
    app: &str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    runtime: AppRuntime<M>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(target: "tenancy::app", app, addr = %listener.local_addr()?, "subgraph listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    runtime.consumer.await.ok();
    Ok(())
}
