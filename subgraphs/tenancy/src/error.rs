//! The error every subgraph returns, with the stable codes of the contract.
//!
//! Client errors carry a safe message and a code; internal errors are logged
//! once, where they are turned into a response, and reach the client as a
//! generic message with the code `INTERNAL`.

use async_graphql::ErrorExtensions;

/// What went wrong, as the client will be told.
///
/// Deliberately not `Display`: async-graphql converts any `Display` error
/// into a GraphQL error without a code, and every error here must carry one.
#[derive(Debug)]
pub enum Error {
    /// No valid credentials: 401 `UNAUTHENTICATED`.
    Unauthenticated(String),
    /// The tenant did not sign up for this app (the app's name):
    /// 403 `SERVICE_NOT_ENABLED`.
    ServiceNotEnabled(String),
    /// The tenant's database for this app (the app's name) is still being
    /// created, or its creation failed and awaits a retry:
    /// 503 `TENANT_PROVISIONING`, retry later.
    TenantNotReady(String),
    /// Malformed or invalid input: 400 `BAD_USER_INPUT`.
    BadUserInput(String),
    /// No such record for this tenant: 404 `NOT_FOUND`.
    NotFound(String),
    /// The change conflicts with the current state: 409 `CONFLICT`.
    Conflict(String),
    /// Anything else: 500 `INTERNAL`; the details go to the log only.
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        Error::Internal(error)
    }
}

/// The kit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable code clients see in `extensions.code` / `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::ServiceNotEnabled(_) => "SERVICE_NOT_ENABLED",
            Error::TenantNotReady(_) => "TENANT_PROVISIONING",
            Error::BadUserInput(_) => "BAD_USER_INPUT",
            Error::NotFound(_) => "NOT_FOUND",
            Error::Conflict(_) => "CONFLICT",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status a REST client sees for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Unauthenticated(_) => 401,
            Error::ServiceNotEnabled(_) => 403,
            Error::TenantNotReady(_) => 503,
            Error::BadUserInput(_) => 400,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::Internal(_) => 500,
        }
    }

    /// The message safe to show a client: internal details stay in the log.
    pub fn client_message(&self) -> String {
        match self {
            Error::Unauthenticated(message)
            | Error::BadUserInput(message)
            | Error::NotFound(message)
            | Error::Conflict(message) => message.clone(),
            Error::ServiceNotEnabled(app) => {
                format!("this tenant has not signed up for the {app} service")
            }
            Error::TenantNotReady(app) => {
                format!("the tenant's {app} database is being provisioned; retry shortly")
            }
            Error::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        match error {
            // An update whose row a concurrent request deleted after it was
            // read: to the client, the record is simply gone.
            sea_orm::DbErr::RecordNotUpdated => {
                Error::NotFound("the record no longer exists".into())
            }
            error => Error::Internal(error.into()),
        }
    }
}

impl From<Error> for async_graphql::Error {
    fn from(error: Error) -> Self {
        if let Error::Internal(inner) = &error {
            tracing::error!(target: "tenancy::error", error = format!("{inner:#}"), "internal error");
        }
        let code = error.code();
        let retryable = matches!(error, Error::TenantNotReady(_));
        async_graphql::Error::new(error.client_message()).extend_with(|_, extensions| {
            extensions.set("code", code);
            if retryable {
                extensions.set("retryable", true);
            }
        })
    }
}

/// Sets `extensions.code` on errors async-graphql raised itself (parse,
/// validation, variable coercion), so every error a client sees has a code.
/// Errors without a path never reached a resolver: they are bad input.
pub fn ensure_error_codes(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if error.path.is_empty() {
            "BAD_USER_INPUT"
        } else {
            "INTERNAL"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_of_a_vanished_row_is_not_found() {
        let error = Error::from(sea_orm::DbErr::RecordNotUpdated);
        assert_eq!(error.code(), "NOT_FOUND");
    }

    #[test]
    fn internal_errors_hide_their_details() {
        let error = Error::Internal(anyhow::anyhow!("password=hunter2 at db"));
        assert_eq!(error.client_message(), "internal error");
        assert_eq!(error.code(), "INTERNAL");
    }

    #[test]
    fn provisioning_errors_are_marked_retryable() {
        let error: async_graphql::Error = Error::TenantNotReady("fact".into()).into();
        let extensions = error.extensions.unwrap();
        assert_eq!(
            extensions.get("code").unwrap().to_string(),
            "\"TENANT_PROVISIONING\""
        );
        assert!(extensions.get("retryable").is_some());
    }
}
