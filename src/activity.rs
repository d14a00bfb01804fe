//! The activity events: one `tracing` event per step a person takes.
//!
//! Every event has target `nixtla::activity` and an `event` field naming the step.
//! The field names here are the schema that the Loki layer, the stdout fallback and
//! the Grafana dashboards rely on, so change them together. Values that identify a
//! person (`user_id`, `user_name`) become Loki structured metadata, never labels.
//! No event carries a token, an authorization code, a cookie or a query string.

use std::time::Duration;

use crate::auth::session::SignedInUser;

/// The `target` of every activity event.
pub const TARGET: &str = "nixtla::activity";

/// Why a sign-in attempt failed. The names are stable: dashboards group by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// The `state` parameter did not match the one stored in the login cookie.
    StateMismatch,
    /// The callback arrived without a login cookie, or after it expired.
    LoginExpired,
    /// The person declined at the provider (`error=access_denied`).
    AccessDenied,
    /// The provider returned another `error` parameter.
    ProviderError,
    /// The callback had neither `code` nor `error`.
    MissingCode,
    /// The token endpoint rejected the code.
    TokenExchange,
    /// The token endpoint could not be reached or returned something unreadable.
    ProviderUnavailable,
    /// The ID token was missing or failed verification.
    IdToken,
    /// The email address is missing or not verified.
    EmailUnverified,
    /// The email domain is not on the allow-list.
    DomainNotAllowed,
    /// The development login form had invalid input.
    InvalidInput,
}

impl LoginFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateMismatch => "state_mismatch",
            Self::LoginExpired => "login_expired",
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::MissingCode => "missing_code",
            Self::TokenExchange => "token_exchange",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::IdToken => "id_token",
            Self::EmailUnverified => "email_unverified",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::InvalidInput => "invalid_input",
        }
    }
}

/// Records a successful sign-in.
pub fn login(user: &SignedInUser, provider: &str) {
    tracing::info!(
        target: TARGET,
        event = "login",
        user_id = %user.sub,
        user_name = %user.name,
        email_domain = user.email_domain(),
        provider,
        "user signed in"
    );
}

/// Records a failed sign-in. `detail` is for operators and must not contain secrets.
pub fn login_failed(reason: LoginFailure, provider: &str, detail: &str) {
    tracing::warn!(
        target: TARGET,
        event = "login_failed",
        reason = reason.as_str(),
        provider,
        detail,
        "sign-in failed"
    );
}

/// Records a view of a page. `path` never includes the query string.
pub fn page_view(path: &str, user: Option<&SignedInUser>) {
    tracing::info!(
        target: TARGET,
        event = "page_view",
        path,
        user_id = user.map(|user| user.sub.as_str()),
        user_name = user.map(|user| user.name.as_str()),
        "page viewed"
    );
}

/// Records a sign-out.
pub fn logout(user: &SignedInUser) {
    tracing::info!(
        target: TARGET,
        event = "logout",
        user_id = %user.sub,
        user_name = %user.name,
        "user signed out"
    );
}

/// Records one finished HTTP request. `route` is the route template, never the raw
/// URL, so neither query strings nor ids end up in the log.
pub fn http_request(method: &str, route: &str, status: u16, latency: Duration) {
    // Whole microseconds, so the value prints as 0.696 rather than 0.6960459999999999.
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    tracing::info!(
        target: TARGET,
        event = "http_request",
        method,
        route,
        status,
        latency_ms,
        "request finished"
    );
}
