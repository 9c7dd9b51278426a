//! The schema of one tenant's fact database.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrates one `fact_<tenant>` database.
pub struct FactMigrator;

#[async_trait::async_trait]
impl MigratorTrait for FactMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateFacts)]
    }
}

/// Named by date, so later migrations sort after it.
struct CreateFacts;

impl MigrationName for CreateFacts {
    fn name(&self) -> &str {
        "m20261203_000001_create_facts"
    }
}

#[derive(DeriveIden)]
enum Facts {
    Table,
    Id,
    Text,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateFacts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Ids are UUIDv7, so ordering by id is ordering by creation time and
        // the id doubles as the pagination cursor.
        manager
            .create_table(
                Table::create()
                    .table(Facts::Table)
                    .if_not_exists()
                    .col(pk_uuid(Facts::Id))
                    .col(text(Facts::Text))
                    .col(timestamp_with_time_zone(Facts::CreatedAt))
                    .col(timestamp_with_time_zone(Facts::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Facts::Table).to_owned())
            .await
    }
}
