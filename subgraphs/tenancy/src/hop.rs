//! The gateway's hop credential, and the tenant it vouches for.
//!
//! Subgraphs are reachable only through the gateway: it verifies the client's
//! JWT, then calls a subgraph with `X-Gateway-Auth: <GATEWAY_HOP_SECRET>` and
//! `X-Tenant-ID: <tenant from the verified token>`. A subgraph trusts
//! `X-Tenant-ID` only next to the right secret, so a direct call with a forged
//! header is refused. (A shared secret rather than a forwarded JWT keeps token
//! verification and revocation in one place, the gateway.) Beside the tenant
//! the gateway names the apps it signed up for (`X-Tenant-Services`), so an
//! app without a registry entry for the tenant can tell "not provisioned
//! yet" from "never chosen".

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::error::{Error, Result};
use crate::events::ServiceName;
use crate::ids::TenantId;

/// The header that carries the hop credential.
pub const HOP_HEADER: &str = "x-gateway-auth";
/// The header that carries the tenant the gateway verified.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// The header that carries the apps that tenant signed up for,
/// comma-separated canonical names.
pub const SERVICES_HEADER: &str = "x-tenant-services";

/// The shared secret between the gateway and the subgraphs.
#[derive(Clone)]
pub struct HopSecret(Arc<str>);

impl HopSecret {
    /// Wraps the configured secret.
    pub fn new(secret: &str) -> Self {
        Self(secret.into())
    }

    /// The secret, for the gateway's own requests.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the hop credential and returns the tenant the gateway vouched
    /// for, if any (`signup` is called without one).
    pub fn verify(&self, headers: &HeaderMap) -> Result<RequestTenant> {
        let presented = headers
            .get(HOP_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(presented, self.0.as_bytes()) {
            return Err(Error::Unauthenticated(
                "requests must come through the gateway".into(),
            ));
        }
        let tenant = match headers.get(TENANT_HEADER) {
            None => None,
            Some(value) => {
                let text = value.to_str().unwrap_or_default();
                let tenant = text.parse::<TenantId>().map_err(|_| {
                    Error::Unauthenticated("the gateway sent a malformed tenant id".into())
                })?;
                Some(tenant)
            }
        };
        // Only meaningful beside a tenant; names this version does not know
        // are ignored.
        let services = headers.get(SERVICES_HEADER).map(|value| {
            let names = value.to_str().unwrap_or_default().split(',');
            names
                .filter_map(|name| ServiceName::parse(name).ok())
                .fold(0u8, |set, service| set | service_bit(service))
        });
        Ok(RequestTenant {
            tenant,
            services: services.filter(|_| tenant.is_some()),
        })
    }
}

impl std::fmt::Debug for HopSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopSecret(..)")
    }
}

/// The tenant a request acts for, as vouched for by the gateway, and the
/// apps it signed up for when the gateway said.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestTenant {
    tenant: Option<TenantId>,
    /// One bit per [`ServiceName`]; `None` when the gateway did not say.
    services: Option<u8>,
}

impl RequestTenant {
    /// The tenant, if the request has one.
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant
    }

    /// The tenant, or `UNAUTHENTICATED` for a request without one.
    pub fn require(&self) -> Result<TenantId> {
        self.tenant
            .ok_or_else(|| Error::Unauthenticated("this operation needs a tenant token".into()))
    }

    /// Whether the tenant signed up for `service`; `None` when the gateway
    /// did not say.
    pub fn signed_up_for(&self, service: ServiceName) -> Option<bool> {
        self.services.map(|set| set & service_bit(service) != 0)
    }
}

fn service_bit(service: ServiceName) -> u8 {
    1 << (service as u8)
}

/// The request's tenant inside a GraphQL resolver.
pub fn tenant_of(ctx: &async_graphql::Context<'_>) -> Result<TenantId> {
    request_tenant(ctx).require()
}

/// What the gateway vouched for, inside a GraphQL resolver.
pub fn request_tenant(ctx: &async_graphql::Context<'_>) -> RequestTenant {
    ctx.data_opt::<RequestTenant>().copied().unwrap_or_default()
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed secret was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (key, value) in pairs {
            map.insert(*key, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_forged_tenant_header_without_the_secret_is_refused() {
        let secret = HopSecret::new("0123456789abcdef");
        let tenant = TenantId::new().to_string();
        let forged = headers(&[(TENANT_HEADER, &tenant)]);
        assert_eq!(
            secret.verify(&forged).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
        let wrong = headers(&[(TENANT_HEADER, &tenant), (HOP_HEADER, "0123456789abcdeX")]);
        assert!(secret.verify(&wrong).is_err());
    }

    #[test]
    fn the_gateway_vouches_for_the_tenant() {
        let secret = HopSecret::new("0123456789abcdef");
        let tenant = TenantId::new();
        let good = headers(&[
            (TENANT_HEADER, &tenant.to_string()),
            (HOP_HEADER, "0123456789abcdef"),
        ]);
        assert_eq!(secret.verify(&good).unwrap().require().unwrap(), tenant);
        let anonymous = headers(&[(HOP_HEADER, "0123456789abcdef")]);
        assert!(secret.verify(&anonymous).unwrap().require().is_err());
    }

    #[test]
    fn the_gateway_names_the_tenants_apps_beside_it() {
        let secret = HopSecret::new("0123456789abcdef");
        let tenant = TenantId::new().to_string();
        let named = headers(&[
            (HOP_HEADER, "0123456789abcdef"),
            (TENANT_HEADER, &tenant),
            (SERVICES_HEADER, "fact,todo,billing"),
        ]);
        let request = secret.verify(&named).unwrap();
        assert_eq!(request.signed_up_for(ServiceName::Fact), Some(true));
        assert_eq!(request.signed_up_for(ServiceName::Todo), Some(true));
        assert_eq!(request.signed_up_for(ServiceName::Org), Some(false));

        let silent = headers(&[(HOP_HEADER, "0123456789abcdef"), (TENANT_HEADER, &tenant)]);
        let request = secret.verify(&silent).unwrap();
        assert_eq!(request.signed_up_for(ServiceName::Fact), None);
        let none = headers(&[
            (HOP_HEADER, "0123456789abcdef"),
            (TENANT_HEADER, &tenant),
            (SERVICES_HEADER, ""),
        ]);
        let request = secret.verify(&none).unwrap();
        assert_eq!(request.signed_up_for(ServiceName::Fact), Some(false));
    }
}
