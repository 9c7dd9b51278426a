//! The launcher binary as a user runs it: embedded by default, keeping its
//! data across a restart, reading its configuration file, and failing with
//! a clear error naming a bad setting.
//!
//! The helpers here start the binary with every address on a free port and
//! talk to its gateway the way a client does (REST and GraphQL with a bearer
//! token); `isolation.rs` uses them to run it in cluster mode.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long a fresh launcher may take to answer `/readyz` with 200.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// How long a killed launcher may take to be gone.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// How long a signed-up tenant may take to be ready on every service.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Every address the launcher binds, each on a port that was free when
/// picked, so a test meets neither a stack running on the machine nor
/// another test.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    gateway: u16,
    tenant: u16,
    fact: u16,
    org: u16,
    todo: u16,
}

impl Ports {
    /// Five distinct free ports: every listener is held until all are picked,
    /// so the kernel cannot hand out the same port twice.
    pub fn free() -> Self {
        let listeners: Vec<TcpListener> = (0..5)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |index: usize| listeners[index].local_addr().unwrap().port();
        Self {
            gateway: port(0),
            tenant: port(1),
            fact: port(2),
            org: port(3),
            todo: port(4),
        }
    }

    fn addresses(&self) -> [(&'static str, String); 5] {
        let address = |port: u16| format!("127.0.0.1:{port}");
        [
            ("GATEWAY_ADDR", address(self.gateway)),
            ("TENANT_ADDR", address(self.tenant)),
            ("FACT_ADDR", address(self.fact)),
            ("ORG_ADDR", address(self.org)),
            ("TODO_ADDR", address(self.todo)),
        ]
    }
}

/// A port nothing listens on (it was free a moment ago).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The launcher binary with `settings`, the addresses of `ports` and nothing
/// else: the environment is cleared, so neither a `DATABASE_URL` of the
/// caller's shell nor a stray `GATEWAY_ADDR` changes what is tested.
pub fn launcher(settings: &[(&str, String)], ports: &Ports) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hybrid-tenancy"));
    command
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .envs(ports.addresses())
        .envs(settings.iter().map(|(key, value)| (*key, value)))
        // Away from the repository, where a developer's own
        // hybrid-tenancy.toml would be read.
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A temporary directory for one test's data and logs, removed when dropped.
pub struct RunDirectory(PathBuf);

impl RunDirectory {
    /// A fresh directory named after `purpose`.
    pub fn new(purpose: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{purpose}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for RunDirectory {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A running launcher. Dropping it kills it and waits until it is gone;
/// when that happens because the test is failing, its log is printed.
pub struct Launched {
    child: Child,
    log: PathBuf,
    /// Its gateway, the only door the tests use.
    pub gateway: Gateway,
}

impl Launched {
    /// Starts the launcher with `settings` on free ports, logging to `log`,
    /// and waits until its gateway is ready. A port taken by someone else
    /// between picking and binding makes the launcher exit at once; then it
    /// is started again on other ports, three times in all.
    pub async fn start(settings: &[(&str, String)], log: PathBuf) -> Self {
        for _ in 0..3 {
            let ports = Ports::free();
            let output = File::create(&log).unwrap();
            let child = launcher(settings, &ports)
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .expect("the launcher binary runs");
            let mut launched = Self {
                child,
                log: log.clone(),
                gateway: Gateway::new(ports.gateway),
            };
            if launched.wait_until_ready().await {
                return launched;
            }
            let exited_on_a_taken_port = launched.log_text().contains("cannot listen there");
            assert!(exited_on_a_taken_port, "the launcher exited at start");
        }
        panic!("the launcher could not bind free ports three times");
    }

    /// Polls `/readyz` until 200 (true) or until the launcher exits (false);
    /// panics with the log when neither happens within the limit.
    async fn wait_until_ready(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if self.gateway.is_ready().await {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(
                started.elapsed() < STARTUP_LIMIT,
                "the gateway was not ready after {STARTUP_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM, as a user's Ctrl-C or a supervisor does; the launcher
    /// must exit 0 on its own within 20 s.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(signalled.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("stops within 20 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // Gone for good before the caller cleans up after it: whatever it
        // still did could race a database being dropped.
        self.child.start_kill().ok();
        let started = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && started.elapsed() < KILL_LIMIT {
            std::thread::sleep(Duration::from_millis(20));
        }

        if std::thread::panicking() {
            eprintln!(
                "--- launcher log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A client of the gateway.
#[derive(Clone, Debug)]
pub struct Gateway {
    base: String,
    http: reqwest::Client,
}

/// An answer of the gateway: the status and the JSON body (null when empty,
/// a string when not JSON).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The REST error code, `error.code`.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }

    /// The `extensions.code` of every GraphQL error.
    pub fn graphql_codes(&self) -> Vec<&str> {
        let errors = self.body["errors"].as_array().into_iter().flatten();
        errors
            .map(|error| error["extensions"]["code"].as_str().unwrap_or("<none>"))
            .collect()
    }

    /// The body of a 200 answer; panics with the answer otherwise.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body
    }

    /// The body of a 201 answer; panics with the answer otherwise.
    #[track_caller]
    pub fn created(self) -> Value {
        assert_eq!(self.status, 201, "{}", self.body);
        self.body
    }

    /// The `data` of a GraphQL answer without errors.
    #[track_caller]
    pub fn data(self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(self.body["errors"].is_null(), "{}", self.body);
        self.body["data"].clone()
    }
}

/// A tenant as its client knows it: its id and the token `POST /tenants`
/// returned.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub token: String,
}

impl Gateway {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            // A hung request fails the test instead of stalling it.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn is_ready(&self) -> bool {
        let answer = self.http.get(format!("{}/readyz", self.base)).send().await;
        answer.is_ok_and(|response| response.status() == 200)
    }

    /// A request to `path`, with `token` as the bearer token when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` and reads the answer.
    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = match text.is_empty() {
            true => Value::Null,
            false => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        };
        Reply { status, body }
    }

    /// `GET path` with `token`.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(self.request(Method::GET, path, Some(token)))
            .await
    }

    /// `POST path` with `token` and a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(self.request(Method::POST, path, Some(token)).json(&body))
            .await
    }

    /// `PATCH path` with `token` and a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(self.request(Method::PATCH, path, Some(token)).json(&body))
            .await
    }

    /// `DELETE path` with `token`.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(self.request(Method::DELETE, path, Some(token)))
            .await
    }

    /// A GraphQL operation with `token`.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Reply {
        let body = json!({"query": query, "variables": variables});
        self.post("/graphql", token, body).await
    }

    /// Signs up through `POST /tenants`, as a new customer does.
    pub async fn sign_up(&self, name: &str, services: &[&str]) -> Tenant {
        let body = json!({"name": name, "services": services});
        let request = self.request(Method::POST, "/tenants", None).json(&body);
        let created = self.send(request).await.created();
        let field = |key: &str| {
            created[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {created}"))
                .to_owned()
        };
        Tenant {
            id: field("tenant_id"),
            token: field("token"),
        }
    }

    /// Polls `GET /tenants/me` until every one of the tenant's services is
    /// `ready`; panics with the last answer after [`READY_LIMIT`].
    pub async fn wait_until_ready(&self, tenant: &Tenant) {
        let started = Instant::now();
        loop {
            let me = self.get("/tenants/me", &tenant.token).await;
            let services = me.body["services"].as_array().cloned().unwrap_or_default();
            let ready = me.status == 200
                && !services.is_empty()
                && services.iter().all(|service| service["status"] == "ready");
            if ready {
                return;
            }
            assert!(
                started.elapsed() < READY_LIMIT,
                "tenant {} was not ready on every service after {READY_LIMIT:?}; \
                 last GET /tenants/me: {} {}",
                tenant.id,
                me.status,
                me.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a client reads back of everything a tenant made, by path.
pub async fn read_back(
    gateway: &Gateway,
    tenant: &Tenant,
    paths: &[String],
) -> BTreeMap<String, Value> {
    let mut answers = BTreeMap::new();
    for path in paths {
        let body = gateway.get(path, &tenant.token).await.ok();
        answers.insert(path.clone(), body);
    }
    answers
}

#[tokio::test]
async fn the_embedded_stack_keeps_tenants_and_records_across_a_restart() {
    let run = RunDirectory::new("embedded");
    let settings = [("DATA_DIR", run.path("data").display().to_string())];
    let first = Launched::start(&settings, run.path("first.log")).await;
    let gateway = first.gateway.clone();
    let keeper = gateway.sign_up("Keeper", &["fact", "org", "todo"]).await;
    gateway.wait_until_ready(&keeper).await;

    // One record of each kind, and a manager link, made as a client does.
    let token = &keeper.token;
    let fact = json!({"text": "kept"});
    let fact = gateway.post("/facts", token, fact).await.created();
    let todo = json!({"title": "kept", "done": true});
    let todo = gateway.post("/todos", token, todo).await.created();
    let boss = json!({"name": "Ada", "title": "CEO", "manager_id": null});
    let boss = gateway.post("/org", token, boss).await.created();
    let report = json!({"name": "Linus", "title": "CTO", "manager_id": boss["id"]});
    let report = gateway.post("/org", token, report).await.created();

    // Each record reads back as it was created, alone and in its list.
    let mut paths: Vec<String> = ["/tenants/me", "/tenants/me/tokens", "/facts", "/todos"]
        .into_iter()
        .chain(["/org", "/org/chart"])
        .map(str::to_owned)
        .collect();
    let records = [
        ("facts", &fact),
        ("todos", &todo),
        ("org", &boss),
        ("org", &report),
    ];
    for (collection, record) in records {
        let path = format!("/{collection}/{}", record["id"].as_str().unwrap());
        assert_eq!(&gateway.get(&path, token).await.ok(), record);
        paths.push(path);
    }
    let before = read_back(&gateway, &keeper, &paths).await;
    assert_eq!(before["/tenants/me"]["tenant_id"], keeper.id);
    assert_eq!(before["/facts"]["items"], json!([fact]));
    assert_eq!(before["/todos"]["items"], json!([todo]));
    assert_eq!(before["/org"]["items"], json!([boss, report]));
    assert_eq!(before["/org/chart"][0]["reports"][0]["id"], report["id"]);
    first.stop().await;

    // Same data directory, same token: nothing changed.
    let second = Launched::start(&settings, run.path("second.log")).await;
    let after = read_back(&second.gateway, &keeper, &paths).await;
    assert_eq!(after, before);
    second.stop().await;
}

/// Runs the launcher with `settings` (embedded unless they say otherwise)
/// and returns its error output; it must exit non-zero within `limit`,
/// without a panic.
async fn startup_error(settings: &[(&str, &str)], limit: Duration) -> String {
    let run = RunDirectory::new("startup");
    let mut settings: Vec<(&str, String)> = settings
        .iter()
        .map(|(key, value)| (*key, value.to_string()))
        .collect();
    settings.push(("DATA_DIR", run.path("data").display().to_string()));
    let mut command = launcher(&settings, &Ports::free());
    command.stdout(Stdio::null()).stderr(Stdio::piped());

    let output = tokio::time::timeout(limit, command.output())
        .await
        .expect("gives up in bounded time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn a_malformed_database_url_is_named_at_startup() {
    let stderr = startup_error(
        &[("DATABASE_URL", "mysql//nowhere")],
        Duration::from_secs(10),
    )
    .await;
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_database_is_named_after_bounded_retries() {
    let url = format!("postgres://postgres@127.0.0.1:{}", free_port());
    let stderr = startup_error(&[("DATABASE_URL", &url)], Duration::from_secs(60)).await;
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_broker_is_named_after_bounded_retries() {
    let brokers = format!("127.0.0.1:{}", free_port());
    let stderr = startup_error(&[("KAFKA_BROKERS", &brokers)], Duration::from_secs(90)).await;
    assert!(stderr.contains("KAFKA_BROKERS"), "{stderr}");
}

#[tokio::test]
async fn a_configuration_file_supplies_settings_that_the_environment_overrides() {
    let run = RunDirectory::new("config-file");
    let file = run.path("settings.toml");
    std::fs::write(&file, "database_url = \"mysql//from-the-file\"\n").unwrap();
    let file = file.display().to_string();

    // The file is read: its bad setting stops start-up, named.
    let stderr = startup_error(&[("HYBRID_TENANCY_CONFIG", &file)], Duration::from_secs(10)).await;
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("mysql"),
        "{stderr}"
    );

    // A variable that is set wins over the file.
    let embedded = format!("sqlite://{}", run.path("data").display());
    let settings = [
        ("HYBRID_TENANCY_CONFIG", file),
        ("DATA_DIR", run.path("data").display().to_string()),
        ("DATABASE_URL", embedded),
    ];
    Launched::start(&settings, run.path("launcher.log"))
        .await
        .stop()
        .await;
}

#[tokio::test]
async fn a_misspelt_setting_in_the_default_configuration_file_stops_start_up() {
    let run = RunDirectory::new("config-default");
    std::fs::write(run.path("hybrid-tenancy.toml"), "databse_url = \"x\"\n").unwrap();
    let data = run.path("data").display().to_string();
    let mut command = launcher(&[("DATA_DIR", data)], &Ports::free());
    command
        .current_dir(run.path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());

    let output = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .expect("gives up at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("hybrid-tenancy.toml"), "{stderr}");
    assert!(stderr.contains("databse_url is not a setting"), "{stderr}");
}
