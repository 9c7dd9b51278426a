//! Identifiers and the database naming rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// A tenant's id. A newtype, so a tenant id cannot be passed where a record id
/// belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A fresh tenant id (UUIDv7: time-ordered).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The name of this tenant's database for `app`: `<app>_<uuid with
    /// underscores>`, lower case, 41 characters for a three-letter app, always
    /// a plain SQL identifier and within PostgreSQL's 63-character limit.
    pub fn database_name(&self, app: &str) -> String {
        let simple = self.0.as_hyphenated().to_string().replace('-', "_");
        format!("{}_{}", app.to_ascii_lowercase(), simple)
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        parse_uuid(text, "tenant id").map(Self)
    }
}

/// Parses a client-supplied id, so a malformed one becomes `BAD_USER_INPUT`
/// naming the field instead of a 500.
pub fn parse_uuid(text: &str, what: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text.trim())
        .map_err(|_| Error::BadUserInput(format!("{what} is not a valid UUID: {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_plain_lower_case_identifiers() {
        let tenant: TenantId = "0B6F7E1A-1C2D-4E5F-8A9B-0C1D2E3F4A5B".parse().unwrap();
        let name = tenant.database_name("fact");
        assert_eq!(name, "fact_0b6f7e1a_1c2d_4e5f_8a9b_0c1d2e3f4a5b");
        assert!(name.len() <= 63);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn a_malformed_tenant_id_is_bad_user_input() {
        let error = "not-a-uuid".parse::<TenantId>().unwrap_err();
        assert_eq!(error.code(), "BAD_USER_INPUT");
    }
}
