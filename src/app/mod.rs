//! Route assembly and shared state.

mod request_log;
mod route_template;
mod same_origin;
mod security_headers;

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, Route, get,
    middleware::{CatchPanic, SizeLimit},
    session::{CookieConfig, CookieSession},
    web::cookie::{CookieKey, SameSite},
};
use poem_openapi::OpenApiService;

use crate::{
    api::MeApi,
    auth::{LoginBackend, session::Sessions},
    config::AppConfig,
    http_metrics::HttpMetrics,
    routes,
    telemetry::Telemetry,
};
pub use route_template::route_template;

/// Largest accepted form body, in bytes. The development login form is far smaller.
pub const FORM_MAX_BYTES: usize = 16 * 1024;

/// Name of the encrypted session cookie.
pub const SESSION_COOKIE: &str = "nixtla_session";

/// Everything handlers share. Built once at startup.
pub struct AppState {
    pub config: AppConfig,
    pub login: LoginBackend,
    /// Key for both encrypted cookies (session and login state).
    pub cookie_key: CookieKey,
    pub sessions: Sessions,
    pub telemetry: Telemetry,
    pub http_metrics: HttpMetrics,
}

/// Builds the whole application: pages, sign-in, the JSON API with its explorer,
/// health and metrics, wrapped in the request log, security headers and sessions.
pub fn build(state: Arc<AppState>) -> impl Endpoint + 'static {
    // A relative server URL keeps "Try it out" working whatever host and port the
    // explorer was opened on.
    let api = OpenApiService::new(MeApi, "nixtla", env!("CARGO_PKG_VERSION")).server("/api");
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let session = CookieSession::new(session_cookie_config(&state));
    let dev_login = routes::auth::dev_login.with(SizeLimit::new(FORM_MAX_BYTES));
    Route::new()
        .at("/", get(routes::pages::index))
        .at("/nixtla", get(routes::pages::nixtla))
        .at("/login", get(routes::auth::login).post(dev_login))
        .at("/auth", get(routes::auth::callback))
        .at(
            "/logout",
            get(routes::auth::logout).post(routes::auth::logout),
        )
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .at("/metrics", get(routes::health::metrics))
        .at("/favicon.ico", get(routes::pages::favicon))
        .nest("/api", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .catch_error(routes::pages::not_found)
        .catch_error(routes::pages::method_not_allowed)
        .with(same_origin::SameOriginForms)
        .with(security_headers::SecurityHeaders)
        .with(CatchPanic::new())
        .with(request_log::RequestLog)
        .with(session)
        .data(state)
}

fn session_cookie_config(state: &AppState) -> CookieConfig {
    CookieConfig::private(state.cookie_key.clone())
        .name(SESSION_COOKIE)
        .path("/")
        .http_only(true)
        .secure(state.config.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(state.config.session_ttl)
}
