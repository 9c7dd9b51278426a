//! The todo subgraph's GraphQL schema.

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

use crate::store::{self, TodoChange};

/// The todo subgraph's schema.
pub type TodoSchema = Schema<Query, Mutation, EmptySubscription>;

/// The Federation v2 SDL this subgraph serves as `_service { sdl }`, for
/// composition checks without a running service.
pub fn sdl() -> String {
    tenancy::graphql::federation_sdl(Query, Mutation)
}

/// Builds the schema with federation enabled.
pub fn build(selector: ConnectionSelector) -> TodoSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(selector)
        .finish()
}

/// A TODO, as clients see it.
#[derive(SimpleObject, Clone, Debug)]
pub struct Todo {
    /// The TODO's id.
    pub id: ID,
    /// What is to be done (1–500 characters).
    pub title: String,
    /// Whether it is done.
    pub done: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<store::Todo> for Todo {
    fn from(row: store::Todo) -> Self {
        Self {
            id: ID(row.id.to_string()),
            title: row.title,
            done: row.done,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The federated tenant, extended with its TODOs.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Tenant {
    /// The tenant's id (the entity key).
    pub id: ID,
}

#[ComplexObject]
impl Tenant {
    /// The tenant's TODOs, oldest first, optionally only done or open ones.
    async fn todos(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        done: Option<bool>,
    ) -> async_graphql::Result<Option<Connection<String, Todo>>> {
        // Only the caller's own tenant can be extended with its TODOs.
        let conn = connection(ctx).await?;
        if self.id.as_str() != conn.tenant().to_string() {
            return Err(Error::NotFound("no such tenant".into()).into());
        }
        Ok(Some(
            list_todos(&conn, first, after.as_deref(), done).await?,
        ))
    }
}

/// Reads.
pub struct Query;

#[Object]
impl Query {
    /// The caller's TODOs, oldest first (Relay pagination); `done` keeps only
    /// done (`true`) or open (`false`) ones.
    async fn todos(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        done: Option<bool>,
    ) -> async_graphql::Result<Option<Connection<String, Todo>>> {
        let conn = connection(ctx).await?;
        Ok(Some(
            list_todos(&conn, first, after.as_deref(), done).await?,
        ))
    }

    /// One TODO by id; `NOT_FOUND` when the caller has no such TODO.
    async fn todo(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Todo>> {
        let id = parse_uuid(&id, "id")?;
        let conn = connection(ctx).await?;
        Ok(Some(store::get(&conn, id).await?.into()))
    }

    /// Resolves `Tenant` references from other subgraphs.
    #[graphql(entity)]
    async fn find_tenant_by_id(&self, id: ID) -> Tenant {
        Tenant { id }
    }
}

/// A new TODO.
#[derive(InputObject)]
pub struct CreateTodoInput {
    /// What is to be done (1–500 characters, trimmed).
    pub title: String,
    /// Whether it is already done (default `false`).
    #[graphql(default = false)]
    pub done: bool,
}

/// A change to a TODO: give at least one field.
#[derive(InputObject)]
pub struct UpdateTodoInput {
    /// The new title (1–500 characters, trimmed).
    pub title: Option<String>,
    /// The new state.
    pub done: Option<bool>,
}

/// Writes.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Stores a new TODO.
    async fn create_todo(
        &self,
        ctx: &Context<'_>,
        input: Argument<CreateTodoInput>,
    ) -> async_graphql::Result<Todo> {
        let input = input.into_inner()?;
        store::validate_title(&input.title)?;
        let conn = connection(ctx).await?;
        Ok(store::create(&conn, &input.title, input.done).await?.into())
    }

    /// Changes a TODO's title, state or both.
    async fn update_todo(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: Argument<UpdateTodoInput>,
    ) -> async_graphql::Result<Todo> {
        let id = parse_uuid(&id, "id")?;
        let input = input.into_inner()?;
        let change = TodoChange {
            title: input.title,
            done: input.done,
        };
        let conn = connection(ctx).await?;
        Ok(store::update(&conn, id, change).await?.into())
    }

    /// Deletes a TODO and returns its id.
    async fn delete_todo(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let uuid = parse_uuid(&id, "id")?;
        let conn = connection(ctx).await?;
        store::delete(&conn, uuid).await?;
        Ok(ID(uuid.to_string()))
    }
}

/// The caller's tenant database.
async fn connection(ctx: &Context<'_>) -> Result<TenantConnection> {
    tenancy::selector::request_connection(ctx).await
}

async fn list_todos(
    conn: &TenantConnection,
    first: Option<i32>,
    after: Option<&str>,
    done: Option<bool>,
) -> Result<Connection<String, Todo>> {
    let page = PageRequest::new(first, after)?;
    let rows = store::list(conn, done, page.after, page.fetch_limit()).await?;
    let todos = rows.into_iter().map(Todo::from).collect();
    Ok(page.connection(todos, |todo: &Todo| todo.id.parse().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdl_has_the_contract_fields_and_extends_the_tenant_entity() {
        let sdl = sdl();
        for line in [
            "todos(first: Int, after: String, done: Boolean): TodoConnection\n",
            "todo(id: ID!): Todo\n",
            "createTodo(input: CreateTodoInput!): Todo!",
            "updateTodo(id: ID!, input: UpdateTodoInput!): Todo!",
            "deleteTodo(id: ID!): ID!",
            "done: Boolean! = false",
            "type Tenant @key(fields: \"id\")",
        ] {
            assert!(sdl.contains(line), "missing {line:?} in\n{sdl}");
        }
    }
}
