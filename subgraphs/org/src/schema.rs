//! The org subgraph's GraphQL schema.
//!
//! `manager`, `reports` and `orgChart` read the whole chart in one query
//! ([`OrgChart`]), loaded at most once per root field: every member a root
//! field returns, and every member reached from it, shares one [`ChartSlot`].
//! So a chart of any size and depth costs one query, and the fields under a
//! mutation see the chart as the mutation left it.
//!
//! The schema has no extensions on purpose: with any extension, async-graphql
//! runs every field through the extension chain, which deepens the stack per
//! level of nesting, and chart queries nest deeply.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{
    ComplexObject, Context, EmptySubscription, ID, InputObject, MaybeUndefined, Object, Schema,
    SimpleObject,
};
use chrono::{DateTime, Utc};
use tenancy::argument::Argument;
use tenancy::ids::parse_uuid;
use tenancy::paging::PageRequest;
use tenancy::selector::ConnectionSelector;
use tenancy::{Error, Result};
use uuid::Uuid;

use crate::chart::OrgChart;
use crate::store::{self, ManagerChange, MemberChange, NewMember, OrgDatabase, QueryCounter};

/// The org subgraph's schema.
pub type OrgSchema = Schema<Query, Mutation, EmptySubscription>;

/// The Federation v2 SDL this subgraph serves as `_service { sdl }`, for
/// composition checks without a running service.
pub fn sdl() -> String {
    tenancy::graphql::federation_sdl(Query, Mutation)
}

/// How deeply selections may nest. A chart query spells out one `reports`
/// level per level it wants, so the default (32) would cut charts short;
/// async-graphql's parser refuses more than 64 nested selection sets anyway,
/// so a query can fetch about 60 levels, and the stack a query needs stays
/// bounded (see the README on worker stacks).
pub const MAX_SELECTION_NESTING: usize = 64;

/// Builds the schema with federation enabled; every statement its resolvers
/// run is counted in `queries`.
pub fn build(selector: ConnectionSelector, queries: QueryCounter) -> OrgSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .limit_recursive_depth(MAX_SELECTION_NESTING)
        .data(selector)
        .data(queries)
        .finish()
}

/// A member of the org chart, as clients see it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct OrgMember {
    /// The member's id.
    pub id: ID,
    /// Their name (1–200 characters).
    pub name: String,
    /// Their job title (1–200 characters).
    pub title: String,
    /// The id of the member they report to; null for the top of the chart.
    pub manager_id: Option<ID>,
    /// When they were added.
    pub created_at: DateTime<Utc>,
    /// When they last changed.
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    key: Uuid,
    #[graphql(skip)]
    manager_key: Option<Uuid>,
    #[graphql(skip)]
    chart: ChartSlot,
}

impl OrgMember {
    /// The member as clients see it, reading `manager` and `reports` from
    /// `chart`.
    fn new(row: &store::Member, chart: &ChartSlot) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name.clone(),
            title: row.title.clone(),
            manager_id: row.manager_id.map(|id| ID(id.to_string())),
            created_at: row.created_at,
            updated_at: row.updated_at,
            key: row.id,
            manager_key: row.manager_id,
            chart: chart.clone(),
        }
    }

    /// A member read on its own; its chart loads if `manager` or `reports`
    /// is asked for.
    fn alone(row: &store::Member) -> Self {
        Self::new(row, &ChartSlot::default())
    }
}

#[ComplexObject]
impl OrgMember {
    /// The member they report to; null for the top of the chart.
    async fn manager(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OrgMember>> {
        let Some(manager) = self.manager_key else {
            return Ok(None);
        };
        let chart = self.chart.get(ctx).await?;
        Ok(chart
            .member(manager)
            .map(|member| OrgMember::new(member, &self.chart)))
    }

    /// The members who report to them directly, oldest first.
    async fn reports(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrgMember>> {
        let chart = self.chart.get(ctx).await?;
        Ok(chart
            .reports(self.key)
            .map(|member| OrgMember::new(member, &self.chart))
            .collect())
    }
}

/// The federated tenant, extended with its org chart.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Tenant {
    /// The tenant's id (the entity key).
    pub id: ID,
}

#[ComplexObject]
impl Tenant {
    /// The top of the tenant's org chart: the members without a manager,
    /// each with its `reports`.
    async fn org_chart(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vec<OrgMember>>> {
        // Only the caller's own tenant can be extended with its chart.
        let db = database(ctx).await?;
        if self.id.as_str() != db.tenant().to_string() {
            return Err(Error::NotFound("no such tenant".into()).into());
        }
        Ok(Some(roots(ctx).await?))
    }
}

/// Reads.
pub struct Query;

#[Object]
impl Query {
    /// The caller's org members, oldest first (Relay pagination).
    async fn org_members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Option<Connection<String, OrgMember>>> {
        let page = PageRequest::new(first, after.as_deref())?;
        let db = database(ctx).await?;
        let rows = store::list(&db, page.after, page.fetch_limit()).await?;
        let chart = ChartSlot::default();
        let members = rows.iter().map(|row| OrgMember::new(row, &chart)).collect();
        Ok(Some(
            page.connection(members, |member: &OrgMember| member.key),
        ))
    }

    /// One member by id; `NOT_FOUND` when the caller has no such member.
    async fn org_member(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<OrgMember>> {
        let id = parse_uuid(&id, "id")?;
        let db = database(ctx).await?;
        Ok(Some(OrgMember::alone(&store::get(&db, id).await?)))
    }

    /// The top of the caller's org chart: the members without a manager,
    /// oldest first, each with its `reports` to any depth.
    async fn org_chart(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vec<OrgMember>>> {
        Ok(Some(roots(ctx).await?))
    }

    /// Every member of the caller's chart in chart order: each root, then
    /// its reports depth first, siblings oldest first, so a member always
    /// comes after its manager. Rebuilding the tree from `managerId` gives
    /// the whole chart, however deep, where `orgChart` needs one `reports`
    /// selection per level.
    async fn org_chart_members(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Vec<OrgMember>>> {
        let chart = ChartSlot::default();
        let loaded = chart.get(ctx).await?;
        Ok(Some(
            loaded
                .in_chart_order()
                .into_iter()
                .map(|member| OrgMember::new(member, &chart))
                .collect(),
        ))
    }

    /// Resolves `Tenant` references from other subgraphs.
    #[graphql(entity)]
    async fn find_tenant_by_id(&self, id: ID) -> Tenant {
        Tenant { id }
    }
}

/// A new member of the org chart.
#[derive(InputObject)]
pub struct CreateOrgMemberInput {
    /// Their name (1–200 characters, trimmed).
    pub name: String,
    /// Their job title (1–200 characters, trimmed).
    pub title: String,
    /// Who they report to: a member of the same tenant; omit or null for the
    /// top of the chart.
    pub manager_id: Option<ID>,
}

/// A change to a member: give at least one field.
#[derive(InputObject)]
pub struct UpdateOrgMemberInput {
    /// The new name (1–200 characters, trimmed).
    pub name: Option<String>,
    /// The new job title (1–200 characters, trimmed).
    pub title: Option<String>,
    /// The new manager; an explicit null moves the member to the top of the
    /// chart, leaving it out keeps the manager.
    pub manager_id: MaybeUndefined<ID>,
}

/// Writes.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Adds a member. `NOT_FOUND` when the manager is not one of the
    /// caller's members.
    async fn create_org_member(
        &self,
        ctx: &Context<'_>,
        input: Argument<CreateOrgMemberInput>,
    ) -> async_graphql::Result<OrgMember> {
        let input = input.into_inner()?;
        let new = NewMember {
            name: store::validate_text("name", &input.name)?,
            title: store::validate_text("title", &input.title)?,
            manager_id: input
                .manager_id
                .map(|id| parse_uuid(&id, "managerId"))
                .transpose()?,
        };
        let db = database(ctx).await?;
        Ok(OrgMember::alone(&store::create(&db, new).await?))
    }

    /// Changes a member. `CONFLICT` when the new manager is the member or
    /// one of their direct or indirect reports; `NOT_FOUND` when it is not
    /// one of the caller's members.
    async fn update_org_member(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: Argument<UpdateOrgMemberInput>,
    ) -> async_graphql::Result<OrgMember> {
        let id = parse_uuid(&id, "id")?;
        let input = input.into_inner()?;
        let manager = match input.manager_id {
            MaybeUndefined::Undefined => ManagerChange::Keep,
            MaybeUndefined::Null => ManagerChange::Clear,
            MaybeUndefined::Value(manager) => {
                ManagerChange::Set(parse_uuid(&manager, "managerId")?)
            }
        };
        let change = MemberChange {
            name: input.name,
            title: input.title,
            manager,
        };
        let db = database(ctx).await?;
        Ok(OrgMember::alone(&store::update(&db, id, change).await?))
    }

    /// Removes a member and returns their id. A member with reports is
    /// refused with `CONFLICT` unless `reassignReportsTo` names who the
    /// reports move to: a member other than this one and outside their part
    /// of the chart.
    async fn delete_org_member(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reassign_reports_to: Option<ID>,
    ) -> async_graphql::Result<ID> {
        let id = parse_uuid(&id, "id")?;
        let successor = reassign_reports_to
            .map(|successor| parse_uuid(&successor, "reassignReportsTo"))
            .transpose()?;
        let db = database(ctx).await?;
        store::delete(&db, id, successor).await?;
        Ok(ID(id.to_string()))
    }
}

/// The caller's org database, its statements counted.
async fn database(ctx: &Context<'_>) -> Result<OrgDatabase> {
    let conn = tenancy::selector::request_connection(ctx).await?;
    Ok(OrgDatabase::new(
        &conn,
        ctx.data_unchecked::<QueryCounter>(),
    ))
}

/// The roots of the caller's chart, sharing the chart they came from.
async fn roots(ctx: &Context<'_>) -> Result<Vec<OrgMember>> {
    let chart = ChartSlot::default();
    let loaded = chart.get(ctx).await?;
    Ok(loaded
        .roots()
        .map(|member| OrgMember::new(member, &chart))
        .collect())
}

/// The caller's chart, loaded on first use and shared by every member that
/// holds a clone of the slot. Concurrent resolvers wait for the first load
/// instead of each running their own.
#[derive(Clone, Debug, Default)]
struct ChartSlot(Arc<tokio::sync::OnceCell<Arc<OrgChart>>>);

impl ChartSlot {
    async fn get(&self, ctx: &Context<'_>) -> Result<Arc<OrgChart>> {
        if let Some(chart) = self.0.get() {
            return Ok(chart.clone());
        }
        // Boxed: the load's future (connection, query) is large, and
        // inlined into every `manager` and `reports` future it would cost
        // stack at each level of a deep chart query.
        Box::pin(self.load(ctx)).await
    }

    async fn load(&self, ctx: &Context<'_>) -> Result<Arc<OrgChart>> {
        let chart = self
            .0
            .get_or_try_init(|| async {
                let db = database(ctx).await?;
                Ok::<_, Error>(Arc::new(OrgChart::new(store::all(&db).await?)))
            })
            .await?;
        Ok(chart.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdl_has_the_contract_fields_and_extends_the_tenant_entity() {
        let sdl = sdl();
        for line in [
            "orgMembers(first: Int, after: String): OrgMemberConnection\n",
            "orgMember(id: ID!): OrgMember\n",
            "orgChart: [OrgMember!]\n",
            "orgChartMembers: [OrgMember!]\n",
            "createOrgMember(input: CreateOrgMemberInput!): OrgMember!",
            "updateOrgMember(id: ID!, input: UpdateOrgMemberInput!): OrgMember!",
            "deleteOrgMember(id: ID!, reassignReportsTo: ID): ID!",
            "manager: OrgMember",
            "reports: [OrgMember!]!",
            "type Tenant @key(fields: \"id\")",
        ] {
            assert!(sdl.contains(line), "missing {line:?} in\n{sdl}");
        }
    }
}
