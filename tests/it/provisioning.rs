//! Signup → `tenant.signups` → `fact_<tenant>` created, migrated, ready.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use tenancy::TenantId;
use tenancy::bus::Delivery;
use tenancy::config::PoolLimits;
use tenancy::consumer::MessageHandler;
use tenancy::events::{ServiceName, SignupEvent};
use tenancy::host::DatabaseHost;
use tenancy::provisioner::Provisioner;
use tenancy::registry::DatabaseStatus;

use crate::stack::{Stack, first_code, fresh_config, kafka_brokers};

const READY_WITHIN: Duration = Duration::from_secs(60);

fn signup_event(tenant: TenantId, services: &[&str]) -> SignupEvent {
    SignupEvent {
        event_id: uuid::Uuid::now_v7(),
        version: 1,
        tenant_id: tenant,
        name: "Direct".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        occurred_at: Utc::now(),
    }
}

async fn publish(stack: &Stack, event: &SignupEvent) {
    let payload = serde_json::to_vec(event).unwrap();
    let topic = &stack.config.tenancy.signups_topic;
    stack
        .bus
        .publish(topic, &event.tenant_id.to_string(), &payload)
        .await
        .unwrap();
}

/// The offsets the fact provisioners' group committed, summed over partitions.
fn committed_total(stack: &Stack) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            stack.config.tenancy.kafka_brokers.as_deref().unwrap(),
        )
        .set(
            "group.id",
            stack.config.tenancy.consumer_group("fact-provisioner"),
        )
        .create()
        .unwrap();
    let topic = &stack.config.tenancy.signups_topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        partitions.add_partition(topic, partition.id());
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    let total = committed
        .elements()
        .iter()
        .map(|e| {
            if let Offset::Offset(o) = e.offset() {
                o
            } else {
                0
            }
        })
        .sum();
    // Dropped before the consumer: librdkafka issue #3796.
    drop(committed);
    total
}

async fn wait_for_committed(stack: &Stack, expected: i64) {
    let started = std::time::Instant::now();
    loop {
        let total = committed_total(stack);
        if total == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "committed {total}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn signup_provisions_a_migrated_fact_database_and_reports_ready() {
    let stack = Stack::start().await;
    let (tenant, _) = stack.signup("Acme", &["fact"]).await;
    let initial = stack.statuses(tenant).await;
    assert_eq!(initial[0]["name"], "fact", "{initial}");
    assert!(["provisioning", "ready"].contains(&initial[0]["status"].as_str().unwrap()));

    stack.wait_until_ready(tenant, "fact", READY_WITHIN).await;
    assert!(stack.database_exists(&tenant.database_name("fact")).await);
    let entry = stack.fact.registry.find(tenant).await.unwrap().unwrap();
    assert_eq!(entry.status, DatabaseStatus::Ready);
    let expected = tenancy::provisioner::Provisioner::<migration::FactMigrator>::schema_version();
    assert_eq!(entry.schema_version, Some(expected));

    // The migrated schema serves requests.
    let (_, body) = stack
        .graphql(
            &stack.fact_url,
            Some(tenant),
            r#"mutation { createFact(input: {text: "Snails sleep"}) { text } }"#,
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["createFact"]["text"], "Snails sleep", "{body}");
    stack.cleanup().await;
}

#[tokio::test]
async fn a_tenant_without_fact_gets_no_fact_database_and_service_not_enabled() {
    let stack = Stack::start().await;
    let (tenant, _) = stack.signup("Orgs only", &["org"]).await;

    // The provisioner's own handler, fed the tenant's event, does nothing.
    let event = signup_event(tenant, &["org"]);
    let delivery = Delivery {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        key: None,
        payload: serde_json::to_vec(&event).unwrap(),
    };
    stack.fact.provisioner.handle(&delivery).await.unwrap();
    assert!(stack.fact.registry.find(tenant).await.unwrap().is_none());
    assert!(!stack.database_exists(&tenant.database_name("fact")).await);

    let (status, body) = stack
        .graphql(
            &stack.fact_url,
            Some(tenant),
            "{ facts { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(first_code(&body), "SERVICE_NOT_ENABLED", "{body}");
    stack.cleanup().await;
}

#[tokio::test]
async fn the_same_signup_delivered_twice_provisions_one_database_and_commits() {
    let stack = Stack::start().await;
    let tenant = TenantId::new();
    stack.track(tenant);
    let event = signup_event(tenant, &["fact-app"]);
    publish(&stack, &event).await;
    publish(&stack, &event).await;

    stack
        .wait_until_registered_ready(tenant, READY_WITHIN)
        .await;
    wait_for_committed(&stack, 2).await;
    assert!(stack.database_exists(&tenant.database_name("fact")).await);
    let entry = stack.fact.registry.find(tenant).await.unwrap().unwrap();
    assert_eq!((entry.status, entry.error), (DatabaseStatus::Ready, None));
    stack.cleanup().await;
}

#[tokio::test]
async fn two_provisioners_in_one_group_provision_each_tenant_exactly_once() {
    let stack = Stack::start().await;
    // A second instance of the fact app: same registry, same consumer group.
    let second = tenancy::app::start_app::<migration::FactMigrator>(
        tenancy::events::ServiceName::Fact,
        &stack.config.tenancy,
        stack.bus.clone(),
        stack.shutdown.clone(),
    )
    .await
    .unwrap();

    let tenants: Vec<TenantId> = (0..8).map(|_| TenantId::new()).collect();
    for tenant in &tenants {
        stack.track(*tenant);
        let event = signup_event(*tenant, &["fact"]);
        publish(&stack, &event).await;
        // Every event twice: redelivery must stay a no-op under concurrency.
        publish(&stack, &event).await;
    }
    for tenant in &tenants {
        stack
            .wait_until_registered_ready(*tenant, READY_WITHIN)
            .await;
        assert!(stack.database_exists(&tenant.database_name("fact")).await);
    }
    wait_for_committed(&stack, 16).await;
    stack.shutdown.cancel();
    second.consumer.await.ok();
    stack.cleanup().await;
}

#[tokio::test]
async fn provisioning_interrupted_after_create_database_is_repaired_by_redelivery() {
    let stack = Stack::start().await;
    let tenant = TenantId::new();
    stack.track(tenant);
    let database = tenant.database_name("fact");

    // What a crash between CREATE DATABASE and the migrations leaves behind.
    stack
        .fact
        .registry
        .claim(tenant, &stack.host.url(), &database)
        .await
        .unwrap();
    assert!(stack.host.ensure_database(&database).await.unwrap());

    publish(&stack, &signup_event(tenant, &["fact"])).await;
    stack
        .wait_until_registered_ready(tenant, READY_WITHIN)
        .await;

    let conn = stack.fact.selector.connection(tenant).await.unwrap();
    assert!(
        fact_subgraph::store::list(&conn, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    stack.cleanup().await;
}

#[tokio::test]
async fn a_request_while_the_database_is_being_created_gets_tenant_provisioning() {
    let stack = Stack::start().await;
    let tenant = TenantId::new();
    stack
        .fact
        .registry
        .claim(tenant, &stack.host.url(), &tenant.database_name("fact"))
        .await
        .unwrap();

    for query in [
        "{ facts { nodes { id } } }",
        "{ randomFact { id } }",
        r#"mutation { createFact(input: {text: "x"}) { id } }"#,
    ] {
        let (status, body) = stack
            .graphql(&stack.fact_url, Some(tenant), query, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(first_code(&body), "TENANT_PROVISIONING", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["retryable"], true);
    }
    stack.cleanup().await;
}

#[tokio::test]
async fn fact_connections_stay_bounded_as_tenants_grow() {
    let mut config = fresh_config(&kafka_brokers());
    config.tenancy.pools = PoolLimits {
        connections_per_pool: 1,
        max_pools: 2,
        idle: Duration::from_secs(60),
    };
    let stack = Stack::start_with(config).await;
    let limits = stack.config.tenancy.pools.clone();
    let bound = limits.max_pools * u64::from(limits.connections_per_pool);

    // A request still running on the first tenant's pool while seven more
    // tenants, one request each, push that pool out of the cache.
    let tenants: Vec<TenantId> = (0..8).map(|_| TenantId::new()).collect();
    let mut first = None;
    for tenant in &tenants {
        stack.track(*tenant);
        stack.fact.provisioner.provision(*tenant).await.unwrap();
        if first.is_none() {
            first = Some(stack.fact.selector.connection(*tenant).await.unwrap());
        }
        let (_, body) = stack
            .graphql(
                &stack.fact_url,
                Some(*tenant),
                "{ facts { nodes { id } } }",
                json!({}),
            )
            .await;
        assert!(body["data"]["facts"]["nodes"].is_array(), "{body}");
    }

    // Evicted, but not cut off under the request that holds it.
    let first = first.unwrap();
    fact_subgraph::store::list(&first, None, 1).await.unwrap();
    drop(first);

    assert!(stack.fact.selector.open_pools().await <= limits.max_pools);
    let databases: Vec<String> = tenants.iter().map(|t| t.database_name("fact")).collect();
    let started = std::time::Instant::now();
    loop {
        let open = server_connections(&stack, &databases).await;
        if open <= bound {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{open} connections to the tenant databases, bound {bound}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.cleanup().await;
}

/// Connections the server has open to `databases`, from any client.
async fn server_connections(stack: &Stack, databases: &[String]) -> u64 {
    use sea_orm::{ConnectionTrait, Statement};
    let names: Vec<String> = databases.iter().map(|d| format!("'{d}'")).collect();
    let sql = format!(
        "SELECT count(*) AS open FROM pg_stat_activity WHERE datname IN ({})",
        names.join(", ")
    );
    let row = stack
        .meta
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "open").unwrap() as u64
}

#[tokio::test]
async fn unreadable_and_unknown_version_signups_are_skipped_without_provisioning() {
    let stack = Stack::start().await;
    let tenant = TenantId::new();
    let mut future = signup_event(tenant, &["fact"]);
    future.version = 2;
    for payload in [
        b"{not json".to_vec(),
        serde_json::to_vec(&future).unwrap(),
        br#"{"version": 1}"#.to_vec(),
    ] {
        let delivery = Delivery {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            key: None,
            payload,
        };
        stack
            .fact
            .provisioner
            .handle(&delivery)
            .await
            .expect("skipped, so the offset can move on");
    }
    assert!(stack.fact.registry.find(tenant).await.unwrap().is_none());
    stack.cleanup().await;
}

#[tokio::test]
async fn an_older_provisioning_report_never_overwrites_a_newer_one() {
    let stack = Stack::start().await;
    let (tenant, _) = stack.signup("Reports", &["org"]).await;
    let updater = tenant_subgraph::status::StatusUpdater::new(stack.meta.clone());
    let report = |status: &str, seconds_ago: i64| tenancy::events::ProvisioningEvent {
        event_id: uuid::Uuid::now_v7(),
        version: 1,
        tenant_id: tenant,
        service: tenancy::events::ServiceName::Org,
        status: status.into(),
        error: None,
        occurred_at: Utc::now() - chrono::Duration::seconds(seconds_ago),
    };
    // Signed up just now: a report from before the signup is stale.
    assert_eq!(updater.apply(&report("failed", 60)).await.unwrap(), 0);
    assert_eq!(updater.apply(&report("ready", 0)).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(updater.apply(&report("failed", 1)).await.unwrap(), 0);
    assert_eq!(
        stack.statuses(tenant).await,
        json!([{"name": "org", "status": "ready"}])
    );
    stack.cleanup().await;
}

#[tokio::test]
async fn a_failed_provisioning_is_repaired_once_its_cause_is_gone_without_a_new_event() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
    use tenant_subgraph::store::{tenant, tenant_service};

    let stack = Stack::start().await;
    let tenant_id = TenantId::new();
    stack.track(tenant_id);

    // A tenant of the fact app, as signup records it, but without the event.
    let now = Utc::now();
    tenant::ActiveModel {
        id: Set(tenant_id.as_uuid()),
        name: Set("Repaired".into()),
        created_at: Set(now),
    }
    .insert(&stack.meta)
    .await
    .unwrap();
    tenant_service::ActiveModel {
        tenant_id: Set(tenant_id.as_uuid()),
        service: Set("fact".into()),
        status: Set("provisioning".into()),
        error: Set(None),
        updated_at: Set(now),
    }
    .insert(&stack.meta)
    .await
    .unwrap();

    // Its database exists with a migration history table of the wrong
    // shape, so the migrations fail every time.
    let database = tenant_id.database_name("fact");
    stack.host.ensure_database(&database).await.unwrap();
    let options = tenancy::host::PoolOptions {
        max_connections: 1,
        idle: Duration::from_secs(5),
    };
    let broken = stack.host.connect(&database, options).await.unwrap();
    broken
        .execute_unprepared("CREATE TABLE seaql_migrations (broken integer)")
        .await
        .unwrap();

    let status = stack.fact.provisioner.provision(tenant_id).await.unwrap();
    assert_eq!(status, DatabaseStatus::Failed);
    wait_for_status(&stack, tenant_id, "failed").await;
    let (_, body) = stack
        .graphql(
            &stack.fact_url,
            Some(tenant_id),
            "{ facts { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(first_code(&body), "TENANT_PROVISIONING", "{body}");

    // The fact app's repairs, every second instead of every 30: they keep
    // failing while the cause is there, and succeed once it is gone.
    let repairing = Arc::new(Provisioner::<migration::FactMigrator>::new(
        ServiceName::Fact,
        stack.fact.registry.clone(),
        Arc::new(DatabaseHost::parse(&stack.config.tenancy.database_url).unwrap()),
        stack.bus.clone(),
        &stack.config.tenancy.provisioning_topic,
        Duration::from_secs(1),
    ));
    let repairs = repairing.spawn_repairs(stack.shutdown.clone());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let entry = stack.fact.registry.find(tenant_id).await.unwrap().unwrap();
    assert_eq!(entry.status, DatabaseStatus::Failed);

    broken
        .execute_unprepared("DROP TABLE seaql_migrations")
        .await
        .unwrap();
    broken.close().await.unwrap();
    stack
        .wait_until_registered_ready(tenant_id, Duration::from_secs(30))
        .await;
    wait_for_status(&stack, tenant_id, "ready").await;
    let (_, body) = stack
        .graphql(
            &stack.fact_url,
            Some(tenant_id),
            r#"mutation { createFact(input: {text: "Repaired"}) { text } }"#,
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["createFact"]["text"], "Repaired", "{body}");

    stack.shutdown.cancel();
    repairs.await.unwrap();
    stack.cleanup().await;
}

/// Waits until the tenant service reports `status` for the tenant's fact.
async fn wait_for_status(stack: &Stack, tenant: TenantId, status: &str) {
    let expected = json!([{"name": "fact", "status": status}]);
    let started = std::time::Instant::now();
    loop {
        let statuses = stack.statuses(tenant).await;
        if statuses == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{tenant}: {statuses}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_signup_event_the_broker_lost_is_published_again_until_answered() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tenant_subgraph::store::{outbox, tenant_service};

    let stack = Stack::start().await;
    let (tenant, _) = stack.signup("Lost", &["fact"]).await;
    stack
        .wait_until_ready(tenant, "fact", Duration::from_secs(60))
        .await;

    // As if the broker had acknowledged the event and then lost it before
    // the fact app read it: the app has nothing, the tenant service has
    // been waiting for an hour, and the outbox row went out an hour ago.
    let registry = tenancy::registry::tenant_database::Entity::delete_many()
        .filter(tenancy::registry::tenant_database::Column::TenantId.eq(tenant.as_uuid()))
        .exec(stack.fact.registry.connection())
        .await
        .unwrap();
    assert_eq!(registry.rows_affected, 1);
    stack
        .host
        .drop_database(&tenant.database_name("fact"))
        .await
        .unwrap();
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    tenant_service::Entity::update_many()
        .col_expr(tenant_service::Column::Status, Expr::value("provisioning"))
        .col_expr(tenant_service::Column::UpdatedAt, Expr::value(an_hour_ago))
        .filter(tenant_service::Column::TenantId.eq(tenant.as_uuid()))
        .exec(&stack.meta)
        .await
        .unwrap();
    outbox::Entity::update_many()
        .col_expr(outbox::Column::PublishedAt, Expr::value(an_hour_ago))
        .filter(outbox::Column::MessageKey.eq(tenant.to_string()))
        .exec(&stack.meta)
        .await
        .unwrap();

    // The sweep re-queues it once; the relay publishes it; the app
    // provisions the tenant and reports it ready.
    let topic = &stack.config.tenancy.signups_topic;
    let sweep = |older_than| {
        tenant_subgraph::relay::requeue_unanswered_signups(&stack.meta, topic, older_than)
    };
    assert_eq!(sweep(Duration::from_secs(60)).await.unwrap(), 1);
    stack
        .wait_until_ready(tenant, "fact", Duration::from_secs(60))
        .await;
    assert!(stack.database_exists(&tenant.database_name("fact")).await);
    // Answered now: nothing more to resend.
    assert_eq!(sweep(Duration::from_secs(0)).await.unwrap(), 0);
    stack.cleanup().await;
}
