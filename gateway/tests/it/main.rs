//! Integration tests of the gateway against in-process subgraphs, a fake
//! tenant service and real HTTP on port 0.

mod auth;
mod federation;
mod golden;
mod introspection;
mod resilience;
mod rest;
mod subgraphs;
mod support;
