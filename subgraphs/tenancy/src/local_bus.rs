//! The in-process event bus of embedded mode: an ordered log in a database
//! (`events.db` under the data directory) with per-group committed offsets.
//!
//! It keeps Kafka's delivery contract — at least once, commit after
//! handling, a new group starts from the beginning — so the services cannot
//! tell it from Kafka, and a restart loses no event: what was published is on
//! disk, and each group resumes from its committed offset. One process owns
//! the log; each group has one member (there is nothing to balance).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, DatabaseBackend, DatabaseConnection, QueryOrder, Statement, TransactionTrait,
};
use tokio::sync::Notify;

use crate::bus::{Delivery, EventBus, Subscription};

/// `bus_messages`: the log.
mod message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bus_messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub topic: String,
        pub message_key: String,
        pub payload: Vec<u8>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `bus_offsets`: the next offset each group reads, per topic.
mod offset {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bus_offsets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub topic: String,
        pub next_offset: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How often a subscriber looks for messages without being woken (another
/// process may have written to the log).
const POLL: Duration = Duration::from_millis(500);

/// The embedded bus.
#[derive(Clone)]
pub struct LocalBus {
    db: DatabaseConnection,
    published: Arc<Notify>,
}

impl LocalBus {
    /// A bus over an open, migrated (`BusMigrator`) database.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            published: Arc::new(Notify::new()),
        }
    }

    /// Appends a message so that ids become visible in order: subscribers
    /// read on from the last id they saw, so a smaller id committed after a
    /// larger one would be skipped for good.
    ///
    /// PostgreSQL takes a serial id at insert time, but concurrent inserts
    /// may commit in any order; a transaction-scoped advisory lock, taken
    /// before the insert and released by the commit, puts publishers in a
    /// line. SQLite has one writer at a time already.
    async fn append(&self, message: message::ActiveModel) -> Result<(), DbErr> {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            message.insert(&self.db).await?;
            return Ok(());
        }
        let transaction = self.db.begin().await?;
        transaction
            .execute_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext('bus_messages'))",
            ))
            .await?;
        message.insert(&transaction).await?;
        transaction.commit().await
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        let message = message::ActiveModel {
            topic: Set(topic.to_owned()),
            message_key: Set(key.to_owned()),
            payload: Set(payload.to_vec()),
            created_at: Set(Utc::now()),
            ..Default::default()
        };
        self.append(message)
            .await
            .with_context(|| format!("appending to {topic}"))?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> anyhow::Result<Box<dyn Subscription>> {
        let committed = offset::Entity::find_by_id((group.to_owned(), topic.to_owned()))
            .one(&self.db)
            .await
            .context("reading the group's offset")?;
        Ok(Box::new(LocalSubscription {
            bus: self.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            position: committed.map_or(0, |row| row.next_offset),
        }))
    }

    async fn ensure_topics(&self, _topics: &[&str]) -> anyhow::Result<()> {
        // Topics are just a column of the log.
        Ok(())
    }
}

struct LocalSubscription {
    bus: LocalBus,
    topic: String,
    group: String,
    /// The next offset to deliver: starts at the committed one, so what was
    /// delivered but not committed before a restart is delivered again.
    position: i64,
}

#[async_trait]
impl Subscription for LocalSubscription {
    async fn next(&mut self) -> anyhow::Result<Delivery> {
        loop {
            // Register for the wake-up before looking, so a publish between
            // the look and the wait is not missed.
            let published = self.bus.published.notified();
            let next = message::Entity::find()
                .filter(message::Column::Topic.eq(&self.topic))
                .filter(message::Column::Id.gte(self.position))
                .order_by_asc(message::Column::Id)
                .one(&self.bus.db)
                .await
                .context("reading the event log")?;
            if let Some(row) = next {
                self.position = i64::from(row.id) + 1;
                return Ok(Delivery {
                    topic: row.topic,
                    partition: 0,
                    offset: i64::from(row.id),
                    key: Some(row.message_key.into_bytes()),
                    payload: row.payload,
                });
            }
            tokio::select! {
                _ = published => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn commit(&mut self, delivery: &Delivery) -> anyhow::Result<()> {
        let row = offset::ActiveModel {
            group_name: Set(self.group.clone()),
            topic: Set(self.topic.clone()),
            next_offset: Set(delivery.offset + 1),
        };
        offset::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([offset::Column::GroupName, offset::Column::Topic])
                    .update_column(offset::Column::NextOffset)
                    .to_owned(),
            )
            .exec(&self.bus.db)
            .await
            .context("committing the offset")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::DatabaseHost;
    use migration::BusMigrator;

    async fn bus(dir: &std::path::Path) -> LocalBus {
        let host = DatabaseHost::parse(&format!("sqlite://{}", dir.display())).unwrap();
        LocalBus::new(
            host.open_control_database::<BusMigrator>("events")
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn groups_resume_from_their_committed_offset_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("local-bus-{}", uuid::Uuid::new_v4()));
        let first = bus(&dir).await;
        for n in 0..3 {
            first
                .publish("signups", "k", format!("m{n}").as_bytes())
                .await
                .unwrap();
        }
        first.publish("other", "k", b"elsewhere").await.unwrap();

        let mut group = first.subscribe("signups", "g").await.unwrap();
        let delivered = group.next().await.unwrap();
        assert_eq!(delivered.payload, b"m0");
        group.commit(&delivered).await.unwrap();
        assert_eq!(group.next().await.unwrap().payload, b"m1"); // not committed

        // A new process on the same file: m1 again, a new group from the start.
        let second = bus(&dir).await;
        let mut resumed = second.subscribe("signups", "g").await.unwrap();
        assert_eq!(resumed.next().await.unwrap().payload, b"m1");
        let mut fresh = second.subscribe("signups", "h").await.unwrap();
        assert_eq!(fresh.next().await.unwrap().payload, b"m0");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_waiting_subscriber_receives_a_later_publish() {
        let dir = std::env::temp_dir().join(format!("local-bus-{}", uuid::Uuid::new_v4()));
        let bus = bus(&dir).await;
        let mut subscription = bus.subscribe("signups", "g").await.unwrap();
        let publisher = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            publisher.publish("signups", "k", b"hello").await.unwrap();
        });
        assert_eq!(subscription.next().await.unwrap().payload, b"hello");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
