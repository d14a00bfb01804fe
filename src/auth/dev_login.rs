//! The development login: a form that signs in any name and email, so `cargo run`
//! works on a machine with no OAuth client. The pages show a banner while it is on.

use serde::Deserialize;

use super::{
    oidc::LoginError,
    session::{EMAIL_MAX_BYTES, SignedInUser, clean_display_name},
};
use crate::activity::LoginFailure;

/// The provider name recorded in activity events for development sign-ins.
pub const PROVIDER: &str = "development";

#[derive(Debug, Deserialize)]
pub struct DevLoginForm {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub next: Option<String>,
}

impl DevLoginForm {
    /// Validates the form and builds the user. The subject is derived from the email
    /// so the same person keeps the same id across sign-ins.
    pub fn into_user(&self) -> Result<SignedInUser, LoginError> {
        let name = clean_display_name(&self.name);
        if name.is_empty() {
            return Err(invalid("name must not be empty"));
        }
        let email = self.email.trim().to_ascii_lowercase();
        if !is_plausible_email(&email) {
            return Err(invalid("email must look like name@domain"));
        }
        let sub = format!("dev:{email}");
        let mut user = SignedInUser::from_claims(&sub, Some(&name), None, Some(&email));
        user.issuer = PROVIDER.to_owned();
        Ok(user)
    }
}

fn invalid(detail: &str) -> LoginError {
    LoginError::new(LoginFailure::InvalidInput, detail)
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= EMAIL_MAX_BYTES
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str, email: &str) -> DevLoginForm {
        DevLoginForm {
            name: name.into(),
            email: email.into(),
            next: None,
        }
    }

    #[test]
    fn valid_form_signs_in() {
        let user = form("Ada", "Ada@Example.org").into_user().unwrap();
        assert_eq!(user.sub, "dev:ada@example.org");
        assert_eq!(user.name, "Ada");
    }

    #[test]
    fn invalid_forms_are_rejected() {
        for (name, email) in [
            ("", "a@x.org"),
            ("\n", "a@x.org"),
            ("Ada", "ada"),
            ("Ada", "a@x"),
        ] {
            let error = form(name, email).into_user().unwrap_err();
            assert_eq!(
                error.reason,
                LoginFailure::InvalidInput,
                "{name:?} {email:?}"
            );
        }
    }
}
