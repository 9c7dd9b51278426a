//! An app's TenantDB registry: where each tenant's database lives and whether
//! it is ready.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrates an app's registry database.
pub struct RegistryMigrator;

#[async_trait::async_trait]
impl MigratorTrait for RegistryMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTenantDatabases)]
    }
}

/// Named by date, so later migrations sort after it.
struct CreateTenantDatabases;

impl MigrationName for CreateTenantDatabases {
    fn name(&self) -> &str {
        "m20261203_000001_create_tenant_databases"
    }
}

#[derive(DeriveIden)]
enum TenantDatabases {
    Table,
    TenantId,
    Host,
    DatabaseName,
    Status,
    SchemaVersion,
    Error,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTenantDatabases {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantDatabases::Table)
                    .if_not_exists()
                    .col(pk_uuid(TenantDatabases::TenantId))
                    .col(string(TenantDatabases::Host))
                    .col(string(TenantDatabases::DatabaseName))
                    .col(string(TenantDatabases::Status))
                    .col(string_null(TenantDatabases::SchemaVersion))
                    .col(text_null(TenantDatabases::Error))
                    .col(timestamp_with_time_zone(TenantDatabases::CreatedAt))
                    .col(timestamp_with_time_zone(TenantDatabases::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantDatabases::Table).to_owned())
            .await
    }
}
