//! The HTML pages: the public start page, the signed-in page and error pages.

use std::sync::Arc;

use askama::Template;
use poem::{
    IntoResponse, Response,
    error::{MethodNotAllowedError, NotFoundError},
    handler,
    http::{StatusCode, header},
    session::Session,
    web::{Data, Redirect},
};

use crate::{activity, app::AppState};

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    dev_login: bool,
    user_name: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "nixtla.html")]
struct NixtlaPage<'a> {
    dev_login: bool,
    name: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    dev_login: bool,
    title: &'a str,
    message: &'a str,
}

#[handler]
pub fn index(state: Data<&Arc<AppState>>, session: &Session) -> Response {
    let user = state.sessions.current_user(session);
    activity::page_view("/", user.as_ref());
    let page = IndexPage {
        dev_login: state.login.is_development(),
        user_name: user.as_ref().map(|user| user.name.as_str()),
    };
    render(StatusCode::OK, &page)
}

#[handler]
pub fn nixtla(state: Data<&Arc<AppState>>, session: &Session) -> Response {
    let Some(user) = state.sessions.current_user(session) else {
        return Redirect::see_other("/login?next=/nixtla").into_response();
    };
    activity::page_view("/nixtla", Some(&user));
    let page = NixtlaPage {
        dev_login: state.login.is_development(),
        name: &user.name,
    };
    render(StatusCode::OK, &page)
}

/// Answers browsers' automatic favicon request with no content, so it does not show
/// up as a 404 in the request log and the error-rate panels.
#[handler]
pub fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Replaces poem's empty 404 with an error page.
pub async fn not_found(_: NotFoundError) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing here.",
        false,
    )
}

/// Replaces poem's empty 405 with an error page.
pub async fn method_not_allowed(_: MethodNotAllowedError) -> Response {
    let message = "This address does not accept that method.";
    error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        message,
        false,
    )
}

/// Builds an error page. The message must be safe to show to anyone.
pub fn error_page(status: StatusCode, title: &str, message: &str, dev_login: bool) -> Response {
    let page = ErrorPage {
        dev_login,
        title,
        message,
    };
    render(status, &page)
}

/// Renders a template into an HTML response. Askama escapes every value.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(body),
        Err(error) => {
            tracing::error!(error = %error, "template rendering failed");
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body("internal error")
        }
    }
}
