//! The short-lived login cookie that carries `state`, `nonce` and the PKCE verifier
//! from `/login` to `/auth`.
//!
//! The cookie is encrypted and authenticated (poem's private cookie jar, AES-GCM with
//! the cookie name as associated data), HttpOnly, SameSite=Lax so it survives the
//! provider's top-level redirect back, and it expires after ten minutes. The callback
//! removes it once `state` matches, so one login cookie serves one callback in a
//! well-behaved browser, and a forged callback link cannot cancel a sign-in in
//! progress.
//! NOTE: the service keeps no server-side record, so a copied cookie could be replayed
//! within its ten minutes; the provider's one-time authorization codes stop that
//! replay from signing anyone in.

use std::time::Duration;

use poem::web::cookie::{Cookie, CookieJar, CookieKey, SameSite};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::session::unix_now;

pub const COOKIE_NAME: &str = "nixtla_login";
/// Time allowed between `/login` and `/auth`.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Local path to open after sign-in, already checked by `safe_next`.
    pub next: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

impl LoginState {
    /// Compares the `state` parameter with the stored one in constant time.
    pub fn state_matches(&self, received: &str) -> bool {
        self.state.as_bytes().ct_eq(received.as_bytes()).into()
    }

    pub fn is_expired(&self) -> bool {
        unix_now().saturating_sub(self.created_at) >= LOGIN_TTL.as_secs()
    }
}

/// Stores the login state in the encrypted login cookie.
pub fn save(jar: &CookieJar, key: &CookieKey, login: &LoginState, secure: bool) {
    let mut cookie = Cookie::new(COOKIE_NAME, login);
    cookie.set_http_only(true);
    cookie.set_secure(secure);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_path("/");
    cookie.set_max_age(LOGIN_TTL);
    jar.private_with_key(key).add(cookie);
}

/// Reads the login state. Returns `None` when the cookie is missing, was tampered
/// with or cannot be decoded.
pub fn read(jar: &CookieJar, key: &CookieKey) -> Option<LoginState> {
    let cookie = jar.private_with_key(key).get(COOKIE_NAME)?;
    cookie.value::<LoginState>().ok()
}

/// Tells the browser to delete the login cookie.
pub fn remove(jar: &CookieJar) {
    let mut removal = Cookie::named(COOKIE_NAME);
    removal.set_path("/");
    removal.make_removal();
    jar.add(removal);
}
