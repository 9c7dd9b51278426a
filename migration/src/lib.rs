//! SeaORM migrators for every database hybrid-tenancy owns.
//!
//! Each logical database has exactly one migrator, so each keeps the default
//! `seaql_migrations` history table:
//!
//! - [`MetaMigrator`]: the tenant service's TenantMetaDB (`tenants`,
//!   `tenant_services`, `api_tokens`, `outbox`).
//! - [`RegistryMigrator`]: an app's TenantDB registry (`tenant_databases`), one
//!   per app, in that app's control database.
//! - [`BusMigrator`]: the embedded event log (in-process bus, embedded mode).
//! - [`FactMigrator`]: the schema of one tenant's `fact_<tenant>` database.
//! - [`OrgMigrator`]: the schema of one tenant's `org_<tenant>` database.
//! - [`TodoMigrator`]: the schema of one tenant's `todo_<tenant>` database.
//!
//! Migrations use only the portable schema builder, so the same files run on
//! PostgreSQL (cluster mode) and SQLite (embedded mode).

pub use sea_orm_migration::prelude::*;

mod bus;
mod fact;
mod meta;
mod org;
mod registry;
mod todo;

pub use bus::BusMigrator;
pub use fact::FactMigrator;
pub use meta::MetaMigrator;
pub use org::OrgMigrator;
pub use registry::RegistryMigrator;
pub use todo::TodoMigrator;
