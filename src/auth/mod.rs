//! Sign-in: a real OpenID Connect provider, or the local development login.

pub mod dev_login;
pub mod login_state;
pub mod oidc;
pub mod redirect;
pub mod revocation;
pub mod session;
pub mod signing_keys;

/// How people sign in to this instance.
pub enum LoginBackend {
    Oidc(Box<oidc::OidcLogin>),
    /// No client id is configured: a form accepts any name and email. Never use it
    /// on a server that others can reach.
    Development,
}

impl LoginBackend {
    /// The provider name recorded in activity events.
    pub fn provider(&self) -> &str {
        match self {
            Self::Oidc(oidc) => oidc.provider(),
            Self::Development => dev_login::PROVIDER,
        }
    }

    pub fn is_development(&self) -> bool {
        matches!(self, Self::Development)
    }
}
