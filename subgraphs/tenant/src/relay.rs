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
//!
//! An acknowledged event can still be lost after the fact (a broker that
//! comes back without its topics, retention that ran out before an app was
//! deployed). So the relay also sweeps for tenants that some app has not
//! reported on [`RESEND_AFTER`] after their signup event went out, and
//! publishes that event again; apps treat a repeat as already done.

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

use crate::store::{outbox, tenant_service};

/// Rows claimed per round.
const BATCH: u64 = 50;
/// How often the relay looks without being woken.
const POLL: Duration = Duration::from_millis(500);
/// How long after its signup event went out a tenant may wait for an app's
/// report before the event is published again.
pub const RESEND_AFTER: Duration = Duration::from_secs(120);
/// How often the relay sweeps for such tenants.
const RESEND_SWEEP: Duration = Duration::from_secs(30);
/// Tenants re-queued per sweep.
const RESEND_BATCH: u64 = 100;

/// Runs the relay until `shutdown`.
pub fn spawn_relay(
    db: DatabaseConnection,
    bus: Arc<dyn EventBus>,
    signups_topic: String,
    wakeup: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = POLL;
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            if last_sweep.elapsed() >= RESEND_SWEEP {
                last_sweep = tokio::time::Instant::now();
                match requeue_unanswered_signups(&db, &signups_topic, RESEND_AFTER).await {
                    Ok(0) => {}
                    Ok(count) => {
                        tracing::warn!(target: "tenant::relay", count, "signup events unanswered for too long are published again")
                    }
                    Err(error) => {
                        tracing::warn!(target: "tenant::relay", error = format!("{error:#}"), "sweeping for unanswered signups failed")
                    }
                }
            }
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

/// Marks unpublished again the signup events (on `signups_topic`) of
/// tenants with an app still `provisioning` that were published more than
/// `older_than` ago, so the relay sends them once more; returns how many.
/// Each resend refreshes the row's publication time, so a tenant whose app
/// stays silent is resent once per `older_than`, not in a loop.
pub async fn requeue_unanswered_signups(
    db: &DatabaseConnection,
    signups_topic: &str,
    older_than: Duration,
) -> anyhow::Result<u64> {
    let cutoff = Utc::now() - chrono::Duration::from_std(older_than)?;
    let waiting: Vec<Uuid> = tenant_service::Entity::find()
        .select_only()
        .column(tenant_service::Column::TenantId)
        .distinct()
        .filter(tenant_service::Column::Status.eq("provisioning"))
        .filter(tenant_service::Column::UpdatedAt.lt(cutoff))
        .limit(RESEND_BATCH)
        .into_tuple()
        .all(db)
        .await?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = waiting.iter().map(Uuid::to_string).collect();
    let requeued = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::PublishedAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .filter(outbox::Column::Topic.eq(signups_topic))
        .filter(outbox::Column::MessageKey.is_in(keys))
        .filter(outbox::Column::PublishedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(requeued.rows_affected)
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
