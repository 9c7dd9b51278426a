//! The event-bus interface and its Kafka implementation.
//!
//! Services publish and consume through [`EventBus`], so the transport can be
//! Kafka (cluster mode) or an in-process bus (embedded mode) without any
//! caller changing. Delivery is at least once: a consumer commits a message
//! only after handling it (see [`crate::consumer`]).
//!
//! A broker can come back without what it held: a cluster rebuilt, a topic
//! an operator deleted, or our test broker restarted on memory storage.
//! Neither librdkafka nor the broker repairs that, so [`KafkaBus`] does. A
//! publish that fails the way a broker without its state makes it fail
//! re-creates the topics the bus uses and starts a fresh producer
//! (`KafkaBus::recover`). A subscription replaces its consumer when the old
//! one cannot be trusted with the broker it meets next, and refreshes topic
//! metadata often enough to find a re-created topic within seconds
//! (`KafkaSubscription`). What the broker lost stays lost: an event it had
//! acknowledged and nobody had consumed yet does not come back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
    partitions: i32,
    /// The producer publishing goes through; replaced by `recover`.
    producer: RwLock<Arc<Producer>>,
    /// The topics start-up created and publishing used: what `recover`
    /// creates again.
    topics: Mutex<BTreeSet<String>>,
    /// When `recover` last ran. Held while it runs, so publishes that fail
    /// together recover once.
    last_recovery: tokio::sync::Mutex<Option<Instant>>,
    /// How many recoveries reached the broker; subscriptions compare it to
    /// learn that the broker may have lost its state.
    recoveries: Arc<AtomicU64>,
}

impl KafkaBus {
    /// A bus on `brokers` (`host:port[,host:port]`). Connects lazily: a broker
    /// that is down makes publishing fail (and the caller retry), not this.
    pub fn new(brokers: &str) -> anyhow::Result<Self> {
        let producer = Producer::new(brokers, 0)?;
        Ok(Self {
            brokers: brokers.to_owned(),
            partitions: 3,
            producer: RwLock::new(Arc::new(producer)),
            topics: Mutex::new(BTreeSet::new()),
            last_recovery: tokio::sync::Mutex::new(None),
            recoveries: Arc::new(AtomicU64::new(0)),
        })
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.remember(&[topic]);
        let producer = self.current_producer();
        let error = match producer.send(topic, key, payload).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !may_be_lost_broker_state(&error) {
            return Err(anyhow!("publishing to {topic}: {error}"));
        }

        // librdkafka retries on its own until the message times out, and
        // against a broker that lost its state no retry of its ever
        // succeeds. Repair what is missing, then try once more on the fresh
        // producer; without one there is nothing new to try.
        self.recover(&producer).await;
        let fresh = self.current_producer();
        if fresh.generation == producer.generation {
            return Err(anyhow!("publishing to {topic}: {error}"));
        }
        fresh
            .send(topic, key, payload)
            .await
            .map_err(|error| anyhow!("publishing to {topic}: {error}"))
    }

    async fn subscribe(&self, topic: &str, group: &str) -> anyhow::Result<Box<dyn Subscription>> {
        let mut subscription = KafkaSubscription {
            brokers: self.brokers.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            consumer: None,
            recoveries: self.recoveries.clone(),
            received_after: 0,
        };
        subscription.open()?;
        Ok(Box::new(subscription))
    }

    async fn ensure_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        self.remember(topics);

        // This is the first thing a service asks of the broker at start-up,
        // so an unreachable broker is reported here, after a few tries,
        // naming the setting to fix.
        let mut last_error = None;
        for attempt in 0..STARTUP_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self.create_topics(topics).await {
                Ok(_) => return Ok(()),
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

/// How often a consumer refreshes topic metadata, which bounds how long a
/// re-created topic stays unread.
const METADATA_REFRESH: Duration = Duration::from_secs(5);

/// The least time between two recoveries, so a broker that stays away is not
/// asked to create topics by every failing publish.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(5);

impl KafkaBus {
    /// Creates the topics that do not exist; returns the ones it created.
    async fn create_topics(&self, topics: &[&str]) -> anyhow::Result<Vec<String>> {
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
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(anyhow!("creating topic {name}: {code:?}")),
            }
        }
        Ok(created)
    }

    /// Repairs what a broker that lost its state no longer has, after a
    /// publish through `failed` went wrong.
    ///
    /// Two things can be gone. The topics: they are created again (the ones
    /// that exist are left alone). And the producer id librdkafka's
    /// idempotent producer holds: a broker that does not know it refuses
    /// every send (tansu answers `UNKNOWN_PRODUCER_ID`, on which librdkafka
    /// bumps the epoch and retries until the message times out), and only a
    /// new producer asks for a new id. The topics come first, so the fresh
    /// producer's first send finds its topic.
    ///
    /// Does nothing when another publish has already replaced `failed`, or
    /// when the last recovery was less than [`RECOVERY_INTERVAL`] ago; keeps
    /// the producer when the broker does not answer (it may come back with
    /// all its state, and the old producer then works again).
    async fn recover(&self, failed: &Producer) {
        let mut last_recovery = self.last_recovery.lock().await;
        if self.current_producer().generation != failed.generation
            || last_recovery.is_some_and(|at| at.elapsed() < RECOVERY_INTERVAL)
        {
            return;
        }
        *last_recovery = Some(Instant::now());

        let topics: Vec<String> = self.topics.lock().unwrap().iter().cloned().collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.create_topics(&topics).await {
            Ok(created) if !created.is_empty() => {
                tracing::error!(target: "tenancy::bus", ?created, "the Kafka brokers had lost topics, with any event not consumed yet; created them again");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(target: "tenancy::bus", error = format!("{error:#}"), "the Kafka brokers did not answer; keeping the producer");
                return;
            }
        }

        // Whatever a consumer of ours read before now may come from a topic
        // that is gone: let the subscriptions start afresh (see
        // `KafkaSubscription`).
        self.recoveries.fetch_add(1, Ordering::SeqCst);

        match Producer::new(&self.brokers, failed.generation + 1) {
            Ok(fresh) => {
                *self.producer.write().unwrap() = Arc::new(fresh);
                tracing::info!(target: "tenancy::bus", generation = failed.generation + 1, "replaced the Kafka producer");
            }
            Err(error) => {
                tracing::warn!(target: "tenancy::bus", error = format!("{error:#}"), "cannot create a new Kafka producer");
            }
        }
    }

    fn current_producer(&self) -> Arc<Producer> {
        self.producer.read().unwrap().clone()
    }

    fn remember(&self, topics: &[&str]) {
        let mut known = self.topics.lock().unwrap();
        for topic in topics {
            if !known.contains(*topic) {
                known.insert((*topic).to_owned());
            }
        }
    }
}

/// Drops a librdkafka handle where blocking is allowed: destroying one
/// flushes or leaves its group, then joins its threads.
fn drop_off_the_async_workers<T: Send + 'static>(handle: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(handle))),
        Err(_) => drop(handle),
    }
}

/// Whether a failed publish may come from a broker that lost its topics or
/// its producer state, as far as librdkafka tells.
///
/// Mostly it tells `MessageTimedOut`: its own retries against a broker that
/// lost the producer id, or against a topic that is missing but still inside
/// `topic.metadata.propagation.max.ms` (30 s), end in a timeout. Past that
/// window a missing topic fails at once with `UnknownTopic`. A fatal error of
/// the idempotent producer leaves it unusable, and a purge is our own
/// replacement of the producer cutting a send short: both want the fresh
/// producer.
fn may_be_lost_broker_state(error: &KafkaError) -> bool {
    let KafkaError::MessageProduction(code) = error else {
        return false;
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::PurgeQueue
            | RDKafkaErrorCode::PurgeInflight
    )
}

/// One librdkafka producer and its place in the line of replacements.
struct Producer {
    /// 0 for the first producer, one more for each replacement.
    generation: u64,
    /// Always `Some` until dropped.
    inner: Option<FutureProducer>,
}

impl Producer {
    fn new(brokers: &str, generation: u64) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "10000")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("creating the Kafka producer (KAFKA_BROKERS)")?;
        Ok(Self {
            generation,
            inner: Some(producer),
        })
    }

    /// Sends one message and waits for the broker's acknowledgement.
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let producer = self.inner.as_ref().expect("a producer until dropped");
        let record = FutureRecord::to(topic).key(key).payload(payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(producer) = self.inner.take() {
            drop_off_the_async_workers(producer);
        }
    }
}

/// A consumer group member on one topic, whose consumer is replaced when it
/// cannot be trusted with the broker it will meet next.
///
/// That is after all brokers went away while the consumer held partitions:
/// a broker may come back without the topic, and a consumer that fetches a
/// partition the broker does not know crashes the process against tansu
/// (its answer carries a leader hint without a topic id, which librdkafka
/// 2.12 looks up by a null name). And when a message was being handled while
/// the bus recovered from a broker that seemed to have lost its state: a
/// re-created topic starts at offset 0 again, while the consumer keeps its
/// old positions and the messages it fetched ahead. A fresh consumer joins
/// the group anew and reads from the committed offsets, or from the start
/// of the topic when there are none.
struct KafkaSubscription {
    brokers: String,
    topic: String,
    group: String,
    /// `None` once discarded; `next` opens a new one.
    consumer: Option<StreamConsumer>,
    /// The bus's count of recoveries (see `KafkaBus::recover`).
    recoveries: Arc<AtomicU64>,
    /// That count when the last delivery was received.
    received_after: u64,
}

impl KafkaSubscription {
    /// Opens a consumer subscribed to the topic, in place of any other.
    fn open(&mut self) -> anyhow::Result<()> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2500")
            .set("enable.partition.eof", "false")
            // librdkafka notices that a subscribed topic is back only on a
            // metadata refresh, every 5 minutes by default: a topic deleted
            // and created again would stay unread that long.
            .set(
                "topic.metadata.refresh.interval.ms",
                METADATA_REFRESH.as_millis().to_string(),
            )
            .create()
            .context("creating the Kafka consumer")?;
        consumer
            .subscribe(&[&self.topic])
            .with_context(|| format!("subscribing to {}", self.topic))?;
        self.discard();
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Drops the consumer; `next` opens a new one.
    fn discard(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            drop_off_the_async_workers(consumer);
        }
    }

    /// Whether the consumer holds partitions, so has positions and fetches.
    fn assigned(consumer: &StreamConsumer) -> bool {
        consumer
            .assignment()
            .is_ok_and(|assignment| assignment.count() > 0)
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> anyhow::Result<Delivery> {
        if self.consumer.is_none() {
            tracing::info!(target: "tenancy::bus", topic = %self.topic, group = %self.group, "starting the consumer afresh");
            self.open()?;
        }
        let consumer = self.consumer.as_ref().expect("opened above");

        let message = loop {
            let error = match consumer.recv().await {
                Ok(message) => break message,
                Err(error) => error,
            };
            let KafkaError::MessageConsumption(code) = error else {
                return Err(anyhow::Error::new(error).context("receiving from Kafka"));
            };
            match code {
                // The consumer holds partitions it may soon fetch from a
                // broker that lost them: replace it (see above).
                RDKafkaErrorCode::AllBrokersDown if Self::assigned(consumer) => {
                    self.discard();
                    return Err(anyhow::Error::new(error).context("receiving from Kafka"));
                }
                // librdkafka queues one of these for each lost or refused
                // connection and reconnects by itself. Handed up one by one
                // they would be read at the caller's retry pace, and what
                // queues behind them (the group's new assignment, after an
                // outage) would wait for minutes.
                RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure => {
                    tracing::trace!(target: "tenancy::bus", topic = %self.topic, %error, "broker connection error");
                }
                _ => return Err(anyhow::Error::new(error).context("receiving from Kafka")),
            }
        };
        let delivery = Delivery {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        self.received_after = self.recoveries.load(Ordering::SeqCst);
        Ok(delivery)
    }

    async fn commit(&mut self, delivery: &Delivery) -> anyhow::Result<()> {
        // A message read before a recovery may come from a topic the broker
        // has since lost; its offset, committed to the re-created topic,
        // would skip that many new messages. Leave it uncommitted (it is read
        // again if it still exists, which handlers tolerate) and start the
        // consumer afresh.
        let recovered = self.recoveries.load(Ordering::SeqCst) != self.received_after;
        let consumer = match &self.consumer {
            Some(consumer) if !recovered => consumer,
            _ => {
                tracing::warn!(target: "tenancy::bus", topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset, "not committing a message read before the broker was found without its state");
                self.discard();
                return Ok(());
            }
        };

        // Kafka's committed offset is the next one to read.
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &delivery.topic,
                delivery.partition,
                Offset::Offset(delivery.offset + 1),
            )
            .context("building the commit")?;
        consumer
            .commit(&offsets, CommitMode::Sync)
            .context("committing the offset")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_or_topicless_publish_may_mean_lost_broker_state() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::PurgeInflight,
        ] {
            assert!(
                may_be_lost_broker_state(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_refused_message_is_not_taken_for_lost_broker_state() {
        for error in [
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
            KafkaError::MessageConsumption(RDKafkaErrorCode::MessageTimedOut),
        ] {
            assert!(!may_be_lost_broker_state(&error), "{error:?}");
        }
    }
}
