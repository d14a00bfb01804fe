//! The signed-in user, kept in the encrypted session cookie.
//!
//! The cookie contains only a random session id, the subject, display name, email and
//! sign-in time. It never contains tokens, so a stolen cookie cannot be turned into
//! provider access. Sessions expire after the configured time even if a client keeps
//! the cookie longer, and sign-out revokes the session id (see `revocation`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use poem::session::Session;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::revocation::RevokedSessions;

const USER_KEY: &str = "user";

/// Maximum display name length kept, in characters. Longer names are cut so the session
/// cookie stays under the 4 KiB that browsers accept.
pub const NAME_MAX_CHARS: usize = 200;
/// Maximum email address length kept, in bytes (the SMTP path limit).
pub const EMAIL_MAX_BYTES: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInUser {
    /// Random id of this sign-in, 128 bits in hex. Sign-out revokes it.
    pub sid: String,
    /// The provider's stable subject identifier (`sub`).
    pub sub: String,
    /// The identity provider that signed the user in: the OIDC issuer URL, or
    /// `development`. A session is only valid on an instance configured with it.
    #[serde(default)]
    pub issuer: String,
    pub name: String,
    pub email: Option<String>,
    /// Seconds since the Unix epoch.
    pub signed_in_at: u64,
}

impl SignedInUser {
    /// Builds a user from provider claims. The display name falls back to the given
    /// name, then the email, then the subject, because providers such as Google do not
    /// guarantee a `name` claim.
    pub fn from_claims(
        sub: &str,
        name: Option<&str>,
        given_name: Option<&str>,
        email: Option<&str>,
    ) -> Self {
        let name = [name, given_name, email]
            .into_iter()
            .flatten()
            .map(clean_display_name)
            .find(|name| !name.is_empty())
            .unwrap_or_else(|| clean_display_name(sub));
        Self {
            sid: new_session_id(),
            sub: sub.to_owned(),
            issuer: String::new(),
            name,
            email: email
                .filter(|email| email.len() <= EMAIL_MAX_BYTES)
                .map(str::to_owned),
            signed_in_at: unix_now(),
        }
    }

    /// Returns the part of the email after `@`, lower-cased, or `None`.
    pub fn email_domain(&self) -> Option<String> {
        let email = self.email.as_deref()?;
        let (_, domain) = email.rsplit_once('@')?;
        Some(domain.to_ascii_lowercase())
    }
}

/// Removes control characters, trims whitespace and cuts the name to
/// [`NAME_MAX_CHARS`]. HTML escaping happens in the templates, not here.
pub fn clean_display_name(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(NAME_MAX_CHARS)
        .collect()
}

/// Session rules shared by every handler: lifetime, the issuer this instance trusts,
/// the email domain allow-list and the revoked session ids.
pub struct Sessions {
    pub ttl: Duration,
    pub issuer: String,
    /// Lower-case domains; empty allows any.
    pub allowed_email_domains: Vec<String>,
    pub revoked: RevokedSessions,
}

impl Sessions {
    pub fn new(ttl: Duration, issuer: String, allowed_email_domains: Vec<String>) -> Self {
        Self {
            ttl,
            issuer,
            allowed_email_domains,
            revoked: RevokedSessions::default(),
        }
    }

    /// Returns the signed-in user, or `None` when there is none, the sign-in is older
    /// than the lifetime, the session was signed out, or it was issued under other
    /// settings: another issuer (say a development instance sharing `SESSION_KEY`) or
    /// an email domain the allow-list no longer contains.
    pub fn current_user(&self, session: &Session) -> Option<SignedInUser> {
        let user: SignedInUser = session.get(USER_KEY)?;
        let age = unix_now().saturating_sub(user.signed_in_at);
        let live = age < self.ttl.as_secs() && !self.revoked.is_revoked(&user.sid);
        (live && user.issuer == self.issuer && self.domain_allowed(&user)).then_some(user)
    }

    fn domain_allowed(&self, user: &SignedInUser) -> bool {
        self.allowed_email_domains.is_empty()
            || user
                .email_domain()
                .is_some_and(|domain| self.allowed_email_domains.contains(&domain))
    }

    /// Stores the user in a fresh session. Renewing at sign-in discards anything an
    /// attacker may have planted in the session before (session fixation).
    pub fn start(&self, session: &Session, user: &SignedInUser) {
        session.renew();
        session.set(USER_KEY, user);
    }

    /// Ends the session: removes its cookie and revokes its id, so a copy of the
    /// cookie no longer signs anyone in.
    pub fn end(&self, session: &Session, user: Option<&SignedInUser>) {
        if let Some(user) = user {
            self.revoked
                .revoke(&user.sid, user.signed_in_at + self.ttl.as_secs());
        }
        session.purge();
    }
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_falls_back_to_given_name_then_email_then_sub() {
        let given = SignedInUser::from_claims("s", None, Some("Ada"), Some("a@x.org"));
        assert_eq!(given.name, "Ada");
        let email = SignedInUser::from_claims("s", Some("  "), None, Some("a@x.org"));
        assert_eq!(email.name, "a@x.org");
        let sub = SignedInUser::from_claims("s-1", None, None, None);
        assert_eq!(sub.name, "s-1");
    }

    #[test]
    fn long_name_is_cut_at_char_boundary() {
        let long = "é".repeat(10_000);
        let user = SignedInUser::from_claims("s", Some(&long), None, None);
        assert_eq!(user.name.chars().count(), NAME_MAX_CHARS);
    }

    #[test]
    fn control_characters_are_removed() {
        let user = SignedInUser::from_claims("s", Some("Ada\n\u{7}Lovelace"), None, None);
        assert_eq!(user.name, "AdaLovelace");
    }

    #[test]
    fn email_domain_is_lower_case() {
        let user = SignedInUser::from_claims("s", None, None, Some("Ada@Example.ORG"));
        assert_eq!(user.email_domain().as_deref(), Some("example.org"));
    }
}
