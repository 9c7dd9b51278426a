//! The broker goes away while tenants sign up: signups succeed, and once it
//! is back every event is published and every tenant provisioned.
//!
//! The outage is a frozen broker (SIGSTOP): clients see connections that
//! answer nothing, as in a network partition or a hung broker, and the broker
//! comes back with its topics and offsets, as a real Kafka cluster does.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::stack::{Stack, fresh_config};

/// A broker process of our own, so this test can stop and start it.
struct Broker {
    child: Option<Child>,
}

impl Broker {
    async fn start(port: u16) -> Broker {
        let binary = std::env::var("TANSU_BIN")
            .expect("TANSU_BIN is not set: run the tests with scripts/test");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting tansu");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tansu did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Broker { child: Some(child) }
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the broker runs");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Freezes the broker: it keeps its sockets but answers nothing.
    fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets it run again.
    fn resume(&self) {
        self.signal("-CONT");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn signups_during_a_broker_outage_are_published_and_provisioned_later() {
    let port = free_port();
    let broker = Broker::start(port).await;
    let stack = Stack::start_with(fresh_config(&format!("127.0.0.1:{port}"))).await;
    let (first, _) = stack.signup("Before the outage", &["fact"]).await;
    stack
        .wait_until_ready(first, "fact", Duration::from_secs(60))
        .await;

    broker.pause();
    let mut tenants = Vec::new();
    for n in 0..3 {
        let (tenant, _) = stack
            .signup(&format!("During the outage {n}"), &["fact"])
            .await;
        tenants.push(tenant);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = tenant_subgraph::relay::backlog(&stack.meta).await.unwrap();
    assert!(
        waiting >= 1,
        "the events wait in the outbox while the broker is down"
    );

    broker.resume();
    for tenant in &tenants {
        stack
            .wait_until_ready(*tenant, "fact", Duration::from_secs(90))
            .await;
        assert!(stack.database_exists(&tenant.database_name("fact")).await);
    }
    assert_eq!(
        tenant_subgraph::relay::backlog(&stack.meta).await.unwrap(),
        0
    );
    stack.cleanup().await;
    drop(broker);
}
