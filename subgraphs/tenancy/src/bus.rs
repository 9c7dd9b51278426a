//! The event-bus interface and its Kafka implementation.
//!
//! Services publish and consume through [`EventBus`], so the transport can be
//! Kafka (cluster mode) or an in-process bus (embedded mode) without any
//! caller changing. Delivery is at least once: a consumer commits a message
//! only after handling it (see [`crate::consumer`]).

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// One message as a consumer receives it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The topic it came from.
    pub topic: String,
    /// The partition it came from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The message key (the tenant id for our topics).
    pub key: Option<Vec<u8>>,
    /// The message value.
    pub payload: Vec<u8>,
}

/// Publishes events and opens subscriptions.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes one message and waits until the bus has it durably.
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()>;

    /// Joins consumer group `group` on `topic`. Messages the group has not
    /// committed are delivered (from the beginning for a new group).
    async fn subscribe(&self, topic: &str, group: &str) -> anyhow::Result<Box<dyn Subscription>>;

    /// Makes sure the topics exist (idempotent).
    async fn ensure_topics(&self, topics: &[&str]) -> anyhow::Result<()>;
}

/// A consumer group member's stream of messages.
#[async_trait]
pub trait Subscription: Send {
    /// The next message.
    async fn next(&mut self) -> anyhow::Result<Delivery>;

    /// Marks `delivery` (and everything before it in its partition) handled.
    async fn commit(&mut self, delivery: &Delivery) -> anyhow::Result<()>;
}

/// Opens the bus the configuration names: Kafka when `KAFKA_BROKERS` is set,
/// else the in-process bus kept in the `<prefix>events` database on
/// `DATABASE_URL`'s host (a file under `DATA_DIR` in embedded mode). Create
/// it once per process: every service of the process shares it.
pub async fn open_bus(
    config: &crate::config::TenancyConfig,
) -> anyhow::Result<std::sync::Arc<dyn EventBus>> {
    if let Some(brokers) = &config.kafka_brokers {
        let bus = KafkaBus::new(brokers)?;
        bus.ensure_topics(&[&config.signups_topic, &config.provisioning_topic])
            .await?;
        return Ok(std::sync::Arc::new(bus));
    }
    let host = crate::host::DatabaseHost::parse(&config.database_url).context("DATABASE_URL")?;
    let db = host
        .open_control_database::<migration::BusMigrator>(&config.control_database("events"))
        .await?;
    Ok(std::sync::Arc::new(crate::local_bus::LocalBus::new(db)))
}

/// Kafka through librdkafka.
pub struct KafkaBus {
    brokers: String,
    producer: FutureProducer,
    partitions: i32,
}

impl KafkaBus {
    /// A bus on `brokers` (`host:port[,host:port]`). Connects lazily: a broker
    /// that is down makes publishing fail (and the caller retry), not this.
    pub fn new(brokers: &str) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "10000")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("creating the Kafka producer (KAFKA_BROKERS)")?;
        Ok(Self {
            brokers: brokers.to_owned(),
            producer,
            partitions: 3,
        })
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        let send = || {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            self.producer.send(record, Duration::from_secs(10))
        };
        match send().await {
            Ok(_) => Ok(()),
            // A broker that lost its topics (restarted, or without
            // auto-creation) gets them back, then the send is tried again.
            Err((KafkaError::MessageProduction(code), _)) if is_unknown_topic(code) => {
                self.ensure_topics(&[topic]).await?;
                send()
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| anyhow!("publishing to {topic}: {error}"))
            }
            Err((error, _)) => Err(anyhow!("publishing to {topic}: {error}")),
        }
    }

    async fn subscribe(&self, topic: &str, group: &str) -> anyhow::Result<Box<dyn Subscription>> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2500")
            .set("enable.partition.eof", "false")
            .create()
            .context("creating the Kafka consumer")?;
        consumer
            .subscribe(&[topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        Ok(Box::new(KafkaSubscription { consumer }))
    }

    async fn ensure_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        // This is the first thing a service asks of the broker at start-up,
        // so an unreachable broker is reported here, after a few tries,
        // naming the setting to fix.
        let mut last_error = None;
        for attempt in 0..STARTUP_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self.create_topics(topics).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(target: "tenancy::bus", attempt = attempt + 1, error = format!("{error:#}"), "the Kafka brokers did not answer");
                    last_error = Some(error);
                }
            }
        }
        let error = last_error.unwrap_or_else(|| anyhow!("no attempt made"));
        Err(error.context(format!(
            "cannot reach the Kafka brokers at KAFKA_BROKERS={}",
            self.brokers
        )))
    }
}

/// How often start-up tries to reach a broker or database before giving up.
pub const STARTUP_ATTEMPTS: u32 = 4;

impl KafkaBus {
    async fn create_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("socket.timeout.ms", "5000")
            .create()
            .context("creating the Kafka admin client")?;
        let new_topics: Vec<NewTopic> = topics
            .iter()
            .map(|name| NewTopic::new(name, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(5)))
            .request_timeout(Some(Duration::from_secs(5)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .context("creating topics")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(anyhow!("creating topic {name}: {code:?}")),
            }
        }
        Ok(())
    }
}

fn is_unknown_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
    )
}

struct KafkaSubscription {
    consumer: StreamConsumer,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> anyhow::Result<Delivery> {
        let message = self.consumer.recv().await.context("receiving from Kafka")?;
        Ok(Delivery {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        })
    }

    async fn commit(&mut self, delivery: &Delivery) -> anyhow::Result<()> {
        // Kafka's committed offset is the next one to read.
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &delivery.topic,
                delivery.partition,
                Offset::Offset(delivery.offset + 1),
            )
            .context("building the commit")?;
        self.consumer
            .commit(&offsets, CommitMode::Sync)
            .context("committing the offset")
    }
}
