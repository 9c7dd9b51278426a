//! An app's TenantDB registry: for each tenant that signed up for the app,
//! the host and name of its database and whether it is ready.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, Condition, DatabaseTransaction, QueryOrder, Statement, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::ids::TenantId;

/// The `tenant_databases` table.
pub mod tenant_database {
    use sea_orm::entity::prelude::*;

    /// One tenant's database for this app.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_databases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        pub host: String,
        pub database_name: String,
        pub status: String,
        pub schema_version: Option<String>,
        pub error: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Where a tenant database is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseStatus {
    /// Registered; being created or migrated.
    Provisioning,
    /// Created, migrated, serving requests.
    Ready,
    /// Provisioning gave up for now; the error is kept and the app's
    /// provisioner retries it later on its own.
    Failed,
}

impl DatabaseStatus {
    /// The name stored in the registry and shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseStatus::Provisioning => "provisioning",
            DatabaseStatus::Ready => "ready",
            DatabaseStatus::Failed => "failed",
        }
    }

    /// Parses a stored status; anything unknown counts as provisioning, the
    /// state that serves no requests.
    pub fn parse(text: &str) -> Self {
        match text {
            "ready" => DatabaseStatus::Ready,
            "failed" => DatabaseStatus::Failed,
            _ => DatabaseStatus::Provisioning,
        }
    }
}

/// A registry entry, as callers see it.
#[derive(Clone, Debug)]
pub struct TenantDatabase {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The host URL (see [`crate::host::DatabaseHost`]).
    pub host: String,
    /// The database name on that host.
    pub database_name: String,
    /// Whether it serves requests yet.
    pub status: DatabaseStatus,
    /// The last migration applied, once ready.
    pub schema_version: Option<String>,
    /// Why provisioning failed, when it did.
    pub error: Option<String>,
}

impl From<tenant_database::Model> for TenantDatabase {
    fn from(row: tenant_database::Model) -> Self {
        Self {
            tenant_id: TenantId::from_uuid(row.tenant_id),
            host: row.host,
            database_name: row.database_name,
            status: DatabaseStatus::parse(&row.status),
            schema_version: row.schema_version,
            error: row.error,
        }
    }
}

/// An app's registry, in the app's control database.
#[derive(Clone, Debug)]
pub struct TenantRegistry {
    db: DatabaseConnection,
    /// The provisioning lock of an embedded (SQLite) registry, which has no
    /// advisory locks: one process owns the file, so a lock in memory,
    /// shared by every clone of this registry, serialises its provisioners.
    local_lock: Arc<Mutex<()>>,
}

impl TenantRegistry {
    /// Wraps an open, migrated registry database.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            local_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The registry's own connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The tenant's entry, if it signed up for this app.
    pub async fn find(&self, tenant: TenantId) -> Result<Option<TenantDatabase>, DbErr> {
        let row = tenant_database::Entity::find_by_id(tenant.as_uuid())
            .one(&self.db)
            .await?;
        Ok(row.map(Into::into))
    }

    /// The entries provisioning has not finished: every `failed` one, and
    /// those `provisioning` since before `stalled_before` (whoever was
    /// provisioning them may have stopped). Longest untouched first.
    pub async fn unfinished(
        &self,
        stalled_before: DateTime<Utc>,
    ) -> Result<Vec<TenantDatabase>, DbErr> {
        use tenant_database::Column;
        let stalled = Condition::all()
            .add(Column::Status.eq(DatabaseStatus::Provisioning.as_str()))
            .add(Column::UpdatedAt.lt(stalled_before));
        let rows = tenant_database::Entity::find()
            .filter(
                Condition::any()
                    .add(Column::Status.eq(DatabaseStatus::Failed.as_str()))
                    .add(stalled),
            )
            .order_by_asc(Column::UpdatedAt)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Registers the tenant's database as provisioning unless an entry
    /// exists, and returns the entry as it now stands. Safe to repeat.
    pub async fn claim(
        &self,
        tenant: TenantId,
        host: &str,
        database: &str,
    ) -> Result<TenantDatabase, DbErr> {
        let now = Utc::now();
        let entry = tenant_database::ActiveModel {
            tenant_id: Set(tenant.as_uuid()),
            host: Set(host.to_owned()),
            database_name: Set(database.to_owned()),
            status: Set(DatabaseStatus::Provisioning.as_str().to_owned()),
            schema_version: Set(None),
            error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        tenant_database::Entity::insert(entry)
            .on_conflict(
                OnConflict::column(tenant_database::Column::TenantId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        self.find(tenant)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("registry entry for {tenant}")))
    }

    /// Marks the tenant's database ready at `schema_version`.
    pub async fn mark_ready(&self, tenant: TenantId, schema_version: &str) -> Result<(), DbErr> {
        self.set_status(
            tenant,
            DatabaseStatus::Ready,
            Some(schema_version.to_owned()),
            None,
        )
        .await
    }

    /// Marks the tenant's database failed, keeping the error.
    pub async fn mark_failed(&self, tenant: TenantId, error: &str) -> Result<(), DbErr> {
        self.set_status(tenant, DatabaseStatus::Failed, None, Some(error.to_owned()))
            .await
    }

    /// Marks the tenant's database as provisioning again (a retry).
    pub async fn mark_provisioning(&self, tenant: TenantId) -> Result<(), DbErr> {
        self.set_status(tenant, DatabaseStatus::Provisioning, None, None)
            .await
    }

    async fn set_status(
        &self,
        tenant: TenantId,
        status: DatabaseStatus,
        schema_version: Option<String>,
        error: Option<String>,
    ) -> Result<(), DbErr> {
        let mut update = tenant_database::Entity::update_many()
            .col_expr(
                tenant_database::Column::Status,
                Expr::value(status.as_str()),
            )
            .col_expr(tenant_database::Column::Error, Expr::value(error))
            .col_expr(tenant_database::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(tenant_database::Column::TenantId.eq(tenant.as_uuid()));
        if let Some(version) = schema_version {
            update = update.col_expr(tenant_database::Column::SchemaVersion, Expr::value(version));
        }
        update.exec(&self.db).await?;
        Ok(())
    }

    /// Serialises provisioning of one tenant across every instance of the
    /// app, waiting for the lock: on PostgreSQL a transaction-scoped advisory
    /// lock, held until the returned guard is released or dropped; on SQLite
    /// the registry's lock in memory (see `local_lock`).
    pub async fn lock(&self, app: &str, tenant: TenantId) -> Result<TenantLock, DbErr> {
        if !self.is_postgres() {
            let local = self.local_lock.clone().lock_owned().await;
            return Ok(TenantLock(Held::Local(local)));
        }
        let transaction = self.db.begin().await?;
        transaction
            .execute_raw(Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                [app.into(), tenant.to_string().into()],
            ))
            .await?;
        Ok(TenantLock(Held::Advisory(transaction)))
    }

    /// The same lock as [`Self::lock`] if nobody holds it, else `None`: the
    /// holder is provisioning the tenant right now.
    pub async fn try_lock(&self, app: &str, tenant: TenantId) -> Result<Option<TenantLock>, DbErr> {
        if !self.is_postgres() {
            let local = self.local_lock.clone().try_lock_owned().ok();
            return Ok(local.map(|local| TenantLock(Held::Local(local))));
        }
        let transaction = self.db.begin().await?;
        let row = transaction
            .query_one_raw(Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2)) AS locked",
                [app.into(), tenant.to_string().into()],
            ))
            .await?;
        let locked = match row {
            Some(row) => row.try_get::<bool>("", "locked")?,
            None => false,
        };
        if !locked {
            transaction.rollback().await?;
            return Ok(None);
        }
        Ok(Some(TenantLock(Held::Advisory(transaction))))
    }

    fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres
    }
}

/// Holds a tenant's provisioning lock.
pub struct TenantLock(Held);

enum Held {
    /// A PostgreSQL advisory lock, scoped to this open transaction.
    Advisory(DatabaseTransaction),
    /// The embedded registry's lock in memory.
    Local(OwnedMutexGuard<()>),
}

impl TenantLock {
    /// Releases the lock.
    pub async fn release(self) -> Result<(), DbErr> {
        match self.0 {
            Held::Advisory(transaction) => transaction.commit().await,
            Held::Local(guard) => {
                drop(guard);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::DatabaseHost;
    use migration::RegistryMigrator;

    #[tokio::test]
    async fn an_embedded_registry_lock_is_taken_by_one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("registry-lock-{}", uuid::Uuid::new_v4()));
        let host = DatabaseHost::parse(&format!("sqlite://{}", dir.display())).unwrap();
        let registry = TenantRegistry::new(
            host.open_control_database::<RegistryMigrator>("fact_registry")
                .await
                .unwrap(),
        );
        let tenant = TenantId::new();
        let held = registry.lock("fact", tenant).await.unwrap();
        assert!(
            registry
                .clone()
                .try_lock("fact", tenant)
                .await
                .unwrap()
                .is_none()
        );
        held.release().await.unwrap();
        let again = registry.try_lock("fact", tenant).await.unwrap();
        again.expect("free after release").release().await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
