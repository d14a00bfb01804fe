//! Sessions ended by sign-out, so that a copy of the old cookie stops working.
//!
//! Session cookies are self-contained, which lets any replica serve any request, but
//! it also means a cookie stays valid until it expires unless the server remembers
//! that it was ended. Each replica keeps the ids of sessions signed out through it.
//! NOTE: the list lives in this process only. With several replicas, a cookie
//! replayed against a replica that did not handle the sign-out stays valid until
//! its expiry, so keep the session lifetime short in that setup.

use std::{collections::HashMap, sync::Mutex};

use super::session::unix_now;

/// Most ended sessions remembered at once. When full, the entry closest to its
/// expiry is forgotten first.
pub const MAX_REVOKED_SESSIONS: usize = 100_000;

#[derive(Default)]
pub struct RevokedSessions {
    /// Session id to the time (Unix seconds) after which the cookie expires anyway.
    ended: Mutex<HashMap<String, u64>>,
}

impl RevokedSessions {
    /// Remembers `sid` as ended until `expires_at` (Unix seconds).
    pub fn revoke(&self, sid: &str, expires_at: u64) {
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if ended.len() >= MAX_REVOKED_SESSIONS {
            let now = unix_now();
            ended.retain(|_, expiry| *expiry > now);
        }
        if ended.len() >= MAX_REVOKED_SESSIONS {
            let soonest = ended.iter().min_by_key(|(_, expiry)| **expiry);
            if let Some(sid) = soonest.map(|(sid, _)| sid.clone()) {
                ended.remove(&sid);
            }
        }
        ended.insert(sid.to_owned(), expires_at);
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        let ended = self
            .ended
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        ended.contains_key(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_session_is_remembered() {
        let revoked = RevokedSessions::default();
        revoked.revoke("a", unix_now() + 60);
        assert!(revoked.is_revoked("a"));
        assert!(!revoked.is_revoked("b"));
    }

    #[test]
    fn full_list_forgets_expired_entries_first() {
        let revoked = RevokedSessions::default();
        for index in 0..MAX_REVOKED_SESSIONS {
            revoked.revoke(&index.to_string(), 0);
        }
        revoked.revoke("new", unix_now() + 60);
        assert!(revoked.is_revoked("new"));
        assert!(!revoked.is_revoked("0"));
    }
}
