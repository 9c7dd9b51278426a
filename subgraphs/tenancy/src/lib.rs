//! The tenancy kit: everything a hybrid-tenancy subgraph needs to serve many
//! tenants, each from its own database.
//!
//! - [`ids`]: the [`TenantId`] newtype and the `<app>_<tenant>` naming rule.
//! - [`error`]: the [`Error`] every subgraph returns, with the stable codes of
//!   the public contract.
//! - [`config`]: typed settings shared by every service.
//! - [`host`]: a database cluster a tenant database lives on (`postgres://…`
//!   or `sqlite://dir`) and how to create and reach a database there.
//! - [`registry`]: an app's TenantDB registry, `{tenant → host, status}`.
//! - [`selector`]: the registry-backed connection selector with bounded pools.
//! - [`events`]: the `tenant.signups` and `tenant.provisioning` events.
//! - [`bus`]: the event-bus interface and its Kafka implementation.
//! - [`local_bus`]: the in-process bus of embedded mode, kept in a database.
//! - [`consumer`]: the at-least-once consume → handle → commit loop.
//! - [`app`]: starting an app subgraph's registry, selector and provisioner.
//! - [`provisioner`]: creates and migrates tenant databases from signups.
//! - [`hop`]: the gateway's hop credential and the tenant it vouches for.
//! - [`argument`]: `BAD_USER_INPUT` for input objects of the wrong shape.
//! - [`graphql`]: serving an async-graphql subgraph behind the hop check.
//! - [`paging`]: Relay pagination by UUIDv7 id.
//! - [`shutdown`]: graceful shutdown on SIGTERM and Ctrl-C.
//! - [`telemetry`]: logging set-up.
//! - `testing` (feature `testing`): the harness of the apps' tests.

pub mod app;
pub mod argument;
pub mod bus;
pub mod config;
pub mod consumer;
pub mod error;
pub mod events;
pub mod graphql;
pub mod hop;
pub mod host;
pub mod ids;
pub mod local_bus;
pub mod paging;
pub mod provisioner;
pub mod registry;
pub mod selector;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
pub use ids::TenantId;
