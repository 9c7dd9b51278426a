//! Data access for TODOs. Every function takes the tenant's connection, so
//! there is no way to touch a tenant's TODOs without going through the
//! selector for that tenant.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder, QuerySelect};
use tenancy::selector::TenantConnection;
use tenancy::{Error, Result};

/// The `todos` table.
pub mod todo {
    use sea_orm::entity::prelude::*;

    /// One TODO.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "todos")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub title: String,
        pub done: bool,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use todo::Model as Todo;

/// The longest title accepted, in characters (after trimming).
pub const MAX_TITLE_CHARS: usize = 500;

/// A change to a TODO: each field that is `Some` is replaced.
#[derive(Clone, Debug, Default)]
pub struct TodoChange {
    /// The new title.
    pub title: Option<String>,
    /// The new state.
    pub done: Option<bool>,
}

/// Checks and normalises a title: trimmed, 1–500 characters.
pub fn validate_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() {
        return Err(Error::BadUserInput("title must not be empty".into()));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Error::BadUserInput(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title.to_owned())
}

/// Up to `limit` TODOs after `after`, oldest first (ids are UUIDv7), only
/// those with `done` equal to the filter when one is given.
pub async fn list(
    conn: &TenantConnection,
    done: Option<bool>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Todo>> {
    let mut query = todo::Entity::find()
        .order_by_asc(todo::Column::Id)
        .limit(limit);
    if let Some(done) = done {
        query = query.filter(todo::Column::Done.eq(done));
    }
    if let Some(after) = after {
        query = query.filter(todo::Column::Id.gt(after));
    }
    Ok(query.all(conn.db()).await?)
}

/// The TODO, or `NOT_FOUND` (also for another tenant's id: it is not in this
/// tenant's database).
pub async fn get(conn: &TenantConnection, id: Uuid) -> Result<Todo> {
    todo::Entity::find_by_id(id)
        .one(conn.db())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no todo {id}")))
}

/// Stores a new TODO.
pub async fn create(conn: &TenantConnection, title: &str, done: bool) -> Result<Todo> {
    let now = Utc::now();
    let row = todo::ActiveModel {
        id: Set(Uuid::now_v7()),
        title: Set(validate_title(title)?),
        done: Set(done),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(conn.db()).await?)
}

/// Applies `change`; a change that names no field is `BAD_USER_INPUT`.
pub async fn update(conn: &TenantConnection, id: Uuid, change: TodoChange) -> Result<Todo> {
    // Validate everything before touching the database.
    if change.title.is_none() && change.done.is_none() {
        return Err(Error::BadUserInput(
            "the change names no field: give title or done".into(),
        ));
    }
    let title = change.title.as_deref().map(validate_title).transpose()?;

    let mut row: todo::ActiveModel = get(conn, id).await?.into();
    if let Some(title) = title {
        row.title = Set(title);
    }
    if let Some(done) = change.done {
        row.done = Set(done);
    }
    row.updated_at = Set(Utc::now());
    // A concurrent delete between the read and the write is NOT_FOUND (the
    // kit's conversion of `RecordNotUpdated`).
    Ok(row.update(conn.db()).await?)
}

/// Deletes a TODO; `NOT_FOUND` when it does not exist for this tenant.
pub async fn delete(conn: &TenantConnection, id: Uuid) -> Result<()> {
    let result = todo::Entity::delete_by_id(id).exec(conn.db()).await?;
    if result.rows_affected == 0 {
        return Err(Error::NotFound(format!("no todo {id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(validate_title("  buy milk \n").unwrap(), "buy milk");
        assert_eq!(validate_title(" \t ").unwrap_err().code(), "BAD_USER_INPUT");
        assert!(validate_title(&"é".repeat(MAX_TITLE_CHARS)).is_ok());
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(validate_title(&long).unwrap_err().code(), "BAD_USER_INPUT");
    }
}
