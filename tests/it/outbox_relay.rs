//! The outbox relay: rows keep arriving while it publishes, on SQLite
//! (embedded mode) and on PostgreSQL with several relays, and every outbox
//! row still reaches the bus exactly once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use migration::{BusMigrator, MetaMigrator};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tenancy::bus::EventBus;
use tenancy::config::{PoolLimits, TenancyConfig};
use tenancy::hop::HOP_HEADER;
use tenancy::host::{DatabaseHost, PoolOptions};
use tenancy::local_bus::LocalBus;
use tenant_subgraph::TenantConfig;
use tenant_subgraph::relay::{backlog, relay_once};
use tenant_subgraph::store::outbox;
use tokio_util::sync::CancellationToken;

use crate::stack::{HOP_SECRET, database_url, serve};

const SIGNUPS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_embedded_signups_are_each_published_exactly_once() {
    let dir = temp_dir("embedded-relay");
    let tenancy = TenancyConfig {
        database_url: format!("sqlite://{}", dir.display()),
        database_prefix: String::new(),
        kafka_brokers: None,
        hop_secret: HOP_SECRET.to_owned(),
        signups_topic: "tenant.signups".to_owned(),
        provisioning_topic: "tenant.provisioning".to_owned(),
        pools: PoolLimits::default(),
    };
    let config = TenantConfig {
        signing_key_file: dir.join("signing_key.pem"),
        signup_token_days: 30,
        tenancy,
    };
    let shutdown = CancellationToken::new();
    let bus = tenancy::bus::open_bus(&config.tenancy).await.unwrap();
    let service = tenant_subgraph::start(&config, bus, shutdown.clone())
        .await
        .unwrap();
    let meta = service.db.clone();
    let url = serve(service.router, shutdown.clone()).await;

    // Every signup commits an outbox row and wakes the relay, which is
    // publishing the rows before it meanwhile.
    let http = reqwest::Client::new();
    let signups: Vec<_> = (0..SIGNUPS)
        .map(|n| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let body: Value = http
                    .post(format!("{url}/graphql"))
                    .header(HOP_HEADER, HOP_SECRET)
                    .json(&json!({
                        "query": "mutation($input: SignupInput!) { signup(input: $input) { tenant { id } } }",
                        "variables": {"input": {"name": format!("Tenant {n}"), "services": ["fact"]}},
                    }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(body["data"]["signup"]["tenant"]["id"].is_string(), "{body}");
            })
        })
        .collect();
    for signup in signups {
        signup.await.unwrap();
    }

    let started = Instant::now();
    while backlog(&meta).await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "outbox not drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    for task in service.tasks {
        task.await.unwrap();
    }

    // Each outbox row, by its event id, once on the bus; nothing else.
    let outbox = strings(&meta, "SELECT id AS value FROM outbox").await;
    assert_eq!(outbox.len(), SIGNUPS);
    let host = DatabaseHost::parse(&config.tenancy.database_url).unwrap();
    let options = PoolOptions {
        max_connections: 1,
        idle: Duration::from_secs(5),
    };
    let events = host.connect("events", options).await.unwrap();
    let published = published_event_ids(&events, "tenant.signups").await;
    assert_exactly_once(&published, &outbox);

    events.close().await.unwrap();
    meta.close().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_embedded_relays_in_one_process_publish_each_row_once_while_rows_arrive() {
    let dir = temp_dir("relay-sqlite");
    let host = DatabaseHost::parse(&format!("sqlite://{}", dir.display())).unwrap();
    let meta = host
        .open_control_database::<MetaMigrator>("tenant_meta")
        .await
        .unwrap();
    // A direct call beside the relay task must not publish its rows again.
    relays_publish_each_row_once(&meta, &dir, 2).await;
    meta.close().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_relays_on_postgres_publish_each_row_once_while_rows_arrive() {
    let name = format!(
        "t{}_tenant_meta",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let host = DatabaseHost::parse(&database_url()).unwrap();
    let meta = host
        .open_control_database::<MetaMigrator>(&name)
        .await
        .unwrap();
    let dir = temp_dir("relay-postgres");
    relays_publish_each_row_once(&meta, &dir, 3).await;
    meta.close().await.unwrap();
    host.drop_database(&name).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

const ROWS: usize = 150;

/// Writes `ROWS` outbox rows into `meta` while `relays` relays publish them
/// to a bus under `dir`, then checks that each went out exactly once.
async fn relays_publish_each_row_once(meta: &DatabaseConnection, dir: &Path, relays: usize) {
    let bus_host = DatabaseHost::parse(&format!("sqlite://{}", dir.display())).unwrap();
    let events = bus_host
        .open_control_database::<BusMigrator>("events")
        .await
        .unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(LocalBus::new(events.clone()));

    let written = Arc::new(AtomicBool::new(false));
    let writer = {
        let (meta, written) = (meta.clone(), written.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..ROWS {
                let id = uuid::Uuid::now_v7();
                let event = json!({"event_id": id.to_string(), "n": n});
                outbox::ActiveModel {
                    id: Set(id),
                    topic: Set("signups".into()),
                    message_key: Set(id.to_string()),
                    payload: Set(event.to_string()),
                    created_at: Set(chrono::Utc::now()),
                    published_at: Set(None),
                    attempts: Set(0),
                    last_error: Set(None),
                }
                .insert(&meta)
                .await
                .unwrap();
                ids.push(id.to_string());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            written.store(true, Ordering::SeqCst);
            ids
        })
    };
    let relays: Vec<_> = (0..relays)
        .map(|_| {
            let (meta, bus, written) = (meta.clone(), bus.clone(), written.clone());
            tokio::spawn(async move {
                loop {
                    // Errors are retried, as the relay task does.
                    let _ = relay_once(&meta, bus.as_ref()).await;
                    if written.load(Ordering::SeqCst) && backlog(&meta).await.unwrap() == 0 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    let ids = writer.await.unwrap();
    for relay in relays {
        tokio::time::timeout(Duration::from_secs(30), relay)
            .await
            .expect("the outbox drains")
            .unwrap();
    }
    let published = published_event_ids(&events, "signups").await;
    assert_exactly_once(&published, &ids);
    events.close().await.unwrap();
}

/// How often each event id was published on `topic` of a local bus.
async fn published_event_ids(events: &DatabaseConnection, topic: &str) -> HashMap<String, usize> {
    let rows = events
        .query_all_raw(Statement::from_string(
            events.get_database_backend(),
            format!("SELECT payload FROM bus_messages WHERE topic = '{topic}'"),
        ))
        .await
        .unwrap();
    let mut published: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let payload: Vec<u8> = row.try_get("", "payload").unwrap();
        let event: Value = serde_json::from_slice(&payload).unwrap();
        let id = event["event_id"].as_str().unwrap().to_owned();
        *published.entry(id).or_default() += 1;
    }
    published
}

fn assert_exactly_once(published: &HashMap<String, usize>, expected: &[String]) {
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    for id in expected {
        assert_eq!(published.get(id), Some(&1), "{id} not published");
    }
    assert_eq!(published.len(), expected.len());
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `value` column of every row `sql` returns, as text.
async fn strings(db: &sea_orm::DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<uuid::Uuid>("", "value").unwrap().to_string())
        .collect()
}
