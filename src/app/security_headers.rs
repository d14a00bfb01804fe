//! Security headers on every response. The API explorer under `/docs` runs inline
//! scripts, so it gets a looser Content-Security-Policy than the pages.

use poem::{Endpoint, Middleware, Request, Response, Result, http::HeaderValue};

/// Pages need only their inline stylesheet and same-origin forms.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Swagger UI is served inline by poem-openapi and fetches `/openapi.json`.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub struct SecurityHeaders;

impl<E: Endpoint> Middleware<E> for SecurityHeaders {
    type Output = SecurityHeadersEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        SecurityHeadersEndpoint { inner }
    }
}

pub struct SecurityHeadersEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for SecurityHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let docs = req.uri().path().starts_with("/docs");
        let mut response = self.inner.get_response(req).await;
        let headers = response.headers_mut();
        let csp = if docs { DOCS_CSP } else { PAGE_CSP };
        headers.insert("content-security-policy", HeaderValue::from_static(csp));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        headers
            .entry("cache-control")
            .or_insert(HeaderValue::from_static("no-store"));
        Ok(response)
    }
}
