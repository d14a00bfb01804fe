//! Sign-in with an OpenID Connect provider: authorization code flow with PKCE (S256),
//! `state` and `nonce`.
//!
//! The provider is found through discovery at startup. `openidconnect` checks the ID
//! token's signature, issuer, audience, expiry (with [`CLOCK_LEEWAY`]) and nonce. This
//! module adds the `azp` check, which that crate leaves to the caller, then requires
//! `email_verified` and applies the domain allow-list. Profile claims missing from the
//! ID token are read from the userinfo endpoint.

use std::time::Duration;

use openidconnect::{
    AccessToken, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, ErrorResponse,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, SubjectIdentifier,
    core::{
        CoreClient, CoreIdTokenClaims, CoreIdTokenVerifier, CoreJwsSigningAlgorithm,
        CoreProviderMetadata, CoreResponseType, CoreUserInfoClaims,
    },
};
use url::Url;

use super::{
    login_state::LoginState,
    session::{SignedInUser, unix_now},
    signing_keys::SigningKeys,
};
use crate::{activity::LoginFailure, config::OidcSettings};

/// Allowed clock difference between this host and the provider when checking `exp`.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(60);
/// Time limit for each request to the provider.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection to the provider is kept for reuse. It is shorter than
/// the 5 s default keep-alive timeout of Node.js servers.
pub const PROVIDER_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A sign-in failure, with the stable reason that the activity log records.
#[derive(Debug, thiserror::Error)]
#[error("{reason:?}: {detail}")]
pub struct LoginError {
    pub reason: LoginFailure,
    /// Operator-facing detail. Never contains a token or code.
    pub detail: String,
}

impl LoginError {
    pub fn new(reason: LoginFailure, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid OIDC issuer URL `{0}`")]
    Issuer(String, #[source] url::ParseError),
    #[error("failed to build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error("failed to fetch the discovery document of `{issuer}`")]
    Discovery {
        issuer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub struct OidcLogin {
    client: DiscoveredClient,
    client_secret: Option<ClientSecret>,
    signing_keys: SigningKeys,
    signing_algs: Vec<CoreJwsSigningAlgorithm>,
    http: reqwest::Client,
    issuer: IssuerUrl,
    scopes: Vec<Scope>,
    allowed_email_domains: Vec<String>,
    provider: String,
}

impl OidcLogin {
    /// Fetches the provider's discovery document and builds the client.
    pub async fn discover(
        settings: &OidcSettings,
        redirect_url: &Url,
    ) -> Result<Self, DiscoveryError> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|error| DiscoveryError::Issuer(settings.issuer.clone(), error))?;
        let http = provider_http_client().map_err(DiscoveryError::HttpClient)?;
        let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|error| DiscoveryError::Discovery {
                issuer: settings.issuer.clone(),
                source: Box::new(error),
            })?;
        let secret = settings
            .client_secret
            .as_ref()
            .map(|secret| ClientSecret::new(secret.expose().to_owned()));
        let redirect = RedirectUrl::from_url(redirect_url.clone());
        let signing_keys = SigningKeys::new(metadata.jwks_uri().clone(), metadata.jwks().clone());
        let signing_algs = metadata.id_token_signing_alg_values_supported().clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            secret.clone(),
        )
        .set_redirect_uri(redirect);
        Ok(Self {
            client,
            client_secret: secret,
            signing_keys,
            signing_algs,
            http,
            provider: issuer.url().host_str().unwrap_or("oidc").to_owned(),
            issuer,
            scopes: settings.scopes.iter().cloned().map(Scope::new).collect(),
            allowed_email_domains: settings.allowed_email_domains.clone(),
        })
    }

    /// The provider's host name, as recorded in activity events.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Builds the authorization URL and the state to keep in the login cookie.
    pub fn begin(&self, next: String) -> (Url, LoginState) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(
                self.scopes
                    .iter()
                    .filter(|scope| *scope.as_str() != *"openid")
                    .cloned(),
            )
            .set_pkce_challenge(challenge)
            .url();
        let login = LoginState {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            next,
            created_at: unix_now(),
        };
        (url, login)
    }

    /// Exchanges the code, verifies the ID token and returns the user.
    pub async fn finish(
        &self,
        login: &LoginState,
        code: String,
    ) -> Result<SignedInUser, LoginError> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|error| LoginError::new(LoginFailure::ProviderUnavailable, error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|error| token_exchange_error(&error))?;
        let id_token = response
            .extra_fields()
            .id_token()
            .ok_or_else(|| LoginError::new(LoginFailure::IdToken, "no id_token in response"))?;
        let nonce = Nonce::new(login.nonce.clone());
        let mut verified = id_token.claims(&self.id_token_verifier(), &nonce);
        if is_unknown_key(&verified) && self.signing_keys.refresh(&self.http).await {
            verified = id_token.claims(&self.id_token_verifier(), &nonce);
        }
        let claims = verified
            .map_err(|error| LoginError::new(LoginFailure::IdToken, error_chain(&error)))?;
        self.check_issuer_and_azp(claims)?;
        let profile = self.profile(claims, response.access_token()).await;
        self.user_from(claims, profile)
    }

    /// Builds the verifier from the current signing keys, which may have been
    /// refreshed since discovery.
    fn id_token_verifier(&self) -> CoreIdTokenVerifier<'_> {
        let client_id = self.client.client_id().clone();
        let keys = self.signing_keys.current();
        let verifier = match &self.client_secret {
            Some(secret) => CoreIdTokenVerifier::new_confidential_client(
                client_id,
                secret.clone(),
                self.issuer.clone(),
                keys,
            ),
            None => CoreIdTokenVerifier::new_public_client(client_id, self.issuer.clone(), keys),
        };
        let google = self.issuer.as_str() == GOOGLE_ISSUER;
        verifier
            .set_allowed_algs(self.signing_algs.clone())
            .require_issuer_match(!google)
            .set_time_fn(|| chrono::Utc::now() - CLOCK_LEEWAY)
    }

    /// Checks `iss` where the verifier could not (Google may send it without
    /// `https://`) and `azp`, which must name this client when present.
    fn check_issuer_and_azp(&self, claims: &CoreIdTokenClaims) -> Result<(), LoginError> {
        let iss = claims.issuer().as_str();
        let bare = self.issuer.as_str().trim_start_matches("https://");
        if iss != self.issuer.as_str() && iss != bare {
            return Err(LoginError::new(
                LoginFailure::IdToken,
                format!("unexpected issuer {iss}"),
            ));
        }
        let client_id = self.client.client_id();
        let azp_ok = match claims.authorized_party() {
            Some(azp) => azp == client_id,
            None => claims.audiences().len() == 1,
        };
        if !azp_ok {
            return Err(LoginError::new(
                LoginFailure::IdToken,
                "azp does not name this client",
            ));
        }
        Ok(())
    }

    /// Reads userinfo when the ID token lacks the email or a name. Failures there are
    /// not fatal: the ID token's claims are used as they are.
    async fn profile(
        &self,
        claims: &CoreIdTokenClaims,
        access_token: &AccessToken,
    ) -> Option<CoreUserInfoClaims> {
        let has_name = claims.name().is_some() || claims.given_name().is_some();
        if claims.email().is_some() && has_name {
            return None;
        }
        let subject = SubjectIdentifier::new(claims.subject().to_string());
        let request = self
            .client
            .user_info(access_token.clone(), Some(subject))
            .ok()?;
        match request.request_async(&self.http).await {
            Ok(profile) => Some(profile),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "userinfo request failed");
                None
            }
        }
    }

    fn user_from(
        &self,
        claims: &CoreIdTokenClaims,
        profile: Option<CoreUserInfoClaims>,
    ) -> Result<SignedInUser, LoginError> {
        let profile = profile.as_ref();
        let name = claims
            .name()
            .or_else(|| profile.and_then(|p| p.name()))
            .and_then(|name| name.get(None))
            .map(|name| name.as_str());
        let given_name = claims
            .given_name()
            .or_else(|| profile.and_then(|p| p.given_name()))
            .and_then(|name| name.get(None))
            .map(|name| name.as_str());
        let (email, verified) = match claims.email() {
            Some(email) => (Some(email.as_str()), claims.email_verified()),
            None => (
                profile.and_then(|p| p.email()).map(|email| email.as_str()),
                profile.and_then(|p| p.email_verified()),
            ),
        };
        let mut user = SignedInUser::from_claims(claims.subject(), name, given_name, email);
        user.issuer = self.issuer.as_str().to_owned();
        self.check_email(&user, verified)?;
        Ok(user)
    }

    fn check_email(&self, user: &SignedInUser, verified: Option<bool>) -> Result<(), LoginError> {
        if user.email.is_none() || verified != Some(true) {
            return Err(LoginError::new(
                LoginFailure::EmailUnverified,
                "email missing or email_verified is not true",
            ));
        }
        let domain = user.email_domain().unwrap_or_default();
        if !self.allowed_email_domains.is_empty() && !self.allowed_email_domains.contains(&domain) {
            return Err(LoginError::new(
                LoginFailure::DomainNotAllowed,
                format!("email domain {domain} is not allowed"),
            ));
        }
        Ok(())
    }
}

/// Sorts token endpoint failures: an OAuth error response (such as `invalid_grant`
/// for a reused code) is the request's fault, anything else the provider's.
fn token_exchange_error<RE, T>(error: &RequestTokenError<RE, T>) -> LoginError
where
    RE: std::error::Error + 'static,
    T: ErrorResponse + 'static,
{
    let reason = match error {
        RequestTokenError::ServerResponse(_) => LoginFailure::TokenExchange,
        RequestTokenError::Parse(_, body) if is_oauth_error(body) => LoginFailure::TokenExchange,
        // The response parsed as JSON up to an ID token that could not be read.
        RequestTokenError::Parse(_, body) if mentions_id_token(body) => LoginFailure::IdToken,
        _ => LoginFailure::ProviderUnavailable,
    };
    LoginError::new(reason, error_chain(error))
}

fn is_unknown_key<T>(result: &Result<T, ClaimsVerificationError>) -> bool {
    matches!(
        result,
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey
        ))
    )
}

fn mentions_id_token(body: &[u8]) -> bool {
    body.windows(b"\"id_token\"".len())
        .any(|window| window == b"\"id_token\"")
}

/// Detects an OAuth error body (`{"error": ...}`). Some providers send it with HTTP
/// 200, which `oauth2` reports as a parse failure.
fn is_oauth_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|value| value.get("error").is_some_and(serde_json::Value::is_string))
}

/// The one HTTP client for provider requests. Redirects are off so a malicious
/// discovery document cannot steer requests elsewhere (SSRF).
///
/// Idle connections are dropped after [`PROVIDER_IDLE_TIMEOUT`]. Node.js servers close
/// idle keep-alive connections after 5 s, and a token request sent on a connection
/// the server is closing fails with a reset, which a load test showed as failed
/// sign-ins.
fn provider_http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .pool_idle_timeout(PROVIDER_IDLE_TIMEOUT)
        .build()
}

/// Formats an error with its sources, for operator logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
