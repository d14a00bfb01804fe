//! A layer that writes each event as one JSON line, used when nothing is
//! shipped to Loki. With Loki on, the Loki layer writes the same line
//! through its mirror instead, so the line is formatted only once.

use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::format;

/// Writes every event as a JSON line to the writer `W` makes.
#[derive(Debug, Clone)]
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W> {
    /// Creates a layer writing to `make_writer`, for example `std::io::stdout`.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        format::store_span_fields(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        format::update_span_fields(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let record = format::format_event(event, &ctx, &[], format::now_ns());
        write_line(self.make_writer.make_writer(), &record.line);
    }
}

/// Writes `line` and a newline in one call, so concurrent lines do not mix.
pub fn write_line(mut writer: impl std::io::Write, line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    // A logger has nowhere to report its own failed write.
    let _ = writer.write_all(&bytes);
}
