//! The one JSON line formatter, shared by stdout and the Loki layer so both
//! carry the same bytes.
//!
//! A line is one JSON object: `timestamp` (RFC 3339, UTC, nanoseconds),
//! `level`, `target`, `message`, then the event's fields, then the fields of
//! its enclosing spans from the innermost outwards. When two sources use the
//! same field name, the event wins over spans and an inner span wins over an
//! outer one, so every key appears once. Fields named `timestamp`, `level`,
//! `target` or `message` cannot override the header and are left out, and so
//! are the `log.*` fields that `tracing-log` adds to records from the `log`
//! crate (their `log.target` becomes the line's `target`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record as SpanRecord};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::FieldValues;
use super::json::{JsonEscaper, write_i64, write_u64};
pub use super::json::{now_ns, write_json_str, write_json_str_body, write_rfc3339_nanos};

/// Target of the events that `tracing-log` makes from `log` crate records.
const LOG_CRATE_TARGET: &str = "log";

/// Header keys that event and span fields may not override.
const HEADER_KEYS: [&str; 4] = ["timestamp", "level", "target", "message"];

/// One formatted event: the JSON line plus what a log shipper needs beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch, the same instant the line's
    /// `timestamp` shows.
    pub timestamp_ns: i64,
    /// The event's target; for records from the `log` crate, their `log.target`.
    pub target: Cow<'static, str>,
    /// The JSON object, without a trailing newline.
    pub line: String,
    /// Values of the requested fields, as plain strings, in the order the
    /// names were requested. A field that is absent is left out.
    pub fields: FieldValues,
}

/// A span field value kept in the span's extensions until its events need it.
#[derive(Debug, Clone, PartialEq)]
enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

/// Fields of one span, in the order they were recorded.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, FieldValue)>);

/// Stores the fields of a new span so later events can add them to their line.
///
/// Call it from `Layer::on_new_span`. When several layers call it for the same
/// span, only the first one stores the fields.
pub fn store_span_fields<S>(attrs: &Attributes<'_>, id: &tracing::span::Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let mut extensions = span.extensions_mut();
    if extensions.get_mut::<SpanFields>().is_some() {
        return;
    }
    let mut fields = SpanFields::default();
    attrs.record(&mut fields);
    extensions.insert(fields);
}

/// Updates stored span fields with values recorded after the span was created.
///
/// Call it from `Layer::on_record`. Repeated calls with the same values are
/// harmless, so several layers may call it.
pub fn update_span_fields<S>(id: &tracing::span::Id, values: &SpanRecord<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let mut extensions = span.extensions_mut();
    match extensions.get_mut::<SpanFields>() {
        Some(fields) => values.record(fields),
        None => {
            let mut fields = SpanFields::default();
            values.record(&mut fields);
            extensions.insert(fields);
        }
    }
}

impl SpanFields {
    fn set(&mut self, name: &'static str, value: FieldValue) {
        match self.0.iter_mut().find(|(existing, _)| *existing == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), FieldValue::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), FieldValue::Str(value.to_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), FieldValue::Str(error_chain(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), FieldValue::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.set(field.name(), FieldValue::I128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.set(field.name(), FieldValue::U128(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), FieldValue::Bool(value));
    }
}

/// Reused buffers, so formatting an event allocates only the final line and
/// the requested field values.
#[derive(Default)]
struct Scratch {
    message: String,
    fields: String,
    seen: Vec<&'static str>,
    /// Requested fields found so far: position in the request, name, and
    /// the value's range in `found_text`.
    found: Vec<(usize, &'static str, usize, usize)>,
    found_text: String,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Formats an event, with the fields of its enclosing spans, into a [`Record`]
/// stamped `timestamp_ns` (nanoseconds since the Unix epoch, usually [`now_ns`]).
///
/// `wanted` names the fields whose plain values go into [`Record::fields`];
/// the name `level` selects the event's level.
pub fn format_event<S>(
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    wanted: &[&'static str],
    timestamp_ns: i64,
) -> Record
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => format_with(&mut scratch, timestamp_ns, event, ctx, wanted),
            // A Debug impl that logs re-enters here: use fresh buffers.
            Err(_) => format_with(&mut Scratch::default(), timestamp_ns, event, ctx, wanted),
        })
        .unwrap_or_else(|_| format_with(&mut Scratch::default(), timestamp_ns, event, ctx, wanted))
}

fn format_with<S>(
    scratch: &mut Scratch,
    timestamp_ns: i64,
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    wanted: &[&'static str],
) -> Record
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    scratch.message.clear();
    scratch.fields.clear();
    scratch.seen.clear();
    scratch.seen.extend_from_slice(&HEADER_KEYS);
    scratch.found.clear();
    scratch.found_text.clear();

    let metadata = event.metadata();
    if let Some(position) = position_of(wanted, "level") {
        scratch.found_text.push_str(metadata.level().as_str());
        let end = scratch.found_text.len();
        scratch.found.push((position, "level", 0, end));
    }

    let mut visitor = EventVisitor {
        scratch,
        wanted,
        log_target: None,
        from_log_crate: metadata.target() == LOG_CRATE_TARGET,
    };
    event.record(&mut visitor);
    let log_target = visitor.log_target.take();

    if let Some(scope) = ctx.event_scope(event) {
        for span in scope {
            if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                for (name, value) in &span_fields.0 {
                    visitor.add_span_field(name, value);
                }
            }
        }
    }
    let fields = take_in_requested_order(scratch);

    let target = match log_target {
        Some(target) => Cow::Owned(target),
        None => Cow::Borrowed(metadata.target()),
    };
    let line = assemble_line(scratch, timestamp_ns, metadata.level().as_str(), &target);
    Record {
        timestamp_ns,
        target,
        line,
        fields,
    }
}

fn assemble_line(scratch: &Scratch, timestamp_ns: i64, level: &str, target: &str) -> String {
    let capacity = 96 + target.len() + scratch.message.len() + scratch.fields.len();
    let mut line = String::with_capacity(capacity);
    line.push_str("{\"timestamp\":\"");
    write_rfc3339_nanos(&mut line, timestamp_ns);
    line.push_str("\",\"level\":\"");
    line.push_str(level);
    line.push_str("\",\"target\":");
    write_json_str(&mut line, target);
    line.push_str(",\"message\":\"");
    line.push_str(&scratch.message);
    line.push('"');
    line.push_str(&scratch.fields);
    line.push('}');
    line
}

/// Copies the found fields out, in the order they were requested.
fn take_in_requested_order(scratch: &mut Scratch) -> FieldValues {
    scratch
        .found
        .sort_unstable_by_key(|(position, _, _, _)| *position);
    let mut fields = FieldValues::with_capacity(scratch.found.len(), scratch.found_text.len());
    for &(_, name, start, end) in &scratch.found {
        fields.push(name, &scratch.found_text[start..end]);
    }
    fields
}

/// Compares two field names. Names usually differ in length or first byte,
/// and names from one callsite share a pointer, so the full comparison is
/// rarely needed.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && (a.as_ptr() == b.as_ptr() || (a.as_bytes().first() == b.as_bytes().first() && a == b))
}

/// Returns where `name` is in `names`.
fn position_of(names: &[&'static str], name: &str) -> Option<usize> {
    names
        .iter()
        .position(|candidate| same_name(candidate, name))
}

struct EventVisitor<'a> {
    scratch: &'a mut Scratch,
    wanted: &'a [&'static str],
    log_target: Option<String>,
    /// Whether the event is a `log` crate record, whose `log.*` fields are
    /// metadata of the record rather than fields.
    from_log_crate: bool,
}

impl EventVisitor<'_> {
    /// Starts a new key and returns whether the field should be written.
    fn begin(&mut self, name: &'static str) -> bool {
        if position_of(&self.scratch.seen, name).is_some()
            || (self.from_log_crate && name.starts_with("log."))
        {
            return false;
        }
        self.scratch.seen.push(name);
        self.scratch.fields.push(',');
        write_json_str(&mut self.scratch.fields, name);
        self.scratch.fields.push(':');
        true
    }

    /// Keeps `value` for [`Record::fields`] when `name` was requested.
    fn keep_if_wanted(&mut self, name: &'static str, value: &str) {
        if let Some(position) = position_of(self.wanted, name) {
            let start = self.scratch.found_text.len();
            self.scratch.found_text.push_str(value);
            let end = self.scratch.found_text.len();
            self.scratch.found.push((position, name, start, end));
        }
    }

    fn add_str(&mut self, name: &'static str, value: &str) {
        if self.begin(name) {
            write_json_str(&mut self.scratch.fields, value);
            self.keep_if_wanted(name, value);
        }
    }

    fn add_number(&mut self, name: &'static str, value: impl fmt::Display) {
        self.add_raw(name, |out| {
            let _ = write!(out, "{value}");
        });
    }

    /// Writes a value that needs no quoting or escaping, such as a number.
    fn add_raw(&mut self, name: &'static str, write_value: impl FnOnce(&mut String)) {
        if self.begin(name) {
            let start = self.scratch.fields.len();
            write_value(&mut self.scratch.fields);
            if let Some(position) = position_of(self.wanted, name) {
                let Scratch {
                    fields,
                    found,
                    found_text,
                    ..
                } = &mut *self.scratch;
                let text_start = found_text.len();
                found_text.push_str(&fields[start..]);
                found.push((position, name, text_start, found_text.len()));
            }
        }
    }

    fn add_f64(&mut self, name: &'static str, value: f64) {
        if value.is_finite() {
            self.add_number(name, value);
        } else {
            // JSON has no NaN or infinity, so those become strings.
            self.add_str(name, &value.to_string());
        }
    }

    fn add_span_field(&mut self, name: &'static str, value: &FieldValue) {
        match value {
            FieldValue::Str(text) => self.add_str(name, text),
            FieldValue::I64(number) => self.add_number(name, number),
            FieldValue::U64(number) => self.add_number(name, number),
            FieldValue::I128(number) => self.add_number(name, number),
            FieldValue::U128(number) => self.add_number(name, number),
            FieldValue::F64(number) => self.add_f64(name, *number),
            FieldValue::Bool(flag) => self.add_number(name, flag),
        }
    }

    /// Handles `message` and `log.target`; returns true when it did.
    fn take_special(&mut self, name: &'static str, value: &dyn fmt::Display) -> bool {
        if name == "message" {
            let _ = write!(JsonEscaper(&mut self.scratch.message), "{value}");
            return true;
        }
        if self.from_log_crate && name == "log.target" {
            self.log_target = Some(value.to_string());
            return true;
        }
        false
    }
}

impl Visit for EventVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.take_special(name, &DebugAsDisplay(value)) || !self.begin(name) {
            return;
        }
        self.scratch.fields.push('"');
        if let Some(position) = position_of(self.wanted, name) {
            let Scratch {
                fields,
                found,
                found_text,
                ..
            } = &mut *self.scratch;
            let start = found_text.len();
            let _ = write!(found_text, "{value:?}");
            write_json_str_body(fields, &found_text[start..]);
            found.push((position, name, start, found_text.len()));
        } else {
            let _ = write!(JsonEscaper(&mut self.scratch.fields), "{value:?}");
        }
        self.scratch.fields.push('"');
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.take_special(field.name(), &value) {
            self.add_str(field.name(), value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.add_str(field.name(), &error_chain(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add_raw(field.name(), |out| write_i64(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add_raw(field.name(), |out| write_u64(out, value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.add_number(field.name(), value);
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.add_number(field.name(), value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add_f64(field.name(), value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add_raw(field.name(), |out| {
            out.push_str(if value { "true" } else { "false" })
        });
    }
}

struct DebugAsDisplay<'a>(&'a dyn fmt::Debug);

impl fmt::Display for DebugAsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Renders an error and its sources as `outer: inner: root`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
