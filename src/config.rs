//! Command-line and environment configuration, validated before anything starts.
//!
//! Every option has a flag and an environment variable, and `--help` lists both.
//! Secrets can also come from files (`*_FILE`), which suits Docker and Kubernetes
//! secrets. With no client id configured the service runs in development-login mode.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use url::Url;

use crate::{secret::Secret, telemetry::TelemetryArgs};

/// Minimum length of `SESSION_KEY`, in bytes. The cookie encryption key is derived
/// from it with HKDF.
pub const SESSION_KEY_MIN_BYTES: usize = 64;

/// Longest allowed session lifetime: 30 days, in minutes.
pub const SESSION_TTL_MAX_MINUTES: u64 = 30 * 24 * 60;

#[derive(Debug, Parser)]
#[command(
    name = "nixtla",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Requests the health endpoint and exits with 0 when it returns 200 (for Docker's
    /// HEALTHCHECK, since the runtime image has no curl).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL of the health endpoint to request. Default: `/healthz` on the port of
    /// `NIXTLA_LISTEN`, on 127.0.0.1.
    #[arg(long)]
    pub url: Option<Url>,
    /// The service's listen address, used to build the default URL.
    #[arg(long, env = "NIXTLA_LISTEN", default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    /// Time limit for the request, in seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "NIXTLA_LISTEN", default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    /// URL where users reach this service. The OAuth redirect URI is `<public-url>/auth`.
    #[arg(
        long,
        env = "NIXTLA_PUBLIC_URL",
        default_value = "http://127.0.0.1:7000"
    )]
    pub public_url: Url,
    /// OpenID Connect issuer; its discovery document is fetched at startup.
    #[arg(
        long,
        env = "OIDC_ISSUER",
        default_value = "https://accounts.google.com"
    )]
    pub oidc_issuer: String,
    /// OAuth client id. Without one, the service uses a local development login.
    #[arg(long, env = "OAUTH_CLIENT_ID")]
    pub client_id: Option<String>,
    /// OAuth client secret.
    #[arg(long, env = "OAUTH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// File that contains the OAuth client secret (trailing newline ignored).
    #[arg(
        long,
        env = "OAUTH_CLIENT_SECRET_FILE",
        conflicts_with = "client_secret"
    )]
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes to request.
    #[arg(long, env = "OAUTH_SCOPES", default_value = "openid email profile")]
    pub scopes: String,
    /// Comma-separated email domains allowed to sign in. Empty allows any verified email.
    #[arg(long, env = "ALLOWED_EMAIL_DOMAINS", value_delimiter = ',')]
    pub allowed_email_domains: Vec<String>,
    /// Key for the encrypted cookies, at least 64 bytes. Required with a real provider;
    /// generate one with `openssl rand -base64 64`.
    #[arg(long, env = "SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,
    /// File that contains the session key (trailing newline ignored).
    #[arg(long, env = "SESSION_KEY_FILE", conflicts_with = "session_key")]
    pub session_key_file: Option<PathBuf>,
    /// How long a sign-in lasts, in minutes.
    #[arg(long, env = "SESSION_TTL_MINUTES", default_value_t = 720)]
    pub session_ttl_minutes: u64,
    /// Time allowed to finish in-flight requests on shutdown, in seconds. Flushing logs
    /// to Loki afterwards has its own limit, `LOKI_SHUTDOWN_TIMEOUT_MS`.
    #[arg(long, env = "NIXTLA_SHUTDOWN_TIMEOUT_SECS", default_value_t = 5)]
    pub shutdown_timeout_secs: u64,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Configuration after validation.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub redirect_url: Url,
    pub login: LoginMode,
    /// `None` in development-login mode: a random key is generated at startup.
    pub session_key: Option<Secret>,
    pub session_ttl: Duration,
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum LoginMode {
    Oidc(OidcSettings),
    Development,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    /// Lower-case domains; empty allows any verified email.
    pub allowed_email_domains: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--public-url {0} must be an http or https URL with a host")]
    PublicUrl(Url),
    #[error("failed to read {name} from {path}")]
    SecretFile {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "SESSION_KEY is required when OAUTH_CLIENT_ID is set; \
         generate one with `openssl rand -base64 64`"
    )]
    MissingSessionKey,
    #[error("SESSION_KEY is {0} bytes long but must be at least {SESSION_KEY_MIN_BYTES}")]
    ShortSessionKey(usize),
    #[error("OAUTH_CLIENT_SECRET is set but OAUTH_CLIENT_ID is empty; set the client id")]
    SecretWithoutClientId,
    #[error(
        "the development login is only allowed with NIXTLA_ENV=dev or a loopback public \
         URL (NIXTLA_ENV is `{0}`); set OAUTH_CLIENT_ID for real sign-in"
    )]
    DevelopmentLoginOutsideDev(String),
    #[error("--scopes must include `openid` (got `{0}`)")]
    MissingOpenidScope(String),
    #[error("--session-ttl-minutes is {0} but must be between 1 and {SESSION_TTL_MAX_MINUTES}")]
    SessionTtl(u64),
}

impl ServeArgs {
    /// Validates the arguments and reads secret files.
    pub fn validate(&self) -> Result<AppConfig, ConfigError> {
        let public_url = validate_public_url(&self.public_url)?;
        let redirect_url = public_url
            .join("auth")
            .expect("a base URL accepts a relative path");
        let session_key = read_secret(
            "SESSION_KEY",
            self.session_key.as_deref(),
            self.session_key_file.as_ref(),
        )?;
        if let Some(key) = &session_key {
            if key.expose().len() < SESSION_KEY_MIN_BYTES {
                return Err(ConfigError::ShortSessionKey(key.expose().len()));
            }
        }
        let login = self.login_mode()?;
        if matches!(login, LoginMode::Oidc(_)) && session_key.is_none() {
            return Err(ConfigError::MissingSessionKey);
        }
        if self.session_ttl_minutes == 0 || self.session_ttl_minutes > SESSION_TTL_MAX_MINUTES {
            return Err(ConfigError::SessionTtl(self.session_ttl_minutes));
        }
        Ok(AppConfig {
            listen: self.listen,
            public_url,
            redirect_url,
            login,
            session_key,
            session_ttl: Duration::from_secs(self.session_ttl_minutes * 60),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
        })
    }

    fn login_mode(&self) -> Result<LoginMode, ConfigError> {
        let client_id = self.client_id.as_deref().map(str::trim).unwrap_or_default();
        if client_id.is_empty() {
            return self.development_mode();
        }
        let client_id = client_id.to_owned();
        let scopes: Vec<String> = self.scopes.split_whitespace().map(str::to_owned).collect();
        if !scopes.iter().any(|scope| scope == "openid") {
            return Err(ConfigError::MissingOpenidScope(self.scopes.clone()));
        }
        let client_secret = read_secret(
            "OAUTH_CLIENT_SECRET",
            self.client_secret.as_deref(),
            self.client_secret_file.as_ref(),
        )?;
        Ok(LoginMode::Oidc(OidcSettings {
            issuer: self.oidc_issuer.clone(),
            client_id,
            client_secret,
            scopes,
            allowed_email_domains: normalize_domains(&self.allowed_email_domains),
        }))
    }
}

impl ServeArgs {
    /// Allows the development login only where it cannot be mistaken for production:
    /// with no client secret configured, and with `NIXTLA_ENV=dev` or a public URL on
    /// loopback. An empty `OAUTH_CLIENT_ID` next to a secret is a broken deployment,
    /// not a request for the development login.
    fn development_mode(&self) -> Result<LoginMode, ConfigError> {
        let has_secret = self.client_secret.as_deref().is_some_and(|s| !s.is_empty())
            || self.client_secret_file.is_some();
        if has_secret {
            return Err(ConfigError::SecretWithoutClientId);
        }
        let loopback = match self.public_url.host() {
            Some(url::Host::Domain(domain)) => domain == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if !loopback && self.telemetry.env != "dev" {
            return Err(ConfigError::DevelopmentLoginOutsideDev(
                self.telemetry.env.clone(),
            ));
        }
        Ok(LoginMode::Development)
    }
}

fn validate_public_url(url: &Url) -> Result<Url, ConfigError> {
    let http = matches!(url.scheme(), "http" | "https");
    if !http || url.host().is_none() || url.cannot_be_a_base() {
        return Err(ConfigError::PublicUrl(url.clone()));
    }
    let mut base = url.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.set_query(None);
    base.set_fragment(None);
    Ok(base)
}

fn normalize_domains(domains: &[String]) -> Vec<String> {
    domains
        .iter()
        .map(|domain| domain.trim().trim_start_matches('@').to_ascii_lowercase())
        .filter(|domain| !domain.is_empty())
        .collect()
}

/// Reads a secret from its value or from its file. Empty values count as absent.
fn read_secret(
    name: &'static str,
    value: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let text = match (value, file) {
        (Some(value), _) => value.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| ConfigError::SecretFile {
                name,
                path: path.clone(),
                source,
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, None) => return Ok(None),
    };
    Ok((!text.is_empty()).then(|| Secret::new(text)))
}

impl HealthcheckArgs {
    /// Returns the URL to request: `--url`, else `/healthz` on the listen port. A
    /// wildcard listen address (`0.0.0.0`, `::`) is reached through loopback.
    pub fn target(&self) -> Url {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Url::parse(&format!("http://{addr}/healthz")).expect("a socket address forms a URL")
    }
}

impl AppConfig {
    /// True when cookies must carry the `Secure` attribute: always, unless the public
    /// URL is plain http (local development).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}
