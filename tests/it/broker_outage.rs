//! The broker goes away while tenants sign up: signups succeed, and once it
//! is back every event is published and every tenant provisioned.
//!
//! Two outages. A frozen broker (SIGSTOP): clients see connections that
//! answer nothing, as in a network partition or a hung broker, and the broker
//! comes back with its topics and offsets, as a real Kafka cluster does. And a
//! killed broker (SIGKILL) on memory storage, started again on the same port:
//! it comes back empty, without our topics or the groups' offsets, as a
//! rebuilt cluster or a topic an operator deleted would.

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
            // tansu reads a `.env` from its working directory and the
            // parents; the temporary directory has none.
            .current_dir(std::env::temp_dir())
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

    /// Kills the broker (SIGKILL) and waits until it is gone; on memory
    /// storage everything it held is lost.
    async fn kill(mut self) {
        let mut child = self.child.take().expect("the broker runs");
        child.start_kill().expect("killing tansu");
        child.wait().await.expect("waiting for tansu to exit");
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

#[tokio::test]
async fn signups_made_while_the_broker_restarts_empty_are_provisioned() {
    let port = free_port();
    let broker = Broker::start(port).await;
    let stack = Stack::start_with(fresh_config(&format!("127.0.0.1:{port}"))).await;
    let (first, _) = stack.signup("Before the restart", &["fact"]).await;
    stack
        .wait_until_ready(first, "fact", Duration::from_secs(60))
        .await;

    // The broker dies with the topics, the producer ids and the groups'
    // offsets. Signups go on, and the outage lasts until publishing one has
    // failed for good (the producer's timeout), as in a real outage.
    broker.kill().await;
    let mut tenants = Vec::new();
    for n in 0..3 {
        let (tenant, _) = stack
            .signup(&format!("During the restart {n}"), &["fact"])
            .await;
        tenants.push(tenant);
    }
    wait_for_a_failed_publish(&stack).await;

    // A fresh broker on the same port knows none of it.
    let broker = Broker::start(port).await;
    let restarted = Instant::now();
    for tenant in &tenants {
        let left = RECOVERY.saturating_sub(restarted.elapsed());
        stack.wait_until_ready(*tenant, "fact", left).await;
        assert!(stack.database_exists(&tenant.database_name("fact")).await);
    }
    // Shown with --nocapture; the figure the bound is about.
    println!(
        "{} tenants ready {:?} after the restart",
        tenants.len(),
        restarted.elapsed()
    );
    assert_eq!(
        tenant_subgraph::relay::backlog(&stack.meta).await.unwrap(),
        0
    );

    // Each signup reached the re-created topic once.
    let mut published = signups_on_the_topic(&stack, tenants.len()).await;
    published.sort();
    let mut expected: Vec<String> = tenants.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(published, expected);

    stack.cleanup().await;
    drop(broker);
}

/// How long after the broker is back every signup must be provisioned and
/// reported ready.
const RECOVERY: Duration = Duration::from_secs(30);

/// Waits until the relay has given up on an event once, so the outbox keeps
/// it for later.
async fn wait_for_a_failed_publish(stack: &Stack) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tenant_subgraph::store::outbox;

    let started = Instant::now();
    loop {
        let failed = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::LastError.is_not_null())
            .all(&stack.meta)
            .await
            .unwrap();
        if !failed.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no publish failed while the broker was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The keys (tenant ids) of the signup events on the topic, read from the
/// start by a group of its own: `expected` of them, and any more that come
/// within a second after those.
async fn signups_on_the_topic(stack: &Stack, expected: usize) -> Vec<String> {
    let group = format!("{}audit", stack.config.tenancy.database_prefix);
    let mut subscription = stack
        .bus
        .subscribe(&stack.config.tenancy.signups_topic, &group)
        .await
        .unwrap();
    let mut keys = Vec::new();
    let started = Instant::now();
    loop {
        let wait = if keys.len() < expected {
            Duration::from_secs(30).saturating_sub(started.elapsed())
        } else {
            Duration::from_secs(1)
        };
        match tokio::time::timeout(wait, subscription.next()).await {
            Ok(Ok(delivery)) => {
                keys.push(String::from_utf8(delivery.key.unwrap_or_default()).unwrap());
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    assert!(keys.len() >= expected, "only {keys:?} on the topic");
    keys
}
