//! The tenant subgraph: signup, the caller's tenant, API tokens, and the
//! TenantMetaDB behind them.
//!
//! - [`schema`]: the GraphQL API (`signup`, `me`, the `Tenant` entity, tokens).
//! - [`store`]: the TenantMetaDB tables.
//! - [`signing`]: the Ed25519 signing key and its JWKS.
//! - [`relay`]: the outbox relay that publishes `tenant.signups`.
//! - [`status`]: applies the apps' `tenant.provisioning` reports.
//! - [`start`] / [`run`]: start-up and the HTTP routes.

pub mod relay;
pub mod schema;
pub mod signing;
pub mod status;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::Utc;
use migration::MetaMigrator;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use tenancy::bus::EventBus;
use tenancy::config::TenancyConfig;
use tenancy::consumer::spawn_consumer;
use tenancy::hop::HopSecret;
use tenancy::host::DatabaseHost;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::signing::TokenSigner;

/// The default address of the tenant subgraph.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4001";

/// The tenant service's settings.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// What every service shares.
    pub tenancy: TenancyConfig,
    /// `SIGNING_KEY_FILE` (default `$DATA_DIR/signing_key.pem`, `DATA_DIR`
    /// defaulting to `./data`): the Ed25519 key, generated when missing.
    pub signing_key_file: PathBuf,
    /// `SIGNUP_TOKEN_DAYS` (default 30): lifetime of a signup's token.
    pub signup_token_days: i64,
}

impl TenantConfig {
    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::with_tenancy(TenancyConfig::from_env()?)
    }

    /// Reads the tenant service's own settings beside `tenancy`.
    pub fn with_tenancy(tenancy: TenancyConfig) -> anyhow::Result<Self> {
        let signing_key_file = match std::env::var("SIGNING_KEY_FILE") {
            Ok(path) if !path.trim().is_empty() => PathBuf::from(path),
            _ => tenancy::config::data_dir()?.join("signing_key.pem"),
        };
        let signup_token_days = match std::env::var("SIGNUP_TOKEN_DAYS") {
            Ok(days) => days
                .trim()
                .parse()
                .context("SIGNUP_TOKEN_DAYS is not a number")?,
            Err(_) => 30,
        };
        if !(1..=schema::MAX_TOKEN_DAYS).contains(&signup_token_days) {
            anyhow::bail!(
                "SIGNUP_TOKEN_DAYS must be between 1 and {}",
                schema::MAX_TOKEN_DAYS
            );
        }
        Ok(Self {
            tenancy,
            signing_key_file,
            signup_token_days,
        })
    }
}

/// A started tenant service.
pub struct TenantService {
    /// The HTTP routes.
    pub router: Router,
    /// The TenantMetaDB.
    pub db: DatabaseConnection,
    /// Background tasks (relay, status consumer); they end after shutdown.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens the TenantMetaDB (`<prefix>tenant_meta`), loads the signing key,
/// starts the relay and the status consumer, and builds the routes.
pub async fn start(
    config: &TenantConfig,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) -> anyhow::Result<TenantService> {
    let tenancy = &config.tenancy;
    let host = DatabaseHost::parse(&tenancy.database_url).context("DATABASE_URL")?;
    let db = host
        .open_control_database::<MetaMigrator>(&tenancy.control_database("tenant_meta"))
        .await
        .context("opening the tenant meta database (DATABASE_URL)")?;
    let signer = Arc::new(TokenSigner::load_or_generate(&config.signing_key_file)?);
    bus.ensure_topics(&[&tenancy.signups_topic, &tenancy.provisioning_topic])
        .await
        .context("creating the event topics (KAFKA_BROKERS)")?;

    let wakeup = Arc::new(Notify::new());
    let relay = relay::spawn_relay(
        db.clone(),
        bus.clone(),
        tenancy.signups_topic.clone(),
        wakeup.clone(),
        shutdown.clone(),
    );
    let status = spawn_consumer(
        bus,
        tenancy.provisioning_topic.clone(),
        tenancy.consumer_group("tenant-status"),
        Arc::new(status::StatusUpdater::new(db.clone())),
        shutdown,
    );

    let hop = HopSecret::new(&tenancy.hop_secret);
    let state = schema::TenantState {
        db: db.clone(),
        signer: signer.clone(),
        signups_topic: tenancy.signups_topic.clone(),
        signup_token_days: config.signup_token_days,
        relay_wakeup: wakeup,
    };
    let internal = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/internal/tokens/{jti}", get(token_status))
        .with_state(InternalState {
            db: db.clone(),
            signer,
            hop: hop.clone(),
        });
    let router = tenancy::graphql::subgraph_router(schema::build(state), hop).merge(internal);
    Ok(TenantService {
        router,
        db,
        tasks: vec![relay, status],
    })
}

/// Serves the tenant subgraph on `listener` until `shutdown`.
pub async fn run(
    config: &TenantConfig,
    bus: Arc<dyn EventBus>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = start(config, bus, shutdown.clone()).await?;
    tracing::info!(target: "tenant", addr = %listener.local_addr()?, "tenant subgraph listening");
    axum::serve(listener, service.router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    for task in service.tasks {
        task.await.ok();
    }
    Ok(())
}

#[derive(Clone)]
struct InternalState {
    db: DatabaseConnection,
    signer: Arc<TokenSigner>,
    hop: HopSecret,
}

/// The public half of the signing key.
async fn jwks(State(state): State<InternalState>) -> Response {
    Json(state.signer.jwks()).into_response()
}

/// Whether a token may still be used (for the gateway; hop-checked):
/// `{"active": bool}`, and for an active token also the tenant it belongs to
/// and the apps that tenant signed up for, `{"active": true, "tenant_id",
/// "services": [..]}`, which the gateway passes on to the subgraphs so that
/// an app can tell "not provisioned yet" from "not signed up". Unknown,
/// revoked and expired tokens are inactive.
async fn token_status(
    State(state): State<InternalState>,
    headers: HeaderMap,
    Path(jti): Path<String>,
) -> Response {
    if let Err(error) = state.hop.verify(&headers) {
        let body = json!({"error": {"code": error.code(), "message": error.client_message()}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let Ok(jti) = uuid::Uuid::parse_str(&jti) else {
        return Json(json!({"active": false})).into_response();
    };
    match active_token(&state.db, jti).await {
        Ok(Some((tenant_id, services))) => {
            Json(json!({"active": true, "tenant_id": tenant_id, "services": services}))
                .into_response()
        }
        Ok(None) => Json(json!({"active": false})).into_response(),
        Err(error) => {
            tracing::error!(target: "tenant::tokens", %error, "token lookup failed");
            let body = json!({"error": {"code": "INTERNAL", "message": "internal error"}});
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// The tenant and the apps of an active token, or `None` when the token is
/// unknown, revoked or expired.
async fn active_token(
    db: &DatabaseConnection,
    jti: uuid::Uuid,
) -> Result<Option<(uuid::Uuid, Vec<String>)>, sea_orm::DbErr> {
    let token = store::api_token::Entity::find_by_id(jti).one(db).await?;
    let Some(token) = token.filter(|token| token.is_active(Utc::now())) else {
        return Ok(None);
    };
    let services = store::tenant_service::Entity::find()
        .filter(store::tenant_service::Column::TenantId.eq(token.tenant_id))
        .order_by_asc(store::tenant_service::Column::Service)
        .all(db)
        .await?;
    let names = services
        .into_iter()
        .map(|service| service.service)
        .collect();
    Ok(Some((token.tenant_id, names)))
}
