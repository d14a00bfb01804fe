//! The provider's ID token signing keys (its JWKS), refreshed when a token names a
//! key this service has not seen.
//!
//! Providers rotate keys: Google publishes new ones regularly and retires old ones.
//! Keys come with discovery at startup; when an ID token fails verification because
//! no known key matches, the set is fetched again, at most once per
//! [`REFRESH_INTERVAL`], so forged tokens cannot make this service hammer the
//! provider.

use std::{
    sync::{Mutex, RwLock},
    time::{Duration, Instant},
};

use openidconnect::{JsonWebKeySetUrl, core::CoreJsonWebKeySet};

/// Minimum time between two fetches of the key set.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

pub struct SigningKeys {
    url: JsonWebKeySetUrl,
    current: RwLock<CoreJsonWebKeySet>,
    /// When the last refresh started; `None` until the first one.
    last_refresh: Mutex<Option<Instant>>,
}

impl SigningKeys {
    /// Starts with the keys fetched during discovery.
    pub fn new(url: JsonWebKeySetUrl, keys: CoreJsonWebKeySet) -> Self {
        Self {
            url,
            current: RwLock::new(keys),
            last_refresh: Mutex::new(None),
        }
    }

    /// Returns a copy of the current keys.
    pub fn current(&self) -> CoreJsonWebKeySet {
        self.current
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Fetches the key set again unless a refresh happened within
    /// [`REFRESH_INTERVAL`]. Returns true when new keys were stored.
    pub async fn refresh(&self, http: &reqwest::Client) -> bool {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match CoreJsonWebKeySet::fetch_async(&self.url, http).await {
            Ok(keys) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poison| poison.into_inner()) = keys;
                tracing::info!(url = %self.url.url(), "refreshed the provider's signing keys");
                true
            }
            Err(error) => {
                let error = super::oidc::error_chain(&error);
                tracing::warn!(url = %self.url.url(), error, "failed to refresh signing keys");
                false
            }
        }
    }
}
