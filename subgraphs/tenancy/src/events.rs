//! The events the services exchange (see `docs/events.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::ids::TenantId;

/// The payload version this code writes and reads. A consumer skips events
/// of another version (a breaking change bumps it; additions do not).
pub const EVENT_VERSION: u32 = 1;

/// The apps a tenant can sign up for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    /// Random facts.
    Fact,
    /// The org chart.
    Org,
    /// TODOs.
    Todo,
}

impl ServiceName {
    /// Every app, in a fixed order.
    pub const ALL: [ServiceName; 3] = [ServiceName::Fact, ServiceName::Org, ServiceName::Todo];

    /// The canonical name used in responses, events and database names.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Fact => "fact",
            ServiceName::Org => "org",
            ServiceName::Todo => "todo",
        }
    }

    /// Parses a name a client or an event gave: the canonical names and the
    /// seed's aliases (`fact-app`, …), any case.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_suffix("-app").unwrap_or(&lower);
        Self::ALL
            .into_iter()
            .find(|service| service.as_str() == name)
            .ok_or_else(|| {
                Error::BadUserInput(format!(
                    "unknown service {text:?}; expected fact, org or todo"
                ))
            })
    }
}

/// Published to `tenant.signups` (key: the tenant id) when a tenant signs up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignupEvent {
    /// Unique per event; a consumer treats a repeat as already done.
    pub event_id: Uuid,
    /// Schema version of this payload: 1.
    pub version: u32,
    /// The new tenant.
    pub tenant_id: TenantId,
    /// Its display name.
    pub name: String,
    /// Canonical names of the apps it signed up for. Kept as strings, so a
    /// consumer can skip names it does not know (a newer producer).
    pub services: Vec<String>,
    /// When the tenant signed up.
    pub occurred_at: DateTime<Utc>,
}

impl SignupEvent {
    /// Whether the tenant signed up for `service` (aliases accepted).
    pub fn includes(&self, service: ServiceName) -> bool {
        self.services
            .iter()
            .any(|name| ServiceName::parse(name).ok() == Some(service))
    }
}

/// Published to `tenant.provisioning` (key: the tenant id) by an app each
/// time a tenant's database reaches `ready` or `failed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProvisioningEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// Schema version of this payload: 1.
    pub version: u32,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The app that reports.
    pub service: ServiceName,
    /// `ready` or `failed`.
    pub status: String,
    /// Why it failed, when it did (no internal details).
    pub error: Option<String>,
    /// When the app observed this status; older reports never overwrite
    /// newer ones.
    pub occurred_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_accept_the_seed_aliases() {
        assert_eq!(ServiceName::parse("fact-app").unwrap(), ServiceName::Fact);
        assert_eq!(ServiceName::parse(" Todo ").unwrap(), ServiceName::Todo);
        assert_eq!(
            ServiceName::parse("billing").unwrap_err().code(),
            "BAD_USER_INPUT"
        );
        assert!(ServiceName::parse("org-app-app").is_err());
    }

    #[test]
    fn signup_events_have_the_contract_shape() {
        let event = SignupEvent {
            event_id: Uuid::nil(),
            version: 1,
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            name: "Acme".into(),
            services: vec!["fact".into()],
            occurred_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let json = serde_json::to_value(&event).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "event_id",
                "name",
                "occurred_at",
                "services",
                "tenant_id",
                "version"
            ]
        );
        assert_eq!(json["occurred_at"], "1970-01-01T00:00:00Z");
        assert!(event.includes(ServiceName::Fact) && !event.includes(ServiceName::Org));
    }
}
