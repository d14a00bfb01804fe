//! Logging setup: one JSON line per event on stdout (or a readable format),
//! and the same line shipped to Loki when `LOKI_URL` is set.
//!
//! [`init`] installs the global subscriber and returns a [`Telemetry`] that
//! renders the shipper's metrics, reports its readiness and flushes it at
//! shutdown. The level filter comes from `RUST_LOG` and defaults to `info`.

mod field_values;
pub mod format;
mod json;
mod json_layer;
pub mod stdout;

use std::time::Duration;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::loki::{Labels, LokiArgs, LokiHandle, LokiLayer};
pub use field_values::FieldValues;
pub use json_layer::{JsonLayer, write_line};
use stdout::NonBlockingStdout;

/// Time allowed at shutdown for queued stdout lines to be written.
const STDOUT_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The `service_name` stream label.
pub const SERVICE_NAME: &str = "nixtla";

/// Format of the lines written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, the same bytes Loki receives.
    Json,
    /// Human-readable lines for a terminal; Loki still receives JSON.
    Pretty,
}

/// Logging options, read from flags or environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Format of the lines written to stdout. Default: `pretty` when stdout is a
    /// terminal, else `json`.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Deployment environment, sent as the `env` stream label.
    #[arg(long = "env", env = "NIXTLA_ENV", default_value = "dev")]
    pub env: String,

    #[command(flatten)]
    pub loki: LokiArgs,
}

impl TelemetryArgs {
    /// Returns the stdout format: the configured one, else `pretty` on a terminal and
    /// `json` otherwise (containers, pipes, log collectors).
    pub fn format(&self) -> LogFormat {
        use std::io::IsTerminal as _;
        match self.log_format {
            Some(format) => format,
            None if std::io::stdout().is_terminal() => LogFormat::Pretty,
            None => LogFormat::Json,
        }
    }
}

/// Access to the log shipper after [`init`]. Clones share one shipper.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    loki: Option<LokiHandle>,
    stdout: Option<NonBlockingStdout>,
}

impl Telemetry {
    /// Appends the `nixtla_loki_*` metrics in Prometheus text format;
    /// appends nothing when Loki shipping is off.
    pub fn render_metrics(&self, out: &mut String) {
        if let Some(loki) = &self.loki {
            loki.render_metrics(out);
        }
        if let Some(stdout) = &self.stdout {
            stdout.render_metrics(out);
        }
    }

    /// Returns `None` when Loki shipping is off, otherwise whether the last
    /// push reached a working Loki (false after a 5xx or transport error).
    pub fn loki_ready(&self) -> Option<bool> {
        self.loki.as_ref().map(LokiHandle::is_up)
    }

    /// Returns the shipper's handle, when Loki shipping is on.
    pub fn loki(&self) -> Option<&LokiHandle> {
        self.loki.as_ref()
    }

    /// Returns the configured shutdown deadline, `LOKI_SHUTDOWN_TIMEOUT_MS`
    /// (5 s by default).
    pub fn shutdown_timeout(&self) -> Duration {
        self.loki
            .as_ref()
            .map_or(Duration::from_secs(5), LokiHandle::shutdown_timeout)
    }

    /// Stops the shipper: entries logged from now on are not shipped, and
    /// queued ones are pushed until `deadline`. Writes the delivered and lost
    /// counts to stdout. Then waits up to 2 s for queued stdout lines.
    pub async fn shutdown(self, deadline: Duration) {
        if let Some(loki) = self.loki {
            loki.shutdown(deadline).await;
        }
        if let Some(stdout) = self.stdout {
            // The Loki report above is written directly; queued lines follow it.
            let flushed = tokio::task::spawn_blocking(move || stdout.flush(STDOUT_FLUSH_LIMIT));
            if !matches!(flushed.await, Ok(true)) {
                eprintln!("nixtla: stdout did not drain within {STDOUT_FLUSH_LIMIT:?}");
            }
        }
    }
}

/// Installs the global `tracing` subscriber and, when `LOKI_URL` is set,
/// starts the Loki shipper on the current Tokio runtime.
///
/// Fails when `RUST_LOG` or the Loki options are invalid, when a subscriber
/// is already installed, or when called outside a Tokio runtime with Loki on.
pub fn init(args: &TelemetryArgs) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("invalid RUST_LOG")?;
    let format = args.format();
    let stdout = NonBlockingStdout::start().context("failed to start the stdout writer")?;
    let (loki_layer, loki) = start_loki(args, format, &stdout)?;

    let json_stdout = match (format, &loki_layer) {
        (LogFormat::Json, None) => Some(JsonLayer::new(stdout.clone())),
        _ => None,
    };
    let pretty_stdout = (format == LogFormat::Pretty).then(tracing_subscriber::fmt::layer);
    tracing_subscriber::registry()
        .with(filter)
        .with(loki_layer)
        .with(json_stdout)
        .with(pretty_stdout)
        .try_init()
        .context("failed to install the tracing subscriber")?;
    Ok(Telemetry {
        loki,
        stdout: Some(stdout),
    })
}

/// Builds the Loki layer and spawns its task, when a URL is configured.
fn start_loki(
    args: &TelemetryArgs,
    format: LogFormat,
    stdout: &NonBlockingStdout,
) -> anyhow::Result<(Option<LokiLayer>, Option<LokiHandle>)> {
    let mut labels = Labels::new();
    labels.insert("service_name", SERVICE_NAME)?;
    labels
        .insert("env", &args.env)
        .context("invalid NIXTLA_ENV")?;
    let Some(mut builder) = args.loki.to_builder(&labels)? else {
        return Ok((None, None));
    };
    if format == LogFormat::Json {
        let stdout = stdout.clone();
        builder = builder.mirror(move |line| stdout.write_line(line));
    }
    let runtime = tokio::runtime::Handle::try_current()
        .context("Loki shipping needs a Tokio runtime: call telemetry::init inside one")?;
    let (layer, task, handle) = builder.build()?;
    runtime.spawn(task);
    Ok((Some(layer), Some(handle)))
}
