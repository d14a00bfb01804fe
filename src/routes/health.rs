//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use poem::{Response, handler, http::StatusCode, web::Data};

use crate::app::AppState;

/// Liveness: the process serves requests.
#[handler]
pub fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 503 while log shipping to Loki is failing, so an orchestrator can tell
/// that activity is not reaching Loki. Always ready when Loki is not configured.
#[handler]
pub fn readyz(state: Data<&Arc<AppState>>) -> Response {
    match state.telemetry.loki_ready() {
        Some(false) => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body("degraded: log shipping to Loki is failing"),
        Some(true) | None => Response::builder().body("ready"),
    }
}

/// Prometheus text format, version 0.0.4.
#[handler]
pub fn metrics(state: Data<&Arc<AppState>>) -> Response {
    let mut body = String::with_capacity(4096);
    state.http_metrics.render(&mut body);
    state.telemetry.render_metrics(&mut body);
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}
