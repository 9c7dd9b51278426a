//! API tokens: minting, listing without secrets, revocation, expiry.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tenant_subgraph::signing::{Claims, ISSUER, TokenSigner};

use crate::stack::{HOP_SECRET, Stack, first_code};

/// What the tenant service tells the gateway about a token.
async fn token_status(stack: &Stack, jti: &str) -> Value {
    let response = stack
        .http
        .get(format!("{}/internal/tokens/{jti}", stack.tenant_url))
        .header("X-Gateway-Auth", HOP_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json::<Value>().await.unwrap()
}

async fn token_active(stack: &Stack, jti: &str) -> bool {
    token_status(stack, jti).await["active"].as_bool().unwrap()
}

#[tokio::test]
async fn an_active_token_reports_its_tenant_and_apps_to_the_gateway() {
    let stack = Stack::start().await;
    let (tenant, token) = stack.signup("Apps", &["todo-app", "fact"]).await;
    let claims = verify(&stack, &token).await.unwrap();
    let status = token_status(&stack, &claims.jti.to_string()).await;
    assert_eq!(
        status,
        serde_json::json!({"active": true, "tenant_id": tenant, "services": ["fact", "todo"]})
    );
    stack.cleanup().await;
}

async fn verify(stack: &Stack, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
    let jwks: JwkSet = stack
        .http
        .get(format!("{}/.well-known/jwks.json", stack.tenant_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token)?;
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or_default())
        .expect("the token's kid is published");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk)?, &validation)
        .map(|data| data.claims)
}

#[tokio::test]
async fn minted_tokens_are_listed_without_secrets_and_refused_once_revoked() {
    let stack = Stack::start().await;
    let (tenant, signup_token) = stack.signup("Tokens", &[]).await;
    let claims = verify(&stack, &signup_token).await.unwrap();
    assert_eq!(claims.tenant_id, tenant);
    assert!(token_active(&stack, &claims.jti.to_string()).await);

    let (_, minted) = stack
        .graphql(
            &stack.tenant_url,
            Some(tenant),
            r#"mutation { createApiToken(input: {name: "ci", expiresInDays: 7}) { apiToken { id name expiresAt } token } }"#,
            json!({}),
        )
        .await;
    let token = minted["data"]["createApiToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{minted}"))
        .to_owned();
    let id = minted["data"]["createApiToken"]["apiToken"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(verify(&stack, &token).await.unwrap().jti.to_string(), id);

    let (_, listed) = stack
        .graphql(
            &stack.tenant_url,
            Some(tenant),
            "{ me { apiTokens { id name createdAt expiresAt revokedAt } } }",
            json!({}),
        )
        .await;
    let tokens = listed["data"]["me"]["apiTokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    assert!(!listed.to_string().contains(&token) && !listed.to_string().contains(&signup_token));

    let (_, revoked) = stack
        .graphql(
            &stack.tenant_url,
            Some(tenant),
            "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }",
            json!({"id": id}),
        )
        .await;
    assert!(
        revoked["data"]["revokeApiToken"]["revokedAt"].is_string(),
        "{revoked}"
    );
    assert!(!token_active(&stack, &id).await);
    assert!(
        token_active(&stack, &claims.jti.to_string()).await,
        "other tokens stay valid"
    );

    // Another tenant cannot revoke this tenant's token.
    let (other, _) = stack.signup("Other", &[]).await;
    let (_, body) = stack
        .graphql(
            &stack.tenant_url,
            Some(other),
            "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
            json!({"id": claims.jti.to_string()}),
        )
        .await;
    assert_eq!(first_code(&body), "NOT_FOUND");
    assert!(token_active(&stack, &claims.jti.to_string()).await);
    stack.cleanup().await;
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_refused() {
    let stack = Stack::start().await;
    let (tenant, _) = stack.signup("Expiry", &[]).await;

    // A token signed with the service's own key that expired a minute ago.
    let signer = TokenSigner::load_or_generate(&stack.config.signing_key_file).unwrap();
    let issued = Utc::now() - chrono::Duration::hours(2);
    let expired = signer
        .sign(
            tenant,
            uuid::Uuid::new_v4(),
            issued,
            Utc::now() - chrono::Duration::minutes(1),
        )
        .unwrap();
    let error = verify(&stack, &expired).await.unwrap_err();
    assert_eq!(
        error.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );

    // A jti the service never minted is not active.
    assert!(!token_active(&stack, &uuid::Uuid::new_v4().to_string()).await);
    assert!(!token_active(&stack, "not-a-uuid").await);

    // The status endpoint is for the gateway only.
    let response = stack
        .http
        .get(format!(
            "{}/internal/tokens/{}",
            stack.tenant_url,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let (_, body) = stack
        .graphql(
            &stack.tenant_url,
            Some(tenant),
            r#"mutation { createApiToken(input: {name: "x", expiresInDays: 0}) { token } }"#,
            json!({}),
        )
        .await;
    assert_eq!(first_code(&body), "BAD_USER_INPUT");
    tokio::time::sleep(Duration::from_millis(1)).await;
    stack.cleanup().await;
}
