//! End-to-end tests of the tenancy core on real PostgreSQL and a real
//! Kafka-protocol broker: signup → event → provisioning → requests.

mod stack;
mod provisioning;
mod facts;
mod tokens;
mod broker_outage;
