//! The fact subgraph's GraphQL schema.

use async_graphql::connection::Connection;
use async_graphql::{
    ComplexObject, Context, EmptySubscription, ID, InputObject, Object, Schema, SimpleObject,
};
use chrono::{DateTime, Utc};
use tenancy::argument::Argument;
use tenancy::ids::parse_uuid;
use tenancy::paging::PageRequest;
use tenancy::selector::{ConnectionSelector, TenantConnection};
use tenancy::{Error, Result};

use crate::store;

/// The fact subgraph's schema.
pub type FactSchema = Schema<Query, Mutation, EmptySubscription>;

/// The Federation v2 SDL this subgraph serves as `_service { sdl }`, for
/// composition checks without a running service.
pub fn sdl() -> String {
    tenancy::graphql::federation_sdl(Query, Mutation)
}

/// Builds the schema with federation enabled.
pub fn build(selector: ConnectionSelector) -> FactSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(selector)
        .finish()
}

/// A fact, as clients see it.
#[derive(SimpleObject, Clone, Debug)]
pub struct Fact {
    /// The fact's id.
    pub id: ID,
    /// The fact itself.
    pub text: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<store::Fact> for Fact {
    fn from(row: store::Fact) -> Self {
        Self {
            id: ID(row.id.to_string()),
            text: row.text,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The federated tenant, extended with its facts.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Tenant {
    /// The tenant's id (the entity key).
    pub id: ID,
}

#[ComplexObject]
impl Tenant {
    /// The tenant's facts, oldest first.
    async fn facts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Option<Connection<String, Fact>>> {
        // Only the caller's own tenant can be extended with its facts.
        let conn = connection(ctx).await?;
        if self.id.as_str() != conn.tenant().to_string() {
            return Err(Error::NotFound("no such tenant".into()).into());
        }
        Ok(Some(list_facts(&conn, first, after.as_deref()).await?))
    }
}

/// Reads.
pub struct Query;

#[Object]
impl Query {
    /// The caller's facts, oldest first (Relay pagination).
    async fn facts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Option<Connection<String, Fact>>> {
        let conn = connection(ctx).await?;
        Ok(Some(list_facts(&conn, first, after.as_deref()).await?))
    }

    /// One fact by id; `NOT_FOUND` when the caller has no such fact.
    async fn fact(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Fact>> {
        let id = parse_uuid(&id, "id")?;
        let conn = connection(ctx).await?;
        Ok(Some(store::get(&conn, id).await?.into()))
    }

    /// A random fact; `NOT_FOUND` when the caller has none.
    async fn random_fact(&self, ctx: &Context<'_>) -> async_graphql::Result<Fact> {
        let conn = connection(ctx).await?;
        Ok(store::random(&conn).await?.into())
    }

    /// Resolves `Tenant` references from other subgraphs.
    #[graphql(entity)]
    async fn find_tenant_by_id(&self, id: ID) -> Tenant {
        Tenant { id }
    }
}

/// A new fact.
#[derive(InputObject)]
pub struct CreateFactInput {
    /// The fact (1–2000 characters).
    pub text: String,
}

/// A change to a fact.
#[derive(InputObject)]
pub struct UpdateFactInput {
    /// The new text (1–2000 characters).
    pub text: String,
}

/// Writes.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Stores a new fact.
    async fn create_fact(
        &self,
        ctx: &Context<'_>,
        input: Argument<CreateFactInput>,
    ) -> async_graphql::Result<Fact> {
        let input = input.into_inner()?;
        store::validate_text(&input.text)?;
        let conn = connection(ctx).await?;
        Ok(store::create(&conn, &input.text).await?.into())
    }

    /// Changes a fact's text.
    async fn update_fact(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: Argument<UpdateFactInput>,
    ) -> async_graphql::Result<Fact> {
        let id = parse_uuid(&id, "id")?;
        let input = input.into_inner()?;
        let conn = connection(ctx).await?;
        Ok(store::update(&conn, id, &input.text).await?.into())
    }

    /// Deletes a fact and returns its id.
    async fn delete_fact(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let uuid = parse_uuid(&id, "id")?;
        let conn = connection(ctx).await?;
        store::delete(&conn, uuid).await?;
        Ok(id)
    }
}

/// The caller's tenant database.
async fn connection(ctx: &Context<'_>) -> Result<TenantConnection> {
    tenancy::selector::request_connection(ctx).await
}

async fn list_facts(
    conn: &TenantConnection,
    first: Option<i32>,
    after: Option<&str>,
) -> Result<Connection<String, Fact>> {
    let page = PageRequest::new(first, after)?;
    let rows = store::list(conn, page.after, page.fetch_limit()).await?;
    let facts = rows.into_iter().map(Fact::from).collect();
    Ok(page.connection(facts, |fact: &Fact| fact.id.parse().unwrap_or_default()))
}
