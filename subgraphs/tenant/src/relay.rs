//! The outbox relay: publishes the events signups wrote to `outbox`.
//!
//! A row is marked published only after the bus acknowledged it, so a broker
//! outage delays events but never loses one; the rare duplicate (published,
//! then a crash before marking) is absorbed by idempotent consumers. On
//! PostgreSQL rows are claimed with `FOR UPDATE SKIP LOCKED`, so several
//! relays (replicas) never publish the same row at the same time. On SQLite
//! (embedded mode, one process) no transaction spans a publish: a snapshot
//! taken before it could not be written after a signup committed, and the
//! batch would go out again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseBackend, DatabaseConnection, QueryOrder,
    QuerySelect, TransactionTrait,
};
use tenancy::bus::EventBus;
use tokio::sync::{Mutex, Notify};
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
    if db.get_database_backend() == DatabaseBackend::Postgres {
        relay_claiming(db, bus).await
    } else {
        relay_alone(db, bus).await
    }
}

/// PostgreSQL, where several relays may run: each batch is claimed with
/// `FOR UPDATE SKIP LOCKED` in a transaction held until its rows are marked,
/// so other relays skip them instead of publishing them too. It holds row
/// locks only: signups committing meanwhile add rows and wait for nothing.
async fn relay_claiming(db: &DatabaseConnection, bus: &dyn EventBus) -> anyhow::Result<usize> {
    let mut published = 0;
    loop {
        let transaction = db.begin().await?;
        let rows = unpublished()
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&transaction)
            .await?;
        if rows.is_empty() {
            transaction.commit().await?;
            return Ok(published);
        }
        let outcome = publish_batch(&transaction, bus, rows, &mut published).await;
        transaction.commit().await?;
        outcome?;
    }
}

/// SQLite: the embedded mode's one relay. A transaction that read the batch
/// would hold a snapshot, and its write after publishing fails
/// (`SQLITE_BUSY_SNAPSHOT`) whenever a signup committed in between: the batch
/// was published, not marked, and would be published again. So the batch is
/// read on its own, and each row is marked by a statement of its own, which
/// waits for the write lock like any writer.
async fn relay_alone(db: &DatabaseConnection, bus: &dyn EventBus) -> anyhow::Result<usize> {
    // Nothing claims rows here, so two relays in one process (the spawned
    // one and a direct call) would publish the same rows: take turns.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;

    let mut published = 0;
    loop {
        let rows = unpublished().all(db).await?;
        if rows.is_empty() {
            return Ok(published);
        }
        publish_batch(db, bus, rows, &mut published).await?;
    }
}

/// The oldest unpublished rows, one batch.
fn unpublished() -> sea_orm::Select<outbox::Entity> {
    outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::CreatedAt)
        .order_by_asc(outbox::Column::Id)
        .limit(BATCH)
}

/// Publishes `rows` in order, marking each as it goes; at the first failure
/// records the error on that row and stops.
async fn publish_batch<C: ConnectionTrait>(
    db: &C,
    bus: &dyn EventBus,
    rows: Vec<outbox::Model>,
    published: &mut usize,
) -> anyhow::Result<()> {
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
                update.update(db).await?;
                *published += 1;
            }
            Err(error) => {
                update.last_error = Set(Some(format!("{error:#}")));
                update.update(db).await?;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// How many events are waiting to be published.
pub async fn backlog(db: &DatabaseConnection) -> Result<u64, DbErr> {
    outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .count(db)
        .await
}
