//! Logging setup. Placeholder until the Loki shipping module lands: stdout only.

use std::time::Duration;

use clap::{Args, ValueEnum};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// Format of the log lines on stdout.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

pub struct Telemetry;

pub fn init(args: &TelemetryArgs) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init()?,
        LogFormat::Pretty => registry.with(fmt::layer()).try_init()?,
    }
    Ok(Telemetry)
}

impl Telemetry {
    pub fn render_metrics(&self, _out: &mut String) {}

    pub fn loki_ready(&self) -> Option<bool> {
        None
    }

    pub async fn shutdown(self, _deadline: Duration) {}
}
