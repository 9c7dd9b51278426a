//! The schema of one tenant's org database.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrates one `org_<tenant>` database.
pub struct OrgMigrator;

#[async_trait::async_trait]
impl MigratorTrait for OrgMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOrgMembers)]
    }
}

/// Named by date, so later migrations sort after it.
struct CreateOrgMembers;

impl MigrationName for CreateOrgMembers {
    fn name(&self) -> &str {
        "m20261203_000001_create_org_members"
    }
}

#[derive(DeriveIden)]
enum OrgMembers {
    Table,
    Id,
    Name,
    Title,
    ManagerId,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrgMembers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A member's manager is another member of the same tenant database.
        // The foreign key refuses a delete that would orphan reports; the
        // app moves them first (or refuses), and keeps the tree acyclic.
        manager
            .create_table(
                Table::create()
                    .table(OrgMembers::Table)
                    .if_not_exists()
                    .col(pk_uuid(OrgMembers::Id))
                    .col(text(OrgMembers::Name))
                    .col(text(OrgMembers::Title))
                    .col(uuid_null(OrgMembers::ManagerId))
                    .col(timestamp_with_time_zone(OrgMembers::CreatedAt))
                    .col(timestamp_with_time_zone(OrgMembers::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("org_members_manager")
                            .from(OrgMembers::Table, OrgMembers::ManagerId)
                            .to(OrgMembers::Table, OrgMembers::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        // "Who reports to X" is asked on every delete and reassignment.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("org_members_manager_id")
                    .table(OrgMembers::Table)
                    .col(OrgMembers::ManagerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrgMembers::Table).to_owned())
            .await
    }
}
