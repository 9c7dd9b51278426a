//! The todo subgraph end to end: started with `start`, served on port 0,
//! called as the gateway calls it, against the real PostgreSQL
//! (`TEST_DATABASE_URL`) and a real Kafka-protocol broker (`KAFKA_BROKERS`).
//! Each test has its own control databases, topics and tenants, and drops
//! every database it made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tenancy::TenantId;
use tenancy::bus::{EventBus, KafkaBus};
use tenancy::config::TenancyConfig;
use tenancy::events::SignupEvent;
use tenancy::host::DatabaseHost;
use tenancy::registry::DatabaseStatus;
use tenancy::testing::{GatewayCalls, TestDatabases, first_code};
use todo_subgraph::TodoService;
use tokio_util::sync::CancellationToken;

const HOP_SECRET: &str = "todo-test-hop-secret-0123";

/// One todo subgraph on a free port, with its own prefix and topics.
struct App {
    config: TenancyConfig,
    service: TodoService,
    bus: Arc<dyn EventBus>,
    client: GatewayCalls,
    databases: TestDatabases,
    shutdown: CancellationToken,
}

impl App {
    async fn start() -> App {
        let config = tenancy::testing::test_config(HOP_SECRET);
        let brokers = config.kafka_brokers.as_deref().unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(KafkaBus::new(brokers).unwrap());
        let shutdown = CancellationToken::new();
        let databases = TestDatabases::new(&config.database_url);
        databases.track(config.control_database("todo_registry"));
        let service = todo_subgraph::start(&config, bus.clone(), shutdown.clone())
            .await
            .unwrap();
        let origin = tenancy::testing::serve(service.router.clone(), shutdown.clone()).await;
        App {
            client: GatewayCalls::new(origin, HOP_SECRET),
            config,
            service,
            bus,
            databases,
            shutdown,
        }
    }

    /// The cluster the app's databases live on.
    fn host(&self) -> &DatabaseHost {
        &self.databases.host
    }

    /// A tenant whose todo database is ready.
    async fn ready_tenant(&self) -> TenantId {
        let tenant = self.track(TenantId::new());
        let status = self
            .service
            .runtime
            .provisioner
            .provision(tenant)
            .await
            .unwrap();
        assert_eq!(status, DatabaseStatus::Ready);
        tenant
    }

    /// Remembers a tenant whose database `cleanup` drops.
    fn track(&self, tenant: TenantId) -> TenantId {
        self.databases.track(tenant.database_name("todo"));
        tenant
    }

    /// A GraphQL request that must get HTTP 200; returns the body.
    async fn call(&self, tenant: TenantId, query: &str, variables: Value) -> Value {
        self.client.call(tenant, query, variables).await
    }

    /// Creates a TODO and returns its id.
    async fn create(&self, tenant: TenantId, title: &str, done: bool) -> String {
        let body = self
            .call(
                tenant,
                "mutation($i: CreateTodoInput!) { createTodo(input: $i) { id } }",
                json!({"i": {"title": title, "done": done}}),
            )
            .await;
        body["data"]["createTodo"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// Stops the app and drops every database it made.
    async fn cleanup(mut self) {
        self.shutdown.cancel();
        (&mut self.service.runtime.consumer).await.ok();
        self.databases.drop_all().await;
    }
}

/// A test that failed before `cleanup` stops the app; its databases are
/// dropped by [`TestDatabases`].
impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn titles(connection: &Value) -> Vec<&str> {
    let nodes = connection["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{connection}"));
    nodes
        .iter()
        .map(|node| node["title"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn todos_can_be_created_read_listed_updated_and_deleted() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;

    // `done` defaults to false; titles are trimmed.
    let created = app
        .call(tenant, r#"mutation { createTodo(input: {title: "  buy milk "}) { id title done createdAt updatedAt } }"#, json!({}))
        .await;
    let todo = &created["data"]["createTodo"];
    assert_eq!(todo["title"], "buy milk", "{created}");
    assert_eq!(todo["done"], false);
    assert_eq!(todo["createdAt"], todo["updatedAt"]);
    let id = todo["id"].as_str().unwrap().to_owned();

    let read = app
        .call(
            tenant,
            "query($id: ID!) { todo(id: $id) { id title done } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        read["data"]["todo"],
        json!({"id": id, "title": "buy milk", "done": false})
    );

    // Either field alone, or both.
    let update = "mutation($id: ID!, $i: UpdateTodoInput!) { updateTodo(id: $id, input: $i) { title done updatedAt } }";
    let done = app
        .call(tenant, update, json!({"id": id, "i": {"done": true}}))
        .await;
    assert_eq!(done["data"]["updateTodo"]["done"], true, "{done}");
    assert_eq!(done["data"]["updateTodo"]["title"], "buy milk");
    let renamed = app
        .call(
            tenant,
            update,
            json!({"id": id, "i": {"title": "buy oat milk"}}),
        )
        .await;
    assert_eq!(renamed["data"]["updateTodo"]["title"], "buy oat milk");
    assert_eq!(renamed["data"]["updateTodo"]["done"], true);
    let both = app
        .call(
            tenant,
            update,
            json!({"id": id, "i": {"title": "milk", "done": false}}),
        )
        .await;
    assert_eq!(both["data"]["updateTodo"]["title"], "milk");
    assert_eq!(both["data"]["updateTodo"]["done"], false);
    assert!(both["data"]["updateTodo"]["updatedAt"].as_str() > todo["updatedAt"].as_str());

    let deleted = app
        .call(
            tenant,
            "mutation($id: ID!) { deleteTodo(id: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(deleted["data"]["deleteTodo"], json!(id));
    let gone = app
        .call(
            tenant,
            "query($id: ID!) { todo(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(first_code(&gone), "NOT_FOUND", "{gone}");
    let again = app
        .call(
            tenant,
            "mutation($id: ID!) { deleteTodo(id: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(first_code(&again), "NOT_FOUND", "{again}");
    app.cleanup().await;
}

#[tokio::test]
async fn todos_page_in_creation_order_with_or_without_the_done_filter() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;
    for (title, done) in [
        ("a", false),
        ("b", true),
        ("c", false),
        ("d", true),
        ("e", false),
    ] {
        app.create(tenant, title, done).await;
    }
    let list = "query($first: Int, $after: String, $done: Boolean) {
        todos(first: $first, after: $after, done: $done) {
            nodes { title } edges { cursor } pageInfo { hasNextPage endCursor }
        }
    }";

    // Everything, two at a time.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .call(tenant, list, json!({"first": 2, "after": after}))
            .await;
        let todos = &page["data"]["todos"];
        seen.extend(titles(todos).into_iter().map(str::to_owned));
        let edges = todos["edges"].as_array().unwrap();
        assert_eq!(
            todos["pageInfo"]["endCursor"],
            edges.last().unwrap()["cursor"]
        );
        if todos["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = todos["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);

    // Open ones, then done ones, paged through the filter.
    let open = app
        .call(tenant, list, json!({"first": 2, "done": false}))
        .await;
    assert_eq!(titles(&open["data"]["todos"]), ["a", "c"]);
    assert_eq!(open["data"]["todos"]["pageInfo"]["hasNextPage"], true);
    let cursor = open["data"]["todos"]["pageInfo"]["endCursor"].clone();
    let rest = app
        .call(
            tenant,
            list,
            json!({"first": 2, "done": false, "after": cursor}),
        )
        .await;
    assert_eq!(titles(&rest["data"]["todos"]), ["e"]);
    assert_eq!(rest["data"]["todos"]["pageInfo"]["hasNextPage"], false);
    let done = app.call(tenant, list, json!({"done": true})).await;
    assert_eq!(titles(&done["data"]["todos"]), ["b", "d"]);

    // The same list on the federated tenant entity.
    let entity = app
        .call(
            tenant,
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { todos(done: true) { nodes { title } } } } }",
            json!({"r": [{"__typename": "Tenant", "id": tenant.to_string()}]}),
        )
        .await;
    assert_eq!(
        titles(&entity["data"]["_entities"][0]["todos"]),
        ["b", "d"],
        "{entity}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn tenant_b_cannot_read_list_update_or_delete_tenant_a_todos() {
    let app = App::start().await;
    let a = app.ready_tenant().await;
    let b = app.ready_tenant().await;
    let id = app.create(a, "A's secret", true).await;

    let read = app
        .call(
            b,
            "query($id: ID!) { todo(id: $id) { title } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(first_code(&read), "NOT_FOUND", "{read}");
    let update = app
        .call(
            b,
            r#"mutation($id: ID!) { updateTodo(id: $id, input: {title: "B was here"}) { title } }"#,
            json!({"id": id}),
        )
        .await;
    assert_eq!(first_code(&update), "NOT_FOUND", "{update}");
    let delete = app
        .call(
            b,
            "mutation($id: ID!) { deleteTodo(id: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(first_code(&delete), "NOT_FOUND", "{delete}");
    for filter in [json!(null), json!(true), json!(false)] {
        let list = app
            .call(
                b,
                "query($d: Boolean) { todos(done: $d) { nodes { id } } }",
                json!({"d": filter}),
            )
            .await;
        assert_eq!(list["data"]["todos"]["nodes"], json!([]), "{list}");
    }

    // B asking the entity resolver for A's tenant gets nothing of A's.
    let entities = app
        .call(
            b,
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { todos { nodes { title } } } } }",
            json!({"r": [{"__typename": "Tenant", "id": a.to_string()}]}),
        )
        .await;
    assert!(!entities.to_string().contains("A's secret"), "{entities}");
    assert_eq!(first_code(&entities), "NOT_FOUND");

    // A's TODO is untouched.
    let still = app
        .call(
            a,
            "query($id: ID!) { todo(id: $id) { title done } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        still["data"]["todo"],
        json!({"title": "A's secret", "done": true})
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_tenant_without_a_todo_database_is_told_why() {
    let app = App::start().await;

    // Never signed up for todo: no registry entry.
    let stranger = TenantId::new();
    let body = app
        .call(stranger, "{ todos { nodes { id } } }", json!({}))
        .await;
    assert_eq!(first_code(&body), "SERVICE_NOT_ENABLED", "{body}");

    // Signed up, database still being created.
    let pending = app.track(TenantId::new());
    let registry = &app.service.runtime.registry;
    let database = pending.database_name("todo");
    registry
        .claim(pending, &app.host().url(), &database)
        .await
        .unwrap();
    let body = app
        .call(
            pending,
            r#"mutation { createTodo(input: {title: "early"}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(first_code(&body), "TENANT_PROVISIONING", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryable"], true);
    app.cleanup().await;
}

#[tokio::test]
async fn a_signup_for_todo_provisions_the_tenant_database() {
    let app = App::start().await;
    let signup = |services: &[&str]| SignupEvent {
        event_id: uuid::Uuid::now_v7(),
        version: 1,
        tenant_id: app.track(TenantId::new()),
        name: "Acme".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        occurred_at: Utc::now(),
    };
    let others = signup(&["fact"]);
    let ours = signup(&["fact", "todo-app"]);
    for event in [&others, &ours] {
        let payload = serde_json::to_vec(event).unwrap();
        app.bus
            .publish(
                &app.config.signups_topic,
                &event.tenant_id.to_string(),
                &payload,
            )
            .await
            .unwrap();
    }

    let started = Instant::now();
    let registry = &app.service.runtime.registry;
    loop {
        let entry = registry.find(ours.tenant_id).await.unwrap();
        if entry
            .as_ref()
            .is_some_and(|e| e.status == DatabaseStatus::Ready)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready: {entry:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        app.host()
            .database_exists(&ours.tenant_id.database_name("todo"))
            .await
            .unwrap()
    );
    let id = app.create(ours.tenant_id, "first", false).await;
    assert!(!id.is_empty());

    // The signup before it named only fact, so todo left it alone.
    assert!(registry.find(others.tenant_id).await.unwrap().is_none());
    app.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_bad_user_input_never_a_500() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;
    let id = app.create(tenant, "real", false).await;
    let create = "mutation($i: CreateTodoInput!) { createTodo(input: $i) { id } }";
    let update =
        "mutation($id: ID!, $i: UpdateTodoInput!) { updateTodo(id: $id, input: $i) { id } }";
    let cases: Vec<(&str, Value)> = vec![
        (
            "query($id: ID!) { todo(id: $id) { id } }",
            json!({"id": "not-a-uuid"}),
        ),
        (
            "mutation($id: ID!) { deleteTodo(id: $id) }",
            json!({"id": "1"}),
        ),
        (update, json!({"id": "nope", "i": {"done": true}})),
        (create, json!({"i": {"title": ""}})),
        (create, json!({"i": {"title": "   "}})),
        (create, json!({"i": {"title": "x".repeat(501)}})),
        (create, json!({"i": {"title": ["not", "a", "string"]}})),
        (create, json!({"i": {"title": "ok", "done": "yes"}})),
        (create, json!({"i": {"done": true}})),
        (create, json!({"i": "title"})),
        (update, json!({"id": id, "i": {}})),
        (
            update,
            json!({"id": id, "i": {"title": null, "done": null}}),
        ),
        (update, json!({"id": id, "i": {"title": " "}})),
        (update, json!({"id": id, "i": {"title": "x".repeat(501)}})),
        (update, json!({"id": id, "i": {"done": 1}})),
        ("{ todos(first: 0) { nodes { id } } }", json!({})),
        ("{ todos(first: 1000) { nodes { id } } }", json!({})),
        ("{ todos(after: \"garbage\") { nodes { id } } }", json!({})),
        ("{ todos(done: \"yes\") { nodes { id } } }", json!({})),
        (
            "query($d: Boolean) { todos(done: $d) { nodes { id } } }",
            json!({"d": "true"}),
        ),
        ("{ nosuchfield }", json!({})),
        ("{ todos { ", json!({})),
    ];
    for (query, variables) in cases {
        let body = app.call(tenant, query, variables.clone()).await;
        assert_eq!(
            first_code(&body),
            "BAD_USER_INPUT",
            "{query} {variables} → {body}"
        );
    }

    // The TODO survived every bad update.
    let still = app
        .call(
            tenant,
            "query($id: ID!) { todo(id: $id) { title done } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        still["data"]["todo"],
        json!({"title": "real", "done": false})
    );
    app.cleanup().await;
}
