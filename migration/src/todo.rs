//! The schema of one tenant's todo database.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrates one `todo_<tenant>` database.
pub struct TodoMigrator;

#[async_trait::async_trait]
impl MigratorTrait for TodoMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTodos)]
    }
}

/// Named by date, so later migrations sort after it.
struct CreateTodos;

impl MigrationName for CreateTodos {
    fn name(&self) -> &str {
        "m20261203_000001_create_todos"
    }
}

#[derive(DeriveIden)]
enum Todos {
    Table,
    Id,
    Title,
    Done,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTodos {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Ids are UUIDv7, so ordering by id is ordering by creation time and
        // the id doubles as the pagination cursor.
        manager
            .create_table(
                Table::create()
                    .table(Todos::Table)
                    .if_not_exists()
                    .col(pk_uuid(Todos::Id))
                    .col(text(Todos::Title))
                    .col(boolean(Todos::Done).default(false))
                    .col(timestamp_with_time_zone(Todos::CreatedAt))
                    .col(timestamp_with_time_zone(Todos::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Listing with the `done` filter walks this index in id order.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("todos_done_id")
                    .table(Todos::Table)
                    .col(Todos::Done)
                    .col(Todos::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Todos::Table).to_owned())
            .await
    }
}
