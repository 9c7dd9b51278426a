//! The tenant service's TenantMetaDB.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrates the TenantMetaDB.
pub struct MetaMigrator;

#[async_trait::async_trait]
impl MigratorTrait for MetaMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateMetaTables)]
    }
}

/// Named by date, so later migrations sort after it.
struct CreateMetaTables;

impl MigrationName for CreateMetaTables {
    fn name(&self) -> &str {
        "m20261203_000001_create_meta_tables"
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TenantServices {
    Table,
    TenantId,
    Service,
    Status,
    Error,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    TenantId,
    Name,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Topic,
    MessageKey,
    Payload,
    CreatedAt,
    PublishedAt,
    Attempts,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMetaTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .if_not_exists()
                    .col(pk_uuid(Tenants::Id))
                    .col(string(Tenants::Name))
                    .col(timestamp_with_time_zone(Tenants::CreatedAt))
                    .to_owned(),
            )
            .await?;

        // One row per (tenant, app) the tenant signed up for; the status is
        // what the apps last reported about the tenant's database.
        manager
            .create_table(
                Table::create()
                    .table(TenantServices::Table)
                    .if_not_exists()
                    .col(uuid(TenantServices::TenantId))
                    .col(string(TenantServices::Service))
                    .col(string(TenantServices::Status))
                    .col(text_null(TenantServices::Error))
                    .col(timestamp_with_time_zone(TenantServices::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(TenantServices::TenantId)
                            .col(TenantServices::Service),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(TenantServices::Table, TenantServices::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // The id of a token row is the JWT's `jti`; the token itself is never
        // stored, only what is needed to list and revoke it.
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(ApiTokens::Id))
                    .col(uuid(ApiTokens::TenantId))
                    .col(string(ApiTokens::Name))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("api_tokens_tenant_id")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::TenantId)
                    .to_owned(),
            )
            .await?;

        // The transactional outbox: written in the signup transaction, drained
        // by the relay, so no signup is ever without its event.
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(pk_uuid(Outbox::Id))
                    .col(string(Outbox::Topic))
                    .col(string(Outbox::MessageKey))
                    .col(text(Outbox::Payload))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::PublishedAt))
                    .col(integer(Outbox::Attempts).default(0))
                    .col(text_null(Outbox::LastError))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("outbox_unpublished")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TenantServices::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tenants::Table).to_owned())
            .await
    }
}
