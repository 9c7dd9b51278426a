//! REST aliases: thin routes that run fixed GraphQL operations through the
//! same federation pipeline, so REST and GraphQL cannot drift apart.
//!
//! Each handler checks its input (ids must be UUIDs, bodies must carry the
//! documented fields), builds one operation with variables, runs it, and
//! turns the answer into the contract's snake_case JSON. A GraphQL error
//! becomes `{"error": {"code", "message"}}` with the status its
//! `extensions.code` maps to (see [`crate::error::status_for_code`]).

use std::collections::{HashMap, HashSet};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{MethodRouter, delete, get, post},
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    error::{GatewayError, rest_error_response},
    federation::GraphqlRequest,
    server::{Gateway, SharedGateway},
};

const FACT_FIELDS: &str = "id text createdAt updatedAt";
const TODO_FIELDS: &str = "id title done createdAt updatedAt";
const ORG_MEMBER_FIELDS: &str = "id name title managerId createdAt updatedAt";
const API_TOKEN_FIELDS: &str = "id name createdAt expiresAt revokedAt";

/// The REST routes.
pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/tenants", post(create_tenant))
        .route("/tenants/me", get(get_tenant))
        .route("/tenants/me/tokens", get(list_tokens).post(create_token))
        .route("/tenants/me/tokens/{id}", delete(revoke_token))
        .route("/facts", paged_list(&FACTS).merge(create(&FACTS)))
        .route("/facts/random", get(random_fact))
        .route(
            "/facts/{id}",
            read_and_update(&FACTS).merge(plain_delete(&FACTS)),
        )
        .route("/todos", get(list_todos).merge(create(&TODOS)))
        .route(
            "/todos/{id}",
            read_and_update(&TODOS).merge(plain_delete(&TODOS)),
        )
        .route("/org", paged_list(&ORG_MEMBERS).merge(create(&ORG_MEMBERS)))
        .route("/org/chart", get(org_chart))
        .route(
            "/org/{id}",
            read_and_update(&ORG_MEMBERS).delete(delete_org_member),
        )
}

/// Why a REST request failed; turned into `{"error": {"code", "message"}}`
/// at the boundary.
#[derive(Debug)]
enum RestError {
    /// Refused by the gateway itself (token, body, limits, …).
    Gateway(GatewayError),
    /// The operation reported an error with this code and message.
    Reported { code: String, message: String },
}

impl RestError {
    fn reported(code: &str, message: &str) -> Self {
        Self::Reported {
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        match self {
            Self::Gateway(error) => error.into_rest_response(),
            Self::Reported { code, message } => rest_error_response(&code, &message),
        }
    }
}

/// A REST answer or the error that replaces it.
type RestResult = Result<Response, RestError>;

/// Runs `query` for the caller (authenticated unless `anonymous`) and
/// returns its `data`, or the REST error for its first error.
async fn run(
    gateway: &Gateway,
    headers: &HeaderMap,
    anonymous: bool,
    query: String,
    variables: Map<String, Value>,
) -> Result<Value, RestError> {
    let caller = if anonymous {
        None
    } else {
        Some(
            gateway
                .authenticate(headers)
                .await
                .map_err(RestError::Gateway)?,
        )
    };
    let request = GraphqlRequest {
        query,
        operation_name: None,
        variables,
    };
    let mut response = match gateway.federation.execute(&request, caller.as_ref()).await {
        Ok(response) => response,
        Err(GatewayError::GraphqlValidationFailed(messages)) => {
            return Err(refused_operation(gateway, &request.query, messages));
        }
        Err(error) => return Err(RestError::Gateway(error)),
    };

    if let Some(error) = response["errors"]
        .as_array()
        .and_then(|errors| errors.first())
    {
        let code = error
            .pointer("/extensions/code")
            .and_then(Value::as_str)
            .unwrap_or("INTERNAL");
        let message = error["message"].as_str().unwrap_or("request failed");
        if code == "INTERNAL" {
            tracing::error!(target: "gateway::rest", %message, "subgraph reported an internal error");
        }
        return Err(RestError::reported(code, message));
    }
    Ok(response
        .get_mut("data")
        .map(Value::take)
        .unwrap_or(Value::Null))
}

/// Why one of our own operations failed validation. When the schema lacks
/// its root field, the service behind the route is not part of the
/// composition (not configured, or down since start): not the client's
/// fault, and it may heal. Otherwise the operation was built from the body,
/// and what it lacks is the client's to supply.
fn refused_operation(gateway: &Gateway, query: &str, messages: Vec<String>) -> RestError {
    let served = gateway
        .federation
        .supergraph()
        .is_some_and(|supergraph| supergraph.has_root_fields(query));
    if !served {
        tracing::warn!(target: "gateway::rest", ?messages, "REST operation's service is not composed");
        return RestError::reported("SUBGRAPH_UNAVAILABLE", "this service is not available");
    }
    // The route's fields and the schema disagree about what is required.
    tracing::warn!(target: "gateway::rest", ?messages, "REST operation does not validate");
    RestError::Gateway(GatewayError::BadUserInput(messages.join("; ")))
}

// ------------------------------------------------------------ input helpers

async fn read_json_object(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, RestError> {
    let bytes = gateway
        .read_body(headers, body)
        .await
        .map_err(RestError::Gateway)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(bad_input("the body must be a JSON object")),
    }
}

fn bad_input(message: &str) -> RestError {
    RestError::Gateway(GatewayError::BadUserInput(message.to_owned()))
}

fn parse_id(id: &str) -> Result<Value, RestError> {
    id.parse::<Uuid>()
        .map(|id| Value::String(id.to_string()))
        .map_err(|_| bad_input("the id must be a UUID"))
}

/// A GraphQL type for each documented body field, and whether it must be
/// present: `(json key, graphql argument, variable type, required)`.
type FieldSpec = (&'static str, &'static str, &'static str, bool);

/// Builds an input object literal (`{title: $title, done: $done}`), its
/// variable definitions and values from the fields present in `body`.
/// Only present fields are sent, so a PATCH leaves the others alone.
fn input_from_body(
    body: &Map<String, Value>,
    fields: &[FieldSpec],
) -> Result<(String, String, Map<String, Value>), RestError> {
    let mut object_fields = Vec::new();
    let mut definitions = Vec::new();
    let mut variables = Map::new();
    for &(json_key, argument, variable_type, required) in fields {
        match body.get(json_key) {
            None if required => return Err(bad_input(&format!("`{json_key}` is required"))),
            None => {}
            Some(Value::Null) if variable_type.ends_with('!') => {
                return Err(bad_input(&format!("`{json_key}` must not be null")));
            }
            Some(value) => {
                check_json_type(json_key, variable_type, value)?;
                object_fields.push(format!("{argument}: ${argument}"));
                definitions.push(format!("${argument}: {variable_type}"));
                variables.insert(argument.to_owned(), value.clone());
            }
        }
    }
    Ok((
        format!("{{{}}}", object_fields.join(", ")),
        definitions.join(", "),
        variables,
    ))
}

/// Refuses a body value whose JSON type is not the documented one. GraphQL
/// would coerce some (a lone string where a list is expected becomes a
/// one-item list); a REST body has exactly one shape.
fn check_json_type(json_key: &str, variable_type: &str, value: &Value) -> Result<(), RestError> {
    let nullable = !variable_type.ends_with('!');
    if nullable && value.is_null() {
        return Ok(());
    }
    let (fits, expected) = match variable_type.trim_end_matches('!') {
        "String" | "ID" => (value.is_string(), "a string"),
        "Boolean" => (value.is_boolean(), "true or false"),
        "Int" => (
            value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "a whole number",
        ),
        "[String!]" => (
            value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            "an array of strings",
        ),
        // A route declared a type this check does not know: our bug.
        other => {
            let error = anyhow::anyhow!("no JSON shape is defined for the GraphQL type {other}");
            return Err(RestError::Gateway(GatewayError::Internal(error)));
        }
    };
    if fits {
        return Ok(());
    }
    let or_null = if nullable { " or null" } else { "" };
    Err(bad_input(&format!(
        "`{json_key}` must be {expected}{or_null}"
    )))
}

/// `first`/`after` (and extra) variables from `?limit=&cursor=`.
fn page_variables(params: &HashMap<String, String>) -> Result<Map<String, Value>, RestError> {
    let mut variables = Map::new();
    if let Some(limit) = params.get("limit") {
        let limit: i32 = limit
            .parse()
            .ok()
            .filter(|limit| *limit > 0)
            .ok_or_else(|| bad_input("`limit` must be a positive number"))?;
        variables.insert("first".to_owned(), json!(limit));
    }
    if let Some(cursor) = params.get("cursor") {
        variables.insert("after".to_owned(), json!(cursor));
    }
    Ok(variables)
}

fn query_params(
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, RestError> {
    params
        .map(|Query(params)| params)
        .map_err(|_| bad_input("malformed query string"))
}

// ----------------------------------------------------------- output helpers

/// `createdAt` → `created_at`, recursively.
fn snake_case_keys(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(key, value)| (snake_case(key), snake_case_keys(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}

fn snake_case(key: String) -> String {
    if !key.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return key;
    }
    let mut snake = String::with_capacity(key.len() + 4);
    for character in key.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

fn ok(status: StatusCode, body: Value) -> RestResult {
    Ok((status, Json(body)).into_response())
}

/// `{"items": [...], "next_cursor": ...}` from a Relay connection.
fn page(mut connection: Value) -> Value {
    let next_cursor = match connection.pointer("/pageInfo/hasNextPage") {
        Some(Value::Bool(true)) => connection
            .pointer("/pageInfo/endCursor")
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    json!({ "items": snake_case_keys(connection["nodes"].take()), "next_cursor": next_cursor })
}

/// Responses use the canonical service names (`fact`, not `fact-app`).
fn canonical_service_name(name: &str) -> String {
    name.strip_suffix("-app").unwrap_or(name).to_owned()
}

fn finish(result: RestResult) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

// ------------------------------------------------------------------ tenants

const SIGNUP_INPUT: &[FieldSpec] = &[
    ("name", "name", "String!", true),
    ("services", "services", "[String!]!", true),
];

const CREATE_TOKEN_INPUT: &[FieldSpec] = &[
    ("name", "name", "String!", true),
    ("expires_in_days", "expiresInDays", "Int", false),
];

async fn create_tenant(
    State(gateway): State<SharedGateway>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    finish(async {
        let body = read_json_object(&gateway, &headers, body).await?;
        let (input, definitions, variables) = input_from_body(&body, SIGNUP_INPUT)?;
        let query = format!("mutation({definitions}) {{ signup(input: {input}) {{ tenant {{ id name services {{ name }} }} token }} }}");
        let data = run(&gateway, &headers, true, query, variables).await?;
        let payload = &data["signup"];
        let services: Vec<String> = payload["tenant"]["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|service| service["name"].as_str())
            .map(canonical_service_name)
            .collect();
        ok(
            StatusCode::CREATED,
            json!({
                "tenant_id": payload["tenant"]["id"],
                "name": payload["tenant"]["name"],
                "services": services,
                "token": payload["token"],
            }),
        )
    }
    .await)
}

async fn get_tenant(State(gateway): State<SharedGateway>, headers: HeaderMap) -> Response {
    finish(async {
        let query = "{ me { id name createdAt services { name status } } }".to_owned();
        let data = run(&gateway, &headers, false, query, Map::new()).await?;
        let me = &data["me"];
        if me.is_null() {
            return Err(RestError::reported("NOT_FOUND", "no such tenant"));
        }
        let services: Vec<Value> = me["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|service| json!({ "name": canonical_service_name(service["name"].as_str().unwrap_or_default()), "status": service["status"] }))
            .collect();
        ok(
            StatusCode::OK,
            json!({ "tenant_id": me["id"], "name": me["name"], "created_at": me["createdAt"], "services": services }),
        )
    }
    .await)
}

async fn list_tokens(State(gateway): State<SharedGateway>, headers: HeaderMap) -> Response {
    finish(
        async {
            let query = format!("{{ me {{ apiTokens {{ {API_TOKEN_FIELDS} }} }} }}");
            let mut data = run(&gateway, &headers, false, query, Map::new()).await?;
            ok(
                StatusCode::OK,
                json!({ "items": snake_case_keys(data["me"]["apiTokens"].take()) }),
            )
        }
        .await,
    )
}

async fn create_token(
    State(gateway): State<SharedGateway>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    finish(async {
        let body = read_json_object(&gateway, &headers, body).await?;
        let (input, definitions, variables) = input_from_body(&body, CREATE_TOKEN_INPUT)?;
        let query = format!(
            "mutation({definitions}) {{ createApiToken(input: {input}) {{ apiToken {{ id name expiresAt }} token }} }}"
        );
        let data = run(&gateway, &headers, false, query, variables).await?;
        let created = &data["createApiToken"];
        ok(
            StatusCode::CREATED,
            json!({
                "id": created["apiToken"]["id"],
                "name": created["apiToken"]["name"],
                "expires_at": created["apiToken"]["expiresAt"],
                "token": created["token"],
            }),
        )
    }
    .await)
}

async fn revoke_token(
    State(gateway): State<SharedGateway>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    finish(
        async {
            let variables = Map::from_iter([("id".to_owned(), parse_id(&id)?)]);
            let query = "mutation($id: ID!) { revokeApiToken(id: $id) { id } }".to_owned();
            run(&gateway, &headers, false, query, variables).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

// -------------------------------------------- facts, todos and org members

/// The GraphQL names of one resource's operations and fields.
struct Resource {
    list: &'static str,
    get: &'static str,
    create: &'static str,
    update: &'static str,
    delete: &'static str,
    fields: &'static str,
    create_input: &'static [FieldSpec],
    update_input: &'static [FieldSpec],
}

static FACTS: Resource = Resource {
    list: "facts",
    get: "fact",
    create: "createFact",
    update: "updateFact",
    delete: "deleteFact",
    fields: FACT_FIELDS,
    create_input: &[("text", "text", "String!", true)],
    // `UpdateFactInput.text` is `String!`: a fact's only field.
    update_input: &[("text", "text", "String!", true)],
};

static TODOS: Resource = Resource {
    list: "todos",
    get: "todo",
    create: "createTodo",
    update: "updateTodo",
    delete: "deleteTodo",
    fields: TODO_FIELDS,
    create_input: &[
        ("title", "title", "String!", true),
        ("done", "done", "Boolean!", false),
    ],
    update_input: &[
        ("title", "title", "String!", false),
        ("done", "done", "Boolean!", false),
    ],
};

static ORG_MEMBERS: Resource = Resource {
    list: "orgMembers",
    get: "orgMember",
    create: "createOrgMember",
    update: "updateOrgMember",
    delete: "deleteOrgMember",
    fields: ORG_MEMBER_FIELDS,
    create_input: &[
        ("name", "name", "String!", true),
        ("title", "title", "String!", true),
        ("manager_id", "managerId", "ID", false),
    ],
    update_input: &[
        ("name", "name", "String!", false),
        ("title", "title", "String!", false),
        ("manager_id", "managerId", "ID", false),
    ],
};

/// `GET` of `resource`'s collection, a page at a time (`?limit=&cursor=`).
fn paged_list(resource: &'static Resource) -> MethodRouter<SharedGateway> {
    get(
        move |State(gateway): State<SharedGateway>,
              headers: HeaderMap,
              params: Result<Query<HashMap<String, String>>, QueryRejection>| async move {
            finish(
                async {
                    let variables = page_variables(&query_params(params)?)?;
                    list_resource(&gateway, &headers, resource, variables, "", "").await
                }
                .await,
            )
        },
    )
}

/// `POST` to `resource`'s collection: creates one record.
fn create(resource: &'static Resource) -> MethodRouter<SharedGateway> {
    post(
        move |State(gateway): State<SharedGateway>, headers: HeaderMap, body: Body| async move {
            finish(create_resource(&gateway, &headers, resource, body).await)
        },
    )
}

/// `GET` and `PATCH` of one record of `resource`.
fn read_and_update(resource: &'static Resource) -> MethodRouter<SharedGateway> {
    get(
        move |State(gateway): State<SharedGateway>, headers: HeaderMap, Path(id): Path<String>| async move {
            finish(get_resource(&gateway, &headers, resource, &id).await)
        },
    )
    .patch(
        move |State(gateway): State<SharedGateway>,
              headers: HeaderMap,
              Path(id): Path<String>,
              body: Body| async move {
            finish(update_resource(&gateway, &headers, resource, &id, body).await)
        },
    )
}

/// `DELETE` of one record of `resource`, with no options.
fn plain_delete(resource: &'static Resource) -> MethodRouter<SharedGateway> {
    delete(
        move |State(gateway): State<SharedGateway>, headers: HeaderMap, Path(id): Path<String>| async move {
            let deleted = delete_resource(&gateway, &headers, resource, &id, Map::new(), "", "");
            finish(deleted.await)
        },
    )
}

async fn list_resource(
    gateway: &Gateway,
    headers: &HeaderMap,
    resource: &Resource,
    mut variables: Map<String, Value>,
    extra_definitions: &str,
    extra_arguments: &str,
) -> RestResult {
    let query = format!(
        "query($first: Int, $after: String{extra_definitions}) {{ {}(first: $first, after: $after{extra_arguments}) {{ nodes {{ {} }} pageInfo {{ hasNextPage endCursor }} }} }}",
        resource.list, resource.fields
    );
    variables.retain(|_, value| !value.is_null());
    let mut data = run(gateway, headers, false, query, variables).await?;
    ok(StatusCode::OK, page(data[resource.list].take()))
}

async fn get_resource(
    gateway: &Gateway,
    headers: &HeaderMap,
    resource: &Resource,
    id: &str,
) -> RestResult {
    let variables = Map::from_iter([("id".to_owned(), parse_id(id)?)]);
    let query = format!(
        "query($id: ID!) {{ {}(id: $id) {{ {} }} }}",
        resource.get, resource.fields
    );
    let mut data = run(gateway, headers, false, query, variables).await?;
    if data[resource.get].is_null() {
        return Err(RestError::reported("NOT_FOUND", "no such record"));
    }
    ok(StatusCode::OK, snake_case_keys(data[resource.get].take()))
}

async fn create_resource(
    gateway: &Gateway,
    headers: &HeaderMap,
    resource: &Resource,
    body: Body,
) -> RestResult {
    let body = read_json_object(gateway, headers, body).await?;
    let (input, definitions, variables) = input_from_body(&body, resource.create_input)?;
    if let Some(Value::String(manager)) = variables.get("managerId") {
        parse_id(manager)?;
    }
    let query = format!(
        "mutation({definitions}) {{ {}(input: {input}) {{ {} }} }}",
        resource.create, resource.fields
    );
    let mut data = run(gateway, headers, false, query, variables).await?;
    ok(
        StatusCode::CREATED,
        snake_case_keys(data[resource.create].take()),
    )
}

async fn update_resource(
    gateway: &Gateway,
    headers: &HeaderMap,
    resource: &Resource,
    id: &str,
    body: Body,
) -> RestResult {
    let id = parse_id(id)?;
    let body = read_json_object(gateway, headers, body).await?;
    let (input, definitions, mut variables) = input_from_body(&body, resource.update_input)?;
    if let Some(Value::String(manager)) = variables.get("managerId") {
        parse_id(manager)?;
    }
    let definitions = if definitions.is_empty() {
        "$id: ID!".to_owned()
    } else {
        format!("$id: ID!, {definitions}")
    };
    variables.insert("id".to_owned(), id);
    let query = format!(
        "mutation({definitions}) {{ {}(id: $id, input: {input}) {{ {} }} }}",
        resource.update, resource.fields
    );
    let mut data = run(gateway, headers, false, query, variables).await?;
    ok(
        StatusCode::OK,
        snake_case_keys(data[resource.update].take()),
    )
}

async fn delete_resource(
    gateway: &Gateway,
    headers: &HeaderMap,
    resource: &Resource,
    id: &str,
    mut variables: Map<String, Value>,
    extra_definitions: &str,
    extra_arguments: &str,
) -> RestResult {
    variables.insert("id".to_owned(), parse_id(id)?);
    let query = format!(
        "mutation($id: ID!{extra_definitions}) {{ {}(id: $id{extra_arguments}) }}",
        resource.delete
    );
    run(gateway, headers, false, query, variables).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn random_fact(State(gateway): State<SharedGateway>, headers: HeaderMap) -> Response {
    finish(
        async {
            let query = format!("{{ randomFact {{ {FACT_FIELDS} }} }}");
            let mut data = run(&gateway, &headers, false, query, Map::new()).await?;
            if data["randomFact"].is_null() {
                return Err(RestError::reported("NOT_FOUND", "there are no facts yet"));
            }
            ok(StatusCode::OK, snake_case_keys(data["randomFact"].take()))
        }
        .await,
    )
}

async fn list_todos(
    State(gateway): State<SharedGateway>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    finish(
        async {
            let params = query_params(params)?;
            let mut variables = page_variables(&params)?;
            let (definitions, arguments) = match params.get("done").map(String::as_str) {
                None => ("", ""),
                Some(done @ ("true" | "false")) => {
                    variables.insert("done".to_owned(), json!(done == "true"));
                    (", $done: Boolean", ", done: $done")
                }
                Some(_) => return Err(bad_input("`done` must be true or false")),
            };
            list_resource(
                &gateway,
                &headers,
                &TODOS,
                variables,
                definitions,
                arguments,
            )
            .await
        }
        .await,
    )
}

async fn org_chart(State(gateway): State<SharedGateway>, headers: HeaderMap) -> Response {
    finish(
        async {
            // GraphQL has no recursive selections, so the chart comes flat, in
            // chart order, and is nested here: any depth, one operation.
            let query = format!("{{ orgChartMembers {{ {ORG_MEMBER_FIELDS} }} }}");
            let mut data = run(&gateway, &headers, false, query, Map::new()).await?;
            let members = match snake_case_keys(data["orgChartMembers"].take()) {
                Value::Array(members) => members,
                _ => Vec::new(),
            };
            ok(StatusCode::OK, Value::Array(nest_chart(members)))
        }
        .await,
    )
}

/// Nests members given in chart order (each after its manager) into the
/// roots, each with its `reports`, to any depth. Built bottom-up from the
/// end of the list, so every member's reports are complete when it is
/// reached, without recursion. A member whose manager is not in the list
/// stays visible as a root.
fn nest_chart(members: Vec<Value>) -> Vec<Value> {
    fn id_of(member: &Value, key: &str) -> Option<String> {
        member[key].as_str().map(str::to_owned)
    }
    let present: HashSet<String> = members.iter().filter_map(|m| id_of(m, "id")).collect();

    // Reports are collected newest first (the list is walked backwards) and
    // turned around when their manager is reached.
    let mut reports: HashMap<String, Vec<Value>> = HashMap::new();
    let mut roots = Vec::new();
    for mut member in members.into_iter().rev() {
        let id = id_of(&member, "id").unwrap_or_default();
        let mut own = reports.remove(&id).unwrap_or_default();
        own.reverse();
        member["reports"] = Value::Array(own);
        match id_of(&member, "manager_id").filter(|manager| present.contains(manager)) {
            Some(manager) => reports.entry(manager).or_default().push(member),
            None => roots.push(member),
        }
    }
    roots.reverse();
    roots
}

async fn delete_org_member(
    State(gateway): State<SharedGateway>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    finish(
        async {
            let params = query_params(params)?;
            match params.get("reassign_reports_to") {
                None => {
                    delete_resource(&gateway, &headers, &ORG_MEMBERS, &id, Map::new(), "", "").await
                }
                Some(target) => {
                    let variables =
                        Map::from_iter([("reassignReportsTo".to_owned(), parse_id(target)?)]);
                    let (definitions, arguments) = (
                        ", $reassignReportsTo: ID",
                        ", reassignReportsTo: $reassignReportsTo",
                    );
                    delete_resource(
                        &gateway,
                        &headers,
                        &ORG_MEMBERS,
                        &id,
                        variables,
                        definitions,
                        arguments,
                    )
                    .await
                }
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_keys_become_snake_case() {
        let converted = snake_case_keys(
            json!({ "createdAt": 1, "managerId": null, "reports": [{ "updatedAt": 2 }] }),
        );
        assert_eq!(
            converted,
            json!({ "created_at": 1, "manager_id": null, "reports": [{ "updated_at": 2 }] })
        );
    }

    #[test]
    fn a_flat_chart_is_nested_under_its_managers_in_order() {
        let member = |id: &str, manager: Option<&str>| json!({ "id": id, "manager_id": manager });
        let chart = nest_chart(vec![
            member("ceo", None),
            member("cto", Some("ceo")),
            member("dev", Some("cto")),
            member("cfo", Some("ceo")),
            member("orphan", Some("gone")),
        ]);
        assert_eq!(
            Value::Array(chart),
            json!([
                { "id": "ceo", "manager_id": null, "reports": [
                    { "id": "cto", "manager_id": "ceo", "reports": [
                        { "id": "dev", "manager_id": "cto", "reports": [] }
                    ] },
                    { "id": "cfo", "manager_id": "ceo", "reports": [] }
                ] },
                { "id": "orphan", "manager_id": "gone", "reports": [] }
            ])
        );
    }

    #[test]
    fn a_chart_a_thousand_levels_deep_is_nested_whole() {
        let members: Vec<Value> = (0..1_000)
            .map(|n| json!({ "id": n.to_string(), "manager_id": (n > 0).then(|| (n - 1).to_string()) }))
            .collect();
        let roots = nest_chart(members);
        assert_eq!(roots.len(), 1);
        let mut level = &roots[0];
        let mut depth = 1;
        while let Some(report) = level["reports"].get(0) {
            level = report;
            depth += 1;
        }
        assert_eq!(depth, 1_000);
        assert_eq!(level["id"], "999");
        assert!(serde_json::to_vec(&roots).is_ok());
    }

    #[test]
    fn only_present_fields_enter_the_input() {
        let body = Map::from_iter([("done".to_owned(), json!(true))]);
        let (input, definitions, variables) = input_from_body(&body, TODOS.update_input).unwrap();
        assert_eq!(input, "{done: $done}");
        assert_eq!(definitions, "$done: Boolean!");
        assert_eq!(Value::Object(variables), json!({ "done": true }));
    }

    #[test]
    fn every_body_field_has_a_json_shape() {
        let specs = [SIGNUP_INPUT, CREATE_TOKEN_INPUT].into_iter().chain(
            [&FACTS, &TODOS, &ORG_MEMBERS]
                .into_iter()
                .flat_map(|resource| [resource.create_input, resource.update_input]),
        );
        for spec in specs {
            for &(json_key, _, variable_type, _) in spec {
                // Null fits only nullable types; an unknown one is internal.
                let result = check_json_type(json_key, variable_type, &Value::Null);
                assert!(
                    !matches!(result, Err(RestError::Gateway(GatewayError::Internal(_)))),
                    "{json_key}: {variable_type}"
                );
                assert_eq!(result.is_ok(), !variable_type.ends_with('!'), "{json_key}");
            }
        }
    }

    #[test]
    fn body_values_must_have_their_documented_json_type() {
        let fits =
            |variable_type, value: Value| check_json_type("f", variable_type, &value).is_ok();
        assert!(fits("[String!]!", json!(["fact", "todo"])));
        assert!(!fits("[String!]!", json!("fact")));
        assert!(!fits("[String!]!", json!([null])));
        assert!(fits("Int", json!(30)) && fits("Int", Value::Null));
        assert!(!fits("Int", json!("30")) && !fits("Int", json!(1.5)));
        assert!(!fits("Int", json!(i64::from(i32::MAX) + 1)));
        assert!(fits("Boolean!", json!(false)) && !fits("Boolean!", json!(0)));
        assert!(fits("ID", json!("a")) && fits("ID", Value::Null) && !fits("ID", json!(5)));
        assert!(!fits("String!", json!({})));
    }

    #[test]
    fn a_connection_without_a_next_page_has_no_cursor() {
        let connection =
            json!({ "nodes": [], "pageInfo": { "hasNextPage": false, "endCursor": "c" } });
        assert_eq!(
            page(connection.clone()),
            json!({ "items": [], "next_cursor": null })
        );
        let connection =
            json!({ "nodes": [], "pageInfo": { "hasNextPage": true, "endCursor": "c" } });
        assert_eq!(page(connection.clone())["next_cursor"], "c");
    }
}
