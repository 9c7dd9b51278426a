//! Keeps `tenant_services.status` true: consumes the apps' reports on
//! `tenant.provisioning`.

use async_trait::async_trait;
use sea_orm::DatabaseConnection;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use tenancy::bus::Delivery;
use tenancy::consumer::MessageHandler;
use tenancy::events::{EVENT_VERSION, ProvisioningEvent};

use crate::store::tenant_service;

/// Applies provisioning reports to the TenantMetaDB.
pub struct StatusUpdater {
    db: DatabaseConnection,
}

impl StatusUpdater {
    /// An updater writing to the TenantMetaDB.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Records the report unless a newer one is already recorded, so reports
    /// arriving out of order cannot move a status backwards.
    pub async fn apply(&self, event: &ProvisioningEvent) -> Result<u64, DbErr> {
        if event.version != EVENT_VERSION {
            tracing::warn!(target: "tenant::status", version = event.version, "provisioning report of an unknown version skipped");
            return Ok(0);
        }
        let status = match event.status.as_str() {
            "ready" | "failed" | "provisioning" => event.status.clone(),
            _ => return Ok(0),
        };
        let result = tenant_service::Entity::update_many()
            .col_expr(tenant_service::Column::Status, Expr::value(status))
            .col_expr(
                tenant_service::Column::Error,
                Expr::value(event.error.clone()),
            )
            .col_expr(
                tenant_service::Column::UpdatedAt,
                Expr::value(event.occurred_at),
            )
            .filter(tenant_service::Column::TenantId.eq(event.tenant_id.as_uuid()))
            .filter(tenant_service::Column::Service.eq(event.service.as_str()))
            .filter(tenant_service::Column::UpdatedAt.lte(event.occurred_at))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }
}

#[async_trait]
impl MessageHandler for StatusUpdater {
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        let event: ProvisioningEvent = match serde_json::from_slice(&delivery.payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(target: "tenant::status", offset = delivery.offset, %error, "unreadable provisioning report skipped");
                return Ok(());
            }
        };
        let updated = self.apply(&event).await?;
        tracing::info!(target: "tenant::status", tenant_id = %event.tenant_id, service = event.service.as_str(), status = %event.status, updated, "provisioning report");
        Ok(())
    }
}
