//! One span and one `http_request` activity event per request, plus HTTP metrics.
//!
//! The span carries the request id (from a valid `x-request-id` header or a new
//! UUID) and the signed-in user, so every event inside the request is tied to both.
//! The id is echoed in the `x-request-id` response header.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result, http::HeaderValue,
    session::Session,
};
use tracing::{Instrument, field::Empty};

use super::{AppState, route_template};
use crate::activity;

const REQUEST_ID_HEADER: &str = "x-request-id";
const REQUEST_ID_MAX_BYTES: usize = 64;

pub struct RequestLog;

impl<E: Endpoint> Middleware<E> for RequestLog {
    type Output = RequestLogEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestLogEndpoint { inner }
    }
}

pub struct RequestLogEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for RequestLogEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let route = route_template(req.uri().path());
        let method = method_label(req.method());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            route,
            user_id = Empty,
            user_name = Empty,
        );
        record_user(&span, &req);
        let metrics = req.data::<Arc<AppState>>().cloned();
        let response = self.inner.get_response(req).instrument(span.clone()).await;
        let mut response = response.into_response();
        let status = response.status().as_u16();
        let latency = started.elapsed();
        span.in_scope(|| activity::http_request(method, route, status, latency));
        if let Some(state) = metrics {
            state.http_metrics.observe(method, route, status, latency);
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        Ok(response)
    }
}

/// Returns the method for logs and metric labels. Methods outside the standard set
/// collapse into `other`, because clients can send any token of any length.
fn method_label(method: &poem::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// Uses the caller's request id when it is short and plain, else makes a new one.
/// Plain means ASCII letters, digits, `-`, `_` and `.`, so ids cannot inject text
/// into log lines.
fn request_id(req: &Request) -> String {
    let header = req
        .header(REQUEST_ID_HEADER)
        .filter(|id| !id.is_empty() && id.len() <= REQUEST_ID_MAX_BYTES)
        .filter(|id| {
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    match header {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    }
}

fn record_user(span: &tracing::Span, req: &Request) {
    let session = req.extensions().get::<Session>();
    let state = req.data::<Arc<AppState>>();
    let (Some(session), Some(state)) = (session, state) else {
        return;
    };
    if let Some(user) = state.sessions.current_user(session) {
        span.record("user_id", user.sub.as_str());
        span.record("user_name", user.name.as_str());
    }
}
