//! The JSON API, described with OpenAPI. The explorer is served at `/docs` and the
//! spec at `/openapi.json`.

use std::sync::Arc;

use poem::{Request, session::Session, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme, auth::ApiKey, payload::Json};

use crate::{app::AppState, auth::session::SignedInUser};

pub struct MeApi;

// The name must match `app::SESSION_COOKIE`.
/// The encrypted session cookie set at sign-in.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "nixtla_session",
    key_in = "cookie",
    checker = "session_user"
)]
pub struct SessionCookie(SignedInUser);

async fn session_user(req: &Request, _cookie: ApiKey) -> Option<SignedInUser> {
    let session = req.extensions().get::<Session>()?;
    let state = req.data::<Arc<AppState>>()?;
    state.sessions.current_user(session)
}

/// The signed-in user.
#[derive(Object)]
pub struct Me {
    /// The provider's subject identifier.
    pub sub: String,
    pub name: String,
    pub email: Option<String>,
    /// Sign-in time, in seconds since the Unix epoch.
    pub signed_in_at: u64,
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The signed-in user.
    #[oai(status = 200)]
    Ok(Json<Me>),
}

#[OpenApi]
impl MeApi {
    /// Returns the signed-in user.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, auth: SessionCookie, _state: Data<&Arc<AppState>>) -> MeResponse {
        let user = auth.0;
        MeResponse::Ok(Json(Me {
            sub: user.sub,
            name: user.name,
            email: user.email,
            signed_in_at: user.signed_in_at,
        }))
    }
}
