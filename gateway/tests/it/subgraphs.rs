//! Small in-process subgraphs shaped like the real tenant and fact
//! subgraphs: federation enabled, `Tenant` an entity, the hop secret
//! checked and the tenant taken from `X-Tenant-ID`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_graphql::{
    Context, EmptySubscription, Error, ErrorExtensions, ID, InputObject, Object, ObjectType,
    Result, Schema, SimpleObject,
};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::support::{HOP_SECRET, TestKeys};

/// The tenant a request is for, as the subgraph received it.
#[derive(Clone, Copy)]
struct TenantId(Uuid);

/// What the subgraphs observed, for assertions.
#[derive(Default)]
pub struct Observed {
    /// Every `X-Tenant-ID` header value received, in order.
    pub tenant_headers: Mutex<Vec<Option<String>>>,
    /// Every `X-Tenant-Services` header value received, in order.
    pub services_headers: Mutex<Vec<Option<String>>>,
    /// Bodies of the GraphQL requests received.
    pub queries: Mutex<Vec<String>>,
    /// Variables of the GraphQL requests received.
    pub variables: Mutex<Vec<serde_json::Value>>,
}

/// Behaviour the tests switch per tenant.
#[derive(Default)]
pub struct Switches {
    /// Tenants whose fact requests fail with the given code.
    pub fact_error_for_tenant: Mutex<HashMap<Uuid, &'static str>>,
    /// Token ids the fake tenant service reports as revoked.
    pub revoked_tokens: Mutex<HashSet<Uuid>>,
    /// Token status calls answered, for cache assertions.
    pub token_status_calls: Mutex<usize>,
    /// Keys published next to the main one, by key id (rotation tests).
    pub extra_keys: Mutex<Vec<(String, Arc<TestKeys>)>>,
    /// JWKS requests answered, for rate-limit assertions.
    pub jwks_calls: Mutex<usize>,
    /// The tenant the token status names for a token id (none by default).
    pub token_tenants: Mutex<HashMap<Uuid, Uuid>>,
}

/// The apps the fake tenant service reports for every active token.
pub const TENANT_SERVICES: [&str; 2] = ["fact", "todo"];

fn fixed_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn tenant_of(context: &Context<'_>) -> Result<Uuid> {
    context
        .data_opt::<TenantId>()
        .map(|tenant| tenant.0)
        .ok_or_else(|| Error::new("no tenant").extend_with(|_, e| e.set("code", "UNAUTHENTICATED")))
}

fn coded(message: &str, code: &'static str) -> Error {
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}

// ---------------------------------------------------------------- tenant

pub mod tenant {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct TenantService {
        pub name: String,
        pub status: String,
    }

    #[derive(SimpleObject, Clone)]
    pub struct ApiToken {
        pub id: ID,
        pub name: String,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub revoked_at: Option<DateTime<Utc>>,
    }

    #[derive(SimpleObject, Clone)]
    pub struct Tenant {
        pub id: ID,
        pub name: String,
        pub created_at: DateTime<Utc>,
        pub services: Vec<TenantService>,
        pub api_tokens: Vec<ApiToken>,
    }

    pub fn tenant(id: Uuid) -> Tenant {
        Tenant {
            id: ID(id.to_string()),
            name: "Acme".to_owned(),
            created_at: fixed_time(),
            services: vec![TenantService {
                name: "fact".into(),
                status: "ready".into(),
            }],
            api_tokens: vec![ApiToken {
                id: ID("7d0e5e2a-0000-4000-8000-000000000001".into()),
                name: "first".into(),
                created_at: fixed_time(),
                expires_at: fixed_time(),
                revoked_at: None,
            }],
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn me(&self, context: &Context<'_>) -> Result<Option<Tenant>> {
            Ok(Some(tenant(tenant_of(context)?)))
        }

        #[graphql(entity)]
        async fn find_tenant_by_id(&self, id: ID) -> Tenant {
            tenant(id.parse().unwrap_or_default())
        }
    }

    #[derive(InputObject)]
    pub struct SignupInput {
        pub name: String,
        pub services: Vec<String>,
    }

    #[derive(SimpleObject)]
    pub struct SignupPayload {
        pub tenant: Tenant,
        pub token: String,
    }

    #[derive(InputObject)]
    pub struct CreateApiTokenInput {
        pub name: String,
        pub expires_in_days: Option<i32>,
    }

    #[derive(SimpleObject)]
    pub struct CreatedApiToken {
        pub api_token: ApiToken,
        pub token: String,
    }

    pub struct Mutation;

    #[Object]
    impl Mutation {
        async fn signup(&self, context: &Context<'_>, input: SignupInput) -> Result<SignupPayload> {
            if input.name.is_empty() {
                return Err(coded("name must not be empty", "BAD_USER_INPUT"));
            }
            if context.data_opt::<TenantId>().is_some() {
                return Err(coded("signup received a tenant header", "INTERNAL"));
            }
            let mut created = tenant(Uuid::new_v4());
            created.name = input.name;
            created.services = input
                .services
                .iter()
                .map(|name| TenantService {
                    name: name.trim_end_matches("-app").to_owned(),
                    status: "provisioning".into(),
                })
                .collect();
            Ok(SignupPayload {
                tenant: created,
                token: "signup-token".into(),
            })
        }

        async fn create_api_token(
            &self,
            context: &Context<'_>,
            input: CreateApiTokenInput,
        ) -> Result<CreatedApiToken> {
            tenant_of(context)?;
            Ok(CreatedApiToken {
                api_token: ApiToken {
                    id: ID(Uuid::new_v4().to_string()),
                    name: input.name,
                    created_at: fixed_time(),
                    expires_at: fixed_time()
                        + chrono::Duration::days(input.expires_in_days.unwrap_or(30).into()),
                    revoked_at: None,
                },
                token: "new-token".into(),
            })
        }

        async fn revoke_api_token(&self, context: &Context<'_>, id: ID) -> Result<ApiToken> {
            tenant_of(context)?;
            if id.parse::<Uuid>().is_err() {
                return Err(coded("malformed id", "BAD_USER_INPUT"));
            }
            Ok(ApiToken {
                id,
                name: "ci".into(),
                created_at: fixed_time(),
                expires_at: fixed_time(),
                revoked_at: Some(fixed_time()),
            })
        }
    }

    pub fn schema() -> Schema<Query, Mutation, EmptySubscription> {
        Schema::build(Query, Mutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

// ---------------------------------------------------------------- fact

pub mod fact {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    pub struct Fact {
        pub id: ID,
        pub text: String,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        #[graphql(skip)]
        pub owner: Uuid,
    }

    #[async_graphql::ComplexObject]
    impl Fact {
        /// The tenant that owns the fact: an entity reference the tenant
        /// subgraph resolves.
        async fn owner(&self) -> Tenant {
            Tenant { id: self.owner }
        }
    }

    #[derive(SimpleObject)]
    pub struct FactEdge {
        pub cursor: String,
        pub node: Fact,
    }

    #[derive(SimpleObject)]
    pub struct PageInfo {
        pub has_next_page: bool,
        pub end_cursor: Option<String>,
    }

    #[derive(SimpleObject)]
    pub struct FactConnection {
        pub edges: Vec<FactEdge>,
        pub nodes: Vec<Fact>,
        pub page_info: PageInfo,
    }

    /// Facts per tenant, shared by the resolvers.
    #[derive(Default)]
    pub struct Store {
        pub facts: Mutex<HashMap<Uuid, Vec<Fact>>>,
    }

    fn check_switches(context: &Context<'_>, tenant: Uuid) -> Result<()> {
        let switches = context.data_unchecked::<Arc<Switches>>();
        match switches.fact_error_for_tenant.lock().unwrap().get(&tenant) {
            Some(code) => Err(coded("refused by the test switch", code)),
            None => Ok(()),
        }
    }

    fn facts_of(context: &Context<'_>, tenant: Uuid) -> Vec<Fact> {
        let store = context.data_unchecked::<Arc<Store>>();
        store
            .facts
            .lock()
            .unwrap()
            .get(&tenant)
            .cloned()
            .unwrap_or_default()
    }

    fn connection(facts: Vec<Fact>, first: Option<i32>, after: Option<String>) -> FactConnection {
        let start = after
            .and_then(|cursor| cursor.parse::<usize>().ok())
            .map_or(0, |index| index + 1);
        let first = first.unwrap_or(20).max(0) as usize;
        let page: Vec<(usize, Fact)> = facts.into_iter().enumerate().skip(start).collect();
        let has_next_page = page.len() > first;
        let page: Vec<(usize, Fact)> = page.into_iter().take(first).collect();
        FactConnection {
            edges: page
                .iter()
                .map(|(index, fact)| FactEdge {
                    cursor: index.to_string(),
                    node: fact.clone(),
                })
                .collect(),
            nodes: page.iter().map(|(_, fact)| fact.clone()).collect(),
            page_info: PageInfo {
                has_next_page,
                end_cursor: page.last().map(|(index, _)| index.to_string()),
            },
        }
    }

    pub struct Tenant {
        pub id: Uuid,
    }

    #[Object]
    impl Tenant {
        async fn id(&self) -> ID {
            ID(self.id.to_string())
        }

        async fn facts(
            &self,
            context: &Context<'_>,
            first: Option<i32>,
            after: Option<String>,
        ) -> Result<FactConnection> {
            check_switches(context, self.id)?;
            Ok(connection(facts_of(context, self.id), first, after))
        }

        /// Nullable on purpose, so a failure here leaves the rest of `me`.
        async fn fact_count(&self, context: &Context<'_>) -> Result<Option<i32>> {
            check_switches(context, self.id)?;
            Ok(Some(facts_of(context, self.id).len() as i32))
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn facts(
            &self,
            context: &Context<'_>,
            first: Option<i32>,
            after: Option<String>,
        ) -> Result<FactConnection> {
            let tenant = tenant_of(context)?;
            check_switches(context, tenant)?;
            Ok(connection(facts_of(context, tenant), first, after))
        }

        async fn fact(&self, context: &Context<'_>, id: ID) -> Result<Fact> {
            let tenant = tenant_of(context)?;
            check_switches(context, tenant)?;
            if id.parse::<Uuid>().is_err() {
                return Err(coded("malformed id", "BAD_USER_INPUT"));
            }
            facts_of(context, tenant)
                .into_iter()
                .find(|fact| fact.id == id)
                .ok_or_else(|| coded("no such fact", "NOT_FOUND"))
        }

        async fn random_fact(&self, context: &Context<'_>) -> Result<Fact> {
            let tenant = tenant_of(context)?;
            check_switches(context, tenant)?;
            facts_of(context, tenant)
                .into_iter()
                .next()
                .ok_or_else(|| coded("no facts yet", "NOT_FOUND"))
        }

        /// Nullable, for partial-data tests at the root.
        async fn fact_of_the_day(&self, context: &Context<'_>) -> Result<Option<Fact>> {
            let tenant = tenant_of(context)?;
            check_switches(context, tenant)?;
            Ok(facts_of(context, tenant).into_iter().next())
        }

        /// Answers after three seconds, for timeout tests.
        async fn slow_fact(&self) -> Option<String> {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            Some("finally".to_owned())
        }

        #[graphql(entity)]
        async fn find_tenant_by_id(&self, id: ID) -> Tenant {
            Tenant {
                id: id.parse().unwrap_or_default(),
            }
        }
    }

    #[derive(InputObject)]
    pub struct CreateFactInput {
        pub text: String,
    }

    /// As in the real fact subgraph, an update must carry the new text.
    #[derive(InputObject)]
    pub struct UpdateFactInput {
        pub text: String,
    }

    pub struct Mutation;

    #[Object]
    impl Mutation {
        async fn create_fact(&self, context: &Context<'_>, input: CreateFactInput) -> Result<Fact> {
            let tenant = tenant_of(context)?;
            check_switches(context, tenant)?;
            if input.text.trim().is_empty() {
                return Err(coded("text must not be empty", "BAD_USER_INPUT"));
            }
            let fact = Fact {
                id: ID(Uuid::new_v4().to_string()),
                text: input.text,
                created_at: fixed_time(),
                updated_at: fixed_time(),
                owner: tenant,
            };
            let store = context.data_unchecked::<Arc<Store>>();
            store
                .facts
                .lock()
                .unwrap()
                .entry(tenant)
                .or_default()
                .push(fact.clone());
            Ok(fact)
        }

        async fn update_fact(
            &self,
            context: &Context<'_>,
            id: ID,
            input: UpdateFactInput,
        ) -> Result<Fact> {
            let tenant = tenant_of(context)?;
            let store = context.data_unchecked::<Arc<Store>>();
            let mut facts = store.facts.lock().unwrap();
            let fact = facts
                .get_mut(&tenant)
                .and_then(|facts| facts.iter_mut().find(|fact| fact.id == id))
                .ok_or_else(|| coded("no such fact", "NOT_FOUND"))?;
            fact.text = input.text;
            Ok(fact.clone())
        }

        async fn delete_fact(&self, context: &Context<'_>, id: ID) -> Result<ID> {
            let tenant = tenant_of(context)?;
            let store = context.data_unchecked::<Arc<Store>>();
            let mut facts = store.facts.lock().unwrap();
            let list = facts.entry(tenant).or_default();
            let before = list.len();
            list.retain(|fact| fact.id != id);
            if list.len() == before {
                return Err(coded("no such fact", "NOT_FOUND"));
            }
            Ok(id)
        }
    }

    pub fn schema(
        store: Arc<Store>,
        switches: Arc<Switches>,
    ) -> Schema<Query, Mutation, EmptySubscription> {
        Schema::build(Query, Mutation, EmptySubscription)
            .enable_federation()
            .data(store)
            .data(switches)
            .finish()
    }
}

// ---------------------------------------------------------------- greeting

/// A different schema to restart the fact subgraph with, as if it had been
/// redeployed with a new field.
pub mod greeting {
    use super::*;

    pub struct Query;

    #[Object]
    impl Query {
        async fn hello(&self) -> &'static str {
            "world"
        }
    }

    pub fn schema() -> Schema<Query, async_graphql::EmptyMutation, EmptySubscription> {
        Schema::build(Query, async_graphql::EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

// ---------------------------------------------------------------- serving

/// The body limit of the test subgraphs: below the gateway's default, so
/// tests can see what becomes of a request a subgraph finds too large.
pub const SUBGRAPH_MAX_BODY_BYTES: usize = 256 * 1024;

/// A router answering GraphQL at `/graphql` the way the real subgraphs do:
/// refusing calls without the hop secret or over the body limit, taking the
/// tenant from the header.
pub fn graphql_router<Query, Mutation>(
    schema: Schema<Query, Mutation, EmptySubscription>,
    observed: Arc<Observed>,
) -> Router
where
    Query: ObjectType + 'static,
    Mutation: ObjectType + 'static,
{
    let routes = Router::new().route(
        "/graphql",
        post(move |headers: HeaderMap, request: GraphQLRequest| {
            let schema = schema.clone();
            let observed = observed.clone();
            async move {
                if headers.get("x-gateway-auth").and_then(|v| v.to_str().ok()) != Some(HOP_SECRET) {
                    return (StatusCode::UNAUTHORIZED, "hop secret required").into_response();
                }
                let tenant_header = headers
                    .get("x-tenant-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                observed
                    .tenant_headers
                    .lock()
                    .unwrap()
                    .push(tenant_header.clone());
                let services_header = headers
                    .get("x-tenant-services")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                observed
                    .services_headers
                    .lock()
                    .unwrap()
                    .push(services_header);
                let mut request = request.into_inner();
                observed.queries.lock().unwrap().push(request.query.clone());
                observed
                    .variables
                    .lock()
                    .unwrap()
                    .push(serde_json::to_value(&request.variables).unwrap());
                if let Some(tenant) = tenant_header.and_then(|t| t.parse::<Uuid>().ok()) {
                    request = request.data(TenantId(tenant));
                }
                GraphQLResponse::from(schema.execute(request).await).into_response()
            }
        }),
    );
    routes.layer(tower_http::limit::RequestBodyLimitLayer::new(
        SUBGRAPH_MAX_BODY_BYTES,
    ))
}

/// The fake tenant service's other endpoints: JWKS and token status.
pub fn tenant_service_router(keys: Arc<TestKeys>, switches: Arc<Switches>) -> Router {
    Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move |State(switches): State<Arc<Switches>>| async move {
                *switches.jwks_calls.lock().unwrap() += 1;
                let mut key_set = keys.jwks();
                for (key_id, extra) in switches.extra_keys.lock().unwrap().iter() {
                    let mut jwk = extra.jwks()["keys"][0].clone();
                    jwk["kid"] = json!(key_id);
                    key_set["keys"].as_array_mut().unwrap().push(jwk);
                }
                Json(key_set)
            }),
        )
        .route(
            "/internal/tokens/{jti}",
            get(
                move |State(switches): State<Arc<Switches>>,
                      headers: HeaderMap,
                      Path(jti): Path<Uuid>| async move {
                    if headers.get("x-gateway-auth").and_then(|v| v.to_str().ok())
                        != Some(HOP_SECRET)
                    {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    *switches.token_status_calls.lock().unwrap() += 1;
                    let active = !switches.revoked_tokens.lock().unwrap().contains(&jti);
                    let mut status = json!({ "active": active, "services": TENANT_SERVICES });
                    if let Some(tenant) = switches.token_tenants.lock().unwrap().get(&jti) {
                        status["tenant_id"] = json!(tenant);
                    }
                    let response: Response = Json(status).into_response();
                    response
                },
            ),
        )
        .with_state(switches)
}
