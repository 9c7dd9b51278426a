//! Data access for org members.
//!
//! Every function takes an [`OrgDatabase`], which can only be made from the
//! tenant's connection, so there is no way to touch a tenant's org chart
//! without going through the selector for that tenant. The handle also counts
//! the SQL statements it runs ([`QueryCounter`]), which is how tests and the
//! benchmark show that the chart costs a bounded number of queries.
//!
//! The chart stays a forest (no member manages themselves, directly or not):
//! every write that changes who manages whom runs in one transaction that
//! first takes the tenant's org lock, then checks with a recursive query.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, DatabaseBackend, DatabaseTransaction, QueryOrder, QuerySelect,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tenancy::selector::TenantConnection;
use tenancy::{Error, Result, TenantId};

/// The `org_members` table.
pub mod member {
    use sea_orm::entity::prelude::*;

    /// One member of the org chart.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "org_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub title: String,
        pub manager_id: Option<Uuid>,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    /// No relations declared: the manager link is followed in memory or
    /// with a recursive query.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use member::Model as Member;

/// The longest name or title accepted, in characters (after trimming).
pub const MAX_TEXT_CHARS: usize = 200;

/// Counts the SQL statements run through the [`OrgDatabase`] handles made
/// with it. Cheap to clone; all clones share one count.
#[derive(Clone, Debug, Default)]
pub struct QueryCounter(Arc<AtomicU64>);

impl QueryCounter {
    /// Statements run so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One tenant's org database, with its statements counted.
#[derive(Clone, Debug)]
pub struct OrgDatabase {
    tenant: TenantId,
    db: DatabaseConnection,
}

impl OrgDatabase {
    /// The org database behind the tenant's connection. The pool is shared;
    /// only this handle's statements go to `queries`.
    pub fn new(conn: &TenantConnection, queries: &QueryCounter) -> Self {
        Self::counted(conn.tenant(), conn.db().clone(), queries)
    }

    fn counted(tenant: TenantId, mut db: DatabaseConnection, queries: &QueryCounter) -> Self {
        let queries = queries.clone();
        db.set_metric_callback(move |_| queries.increment());
        Self { tenant, db }
    }

    /// The tenant this database belongs to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }
}

/// A new member.
#[derive(Clone, Debug)]
pub struct NewMember {
    /// The member's name.
    pub name: String,
    /// The member's job title.
    pub title: String,
    /// Who they report to, if anyone.
    pub manager_id: Option<Uuid>,
}

/// What to do with a member's manager in an update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManagerChange {
    /// Leave it as it is.
    #[default]
    Keep,
    /// The member reports to no one from now on.
    Clear,
    /// The member reports to this member from now on.
    Set(Uuid),
}

/// A change to a member: each field that is given is replaced.
#[derive(Clone, Debug, Default)]
pub struct MemberChange {
    /// The new name.
    pub name: Option<String>,
    /// The new title.
    pub title: Option<String>,
    /// The new manager.
    pub manager: ManagerChange,
}

/// Checks and normalises a name or title: trimmed, 1–200 characters.
pub fn validate_text(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::BadUserInput(format!("{field} must not be empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::BadUserInput(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Up to `limit` members after `after`, oldest first (ids are UUIDv7).
pub async fn list(db: &OrgDatabase, after: Option<Uuid>, limit: u64) -> Result<Vec<Member>> {
    let mut query = member::Entity::find()
        .order_by_asc(member::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(member::Column::Id.gt(after));
    }
    Ok(query.all(&db.db).await?)
}

/// Every member of the tenant, oldest first, in one query: what the chart
/// is built from.
pub async fn all(db: &OrgDatabase) -> Result<Vec<Member>> {
    Ok(member::Entity::find()
        .order_by_asc(member::Column::Id)
        .all(&db.db)
        .await?)
}

/// The member, or `NOT_FOUND` (also for another tenant's id: it is not in
/// this tenant's database).
pub async fn get(db: &OrgDatabase, id: Uuid) -> Result<Member> {
    find(&db.db, id).await?.ok_or_else(|| no_member(id))
}

/// Stores a new member. A manager that is not a member of this tenant is
/// `NOT_FOUND`. A new member has no reports, so it cannot close a cycle.
pub async fn create(db: &OrgDatabase, new: NewMember) -> Result<Member> {
    let name = validate_text("name", &new.name)?;
    let title = validate_text("title", &new.title)?;

    // The lock keeps a concurrent delete from removing the manager between
    // the check and the insert.
    let txn = begin_write(&db.db).await?;
    if let Some(manager) = new.manager_id {
        lock_structure(&txn).await?;
        find(&txn, manager)
            .await?
            .ok_or_else(|| no_manager(manager))?;
    }
    let now = Utc::now();
    let row = member::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        title: Set(title),
        manager_id: Set(new.manager_id),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let member = row.insert(&txn).await?;
    txn.commit().await?;
    Ok(member)
}

/// Applies `change`. A change that names no field is `BAD_USER_INPUT`; a
/// manager change that would make the member manage themselves, directly or
/// through their reports, is `CONFLICT`.
pub async fn update(db: &OrgDatabase, id: Uuid, change: MemberChange) -> Result<Member> {
    // Validate everything before touching the database.
    let MemberChange {
        name,
        title,
        manager,
    } = change;
    if name.is_none() && title.is_none() && manager == ManagerChange::Keep {
        return Err(Error::BadUserInput(
            "the change names no field: give name, title or managerId".into(),
        ));
    }
    let name = name.map(|name| validate_text("name", &name)).transpose()?;
    let title = title
        .map(|title| validate_text("title", &title))
        .transpose()?;

    let txn = begin_write(&db.db).await?;
    if let ManagerChange::Set(_) = manager {
        lock_structure(&txn).await?;
    }
    let current = find(&txn, id).await?.ok_or_else(|| no_member(id))?;
    if let ManagerChange::Set(manager) = manager {
        check_new_manager(&txn, id, manager).await?;
    }

    let mut row: member::ActiveModel = current.into();
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(title) = title {
        row.title = Set(title);
    }
    match manager {
        ManagerChange::Keep => {}
        ManagerChange::Clear => row.manager_id = Set(None),
        ManagerChange::Set(manager) => row.manager_id = Set(Some(manager)),
    }
    row.updated_at = Set(Utc::now());
    let member = row.update(&txn).await?;
    txn.commit().await?;
    Ok(member)
}

/// Deletes a member. One who has reports is refused with `CONFLICT` unless
/// `reassign_to` names who they report to from now on: a member outside the
/// deleted member's part of the chart (not the member, not one of their
/// direct or indirect reports), so no cycle can appear. The reports move and
/// the member goes in one transaction.
pub async fn delete(db: &OrgDatabase, id: Uuid, reassign_to: Option<Uuid>) -> Result<()> {
    let txn = begin_write(&db.db).await?;
    lock_structure(&txn).await?;
    find(&txn, id).await?.ok_or_else(|| no_member(id))?;

    // A named successor is checked even when there are no reports to move:
    // the request names a member, and it should be a valid one.
    if let Some(successor) = reassign_to {
        check_successor(&txn, id, successor).await?;
        member::Entity::update_many()
            .col_expr(member::Column::ManagerId, Expr::value(successor))
            .col_expr(member::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(member::Column::ManagerId.eq(id))
            .exec(&txn)
            .await?;
    } else {
        let reports = member::Entity::find()
            .filter(member::Column::ManagerId.eq(id))
            .count(&txn)
            .await?;
        if reports > 0 {
            return Err(Error::Conflict(format!(
                "org member {id} manages {reports} member(s); \
                 name who they report to instead with reassignReportsTo"
            )));
        }
    }

    member::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Refuses a manager that is missing, the member itself, or one of the
/// member's direct or indirect reports.
async fn check_new_manager(txn: &DatabaseTransaction, member: Uuid, manager: Uuid) -> Result<()> {
    if manager == member {
        return Err(Error::Conflict(
            "an org member cannot be their own manager".into(),
        ));
    }
    find(txn, manager)
        .await?
        .ok_or_else(|| no_manager(manager))?;
    if is_in_chain_of_command(txn, member, manager).await? {
        return Err(Error::Conflict(format!(
            "org member {manager} reports to {member}, directly or not: \
             making them {member}'s manager would create a cycle"
        )));
    }
    Ok(())
}

/// Refuses a successor for a deleted member's reports that is missing, the
/// member itself, or one of the member's direct or indirect reports.
async fn check_successor(txn: &DatabaseTransaction, member: Uuid, successor: Uuid) -> Result<()> {
    if successor == member {
        return Err(Error::Conflict(
            "reassignReportsTo must name another member than the one deleted".into(),
        ));
    }
    find(txn, successor)
        .await?
        .ok_or_else(|| no_manager(successor))?;
    if is_in_chain_of_command(txn, member, successor).await? {
        return Err(Error::Conflict(format!(
            "org member {successor} reports to {member}, directly or not, \
             so it cannot take over {member}'s reports"
        )));
    }
    Ok(())
}

/// Whether `ancestor` is `member` or anyone above it: walks up the managers
/// from `member` in one recursive query. `UNION` (not `UNION ALL`) makes the
/// walk stop even on data that already holds a cycle.
async fn is_in_chain_of_command(
    txn: &DatabaseTransaction,
    ancestor: Uuid,
    member: Uuid,
) -> Result<bool> {
    const CHAIN: &str = "\
        WITH RECURSIVE chain (id, manager_id) AS ( \
            SELECT id, manager_id FROM org_members WHERE id = $1 \
            UNION \
            SELECT m.id, m.manager_id FROM org_members m JOIN chain c ON m.id = c.manager_id \
        ) \
        SELECT COUNT(*) AS hits FROM chain WHERE id = $2";
    let backend = txn.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        placeholders(backend, CHAIN),
        [member.into(), ancestor.into()],
    );
    let row = txn.query_one_raw(statement).await?;
    let hits: i64 = match row {
        Some(row) => row.try_get("", "hits")?,
        None => 0,
    };
    Ok(hits > 0)
}

/// Starts a write transaction. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so a transaction that reads, checks and then writes
/// never fails half-way on a lock upgrade; PostgreSQL ignores the option.
async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    Ok(db.begin_with_options(options).await?)
}

/// Serialises changes to who manages whom within the tenant, so two
/// concurrent changes cannot each pass the cycle check and together close a
/// cycle. On PostgreSQL a transaction-scoped advisory lock (the database is
/// the tenant's own, so one key is per tenant); on SQLite every write
/// transaction already holds the database's one write lock.
async fn lock_structure(txn: &DatabaseTransaction) -> Result<()> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('org_members.manager_id'))")
            .await?;
    }
    Ok(())
}

/// Writes numbered placeholders the backend's way: `$1` on PostgreSQL, `?1`
/// on SQLite.
fn placeholders(backend: DatabaseBackend, sql: &str) -> String {
    match backend {
        DatabaseBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    }
}

async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Member>> {
    Ok(member::Entity::find_by_id(id).one(db).await?)
}

fn no_member(id: Uuid) -> Error {
    Error::NotFound(format!("no org member {id}"))
}

fn no_manager(id: Uuid) -> Error {
    Error::NotFound(format!("no org member {id} to report to"))
}

#[cfg(test)]
mod tests {
    //! The chart rules on SQLite (the embedded mode); the integration tests
    //! run the same rules on PostgreSQL through the GraphQL API.

    use migration::{MigratorTrait, OrgMigrator};

    use super::*;

    struct Scratch {
        db: OrgDatabase,
        queries: QueryCounter,
        path: std::path::PathBuf,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            std::fs::remove_file(&self.path).ok();
        }
    }

    async fn scratch() -> Scratch {
        let path = std::env::temp_dir().join(format!("org_store_{}.db", Uuid::now_v7().simple()));
        let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        OrgMigrator::up(&db, None).await.unwrap();
        let queries = QueryCounter::default();
        Scratch {
            db: OrgDatabase::counted(TenantId::new(), db, &queries),
            queries,
            path,
        }
    }

    async fn add(db: &OrgDatabase, name: &str, manager: Option<&Member>) -> Member {
        let new = NewMember {
            name: name.into(),
            title: "Staff".into(),
            manager_id: manager.map(|m| m.id),
        };
        create(db, new).await.unwrap()
    }

    fn set_manager(manager: &Member) -> MemberChange {
        MemberChange {
            manager: ManagerChange::Set(manager.id),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_change_that_closes_a_cycle_is_a_conflict() {
        let Scratch { db, .. } = &scratch().await;
        let ceo = add(db, "Ceo", None).await;
        let vp = add(db, "Vp", Some(&ceo)).await;
        let lead = add(db, "Lead", Some(&vp)).await;

        for (member, manager) in [(&ceo, &lead), (&ceo, &vp), (&vp, &lead), (&ceo, &ceo)] {
            let error = update(db, member.id, set_manager(manager))
                .await
                .unwrap_err();
            assert_eq!(
                error.code(),
                "CONFLICT",
                "{} under {}",
                member.name,
                manager.name
            );
        }

        // Moving up the chart, or out of it, is fine.
        let moved = update(db, lead.id, set_manager(&ceo)).await.unwrap();
        assert_eq!(moved.manager_id, Some(ceo.id));
        let change = MemberChange {
            manager: ManagerChange::Clear,
            ..Default::default()
        };
        assert_eq!(update(db, vp.id, change).await.unwrap().manager_id, None);
    }

    #[tokio::test]
    async fn a_manager_must_be_a_member() {
        let Scratch { db, .. } = &scratch().await;
        let stranger = Uuid::now_v7();
        let new = NewMember {
            name: "A".into(),
            title: "B".into(),
            manager_id: Some(stranger),
        };
        assert_eq!(create(db, new).await.unwrap_err().code(), "NOT_FOUND");

        let member = add(db, "A", None).await;
        let change = MemberChange {
            manager: ManagerChange::Set(stranger),
            ..Default::default()
        };
        assert_eq!(
            update(db, member.id, change).await.unwrap_err().code(),
            "NOT_FOUND"
        );
        assert_eq!(get(db, member.id).await.unwrap().manager_id, None);
    }

    #[tokio::test]
    async fn deleting_a_manager_moves_the_reports_only_outside_their_branch() {
        let Scratch { db, .. } = &scratch().await;
        let ceo = add(db, "Ceo", None).await;
        let vp = add(db, "Vp", Some(&ceo)).await;
        let lead = add(db, "Lead", Some(&vp)).await;
        let engineer = add(db, "Engineer", Some(&lead)).await;
        let peer = add(db, "Peer", Some(&ceo)).await;

        assert_eq!(
            delete(db, vp.id, None).await.unwrap_err().code(),
            "CONFLICT"
        );
        for successor in [&vp, &lead, &engineer] {
            let error = delete(db, vp.id, Some(successor.id)).await.unwrap_err();
            assert_eq!(error.code(), "CONFLICT", "{}", successor.name);
        }
        let missing = delete(db, vp.id, Some(Uuid::now_v7())).await.unwrap_err();
        assert_eq!(missing.code(), "NOT_FOUND");
        assert_eq!(get(db, lead.id).await.unwrap().manager_id, Some(vp.id));

        delete(db, vp.id, Some(peer.id)).await.unwrap();
        assert_eq!(get(db, vp.id).await.unwrap_err().code(), "NOT_FOUND");
        assert_eq!(get(db, lead.id).await.unwrap().manager_id, Some(peer.id));
        assert_eq!(
            get(db, engineer.id).await.unwrap().manager_id,
            Some(lead.id)
        );

        // A member without reports goes without a successor.
        delete(db, engineer.id, None).await.unwrap();
        assert_eq!(
            delete(db, engineer.id, None).await.unwrap_err().code(),
            "NOT_FOUND"
        );
    }

    #[tokio::test]
    async fn empty_or_oversized_changes_are_bad_input() {
        let Scratch { db, .. } = &scratch().await;
        let member = add(db, "A", None).await;
        let nothing = update(db, member.id, MemberChange::default())
            .await
            .unwrap_err();
        assert_eq!(nothing.code(), "BAD_USER_INPUT");
        let blank = MemberChange {
            name: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            update(db, member.id, blank).await.unwrap_err().code(),
            "BAD_USER_INPUT"
        );
        let long = MemberChange {
            title: Some("x".repeat(201)),
            ..Default::default()
        };
        assert_eq!(
            update(db, member.id, long).await.unwrap_err().code(),
            "BAD_USER_INPUT"
        );
        let trimmed = MemberChange {
            name: Some(" B ".into()),
            ..Default::default()
        };
        assert_eq!(update(db, member.id, trimmed).await.unwrap().name, "B");
    }

    #[tokio::test]
    async fn the_whole_chart_is_one_query() {
        let scratch = scratch().await;
        let db = &scratch.db;
        let mut manager = add(db, "0", None).await;
        for level in 1..30 {
            manager = add(db, &level.to_string(), Some(&manager)).await;
        }
        let before = scratch.queries.get();
        let members = all(db).await.unwrap();
        assert_eq!(scratch.queries.get() - before, 1);
        assert_eq!(crate::chart::OrgChart::new(members).depth(), 30);
    }
}
