//! Command-line and environment configuration of the shipper, and the types
//! that keep its credentials out of logs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::builder::LokiBuilder;
use super::labels::{LabelError, Labels};
pub use crate::secret::Secret;

/// Authentication of requests to Loki.
#[derive(Debug, Clone)]
pub enum Auth {
    /// HTTP basic authentication.
    Basic { username: String, password: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// A reason the shipper's configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid LOKI_URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("LOKI_LABELS may not set {0}: the dashboards select on its fixed value")]
    FixedLabel(&'static str),
    #[error("invalid stream labels: {0}")]
    Labels(#[from] LabelError),
    #[error("{0} and {1} are both set: set only one of them")]
    Conflict(&'static str, &'static str),
    #[error("{0} is set without {1}: basic authentication needs both")]
    Incomplete(&'static str, &'static str),
    #[error("failed to read {name} from {path}: {source}")]
    SecretFile {
        name: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} is {value}, which is invalid: {reason}")]
    InvalidValue {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("failed to build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Loki shipping options, read from flags or `LOKI_*` environment variables.
///
/// Without `LOKI_URL` nothing is pushed. Credentials may come from a file
/// (`*_FILE`), which is read once at startup with one trailing newline removed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LokiArgs {
    /// Loki base URL, for example http://loki:3100; /loki/api/v1/push is appended.
    #[arg(long = "loki-url", env = "LOKI_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// Tenant sent as the X-Scope-OrgID header.
    #[arg(long = "loki-tenant", env = "LOKI_TENANT")]
    pub tenant: Option<String>,

    /// User name for HTTP basic authentication.
    #[arg(long = "loki-username", env = "LOKI_USERNAME")]
    pub username: Option<String>,

    /// Password for HTTP basic authentication.
    #[arg(long = "loki-password", env = "LOKI_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,

    /// File holding the basic authentication password.
    #[arg(long = "loki-password-file", env = "LOKI_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Bearer token for the Authorization header.
    #[arg(
        long = "loki-bearer-token",
        env = "LOKI_BEARER_TOKEN",
        hide_env_values = true
    )]
    pub bearer_token: Option<Secret>,

    /// File holding the bearer token.
    #[arg(long = "loki-bearer-token-file", env = "LOKI_BEARER_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,

    /// Extra static stream labels as name=value pairs separated by commas. They may
    /// replace `env` but not `service_name`, which the dashboards select on. Never put
    /// per-user or per-request values here.
    #[arg(long = "loki-labels", env = "LOKI_LABELS", default_value = "")]
    pub labels: String,

    /// Maximum uncompressed size of one push, in bytes (below Loki's 6 MiB burst).
    #[arg(long = "loki-batch-max-bytes", env = "LOKI_BATCH_MAX_BYTES", default_value_t = 1 << 20)]
    pub batch_max_bytes: usize,

    /// Maximum time an entry waits for its batch to fill, in milliseconds.
    #[arg(
        long = "loki-batch-max-wait-ms",
        env = "LOKI_BATCH_MAX_WAIT_MS",
        default_value_t = 1000
    )]
    pub batch_max_wait_ms: u64,

    /// Memory bound of entries not yet sent, in bytes; new entries are dropped above it.
    #[arg(long = "loki-queue-max-bytes", env = "LOKI_QUEUE_MAX_BYTES", default_value_t = 32 << 20)]
    pub queue_max_bytes: usize,

    /// Timeout of one push request, in milliseconds.
    #[arg(
        long = "loki-request-timeout-ms",
        env = "LOKI_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub request_timeout_ms: u64,

    /// Maximum total time spent retrying one batch, in milliseconds.
    #[arg(
        long = "loki-max-retry-duration-ms",
        env = "LOKI_MAX_RETRY_DURATION_MS",
        default_value_t = 300_000
    )]
    pub max_retry_duration_ms: u64,

    /// Time allowed at shutdown to push what is queued, in milliseconds.
    #[arg(
        long = "loki-shutdown-timeout-ms",
        env = "LOKI_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub shutdown_timeout_ms: u64,
}

impl LokiArgs {
    /// Builds a shipper configuration, or returns `None` when no URL is set.
    ///
    /// `default_labels` are applied first, so `LOKI_LABELS` can replace them.
    /// Fails on invalid labels even when `LOKI_URL` is unset, so a typo shows at once
    /// rather than on the day shipping is turned on.
    pub fn to_builder(&self, default_labels: &Labels) -> Result<Option<LokiBuilder>, ConfigError> {
        let mut extra = Labels::new();
        extra.extend_from_list(&self.labels)?;
        if extra.iter().any(|(name, _)| name == "service_name") {
            return Err(ConfigError::FixedLabel("service_name"));
        }
        let mut labels = default_labels.clone();
        labels.extend_from_list(&self.labels)?;
        let Some(url) = self.url.as_deref().filter(|url| !url.trim().is_empty()) else {
            return Ok(None);
        };

        let mut builder = LokiBuilder::new(url)?
            .labels(labels)
            .batch_max_bytes(self.batch_max_bytes)
            .batch_max_wait(Duration::from_millis(self.batch_max_wait_ms))
            .queue_max_bytes(self.queue_max_bytes)
            .request_timeout(Duration::from_millis(self.request_timeout_ms))
            .max_retry_duration(Duration::from_millis(self.max_retry_duration_ms))
            .shutdown_timeout(Duration::from_millis(self.shutdown_timeout_ms));
        if let Some(tenant) = self.tenant.as_deref().filter(|t| !t.is_empty()) {
            builder = builder.tenant(tenant);
        }
        if let Some(auth) = self.auth()? {
            builder = builder.auth(auth);
        }
        Ok(Some(builder))
    }

    fn auth(&self) -> Result<Option<Auth>, ConfigError> {
        let password = secret_from(
            self.password.as_ref(),
            self.password_file.as_deref(),
            ("LOKI_PASSWORD", "LOKI_PASSWORD_FILE"),
        )?;
        let token = secret_from(
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_deref(),
            ("LOKI_BEARER_TOKEN", "LOKI_BEARER_TOKEN_FILE"),
        )?;
        let username = self.username.clone().filter(|u| !u.is_empty());
        match (username, password, token) {
            (None, None, None) => Ok(None),
            (None, None, Some(token)) => Ok(Some(Auth::Bearer(token))),
            (Some(username), Some(password), None) => Ok(Some(Auth::Basic { username, password })),
            (Some(_), None, _) => Err(ConfigError::Incomplete("LOKI_USERNAME", "LOKI_PASSWORD")),
            (None, Some(_), _) => Err(ConfigError::Incomplete("LOKI_PASSWORD", "LOKI_USERNAME")),
            (Some(_), Some(_), Some(_)) => {
                Err(ConfigError::Conflict("LOKI_PASSWORD", "LOKI_BEARER_TOKEN"))
            }
        }
    }
}

/// Reads a secret given directly or through a file, rejecting both at once.
fn secret_from(
    value: Option<&Secret>,
    file: Option<&Path>,
    names: (&'static str, &'static str),
) -> Result<Option<Secret>, ConfigError> {
    match (value.filter(|s| !s.expose().is_empty()), file) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict(names.0, names.1)),
        (Some(secret), None) => Ok(Some(secret.clone())),
        (None, Some(path)) => read_secret_file(names.1, path).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(name: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        name,
        path: path.to_owned(),
        source,
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> LokiArgs {
        LokiArgs {
            url: Some(url.to_owned()),
            batch_max_bytes: 1 << 20,
            batch_max_wait_ms: 1000,
            queue_max_bytes: 32 << 20,
            request_timeout_ms: 10_000,
            max_retry_duration_ms: 300_000,
            shutdown_timeout_ms: 5000,
            ..LokiArgs::default()
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let auth = Auth::Basic {
            username: "u".into(),
            password: secret,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn no_url_means_no_shipping() {
        let none = LokiArgs::default().to_builder(&Labels::new()).unwrap();
        assert!(none.is_none());
        let blank = args("  ").to_builder(&Labels::new()).unwrap();
        assert!(blank.is_none());
    }

    #[test]
    fn basic_auth_needs_both_parts() {
        let mut only_user = args("http://127.0.0.1:1");
        only_user.username = Some("u".into());
        let error = only_user.to_builder(&Labels::new()).unwrap_err();
        assert!(matches!(error, ConfigError::Incomplete("LOKI_USERNAME", _)));
    }

    #[test]
    fn basic_and_bearer_conflict() {
        let mut both = args("http://127.0.0.1:1");
        both.username = Some("u".into());
        both.password = Some(Secret::new("p"));
        both.bearer_token = Some(Secret::new("t"));
        let error = both.to_builder(&Labels::new()).unwrap_err();
        assert!(matches!(error, ConfigError::Conflict(..)));
    }

    #[test]
    fn value_and_file_conflict() {
        let mut both = args("http://127.0.0.1:1");
        both.bearer_token = Some(Secret::new("t"));
        both.bearer_token_file = Some(PathBuf::from("/nonexistent"));
        let error = both.to_builder(&Labels::new()).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Conflict("LOKI_BEARER_TOKEN", "LOKI_BEARER_TOKEN_FILE")
        ));
    }

    #[test]
    fn secret_file_drops_one_trailing_newline() {
        let path = std::env::temp_dir().join(format!("nixtla-secret-{}", std::process::id()));
        std::fs::write(&path, "token \n").unwrap();
        let secret = read_secret_file("LOKI_BEARER_TOKEN_FILE", &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(secret.expose(), "token ");
    }

    #[test]
    fn missing_secret_file_names_the_path() {
        let path = Path::new("/nonexistent/nixtla-token");
        let error = read_secret_file("LOKI_BEARER_TOKEN_FILE", path).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("LOKI_BEARER_TOKEN_FILE"), "{message}");
        assert!(message.contains("/nonexistent/nixtla-token"), "{message}");
    }

    #[test]
    fn labels_from_list_replace_defaults() {
        let mut defaults = Labels::new();
        defaults.insert("env", "dev").unwrap();
        let mut custom = args("http://127.0.0.1:1");
        custom.labels = "env=prod,team=web".into();
        let builder = custom.to_builder(&defaults).unwrap().unwrap();
        assert_eq!(builder.stream_selector(), r#"{env="prod", team="web"}"#);
    }

    #[test]
    fn labels_may_not_replace_service_name() {
        let mut custom = args("http://127.0.0.1:1");
        custom.labels = "service_name=other".into();
        let error = custom.to_builder(&Labels::new()).unwrap_err();
        assert!(
            error.to_string().contains("may not set service_name"),
            "{error}"
        );
    }

    #[test]
    fn invalid_labels_fail_without_url() {
        let mut custom = args("");
        custom.url = None;
        custom.labels = "team".into();
        assert!(custom.to_builder(&Labels::new()).is_err());
    }
}
