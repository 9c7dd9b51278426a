//! The hybrid-tenancy gateway: the one door clients use.
//!
//! It verifies bearer tokens against the tenant service's keys
//! ([`auth`]), composes the subgraphs' schemas into one federated schema,
//! plans and executes client operations across them ([`federation`]), and
//! offers REST aliases for common operations ([`rest`]). Every subgraph call
//! carries the gateway's hop secret and the verified tenant id; nothing a
//! client sends in headers reaches a subgraph.
//!
//! - [`config`]: [`GatewayConfig`], read from the environment.
//! - [`server`]: routes, limits, and [`serve`], which the launcher calls.
//! - [`error`]: client-facing errors and their stable codes.

pub mod auth;
pub mod config;
pub mod error;
pub mod federation;
pub mod rest;
pub mod server;

pub use config::{GatewayConfig, SubgraphEndpoint};
pub use server::serve;
