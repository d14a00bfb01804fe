//! Native shipping of `tracing` events to Grafana Loki's push API.
//!
//! [`LokiBuilder::build`] returns three parts:
//! - a [`LokiLayer`] to install in a `tracing_subscriber` registry. It turns
//!   each event into one JSON line (see [`crate::telemetry::format`]) and
//!   queues it without blocking;
//! - a [`LokiTask`] to spawn on Tokio. It groups entries per stream into
//!   batches of 1 MiB or 1 s, encodes them as snappy-compressed protobuf,
//!   and pushes them with retries;
//! - a [`LokiHandle`] for metrics, readiness and
//!   [`shutdown`](LokiHandle::shutdown), which flushes within a deadline.
//!
//! Stream labels are static. Per-event values such as `user_id`,
//! `request_id`, `route`, `level` and `event` go into structured metadata,
//! never into labels, so the number of streams stays fixed.
//!
//! # When entries are lost
//! Every loss is counted in `nixtla_loki_dropped_entries_total{reason}`:
//! - `queue_full`: the queue was full when the event was logged;
//! - `rate_limited`: Loki still responded with 429 when the retry time ran out;
//! - `rejected`: Loki rejected the batch, or kept failing with 5xx or
//!   transport errors until the retry time ran out;
//! - `line_too_long`: the entry was larger than a batch;
//! - `shutdown`: the entry was still unsent at the shutdown deadline.
//!
//! A process killed without shutdown loses its queue, which is at most the
//! configured queue bytes. A request that times out may have been stored,
//! so its retry can deliver entries twice.

mod batch;
mod builder;
mod config;
mod diag;
mod encode;
mod handle;
mod labels;
mod layer;
mod metrics;
mod push;
mod worker;

/// Types generated from `proto/push.proto`, Loki's push request schema.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/logproto.rs"));
}

pub use batch::{Batch, Batcher, Entry, StreamEntries, TRUNCATION_MARKER, truncate_line};
pub use builder::{
    DEFAULT_MAX_LINE_BYTES, DEFAULT_METADATA_FIELDS, LOKI_BURST_BYTES, LokiBuilder, PUSH_PATH,
};
pub use config::{Auth, ConfigError, LokiArgs, Secret};
pub use diag::DiagnosticOutput;
pub use encode::{EncodedBatch, Encoder, into_request, timestamp_from_ns};
pub use handle::{LokiHandle, ShutdownReport};
pub use labels::{LabelError, Labels, escape_go_string, validate_name};
pub use layer::{Clock, LokiLayer, MAX_METADATA_VALUE_BYTES, Mirror};
pub use metrics::{DropReason, Snapshot};
pub use push::Backoff;
pub use worker::LokiTask;
