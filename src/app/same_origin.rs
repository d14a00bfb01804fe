//! Rejects cross-site form posts (login CSRF, forced sign-out) with 403.
//!
//! Current browsers send `Sec-Fetch-Site` on every request, and a POST marked
//! `cross-site` or `same-site` is rejected. Older browsers send only `Origin`, which
//! must then match the public URL. Because pages set `Referrer-Policy: no-referrer`,
//! browsers send `Origin: null` even on same-origin posts, so `null` alone proves
//! nothing and passes. A POST with neither header comes from a non-browser client,
//! which cannot carry a victim's cookies. SameSite=Lax cookies already keep the
//! session out of cross-site POSTs; this check also covers the development login
//! form, which needs no cookie to be abused.

use std::sync::Arc;

use poem::{Endpoint, Middleware, Request, Response, Result, http::Method, http::StatusCode};

use super::AppState;
use crate::routes::pages::error_page;

pub struct SameOriginForms;

impl<E: Endpoint> Middleware<E> for SameOriginForms {
    type Output = SameOriginFormsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        SameOriginFormsEndpoint { inner }
    }
}

pub struct SameOriginFormsEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for SameOriginFormsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if req.method() == Method::POST && is_cross_site(&req) {
            tracing::warn!(
                origin = req.header("origin"),
                "cross-site form post rejected"
            );
            let message = "This form was sent from another site.";
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "Forbidden",
                message,
                false,
            ));
        }
        Ok(self.inner.get_response(req).await)
    }
}

fn is_cross_site(req: &Request) -> bool {
    if let Some(site) = req.header("sec-fetch-site") {
        return matches!(site, "cross-site" | "same-site");
    }
    let Some(origin) = req.header("origin").filter(|origin| *origin != "null") else {
        return false;
    };
    let Some(state) = req.data::<Arc<AppState>>() else {
        return true;
    };
    origin != state.config.public_url.origin().ascii_serialization()
}
