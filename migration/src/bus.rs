//! The embedded event log: the in-process bus keeps its messages and its
//! consumer groups' offsets here, so a restart loses no event.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrates the embedded event log (`events` database).
pub struct BusMigrator;

#[async_trait::async_trait]
impl MigratorTrait for BusMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateBusTables)]
    }
}

/// Named by date, so later migrations sort after it.
struct CreateBusTables;

impl MigrationName for CreateBusTables {
    fn name(&self) -> &str {
        "m20261203_000001_create_bus_tables"
    }
}

#[derive(DeriveIden)]
enum BusMessages {
    Table,
    Id,
    Topic,
    MessageKey,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BusOffsets {
    Table,
    GroupName,
    Topic,
    NextOffset,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateBusTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The auto-increment id is the message's offset: one ordered log
        // shared by every topic.
        manager
            .create_table(
                Table::create()
                    .table(BusMessages::Table)
                    .if_not_exists()
                    .col(pk_auto(BusMessages::Id))
                    .col(string(BusMessages::Topic))
                    .col(string(BusMessages::MessageKey))
                    .col(blob(BusMessages::Payload))
                    .col(timestamp_with_time_zone(BusMessages::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("bus_messages_topic")
                    .table(BusMessages::Table)
                    .col(BusMessages::Topic)
                    .col(BusMessages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BusOffsets::Table)
                    .if_not_exists()
                    .col(string(BusOffsets::GroupName))
                    .col(string(BusOffsets::Topic))
                    .col(big_integer(BusOffsets::NextOffset))
                    .primary_key(
                        Index::create()
                            .col(BusOffsets::GroupName)
                            .col(BusOffsets::Topic),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BusOffsets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(BusMessages::Table).to_owned())
            .await
    }
}
