//! Benchmark: signup → ready latency beside the raw `CREATE DATABASE` time,
//! measured in one run on the real PostgreSQL and broker.
//!
//! Run: `scripts/bench provisioning` (starts the broker), or with a broker
//! already running: `KAFKA_BROKERS=127.0.0.1:9092 cargo bench --bench provisioning`.

#[path = "../tests/it/stack.rs"]
mod stack;

use std::time::{Duration, Instant};

use stack::Stack;

const SIGNUPS: usize = 50;
const RAW_CREATES: usize = 20;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn report(label: &str, samples: &mut [Duration]) {
    let p50 = percentile(samples, 0.50);
    let p95 = percentile(samples, 0.95);
    println!(
        "{label:<34} n={:<3} p50={:>7.1} ms  p95={:>7.1} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let stack = Stack::start().await;

    // The floor: what PostgreSQL itself needs to create an empty database.
    let mut raw = Vec::with_capacity(RAW_CREATES);
    for n in 0..RAW_CREATES {
        let name = format!("{}bench_raw_{n}", stack.config.tenancy.database_prefix);
        let started = Instant::now();
        stack.host.ensure_database(&name).await.unwrap();
        raw.push(started.elapsed());
        stack.host.drop_database(&name).await.unwrap();
    }

    // The product: signup (one transaction) → outbox relay → broker →
    // provisioner (create + migrate) → status report → tenant service.
    let mut ready = Vec::with_capacity(SIGNUPS);
    for n in 0..SIGNUPS {
        let started = Instant::now();
        let (tenant, _) = stack.signup(&format!("Bench {n}"), &["fact"]).await;
        stack
            .wait_until_ready(tenant, "fact", Duration::from_secs(60))
            .await;
        ready.push(started.elapsed());
    }

    println!("provisioning benchmark (PostgreSQL + Kafka-protocol broker, one run)");
    report("raw CREATE DATABASE", &mut raw);
    report("signup -> fact ready (end to end)", &mut ready);
    let ratio = percentile(&mut ready, 0.5).as_secs_f64() / percentile(&mut raw, 0.5).as_secs_f64();
    println!("signup->ready p50 / CREATE DATABASE p50 = {ratio:.1}x");
    stack.cleanup().await;
}
