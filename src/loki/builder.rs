//! Configuration of a shipper, checked when it is built.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::batch::Batcher;
use super::config::{Auth, ConfigError};
use super::diag::{DiagnosticOutput, Diagnostics};
use super::encode::Encoder;
use super::handle::LokiHandle;
use super::labels::{self, LabelError, Labels};
use super::layer::{Clock, LokiLayer, MAX_METADATA_VALUE_BYTES, Mirror};
use super::metrics::Metrics;
use super::push::{Backoff, Pusher};
use super::worker::{LokiTask, Shared, Worker};

/// Path of Loki's push API, appended to the base URL.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// Fields sent as structured metadata when present; `level` is the event's level.
pub const DEFAULT_METADATA_FIELDS: [&str; 6] = [
    "user_id",
    "user_name",
    "request_id",
    "route",
    "level",
    "event",
];

/// Loki's default `max_line_size`: 256 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024;

/// Loki's default per-tenant burst (`ingestion_burst_size_mb`: 6 MiB). A
/// push larger than this can never be accepted.
pub const LOKI_BURST_BYTES: usize = 6 * 1024 * 1024;

/// Loki's limit on structured metadata per entry: 64 KB.
const LOKI_METADATA_BYTES: usize = 64 * 1024;

/// Builder of a shipper, with these defaults:
/// - batches of 1 MiB or 1 s, and a 32 MiB queue;
/// - a 10 s request timeout, and backoff from 0.5 s to 30 s for at most 5 min;
/// - lines cut at 256 KiB;
/// - warnings on stdout, at most once per 10 s per kind;
/// - a 5 s shutdown deadline.
#[derive(Debug, Clone)]
pub struct LokiBuilder {
    push_url: reqwest::Url,
    labels: Labels,
    tenant: Option<String>,
    auth: Option<Auth>,
    batch_max_bytes: usize,
    batch_max_wait: Duration,
    queue_max_bytes: usize,
    request_timeout: Duration,
    backoff: Backoff,
    max_line_bytes: usize,
    truncate_long_lines: bool,
    metadata_fields: Vec<&'static str>,
    mirror: Option<MirrorSlot>,
    clock: Option<ClockSlot>,
    diagnostics: DiagnosticOutput,
    warning_interval: Duration,
    shutdown_timeout: Duration,
}

/// A mirror callback, wrapped so the builder can derive `Debug`.
#[derive(Clone)]
struct MirrorSlot(Mirror);

impl std::fmt::Debug for MirrorSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mirror(..)")
    }
}

/// A clock, wrapped so the builder can derive `Debug`.
#[derive(Clone)]
struct ClockSlot(Clock);

impl std::fmt::Debug for ClockSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock(..)")
    }
}

impl LokiBuilder {
    /// Starts a builder for the Loki at `base_url`, for example
    /// `http://loki:3100`. The push path is appended unless the URL already
    /// ends with it.
    pub fn new(base_url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            push_url: push_url(base_url)?,
            labels: Labels::new(),
            tenant: None,
            auth: None,
            batch_max_bytes: 1 << 20,
            batch_max_wait: Duration::from_secs(1),
            queue_max_bytes: 32 << 20,
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            truncate_long_lines: true,
            metadata_fields: DEFAULT_METADATA_FIELDS.to_vec(),
            mirror: None,
            clock: None,
            diagnostics: DiagnosticOutput::Stdout,
            warning_interval: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
        })
    }

    /// Returns the full push URL.
    pub fn push_url(&self) -> &reqwest::Url {
        &self.push_url
    }

    /// Returns the stream selector that every entry is sent with.
    pub fn stream_selector(&self) -> String {
        self.labels.to_selector()
    }

    /// Replaces the stream labels. Keep them static and few: every distinct
    /// label set is a separate Loki stream.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Adds or replaces one stream label.
    pub fn label(mut self, name: &str, value: &str) -> Result<Self, LabelError> {
        self.labels.insert(name, value)?;
        Ok(self)
    }

    /// Sets the tenant sent as `X-Scope-OrgID`.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets basic or bearer authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Sets the uncompressed size at which a batch is pushed, in bytes. Must
    /// be below Loki's 6 MiB burst.
    pub fn batch_max_bytes(mut self, bytes: usize) -> Self {
        self.batch_max_bytes = bytes;
        self
    }

    /// Sets how long the first entry of a batch waits before it is pushed.
    pub fn batch_max_wait(mut self, wait: Duration) -> Self {
        self.batch_max_wait = wait;
        self
    }

    /// Sets the memory bound of unsent entries, in bytes.
    pub fn queue_max_bytes(mut self, bytes: usize) -> Self {
        self.queue_max_bytes = bytes;
        self
    }

    /// Sets the timeout of each push request, response body included.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the backoff range: the first retry waits up to `min`, each
    /// further retry doubles the ceiling up to `max`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff.min = min;
        self.backoff.max = max;
        self
    }

    /// Sets the maximum time spent retrying one batch before dropping it.
    pub fn max_retry_duration(mut self, total: Duration) -> Self {
        self.backoff.max_total = total;
        self
    }

    /// Sets the maximum line size in bytes, Loki's `max_line_size`.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// Chooses whether longer lines are cut with a marker (the default) or
    /// dropped with reason `line_too_long`.
    pub fn truncate_long_lines(mut self, truncate: bool) -> Self {
        self.truncate_long_lines = truncate;
        self
    }

    /// Sets the event and span fields sent as structured metadata.
    pub fn metadata_fields(mut self, fields: &[&'static str]) -> Self {
        self.metadata_fields = fields.to_vec();
        self
    }

    /// Calls `mirror` with every formatted line before it is queued, for
    /// example to print the same bytes to stdout. Lines are passed before
    /// truncation and include events the queue drops.
    pub fn mirror(mut self, mirror: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.mirror = Some(MirrorSlot(Arc::new(mirror)));
        self
    }

    /// Replaces the system clock that stamps events, for tests that need
    /// equal or old timestamps. It returns nanoseconds since the Unix epoch.
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Some(ClockSlot(Arc::new(clock)));
        self
    }

    /// Sets where the shipper writes its own warnings and shutdown report.
    pub fn diagnostics(mut self, output: DiagnosticOutput) -> Self {
        self.diagnostics = output;
        self
    }

    /// Sets the minimum time between two warnings of the same kind.
    pub fn warning_interval(mut self, interval: Duration) -> Self {
        self.warning_interval = interval;
        self
    }

    /// Sets the default deadline of [`LokiHandle::shutdown`], which
    /// [`LokiHandle::shutdown_timeout`] returns.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Checks the configuration and returns the layer to install, the task
    /// to spawn on a Tokio runtime, and the handle for metrics and shutdown.
    pub fn build(self) -> Result<(LokiLayer, LokiTask, LokiHandle), ConfigError> {
        self.validate()?;
        let client = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            diag: Diagnostics::new(self.diagnostics, self.warning_interval),
            closed: AtomicBool::new(false),
        });
        let (sender, receiver) = mpsc::unbounded_channel();
        let (deadline_sender, deadline) = watch::channel(None);
        let (finished_sender, finished) = watch::channel(false);

        let layer = LokiLayer {
            shared: Arc::clone(&shared),
            sender,
            metadata_fields: self.metadata_fields.into(),
            queue_max_bytes: self.queue_max_bytes as u64,
            batch_max_bytes: self.batch_max_bytes,
            max_line_bytes: self.max_line_bytes,
            truncate_long_lines: self.truncate_long_lines,
            mirror: self.mirror.map(|slot| slot.0),
            clock: self.clock.map(|slot| slot.0),
        };
        let worker = Worker {
            receiver,
            stream: Arc::from(self.labels.to_selector()),
            batcher: Batcher::new(self.batch_max_bytes, self.batch_max_wait),
            encoder: Encoder::default(),
            pusher: Pusher {
                client,
                url: self.push_url,
                tenant: self.tenant,
                auth: self.auth,
                backoff: self.backoff,
                shared: Arc::clone(&shared),
            },
            deadline,
            finished: finished_sender,
        };
        let handle = LokiHandle::new(shared, deadline_sender, finished, self.shutdown_timeout);
        Ok((layer, worker.into_task(), handle))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, value: &dyn std::fmt::Debug, reason| ConfigError::InvalidValue {
            name,
            value: format!("{value:?}"),
            reason,
        };
        if self.batch_max_bytes == 0 || self.batch_max_bytes >= LOKI_BURST_BYTES {
            let reason = "it must be above 0 and below Loki's 6 MiB burst";
            return Err(invalid("batch_max_bytes", &self.batch_max_bytes, reason));
        }
        if self.queue_max_bytes < self.batch_max_bytes {
            let reason = "the queue must hold at least one full batch";
            return Err(invalid("queue_max_bytes", &self.queue_max_bytes, reason));
        }
        if self.max_line_bytes < 64 {
            let reason = "it must be at least 64 bytes";
            return Err(invalid("max_line_bytes", &self.max_line_bytes, reason));
        }
        if self.request_timeout.is_zero() {
            let reason = "it must be above zero";
            return Err(invalid("request_timeout", &self.request_timeout, reason));
        }
        if self.backoff.min > self.backoff.max {
            let reason = "the minimum backoff must not exceed the maximum";
            return Err(invalid("backoff", &self.backoff, reason));
        }
        self.validate_metadata_fields()
    }

    fn validate_metadata_fields(&self) -> Result<(), ConfigError> {
        for name in &self.metadata_fields {
            labels::validate_name(name)?;
        }
        let worst_case = self.metadata_fields.len() * (MAX_METADATA_VALUE_BYTES + 64);
        if worst_case > LOKI_METADATA_BYTES {
            return Err(ConfigError::InvalidValue {
                name: "metadata_fields",
                value: format!("{:?}", self.metadata_fields),
                reason: "at most 7 fields fit Loki's 64 KB structured metadata limit",
            });
        }
        Ok(())
    }
}

/// Appends the push path to a base URL, unless it is already there.
fn push_url(base_url: &str) -> Result<reqwest::Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl {
        url: redact_userinfo(base_url),
        reason,
    };
    let mut url = reqwest::Url::parse(base_url.trim()).map_err(|e| invalid(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in every warning that names it.
        return Err(invalid(
            "set LOKI_USERNAME and LOKI_PASSWORD instead of credentials in the URL".into(),
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("remove the query string and fragment".into()));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with(PUSH_PATH) {
        url.set_path(&format!("{path}{PUSH_PATH}"));
    }
    Ok(url)
}

/// Replaces anything between `://` and the next `@` of the authority with
/// `[redacted]`, so error messages never echo a password.
fn redact_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://").map(|index| index + 3) else {
        return raw.to_owned();
    };
    let authority_end = raw[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |index| scheme_end + index);
    match raw[scheme_end..authority_end].rfind('@') {
        Some(at) => format!(
            "{}[redacted]{}",
            &raw[..scheme_end],
            &raw[scheme_end + at..]
        ),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_url_are_rejected_without_echo() {
        let error = push_url("http://admin:SuperSecretPw@loki:3100").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("LOKI_USERNAME"), "{message}");
        assert!(!message.contains("SuperSecretPw"), "{message}");
        assert!(message.contains("http://[redacted]@loki:3100"), "{message}");
    }

    #[test]
    fn push_path_is_appended_once() {
        let cases = [
            ("http://loki:3100", "http://loki:3100/loki/api/v1/push"),
            ("http://loki:3100/", "http://loki:3100/loki/api/v1/push"),
            (
                "https://gw.example/tenant-a/",
                "https://gw.example/tenant-a/loki/api/v1/push",
            ),
            (
                "http://loki:3100/loki/api/v1/push",
                "http://loki:3100/loki/api/v1/push",
            ),
        ];
        for (base, expected) in cases {
            assert_eq!(push_url(base).unwrap().as_str(), expected, "{base}");
        }
    }

    #[test]
    fn non_http_urls_are_rejected() {
        for base in ["ftp://loki", "loki:3100", "http://loki/?a=b", ""] {
            assert!(push_url(base).is_err(), "{base:?} should be rejected");
        }
    }

    #[test]
    fn batch_limit_must_stay_under_burst() {
        let builder = LokiBuilder::new("http://127.0.0.1:1").unwrap();
        let error = builder
            .batch_max_bytes(LOKI_BURST_BYTES)
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("batch_max_bytes"), "{error}");
    }

    #[test]
    fn queue_must_hold_a_batch() {
        let builder = LokiBuilder::new("http://127.0.0.1:1").unwrap();
        let error = builder.queue_max_bytes(1000).validate().unwrap_err();
        assert!(error.to_string().contains("queue_max_bytes"), "{error}");
    }

    #[test]
    fn metadata_field_names_are_checked() {
        let builder = LokiBuilder::new("http://127.0.0.1:1").unwrap();
        let bad_name = builder.clone().metadata_fields(&["user-id"]).validate();
        assert!(bad_name.is_err());
        let too_many = builder.metadata_fields(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn defaults_match_documentation() {
        let builder = LokiBuilder::new("http://127.0.0.1:1").unwrap();
        assert_eq!(builder.batch_max_bytes, 1 << 20);
        assert_eq!(builder.batch_max_wait, Duration::from_secs(1));
        assert_eq!(builder.queue_max_bytes, 32 << 20);
        assert_eq!(builder.request_timeout, Duration::from_secs(10));
        assert_eq!(builder.backoff.min, Duration::from_millis(500));
        assert_eq!(builder.backoff.max, Duration::from_secs(30));
        assert_eq!(builder.backoff.max_total, Duration::from_secs(300));
        assert_eq!(builder.max_line_bytes, 256 * 1024);
        assert_eq!(builder.warning_interval, Duration::from_secs(10));
        assert_eq!(builder.shutdown_timeout, Duration::from_secs(5));
        assert!(builder.truncate_long_lines);
    }

    #[test]
    fn defaults_are_valid() {
        let builder = LokiBuilder::new("http://127.0.0.1:1").unwrap();
        assert!(builder.validate().is_ok());
    }
}
