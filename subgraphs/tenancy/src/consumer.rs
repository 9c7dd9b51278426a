//! The at-least-once consume loop: receive → handle → commit.
//!
//! A handler that fails is retried with capped exponential backoff, without
//! committing, so no message is lost while a database or the broker is away.
//! A handler decides itself when a failure must stop holding the topic back:
//! it records the failure durably, to be retried elsewhere (the provisioner
//! repairs failed tenants on its own), and returns `Ok`, which lets the
//! offset move on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, EventBus, Subscription};

/// Handles one message of a subscription.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles the message. `Err` means "try again later"; the message is
    /// committed only after `Ok`.
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()>;
}

/// Consumes `topic` as group `group` until `shutdown` is cancelled.
pub fn spawn_consumer(
    bus: Arc<dyn EventBus>,
    topic: String,
    group: String,
    handler: Arc<dyn MessageHandler>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut subscription = loop {
            match bus.subscribe(&topic, &group).await {
                Ok(subscription) => break subscription,
                Err(error) => {
                    tracing::warn!(target: "tenancy::consumer", %topic, %group, error = format!("{error:#}"), "subscribe failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        tracing::info!(target: "tenancy::consumer", %topic, %group, "consuming");
        consume(subscription.as_mut(), handler.as_ref(), &shutdown).await;
        tracing::info!(target: "tenancy::consumer", %topic, %group, "stopped");
    })
}

async fn consume(
    subscription: &mut dyn Subscription,
    handler: &dyn MessageHandler,
    shutdown: &CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = subscription.next() => next,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(target: "tenancy::consumer", error = format!("{error:#}"), "receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };

        // Retry until handled; stop retrying (uncommitted) only on shutdown,
        // so the next member of the group gets the message again.
        let mut backoff = Duration::from_millis(100);
        loop {
            match handler.handle(&delivery).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(
                        target: "tenancy::consumer",
                        topic = %delivery.topic, offset = delivery.offset,
                        error = format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64,
                        "handling failed; will retry"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }

        // A failed commit means redelivery later, which handlers tolerate.
        if let Err(error) = subscription.commit(&delivery).await {
            tracing::warn!(target: "tenancy::consumer", error = format!("{error:#}"), "commit failed; the message may be redelivered");
        }
    }
}
