//! Sign-in and sign-out: `/login`, the OAuth callback `/auth`, and `/logout`.

use std::sync::Arc;

use askama::Template;
use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, header},
    session::Session,
    web::{Data, Form, Query, Redirect, cookie::CookieJar},
};
use serde::Deserialize;

use super::pages::{error_page, render};
use crate::{
    activity::{self, LoginFailure},
    app::AppState,
    auth::{
        LoginBackend,
        dev_login::DevLoginForm,
        login_state,
        oidc::{LoginError, OidcLogin},
        redirect::safe_next,
        session::SignedInUser,
    },
};

#[derive(Template)]
#[template(path = "dev_login.html")]
struct DevLoginPage<'a> {
    dev_login: bool,
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Starts a sign-in. With a provider: stores state, nonce and PKCE verifier in the
/// login cookie and redirects (302) to the provider. In development mode: shows the
/// form. A person who is already signed in goes straight to `next`.
#[handler]
pub fn login(
    state: Data<&Arc<AppState>>,
    Query(query): Query<LoginQuery>,
    session: &Session,
    jar: &CookieJar,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if state.sessions.current_user(session).is_some() {
        return Redirect::see_other(next).into_response();
    }
    match &state.login {
        LoginBackend::Oidc(oidc) => {
            let (url, pending) = oidc.begin(next);
            login_state::save(
                jar,
                &state.cookie_key,
                &pending,
                state.config.secure_cookies(),
            );
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, url.as_str())
                .finish()
        }
        LoginBackend::Development => dev_login_page(StatusCode::OK, &next, None),
    }
}

/// Accepts the development login form. Only exists in development mode.
#[handler]
pub fn dev_login(
    state: Data<&Arc<AppState>>,
    Form(form): Form<DevLoginForm>,
    session: &Session,
) -> Response {
    if !state.login.is_development() {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here.",
            false,
        );
    }
    let next = safe_next(form.next.as_deref());
    match form.into_user() {
        Ok(user) => sign_in(&state, session, &user, state.login.provider(), &next),
        Err(error) => {
            activity::login_failed(error.reason, state.login.provider(), &error.detail);
            dev_login_page(StatusCode::BAD_REQUEST, &next, Some(&error.detail))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The OAuth redirect URI. Checks the login cookie and `state`, exchanges the code,
/// verifies the ID token and starts the session.
#[handler]
pub async fn callback(
    state: Data<&Arc<AppState>>,
    Query(query): Query<CallbackQuery>,
    session: &Session,
    jar: &CookieJar,
) -> Response {
    let LoginBackend::Oidc(oidc) = &state.login else {
        let message = "Development login does not use a callback.";
        return error_page(StatusCode::NOT_FOUND, "Not found", message, true);
    };
    match complete_login(oidc, &state, &query, jar).await {
        Ok((user, next)) => sign_in(&state, session, &user, oidc.provider(), &next),
        Err(error) => {
            activity::login_failed(error.reason, oidc.provider(), &error.detail);
            login_failed_page(error.reason)
        }
    }
}

async fn complete_login(
    oidc: &OidcLogin,
    state: &AppState,
    query: &CallbackQuery,
    jar: &CookieJar,
) -> Result<(SignedInUser, String), LoginError> {
    let Some(pending) = login_state::read(jar, &state.cookie_key) else {
        if jar.get(login_state::COOKIE_NAME).is_some() {
            login_state::remove(jar);
        }
        return Err(LoginError::new(
            LoginFailure::LoginExpired,
            "no valid login cookie",
        ));
    };
    if pending.is_expired() {
        login_state::remove(jar);
        return Err(LoginError::new(
            LoginFailure::LoginExpired,
            "login cookie expired",
        ));
    }
    let received = query.state.as_deref().unwrap_or_default();
    if !pending.state_matches(received) {
        return Err(LoginError::new(
            LoginFailure::StateMismatch,
            "state does not match",
        ));
    }
    login_state::remove(jar);
    if let Some(error) = &query.error {
        return Err(provider_error(error));
    }
    let code = query.code.clone().filter(|code| !code.is_empty());
    let code = code.ok_or_else(|| LoginError::new(LoginFailure::MissingCode, "no code"))?;
    let user = oidc.finish(&pending, code).await?;
    Ok((user, pending.next))
}

/// Maps the provider's `error` parameter. Only a short, plain error code is logged,
/// because the value comes from the URL and anyone can set it.
fn provider_error(error: &str) -> LoginError {
    let plain = error.len() <= 64 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let code = if plain {
        error
    } else {
        "invalid_error_parameter"
    };
    let reason = match code {
        "access_denied" => LoginFailure::AccessDenied,
        _ => LoginFailure::ProviderError,
    };
    LoginError::new(reason, format!("provider returned error={code}"))
}

/// Signs out (GET or POST) and returns to the start page.
#[handler]
pub fn logout(state: Data<&Arc<AppState>>, session: &Session) -> Response {
    let user = state.sessions.current_user(session);
    if let Some(user) = &user {
        activity::logout(user);
    }
    state.sessions.end(session, user.as_ref());
    Redirect::see_other("/").into_response()
}

fn sign_in(
    state: &AppState,
    session: &Session,
    user: &SignedInUser,
    provider: &str,
    next: &str,
) -> Response {
    state.sessions.start(session, user);
    activity::login(user, provider);
    Redirect::see_other(next).into_response()
}

fn dev_login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let page = DevLoginPage {
        dev_login: true,
        next,
        error,
    };
    render(status, &page)
}

/// The page a person sees when sign-in fails. It never shows provider details.
fn login_failed_page(reason: LoginFailure) -> Response {
    use LoginFailure::*;
    let (status, message) = match reason {
        AccessDenied => (
            StatusCode::FORBIDDEN,
            "You declined the sign-in at the provider.",
        ),
        DomainNotAllowed => (
            StatusCode::FORBIDDEN,
            "Your email domain may not sign in here.",
        ),
        EmailUnverified => (
            StatusCode::FORBIDDEN,
            "Your provider has not verified your email.",
        ),
        TokenExchange | IdToken => (
            StatusCode::BAD_REQUEST,
            "The sign-in provider's answer could not be verified. Please try again.",
        ),
        ProviderUnavailable => (
            StatusCode::BAD_GATEWAY,
            "The sign-in provider could not be reached. Please try again later.",
        ),
        StateMismatch | LoginExpired | MissingCode | ProviderError | InvalidInput => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is invalid or has expired. Please start again.",
        ),
    };
    error_page(status, "Sign-in failed", message, false)
}
