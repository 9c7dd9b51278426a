//! The outbox relay: publishes the events signups wrote to `outbox`.
//!
//! A row is marked published only after the bus acknowledged it, so a broker
//! outage delays events but never loses one; the rare duplicate (published,
//! then a crash before marking) is absorbed by idempotent consumers. On
//! PostgreSQL rows are claimed with `FOR UPDATE SKIP LOCKED`, so several
//! relays (replicas) never publish the same row at the same time.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{ActiveValue::Set, DatabaseConnection, QueryOrder, QuerySelect, TransactionTrait};
use tenancy::bus::EventBus;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::outbox;

/// Rows claimed per round.
const BATCH: u64 = 50;
/// How often the relay looks without being woken.
const POLL: Duration = Duration::from_millis(500);

/// Runs the relay until `shutdown`.
pub fn spawn_relay(
    db: DatabaseConnection,
    bus: Arc<dyn EventBus>,
    wakeup: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = POLL;
        loop {
            match relay_once(&db, bus.as_ref()).await {
                Ok(_) => backoff = POLL,
                Err(error) => {
                    tracing::warn!(target: "tenant::relay", error = format!("{error:#}"), "publishing the outbox failed; will retry");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wakeup.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        tracing::info!(target: "tenant::relay", "relay stopped");
    })
}

/// Publishes every unpublished row, oldest first; returns how many. Stops at
/// the first failure, so events keep their order per tenant.
pub async fn relay_once(db: &DatabaseConnection, bus: &dyn EventBus) -> anyhow::Result<usize> {
    let mut published = 0;
    loop {
        let transaction = db.begin().await?;
        let mut query = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::CreatedAt)
            .order_by_asc(outbox::Column::Id)
            .limit(BATCH);
        if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(&transaction).await?;
        if rows.is_empty() {
            transaction.commit().await?;
            return Ok(published);
        }

        for row in rows {
            let outcome = bus
                .publish(&row.topic, &row.message_key, row.payload.as_bytes())
                .await;
            let attempts = row.attempts + 1;
            let mut update: outbox::ActiveModel = row.into();
            update.attempts = Set(attempts);
            match outcome {
                Ok(()) => {
                    update.published_at = Set(Some(Utc::now()));
                    update.last_error = Set(None);
                    update.update(&transaction).await?;
                    published += 1;
                }
                Err(error) => {
                    update.last_error = Set(Some(format!("{error:#}")));
                    update.update(&transaction).await?;
                    transaction.commit().await?;
                    return Err(error);
                }
            }
        }
        transaction.commit().await?;
    }
}

/// How many events are waiting to be published.
pub async fn backlog(db: &DatabaseConnection) -> Result<u64, DbErr> {
    outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .count(db)
        .await
}
