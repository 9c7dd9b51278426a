//! Test harness: signing keys, servers on port 0 that can be stopped and
//! restarted, and a whole stack (tenant + fact subgraphs, gateway).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::Router;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
use gateway::{GatewayConfig, SubgraphEndpoint};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::rngs::OsRng;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use uuid::Uuid;

use crate::subgraphs::{self, Observed, Switches};

/// The hop secret shared by the test gateway and subgraphs.
pub const HOP_SECRET: &str = "test-hop-secret-0001";
/// Key id of the fake tenant service's signing key.
pub const KEY_ID: &str = "test-key-1";

/// An Ed25519 key pair, able to sign tokens and publish its JWKS.
pub struct TestKeys {
    signing_key: SigningKey,
}

impl TestKeys {
    pub fn generate() -> Self {
        Self {
            signing_key: SigningKey::generate(&mut OsRng),
        }
    }

    pub fn jwks(&self) -> Value {
        let x = URL_SAFE_NO_PAD.encode(self.signing_key.verifying_key().to_bytes());
        json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KEY_ID, "x": x }] })
    }

    /// Signs `claims` with this key under `key_id`.
    pub fn sign(&self, key_id: &str, claims: &Value) -> String {
        let der = self.signing_key.to_pkcs8_der().unwrap();
        let key = EncodingKey::from_ed_der(der.as_bytes());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key_id.to_owned());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a valid token for `tenant`.
pub fn claims_for(tenant: Uuid) -> Value {
    json!({ "tenant_id": tenant, "jti": Uuid::new_v4(), "iat": now(), "exp": now() + 3600, "sub": "test", "iss": "hybrid-tenancy" })
}

/// An HTTP server on a fixed local port that can be stopped and started again.
pub struct TestServer {
    pub address: SocketAddr,
    router: Mutex<Router>,
    running: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl TestServer {
    pub async fn start(router: Router) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Arc::new(Self {
            address: listener.local_addr().unwrap(),
            router: Mutex::new(router),
            running: Mutex::new(None),
        });
        server.run_on(listener);
        server
    }

    fn run_on(&self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router.lock().unwrap().clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    stopped.await.ok();
                })
                .await
                .unwrap();
        });
        *self.running.lock().unwrap() = Some((stop, task));
    }

    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((stop, task)) = running {
            stop.send(()).ok();
            // Open keep-alive connections would hold graceful shutdown: abort.
            task.abort();
            task.await.ok();
        }
    }

    /// Starts again on the same port, serving `router` from now on.
    pub async fn restart_with(&self, router: Router) {
        *self.router.lock().unwrap() = router;
        self.restart().await;
    }

    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.run_on(listener);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// Tenant and fact subgraphs, a fake tenant service, and a gateway.
pub struct Stack {
    pub keys: Arc<TestKeys>,
    pub switches: Arc<Switches>,
    pub tenant_observed: Arc<Observed>,
    pub fact_observed: Arc<Observed>,
    pub tenant_subgraph: Arc<TestServer>,
    pub fact_subgraph: Arc<TestServer>,
    pub gateway_address: SocketAddr,
    pub http: reqwest::Client,
    pub tenant: Uuid,
    pub token: String,
    _gateway_stop: oneshot::Sender<()>,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the stack, letting the test adjust the gateway's configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Self {
        let keys = Arc::new(TestKeys::generate());
        let switches = Arc::new(Switches::default());
        let tenant_observed = Arc::new(Observed::default());
        let fact_observed = Arc::new(Observed::default());

        let tenant_router =
            subgraphs::graphql_router(subgraphs::tenant::schema(), tenant_observed.clone()).merge(
                subgraphs::tenant_service_router(keys.clone(), switches.clone()),
            );
        let tenant_subgraph = TestServer::start(tenant_router).await;
        let fact_schema = subgraphs::fact::schema(Arc::default(), switches.clone());
        let fact_subgraph = TestServer::start(subgraphs::graphql_router(
            fact_schema,
            fact_observed.clone(),
        ))
        .await;

        let mut config = GatewayConfig::new(
            HOP_SECRET,
            vec![
                SubgraphEndpoint {
                    name: "tenant".into(),
                    url: tenant_subgraph.url("/graphql"),
                },
                SubgraphEndpoint {
                    name: "fact".into(),
                    url: fact_subgraph.url("/graphql"),
                },
            ],
        );
        config.subgraph_timeout = Duration::from_secs(3);
        adjust(&mut config);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(gateway::serve(config, listener, async move {
            stopped.await.ok();
        }));

        let tenant = Uuid::new_v4();
        let token = keys.sign(KEY_ID, &claims_for(tenant));
        let stack = Self {
            keys,
            switches,
            tenant_observed,
            fact_observed,
            tenant_subgraph,
            fact_subgraph,
            gateway_address,
            http: reqwest::Client::new(),
            tenant,
            token,
            _gateway_stop: stop,
        };
        stack.wait_until_ready().await;
        stack
    }

    pub async fn wait_until_ready(&self) {
        for _ in 0..200 {
            let response = self.http.get(self.url("/readyz")).send().await;
            if response.is_ok_and(|response| response.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway_address)
    }

    /// POSTs a GraphQL request with the stack's token; returns status and body.
    pub async fn graphql(&self, query: &str, variables: Value) -> (u16, Value) {
        self.graphql_with_token(Some(&self.token), query, variables)
            .await
    }

    pub async fn graphql_with_token(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends a REST request with the stack's token.
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}
