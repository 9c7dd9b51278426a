//! Tenant isolation as clients meet it: the whole launcher in cluster mode
//! (PostgreSQL and the broker, on a prefix and topics of its own), two
//! tenants signed up for every service, and tenant B trying every request
//! path of the gateway, REST and GraphQL, on tenant A's records, tokens and
//! identity. Each test drops every database its stack made, pass or fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::{Value, json};
use tenancy::TenantId;
use tenancy::host::{DatabaseHost, PoolOptions};
use tenancy::registry::tenant_database;

use crate::launcher::{Gateway, Launched, Reply, RunDirectory, Tenant, read_back};
use crate::stack::{database_url, kafka_brokers};

/// The apps that give each tenant a database.
const APPS: [&str; 3] = ["fact", "org", "todo"];

/// The launcher in cluster mode and the databases it makes. Fields drop in
/// order: the launcher is gone before its databases are dropped.
struct ClusterStack {
    launched: Launched,
    databases: ClusterDatabases,
    _run: RunDirectory,
}

impl ClusterStack {
    /// Starts the launcher on `TEST_DATABASE_URL` and `KAFKA_BROKERS` with a
    /// fresh database prefix, fresh topics, free ports and its own data
    /// directory (for the signing key).
    async fn start() -> Self {
        let run = RunDirectory::new("isolation");
        let prefix = format!("it_{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        // Made before the launcher starts, so a stack that never becomes
        // ready is cleaned up too.
        let databases = ClusterDatabases {
            url: database_url(),
            prefix: prefix.clone(),
            tenants: Mutex::new(Vec::new()),
        };
        let settings = [
            ("DATABASE_URL", database_url()),
            ("KAFKA_BROKERS", kafka_brokers()),
            ("DATABASE_PREFIX", prefix.clone()),
            ("TENANT_SIGNUPS_TOPIC", format!("{prefix}signups")),
            ("TENANT_PROVISIONING_TOPIC", format!("{prefix}provisioning")),
            ("DATA_DIR", run.path("data").display().to_string()),
        ];
        let launched = Launched::start(&settings, run.path("launcher.log")).await;
        Self {
            launched,
            databases,
            _run: run,
        }
    }

    fn gateway(&self) -> &Gateway {
        &self.launched.gateway
    }

    /// Signs up for every service through `POST /tenants`, remembering
    /// the tenant so that its databases are dropped too.
    async fn sign_up(&self, name: &str) -> Tenant {
        self.sign_up_for(name, &APPS).await
    }

    /// Signs up a tenant for `services` only.
    async fn sign_up_for(&self, name: &str, services: &[&str]) -> Tenant {
        let tenant = self.gateway().sign_up(name, services).await;
        let id = tenant.id.parse().expect("a tenant id is a UUID");
        self.databases.tenants.lock().unwrap().push(id);
        tenant
    }
}

/// Every database of one cluster stack, dropped when this is dropped.
struct ClusterDatabases {
    url: String,
    prefix: String,
    tenants: Mutex<Vec<TenantId>>,
}

impl Drop for ClusterDatabases {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime is busy dropping us:
        // clean up on a runtime of our own.
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let tenants = self.tenants.lock().unwrap().clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(drop_databases(&url, &prefix, &tenants))
        })
        .join()
        .expect("the cleanup thread does not panic");

        // A failing test keeps its own panic; a passing one fails here, since
        // it would leave databases behind.
        match outcome {
            Ok(()) => {}
            Err(error) if std::thread::panicking() => {
                eprintln!("dropping the databases under {}: {error:#}", self.prefix)
            }
            Err(error) => panic!("dropping the databases under {}: {error:#}", self.prefix),
        }
    }
}

/// Drops what a stack on `prefix` made: the tenant databases its registries
/// list and those of `tenants` (in case a registry lost track of one), then
/// every database whose name starts with `prefix`.
async fn drop_databases(url: &str, prefix: &str, tenants: &[TenantId]) -> anyhow::Result<()> {
    let host = DatabaseHost::parse(url)?;
    let pool = PoolOptions {
        max_connections: 1,
        idle: Duration::from_secs(1),
    };
    let mut doomed = BTreeSet::new();

    for app in APPS {
        doomed.extend(tenants.iter().map(|tenant| tenant.database_name(app)));
        let registry = format!("{prefix}{app}_registry");
        if host.database_exists(&registry).await? {
            let db = host.connect(&registry, pool).await?;
            // A registry not migrated yet lists nobody.
            let listed = tenant_database::Entity::find().all(&db).await;
            doomed.extend(
                listed
                    .unwrap_or_default()
                    .into_iter()
                    .map(|row| row.database_name),
            );
            db.close().await?;
        }
    }

    let postgres = host.connect("postgres", pool).await?;
    let names = Statement::from_string(
        postgres.get_database_backend(),
        "SELECT datname FROM pg_database",
    );
    for row in postgres.query_all_raw(names).await? {
        let name: String = row.try_get("", "datname")?;
        if name.starts_with(prefix) {
            doomed.insert(name);
        }
    }
    postgres.close().await?;

    for name in doomed {
        host.drop_database(&name).await?;
    }
    Ok(())
}

/// Where a tenant reads lists of its records from.
const LISTS: [&str; 6] = [
    "/facts",
    "/facts/random",
    "/todos",
    "/todos?done=false",
    "/org",
    "/org/chart",
];

/// What one tenant made: a fact, a todo, and a manager with one report.
struct Records {
    fact: Value,
    todo: Value,
    boss: Value,
    report: Value,
}

impl Records {
    /// Creates the records through REST, named after `label`.
    async fn create(gateway: &Gateway, tenant: &Tenant, label: &str) -> Self {
        let token = &tenant.token;
        let fact = json!({"text": format!("{label} fact")});
        let fact = gateway.post("/facts", token, fact).await.created();
        let todo = json!({"title": format!("{label} todo"), "done": false});
        let todo = gateway.post("/todos", token, todo).await.created();
        let boss = json!({"name": format!("{label} boss"), "title": "CEO", "manager_id": null});
        let boss = gateway.post("/org", token, boss).await.created();
        let report =
            json!({"name": format!("{label} report"), "title": "CTO", "manager_id": boss["id"]});
        let report = gateway.post("/org", token, report).await.created();
        Self {
            fact,
            todo,
            boss,
            report,
        }
    }

    /// Each record's REST path, with a change a PATCH there could make.
    fn paths_and_changes(&self) -> [(String, Value); 4] {
        let path = |collection: &str, record: &Value| format!("/{collection}/{}", id(record));
        [
            (path("facts", &self.fact), json!({"text": "taken"})),
            (path("todos", &self.todo), json!({"done": true})),
            (path("org", &self.boss), json!({"name": "taken"})),
            (path("org", &self.report), json!({"manager_id": null})),
        ]
    }

    /// Every path a client reads these records (and their lists) from.
    fn read_paths(&self) -> Vec<String> {
        let records = self.paths_and_changes().into_iter().map(|(path, _)| path);
        records.chain(LISTS.map(str::to_owned)).collect()
    }
}

/// Two tenants on one cluster stack, each with its own records.
struct TwoTenants {
    stack: ClusterStack,
    a: Tenant,
    a_records: Records,
    b: Tenant,
    b_records: Records,
}

impl TwoTenants {
    async fn start() -> Self {
        let stack = ClusterStack::start().await;
        let a = stack.sign_up("Acme").await;
        let b = stack.sign_up("Globex").await;
        // Both are provisioned at the same time: the second wait is short.
        stack.gateway().wait_until_ready(&a).await;
        stack.gateway().wait_until_ready(&b).await;
        let a_records = Records::create(stack.gateway(), &a, "Acme").await;
        let b_records = Records::create(stack.gateway(), &b, "Globex").await;
        Self {
            stack,
            a,
            a_records,
            b,
            b_records,
        }
    }

    fn gateway(&self) -> &Gateway {
        self.stack.gateway()
    }

    /// What each tenant reads back of its own records: compared before and
    /// after B's attempts, it shows that nothing changed for either.
    async fn views(&self) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
        let gateway = self.gateway();
        let a = read_back(gateway, &self.a, &self.a_records.read_paths()).await;
        let b = read_back(gateway, &self.b, &self.b_records.read_paths()).await;
        (a, b)
    }
}

/// Asserts a REST 404 `NOT_FOUND`, naming the request that got something else.
#[track_caller]
fn assert_not_found(reply: &Reply, request: &str) {
    assert_eq!(
        (reply.status, reply.error_code()),
        (404, "NOT_FOUND"),
        "{request}: {}",
        reply.body
    );
}

/// Asserts a GraphQL `NOT_FOUND` error and no data, naming the operation.
#[track_caller]
fn assert_graphql_not_found(reply: &Reply, operation: &str) {
    assert_eq!(reply.status, 200, "{operation}: {}", reply.body);
    assert_eq!(
        reply.graphql_codes(),
        ["NOT_FOUND"],
        "{operation}: {}",
        reply.body
    );
    let fields = reply.body["data"].as_object().into_iter().flatten();
    let answered = fields.filter(|(_, value)| !value.is_null()).count();
    assert_eq!(answered, 0, "{operation} answered data: {}", reply.body);
}

/// The ids of a REST list answer's items.
fn item_ids(list: &Value) -> Vec<&str> {
    let items = list["items"].as_array().into_iter().flatten();
    items.map(|item| item["id"].as_str().unwrap()).collect()
}

/// A record's id.
fn id(record: &Value) -> &str {
    record["id"].as_str().unwrap()
}

#[tokio::test]
async fn tenant_b_cannot_read_change_or_delete_tenant_a_records_through_rest() {
    let world = TwoTenants::start().await;
    let (gateway, b) = (world.gateway(), &world.b);
    let (theirs, ours) = (&world.a_records, &world.b_records);
    let before = world.views().await;

    // A's records by id: not found for B, whatever the method.
    for (path, change) in theirs.paths_and_changes() {
        let got = gateway.get(&path, &b.token).await;
        assert_not_found(&got, &format!("B: GET {path}"));
        let changed = gateway.patch(&path, &b.token, change).await;
        assert_not_found(&changed, &format!("B: PATCH {path}"));
        let deleted = gateway.delete(&path, &b.token).await;
        assert_not_found(&deleted, &format!("B: DELETE {path}"));
    }

    // B's lists hold B's records only.
    let list = |path: &'static str| async move { gateway.get(path, &b.token).await.ok() };
    assert_eq!(item_ids(&list("/facts").await), [id(&ours.fact)]);
    assert_eq!(id(&list("/facts/random").await), id(&ours.fact));
    assert_eq!(item_ids(&list("/todos").await), [id(&ours.todo)]);
    assert_eq!(item_ids(&list("/todos?done=false").await), [id(&ours.todo)]);
    assert_eq!(
        item_ids(&list("/org").await),
        [id(&ours.boss), id(&ours.report)]
    );
    let chart = list("/org/chart").await;
    assert_eq!(chart.as_array().map(Vec::len), Some(1), "{chart}");
    assert_eq!(id(&chart[0]), id(&ours.boss));
    assert_eq!(id(&chart[0]["reports"][0]), id(&ours.report));

    // A's member cannot manage B's members, nor take over their reports.
    let manager = id(&theirs.boss);
    let hire = json!({"name": "Eve", "title": "Spy", "manager_id": manager});
    let hired = gateway.post("/org", &b.token, hire).await;
    assert_not_found(&hired, "B: POST /org under A's member");
    let path = format!("/org/{}", id(&ours.report));
    let moved = gateway
        .patch(&path, &b.token, json!({"manager_id": manager}))
        .await;
    assert_not_found(&moved, "B: PATCH its member under A's member");
    let path = format!("/org/{}?reassign_reports_to={manager}", id(&ours.boss));
    let handed_over = gateway.delete(&path, &b.token).await;
    assert_not_found(&handed_over, "B: DELETE its manager, reports to A's member");

    // Nothing changed, for A or for B.
    assert_eq!(world.views().await, before);
}

#[tokio::test]
async fn tenant_b_cannot_read_change_or_delete_tenant_a_records_through_graphql() {
    let world = TwoTenants::start().await;
    let (gateway, b) = (world.gateway(), &world.b);
    let (theirs, ours) = (&world.a_records, &world.b_records);
    let before = world.views().await;

    // A's records by id: not found for B, whatever the operation.
    let fact = [
        "query($id: ID!) { fact(id: $id) { id text } }",
        r#"mutation($id: ID!) { updateFact(id: $id, input: {text: "taken"}) { id } }"#,
        "mutation($id: ID!) { deleteFact(id: $id) }",
    ];
    let todo = [
        "query($id: ID!) { todo(id: $id) { id title } }",
        "mutation($id: ID!) { updateTodo(id: $id, input: {done: true}) { id } }",
        "mutation($id: ID!) { deleteTodo(id: $id) }",
    ];
    let member = [
        "query($id: ID!) { orgMember(id: $id) { id manager { id } reports { id } } }",
        "mutation($id: ID!) { updateOrgMember(id: $id, input: {managerId: null}) { id } }",
        "mutation($id: ID!) { deleteOrgMember(id: $id) }",
    ];
    let records = [&theirs.fact, &theirs.todo, &theirs.boss, &theirs.report];
    for (record, operations) in records.into_iter().zip([fact, todo, member, member]) {
        for operation in operations {
            let variables = json!({"id": record["id"]});
            let reply = gateway.graphql(&b.token, operation, variables).await;
            assert_graphql_not_found(&reply, operation);
        }
    }

    // A's member cannot manage B's members, nor take over their reports.
    let manager = &theirs.boss["id"];
    let attempts = [
        (
            r#"mutation($manager: ID!) { createOrgMember(input: {name: "Eve", title: "Spy", managerId: $manager}) { id } }"#,
            json!({"manager": manager}),
        ),
        (
            "mutation($id: ID!, $manager: ID!) { updateOrgMember(id: $id, input: {managerId: $manager}) { id } }",
            json!({"id": ours.report["id"], "manager": manager}),
        ),
        (
            "mutation($id: ID!, $manager: ID!) { deleteOrgMember(id: $id, reassignReportsTo: $manager) }",
            json!({"id": ours.boss["id"], "manager": manager}),
        ),
    ];
    for (operation, variables) in attempts {
        let reply = gateway.graphql(&b.token, operation, variables).await;
        assert_graphql_not_found(&reply, operation);
    }

    // B's lists hold B's records only.
    let lists = "{ facts { nodes { id } } randomFact { id } todos(done: false) { nodes { id } } \
                 orgMembers { nodes { id } } orgChart { id reports { id } } }";
    let data = gateway.graphql(&b.token, lists, json!({})).await.data();
    let node = |record: &Value| json!({"id": record["id"]});
    assert_eq!(
        data,
        json!({
            "facts": {"nodes": [node(&ours.fact)]},
            "randomFact": node(&ours.fact),
            "todos": {"nodes": [node(&ours.todo)]},
            "orgMembers": {"nodes": [node(&ours.boss), node(&ours.report)]},
            "orgChart": [{"id": ours.boss["id"], "reports": [node(&ours.report)]}],
        })
    );

    // Nothing changed, for A or for B.
    assert_eq!(world.views().await, before);
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_identity_and_api_tokens() {
    let world = TwoTenants::start().await;
    let (gateway, a, b) = (world.gateway(), &world.a, &world.b);

    // Who am I: REST and GraphQL answer each tenant's own id.
    let who = "{ me { id } }";
    for (tenant, name) in [(a, "Acme"), (b, "Globex")] {
        let me = gateway.get("/tenants/me", &tenant.token).await.ok();
        assert_eq!(
            (&me["tenant_id"], &me["name"]),
            (&json!(tenant.id), &json!(name))
        );
        let me = gateway.graphql(&tenant.token, who, json!({})).await;
        assert_eq!(me.data(), json!({"me": {"id": tenant.id}}));
    }

    // A mints a second token; each tenant lists only its own.
    let mint = json!({"name": "ci", "expires_in_days": 1});
    let minted = gateway
        .post("/tenants/me/tokens", &a.token, mint)
        .await
        .created();
    let a_tokens = gateway.get("/tenants/me/tokens", &a.token).await.ok();
    let b_tokens = gateway.get("/tenants/me/tokens", &b.token).await.ok();
    let a_ids = item_ids(&a_tokens);
    let b_ids = item_ids(&b_tokens);
    assert_eq!(a_ids.len(), 2, "{a_tokens}");
    assert!(a_ids.contains(&id(&minted)), "{a_tokens}");
    assert_eq!(b_ids.len(), 1, "{b_tokens}");
    assert!(!a_ids.contains(&b_ids[0]), "{a_tokens} {b_tokens}");
    let listed = "{ me { apiTokens { id } } }";
    let listed = gateway.graphql(&b.token, listed, json!({})).await.data();
    assert_eq!(listed["me"]["apiTokens"], json!([{"id": b_ids[0]}]));

    // B cannot revoke any of A's tokens, by REST or GraphQL.
    let revoke = "mutation($id: ID!) { revokeApiToken(id: $id) { id } }";
    for token_id in &a_ids {
        let path = format!("/tenants/me/tokens/{token_id}");
        assert_not_found(
            &gateway.delete(&path, &b.token).await,
            &format!("B: DELETE {path}"),
        );
        let reply = gateway
            .graphql(&b.token, revoke, json!({"id": token_id}))
            .await;
        assert_graphql_not_found(&reply, revoke);
    }

    // A's tokens are still active and still work.
    let after = gateway.get("/tenants/me/tokens", &a.token).await.ok();
    assert_eq!(after, a_tokens);
    for token in [&a.token, minted["token"].as_str().unwrap()] {
        let me = gateway.get("/tenants/me", token).await.ok();
        assert_eq!(me["tenant_id"], json!(a.id));
    }
}

#[tokio::test]
async fn a_client_x_tenant_id_header_changes_nothing() {
    let world = TwoTenants::start().await;
    let (gateway, a, b) = (world.gateway(), &world.a, &world.b);
    let (theirs, ours) = (&world.a_records, &world.b_records);
    let before_a = read_back(gateway, a, &theirs.read_paths()).await;
    let spoofed = |method: Method, path: &str| {
        let request = gateway.request(method, path, Some(&b.token));
        request.header("X-Tenant-ID", &a.id)
    };

    // B's token with A's id in the header: still B, on every kind of path.
    let me = gateway.send(spoofed(Method::GET, "/tenants/me")).await.ok();
    assert_eq!(me["tenant_id"], json!(b.id), "the header made B into A");
    let query = json!({"query": "{ me { id } }"});
    let me = gateway
        .send(spoofed(Method::POST, "/graphql").json(&query))
        .await;
    assert_eq!(me.data(), json!({"me": {"id": b.id}}));
    let tokens = gateway
        .send(spoofed(Method::GET, "/tenants/me/tokens"))
        .await
        .ok();
    assert_eq!(
        tokens,
        gateway.get("/tenants/me/tokens", &b.token).await.ok()
    );
    let facts = gateway.send(spoofed(Method::GET, "/facts")).await.ok();
    assert_eq!(item_ids(&facts), [id(&ours.fact)]);
    for (path, change) in theirs.paths_and_changes() {
        let got = gateway.send(spoofed(Method::GET, &path)).await;
        assert_not_found(&got, &format!("B as A: GET {path}"));
        let changed = gateway
            .send(spoofed(Method::PATCH, &path).json(&change))
            .await;
        assert_not_found(&changed, &format!("B as A: PATCH {path}"));
        let deleted = gateway.send(spoofed(Method::DELETE, &path)).await;
        assert_not_found(&deleted, &format!("B as A: DELETE {path}"));
    }

    // What B creates with the header lands with B.
    let fact = json!({"text": "B's, despite the header"});
    let created = gateway
        .send(spoofed(Method::POST, "/facts").json(&fact))
        .await;
    let created = created.created();
    let facts = gateway.get("/facts", &b.token).await.ok();
    assert_eq!(item_ids(&facts), [id(&ours.fact), id(&created)]);

    // Without a token, the header alone is no identity.
    let request = gateway.request(Method::GET, "/facts", None);
    let anonymous = gateway.send(request.header("X-Tenant-ID", &a.id)).await;
    assert_eq!(
        (anonymous.status, anonymous.error_code()),
        (401, "UNAUTHENTICATED")
    );

    // A's records are as they were.
    assert_eq!(read_back(gateway, a, &theirs.read_paths()).await, before_a);
}

#[tokio::test]
async fn one_graphql_query_answers_with_data_from_all_four_subgraphs() {
    let world = TwoTenants::start().await;
    let query = "{ me { id name facts { nodes { id } } todos { nodes { id } } \
                 orgChart { id reports { id } } } }";

    // Each tenant gets its own identity and its own records from each app.
    for (tenant, name, records) in [
        (&world.a, "Acme", &world.a_records),
        (&world.b, "Globex", &world.b_records),
    ] {
        let data = world
            .gateway()
            .graphql(&tenant.token, query, json!({}))
            .await;
        let node = |record: &Value| json!({"id": record["id"]});
        let expected = json!({"me": {
            "id": tenant.id,
            "name": name,
            "facts": {"nodes": [node(&records.fact)]},
            "todos": {"nodes": [node(&records.todo)]},
            "orgChart": [{"id": records.boss["id"], "reports": [node(&records.report)]}],
        }});
        assert_eq!(data.data(), expected);
    }
}

#[tokio::test]
async fn a_field_of_an_app_the_tenant_lacks_fails_alone() {
    let stack = ClusterStack::start().await;
    let tenant = stack.sign_up_for("Initech", &["fact"]).await;
    stack.gateway().wait_until_ready(&tenant).await;
    let fact = json!({"text": "Kept"});
    stack
        .gateway()
        .post("/facts", &tenant.token, fact)
        .await
        .created();

    // The todo part is refused; the tenant and its facts still arrive.
    let query = "{ me { name facts { nodes { text } } todos { nodes { id } } } }";
    let reply = stack
        .gateway()
        .graphql(&tenant.token, query, json!({}))
        .await;
    assert_eq!(
        reply.graphql_codes(),
        ["SERVICE_NOT_ENABLED"],
        "{}",
        reply.body
    );
    assert_eq!(reply.body["errors"][0]["path"], json!(["me", "todos"]));
    let expected = json!({"me": {
        "name": "Initech",
        "facts": {"nodes": [{"text": "Kept"}]},
        "todos": null,
    }});
    assert_eq!(reply.body["data"], expected);
}
