//! The launcher binary as a user runs it: embedded by default, keeping its
//! data across a restart, and failing with a clear error naming a bad
//! setting.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const SECRET: &str = "launcher-test-secret-0123";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn launcher(data_dir: &Path, ports: (u16, u16)) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hybrid-tenancy"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .env("DATA_DIR", data_dir)
        .env("GATEWAY_HOP_SECRET", SECRET)
        .env("TENANT_ADDR", format!("127.0.0.1:{}", ports.0))
        .env("FACT_ADDR", format!("127.0.0.1:{}", ports.1))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn call(port: u16, tenant: Option<&str>, query: &str) -> Value {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let mut request = client
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .header("X-Gateway-Auth", SECRET);
        if let Some(tenant) = tenant {
            request = request.header("X-Tenant-ID", tenant);
        }
        match request.json(&json!({"query": query})).send().await {
            Ok(response) => return response.json().await.unwrap(),
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("the launcher never answered on {port}: {error}"),
        }
    }
}

async fn stop(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn the_embedded_stack_keeps_tenants_and_records_across_a_restart() {
    let data = std::env::temp_dir().join(format!("embedded-{}", uuid::Uuid::new_v4()));
    let ports = (free_port(), free_port());
    let first = launcher(&data, ports).spawn().unwrap();

    let signup = call(
        ports.0,
        None,
        r#"mutation { signup(input: {name: "Keeper", services: ["fact"]}) { tenant { id } } }"#,
    )
    .await;
    let tenant = signup["data"]["signup"]["tenant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{signup}"))
        .to_owned();
    let started = Instant::now();
    loop {
        let me = call(ports.0, Some(&tenant), "{ me { services { status } } }").await;
        if me["data"]["me"]["services"][0]["status"] == "ready" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{me}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = call(
        ports.1,
        Some(&tenant),
        r#"mutation { createFact(input: {text: "kept"}) { id } }"#,
    )
    .await;
    assert!(created["data"]["createFact"]["id"].is_string(), "{created}");
    stop(first).await;

    let second = launcher(&data, ports).spawn().unwrap();
    let me = call(
        ports.0,
        Some(&tenant),
        "{ me { name services { name status } } }",
    )
    .await;
    assert_eq!(
        me["data"]["me"],
        json!({"name": "Keeper", "services": [{"name": "fact", "status": "ready"}]})
    );
    let facts = call(ports.1, Some(&tenant), "{ facts { nodes { text } } }").await;
    assert_eq!(facts["data"]["facts"]["nodes"], json!([{"text": "kept"}]));
    stop(second).await;
    std::fs::remove_dir_all(data).unwrap();
}

/// Runs the launcher with `settings` and returns its error output; it must
/// exit non-zero within `limit`, without a panic.
async fn startup_error(settings: &[(&str, &str)], limit: Duration) -> String {
    let data = std::env::temp_dir().join(format!("startup-{}", uuid::Uuid::new_v4()));
    let mut command = launcher(&data, (free_port(), free_port()));
    for (key, value) in settings {
        command.env(key, value);
    }
    let output = tokio::time::timeout(limit, command.output())
        .await
        .expect("gives up in bounded time")
        .unwrap();
    std::fs::remove_dir_all(data).ok();
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
