//! Data access for facts. Every function takes the tenant's connection, so
//! there is no way to touch a tenant's facts without going through the
//! selector for that tenant.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, Order};
use sea_orm::{ActiveValue::Set, QueryOrder, QuerySelect};
use tenancy::selector::TenantConnection;
use tenancy::{Error, Result};

/// The `facts` table.
pub mod fact {
    use sea_orm::entity::prelude::*;

    /// One fact.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "facts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub text: String,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use fact::Model as Fact;

/// The longest fact text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Checks and normalises a fact text.
pub fn validate_text(text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::BadUserInput("text must not be empty".into()));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::BadUserInput(format!(
            "text must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Up to `limit` facts after `after`, oldest first (ids are UUIDv7).
pub async fn list(conn: &TenantConnection, after: Option<Uuid>, limit: u64) -> Result<Vec<Fact>> {
    let mut query = fact::Entity::find()
        .order_by_asc(fact::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(fact::Column::Id.gt(after));
    }
    Ok(query.all(conn.db()).await?)
}

/// The fact, or `NOT_FOUND` (also for another tenant's id: it is not in this
/// tenant's database).
pub async fn get(conn: &TenantConnection, id: Uuid) -> Result<Fact> {
    fact::Entity::find_by_id(id)
        .one(conn.db())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no fact {id}")))
}

/// One fact chosen at random, or `NOT_FOUND` when the tenant has none.
pub async fn random(conn: &TenantConnection) -> Result<Fact> {
    fact::Entity::find()
        .order_by(Expr::cust("RANDOM()"), Order::Asc)
        .one(conn.db())
        .await?
        .ok_or_else(|| Error::NotFound("this tenant has no facts yet".into()))
}

/// Stores a new fact.
pub async fn create(conn: &TenantConnection, text: &str) -> Result<Fact> {
    let now = Utc::now();
    let row = fact::ActiveModel {
        id: Set(Uuid::now_v7()),
        text: Set(validate_text(text)?),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(conn.db()).await?)
}

/// Replaces a fact's text.
pub async fn update(conn: &TenantConnection, id: Uuid, text: &str) -> Result<Fact> {
    let text = validate_text(text)?;
    let mut row: fact::ActiveModel = get(conn, id).await?.into();
    row.text = Set(text);
    row.updated_at = Set(Utc::now());
    Ok(row.update(conn.db()).await?)
}

/// Deletes a fact; `NOT_FOUND` when it does not exist for this tenant.
pub async fn delete(conn: &TenantConnection, id: Uuid) -> Result<()> {
    let result = fact::Entity::delete_by_id(id).exec(conn.db()).await?;
    if result.rows_affected == 0 {
        return Err(Error::NotFound(format!("no fact {id}")));
    }
    Ok(())
}
