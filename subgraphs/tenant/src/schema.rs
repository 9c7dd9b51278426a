//! The tenant subgraph's GraphQL schema: signup, the caller's tenant, and
//! its API tokens.

use std::sync::Arc;

use async_graphql::{
    ComplexObject, Context, EmptySubscription, ID, InputObject, Object, Schema, SimpleObject,
};
use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseConnection, QueryOrder, TransactionTrait};
use tenancy::argument::Argument;
use tenancy::events::{EVENT_VERSION, ServiceName, SignupEvent};
use tenancy::hop::tenant_of;
use tenancy::ids::parse_uuid;
use tenancy::{Error, Result, TenantId};
use tokio::sync::Notify;

use crate::signing::TokenSigner;
use crate::store::{api_token, outbox, tenant, tenant_service};

/// The tenant subgraph's schema.
pub type TenantSchema = Schema<Query, Mutation, EmptySubscription>;

/// The longest tenant or token name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest lifetime a minted token may ask for.
pub const MAX_TOKEN_DAYS: i64 = 365;

/// What the resolvers share.
pub struct TenantState {
    /// The TenantMetaDB.
    pub db: DatabaseConnection,
    /// Signs tokens.
    pub signer: Arc<TokenSigner>,
    /// Where signup events go.
    pub signups_topic: String,
    /// Lifetime of the token a signup returns.
    pub signup_token_days: i64,
    /// Wakes the outbox relay after a signup.
    pub relay_wakeup: Arc<Notify>,
}

/// The Federation v2 SDL this subgraph serves as `_service { sdl }`, for
/// composition checks without a running service.
pub fn sdl() -> String {
    tenancy::graphql::federation_sdl(Query, Mutation)
}

/// Builds the schema with federation enabled.
pub fn build(state: TenantState) -> TenantSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(state)
        .finish()
}

/// A tenant: the federated entity other subgraphs extend.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Tenant {
    /// The tenant's id.
    pub id: ID,
    /// Its display name.
    pub name: String,
    /// When it signed up.
    pub created_at: DateTime<Utc>,
}

impl From<tenant::Model> for Tenant {
    fn from(row: tenant::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name,
            created_at: row.created_at,
        }
    }
}

/// One app a tenant signed up for.
#[derive(SimpleObject, Clone, Debug)]
pub struct TenantService {
    /// `fact`, `org` or `todo`.
    pub name: String,
    /// `provisioning`, `ready` or `failed`, as the app last reported.
    pub status: String,
}

/// A token's record; the token itself is shown only when minted.
#[derive(SimpleObject, Clone, Debug)]
pub struct ApiToken {
    /// The token's id (its `jti`).
    pub id: ID,
    /// What the tenant called it.
    pub name: String,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_token::Model> for ApiToken {
    fn from(row: api_token::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[ComplexObject]
impl Tenant {
    /// The apps this tenant signed up for, with their database status.
    async fn services(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Vec<TenantService>>> {
        let state = ctx.data_unchecked::<TenantState>();
        let id = parse_uuid(&self.id, "id")?;
        let rows = tenant_service::Entity::find()
            .filter(tenant_service::Column::TenantId.eq(id))
            .order_by_asc(tenant_service::Column::Service)
            .all(&state.db)
            .await
            .map_err(Error::from)?;
        Ok(Some(
            rows.into_iter()
                .map(|row| TenantService {
                    name: row.service,
                    status: row.status,
                })
                .collect(),
        ))
    }

    /// The tenant's API tokens, newest first (never the tokens themselves).
    async fn api_tokens(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vec<ApiToken>>> {
        let state = ctx.data_unchecked::<TenantState>();
        let id = parse_uuid(&self.id, "id")?;
        let rows = api_token::Entity::find()
            .filter(api_token::Column::TenantId.eq(id))
            .order_by_desc(api_token::Column::CreatedAt)
            .all(&state.db)
            .await
            .map_err(Error::from)?;
        Ok(Some(rows.into_iter().map(ApiToken::from).collect()))
    }
}

/// Reads.
pub struct Query;

#[Object]
impl Query {
    /// The caller's tenant.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        let tenant = tenant_of(ctx)?;
        Ok(Some(find_tenant(ctx, tenant).await?))
    }

    /// Resolves `Tenant` references; only the caller's own tenant resolves.
    #[graphql(entity)]
    async fn find_tenant_by_id(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Tenant> {
        let tenant = tenant_of(ctx)?;
        if id.as_str() != tenant.to_string() {
            return Err(Error::NotFound("no such tenant".into()).into());
        }
        Ok(find_tenant(ctx, tenant).await?)
    }
}

/// A signup.
#[derive(InputObject)]
pub struct SignupInput {
    /// The tenant's display name (1–100 characters).
    pub name: String,
    /// The apps to provision: `fact`, `org`, `todo` (or `fact-app`, …).
    pub services: Vec<String>,
}

/// What a signup returns.
#[derive(SimpleObject)]
pub struct SignupPayload {
    /// The new tenant.
    pub tenant: Tenant,
    /// Its first API token.
    pub token: String,
}

/// A request for another token.
#[derive(InputObject)]
pub struct CreateApiTokenInput {
    /// What to call it (1–100 characters).
    pub name: String,
    /// Lifetime in days (1–365, default 30).
    pub expires_in_days: Option<i32>,
}

/// A freshly minted token: the only time it is shown.
#[derive(SimpleObject)]
pub struct CreatedApiToken {
    /// Its record.
    pub api_token: ApiToken,
    /// The token itself.
    pub token: String,
}

/// Writes.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates a tenant; its databases are provisioned in the background
    /// (watch `me { services { status } }`).
    async fn signup(
        &self,
        ctx: &Context<'_>,
        input: Argument<SignupInput>,
    ) -> async_graphql::Result<SignupPayload> {
        let input = input.into_inner()?;
        let state = ctx.data_unchecked::<TenantState>();
        let name = validate_name(&input.name, "name")?;
        let services = validate_services(&input.services)?;
        let (tenant, token) = signup(state, &name, &services).await?;
        Ok(SignupPayload { tenant, token })
    }

    /// Mints another token for the caller's tenant.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        input: Argument<CreateApiTokenInput>,
    ) -> async_graphql::Result<CreatedApiToken> {
        let input = input.into_inner()?;
        let state = ctx.data_unchecked::<TenantState>();
        let tenant = tenant_of(ctx)?;
        let name = validate_name(&input.name, "name")?;
        let days = i64::from(input.expires_in_days.unwrap_or(30));
        if !(1..=MAX_TOKEN_DAYS).contains(&days) {
            return Err(Error::BadUserInput(format!(
                "expiresInDays must be between 1 and {MAX_TOKEN_DAYS}"
            ))
            .into());
        }
        let (row, token) = mint_token(state, &state.db, tenant, &name, days).await?;
        Ok(CreatedApiToken {
            api_token: row.into(),
            token,
        })
    }

    /// Revokes one of the caller's tokens; it is refused from then on.
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiToken> {
        let state = ctx.data_unchecked::<TenantState>();
        let tenant = tenant_of(ctx)?;
        let id = parse_uuid(&id, "id")?;
        let row = api_token::Entity::find_by_id(id)
            .filter(api_token::Column::TenantId.eq(tenant.as_uuid()))
            .one(&state.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("no token {id}")))?;
        if row.revoked_at.is_some() {
            return Ok(row.into());
        }
        let mut update: api_token::ActiveModel = row.into();
        update.revoked_at = Set(Some(Utc::now()));
        let row = update.update(&state.db).await.map_err(Error::from)?;
        tracing::info!(target: "tenant::tokens", tenant_id = %tenant, token_id = %id, "token revoked");
        Ok(row.into())
    }
}

async fn find_tenant(ctx: &Context<'_>, tenant: TenantId) -> Result<Tenant> {
    let state = ctx.data_unchecked::<TenantState>();
    let row = tenant::Entity::find_by_id(tenant.as_uuid())
        .one(&state.db)
        .await?;
    Ok(row
        .ok_or_else(|| Error::NotFound("no such tenant".into()))?
        .into())
}

/// Trims a name and checks its length and characters.
pub fn validate_name(name: &str, field: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::BadUserInput(format!("{field} must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::BadUserInput(format!(
            "{field} must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::BadUserInput(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(name.to_owned())
}

/// Canonicalises service names; unknown or repeated names are refused.
pub fn validate_services(names: &[String]) -> Result<Vec<ServiceName>> {
    let mut services = Vec::with_capacity(names.len());
    for name in names {
        let service = ServiceName::parse(name)?;
        if services.contains(&service) {
            return Err(Error::BadUserInput(format!(
                "service {} is listed twice",
                service.as_str()
            )));
        }
        services.push(service);
    }
    Ok(services)
}

/// Writes the tenant, its services, its first token and the signup event in
/// one transaction, then wakes the relay. Returns the tenant and its token.
pub async fn signup(
    state: &TenantState,
    name: &str,
    services: &[ServiceName],
) -> Result<(Tenant, String)> {
    let tenant_id = TenantId::new();
    let now = Utc::now();
    let transaction = state.db.begin().await?;

    let row = tenant::ActiveModel {
        id: Set(tenant_id.as_uuid()),
        name: Set(name.to_owned()),
        created_at: Set(now),
    }
    .insert(&transaction)
    .await?;
    for service in services {
        tenant_service::ActiveModel {
            tenant_id: Set(tenant_id.as_uuid()),
            service: Set(service.as_str().to_owned()),
            status: Set("provisioning".to_owned()),
            error: Set(None),
            updated_at: Set(now),
        }
        .insert(&transaction)
        .await?;
    }
    let (_, token) = mint_token(
        state,
        &transaction,
        tenant_id,
        "default",
        state.signup_token_days,
    )
    .await?;

    let event = SignupEvent {
        event_id: Uuid::now_v7(),
        version: EVENT_VERSION,
        tenant_id,
        name: name.to_owned(),
        services: services.iter().map(|s| s.as_str().to_owned()).collect(),
        occurred_at: now,
    };
    outbox::ActiveModel {
        id: Set(event.event_id),
        topic: Set(state.signups_topic.clone()),
        message_key: Set(tenant_id.to_string()),
        payload: Set(serde_json::to_string(&event).map_err(anyhow::Error::from)?),
        created_at: Set(now),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
    }
    .insert(&transaction)
    .await?;
    transaction.commit().await?;

    tracing::info!(target: "tenant::signup", tenant_id = %tenant_id, services = ?event.services, "tenant signed up");
    state.relay_wakeup.notify_one();
    Ok((row.into(), token))
}

/// Records a token and signs it.
async fn mint_token<C: ConnectionTrait>(
    state: &TenantState,
    db: &C,
    tenant: TenantId,
    name: &str,
    days: i64,
) -> Result<(api_token::Model, String)> {
    let now = Utc::now();
    let expires_at = now + Duration::days(days);
    let jti = Uuid::new_v4();
    let token = state.signer.sign(tenant, jti, now, expires_at)?;
    let row = api_token::ActiveModel {
        id: Set(jti),
        tenant_id: Set(tenant.as_uuid()),
        name: Set(name.to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok((row, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Acme ", "name").unwrap(), "Acme");
        assert!(validate_name("   ", "name").is_err());
        assert!(validate_name(&"x".repeat(101), "name").is_err());
        assert!(validate_name("a\u{0}b", "name").is_err());
    }

    #[test]
    fn unknown_and_repeated_services_are_refused() {
        let names = |list: &[&str]| list.iter().map(|s| String::from(*s)).collect::<Vec<_>>();
        assert_eq!(
            validate_services(&names(&["fact-app", "todo"])).unwrap(),
            [ServiceName::Fact, ServiceName::Todo]
        );
        assert_eq!(
            validate_services(&names(&["fact", "fact-app"]))
                .unwrap_err()
                .code(),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            validate_services(&names(&["billing"])).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
    }
}
