//! End-to-end tests of the tenancy core on real PostgreSQL and a real
//! Kafka-protocol broker: signup → event → provisioning → requests.

mod broker_outage;
mod compose_file;
mod event_log;
mod facts;
mod isolation;
mod launcher;
mod outbox_relay;
mod provisioning;
mod stack;
mod tokens;
