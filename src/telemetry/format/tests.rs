use std::sync::{Arc, Mutex};

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// A layer that keeps every formatted record.
#[derive(Clone, Default)]
struct Capture {
    records: Arc<Mutex<Vec<Record>>>,
    wanted: &'static [&'static str],
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        store_span_fields(attrs, id, &ctx);
    }

    fn on_record(&self, id: &tracing::span::Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        update_span_fields(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let record = format_event(event, &ctx, self.wanted, now_ns());
        self.records.lock().unwrap().push(record);
    }
}

fn capture(wanted: &'static [&'static str], emit: impl FnOnce()) -> Vec<Record> {
    let layer = Capture {
        records: Arc::default(),
        wanted,
    };
    let records = Arc::clone(&layer.records);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, emit);
    let records = records.lock().unwrap();
    records.clone()
}

fn parse(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("not a JSON object: {line}: {other:?}"),
    }
}

fn keys(line: &str) -> Vec<String> {
    // serde_json's map is sorted, so read key order from the text instead.
    let mut keys = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let value: serde_json::Value = serde::Deserialize::deserialize(&mut deserializer).unwrap();
    if let serde_json::Value::Object(map) = value {
        let mut positions: Vec<(usize, String)> = map
            .keys()
            .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone()))
            .collect();
        positions.sort();
        keys = positions.into_iter().map(|(_, k)| k).collect();
    }
    keys
}

#[test]
fn line_has_header_then_fields() {
    let records = capture(&[], || {
        tracing::info!(target: "nixtla::activity", event = "login", status = 200u16, "signed in");
    });
    let line = &records[0].line;
    assert_eq!(
        keys(line),
        ["timestamp", "level", "target", "message", "event", "status"]
    );
    let object = parse(line);
    assert_eq!(object["level"], "INFO");
    assert_eq!(object["target"], "nixtla::activity");
    assert_eq!(object["message"], "signed in");
    assert_eq!(object["event"], "login");
    assert_eq!(object["status"], 200);
}

#[test]
fn timestamp_matches_record() {
    let records = capture(&[], || tracing::warn!("x"));
    let mut expected = String::new();
    write_rfc3339_nanos(&mut expected, records[0].timestamp_ns);
    assert_eq!(parse(&records[0].line)["timestamp"], expected.as_str());
}

#[test]
fn span_fields_are_merged_inner_first() {
    let records = capture(&[], || {
        let outer = tracing::info_span!("request", request_id = "r-1", route = "/outer");
        let _outer = outer.enter();
        let inner = tracing::info_span!(
            "handler",
            route = "/nixtla",
            user_id = tracing::field::Empty
        );
        inner.record("user_id", "u-7");
        let _inner = inner.enter();
        tracing::info!(user_id = "u-event", "page");
    });
    let line = &records[0].line;
    assert_eq!(
        keys(line),
        [
            "timestamp",
            "level",
            "target",
            "message",
            "user_id",
            "route",
            "request_id"
        ]
    );
    let object = parse(line);
    assert_eq!(object["user_id"], "u-event");
    assert_eq!(object["route"], "/nixtla");
    assert_eq!(object["request_id"], "r-1");
}

#[test]
fn header_keys_are_not_overridden() {
    let records = capture(&[], || tracing::info!(level = "fake", target_x = 1, "m"));
    let object = parse(&records[0].line);
    assert_eq!(object["level"], "INFO");
    assert_eq!(object["target_x"], 1);
    assert_eq!(object.len(), 5);
}

#[test]
fn special_characters_stay_valid_json() {
    let name = "Ada \"Countess\" \\ Lovelace\r\n\t\u{0}\u{1b}[31m\u{a0}\u{200b}e\u{301}";
    let records = capture(&[], || tracing::info!(user_name = name, "hi {name}"));
    let line = &records[0].line;
    assert!(!line.contains('\n'), "raw newline in {line:?}");
    let object = parse(line);
    assert_eq!(object["user_name"], name);
    assert_eq!(object["message"], format!("hi {name}"));
}

#[test]
fn value_types_are_kept() {
    let records = capture(&[], || {
        tracing::info!(
            negative = -5i64,
            big = u64::MAX,
            wide = 170141183460469231731687303715884105727i128,
            ratio = 0.25f64,
            nan = f64::NAN,
            ok = true,
            debug = ?vec![1, 2],
            shown = %"display",
            "types"
        );
    });
    let line = &records[0].line;
    assert!(line.contains("\"big\":18446744073709551615"), "{line}");
    assert!(
        line.contains("\"wide\":170141183460469231731687303715884105727"),
        "{line}"
    );
    let object = parse(line);
    assert_eq!(object["negative"], -5);
    assert_eq!(object["ratio"], 0.25);
    assert_eq!(object["nan"], "NaN");
    assert_eq!(object["ok"], true);
    assert_eq!(object["debug"], "[1, 2]");
    assert_eq!(object["shown"], "display");
}

#[test]
fn error_values_include_sources() {
    let error = std::io::Error::other(std::fmt::Error);
    let records = capture(&[], || {
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "failed"
        );
    });
    let object = parse(&records[0].line);
    let text = object["error"].as_str().unwrap();
    assert!(
        text.contains("an error occurred when formatting an argument"),
        "{text}"
    );
}

#[test]
fn wanted_fields_come_in_requested_order() {
    const WANTED: &[&str] = &["user_id", "route", "level", "event", "request_id"];
    let records = capture(WANTED, || {
        let span = tracing::info_span!("request", request_id = "r-9", route = "/nixtla");
        let _entered = span.enter();
        tracing::info!(event = "page_view", user_id = %"u-1", status = 200, "viewed");
    });
    let fields = &records[0].fields;
    let expected = [
        ("user_id", "u-1"),
        ("route", "/nixtla"),
        ("level", "INFO"),
        ("event", "page_view"),
        ("request_id", "r-9"),
    ];
    let actual: Vec<(&str, &str)> = fields.iter().collect();
    assert_eq!(actual, expected);
}

#[test]
fn absent_wanted_fields_are_skipped() {
    let records = capture(&["user_id", "status"], || tracing::info!(status = 302, "x"));
    assert_eq!(
        records[0].fields.to_vec(),
        vec![("status", "302".to_owned())]
    );
}

#[test]
fn rfc3339_known_instants() {
    let cases = [
        (0, "1970-01-01T00:00:00.000000000Z"),
        (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
        (1_709_164_800_000_000_000, "2024-02-29T00:00:00.000000000Z"),
        (951_782_400_000_000_001, "2000-02-29T00:00:00.000000001Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
    ];
    for (timestamp_ns, expected) in cases {
        let mut text = String::new();
        write_rfc3339_nanos(&mut text, timestamp_ns);
        assert_eq!(text, expected, "{timestamp_ns}");
    }
}

#[test]
fn json_escape_of_controls() {
    let mut out = String::new();
    write_json_str(&mut out, "a\"b\\c\u{1}\u{1f}\u{7f}é");
    assert_eq!(out, "\"a\\\"b\\\\c\\u0001\\u001f\u{7f}é\"");
}

#[test]
fn log_crate_fields_become_target() {
    let records = capture(&[], || {
        tracing::event!(
            target: "log",
            tracing::Level::INFO,
            log.module_path = "reqwest::connect",
            log.line = 929u64,
            log.target = "reqwest::connect",
            "starting new connection"
        );
    });
    let object = parse(&records[0].line);
    assert_eq!(object["target"], "reqwest::connect");
    assert_eq!(records[0].target, "reqwest::connect");
    assert_eq!(object.len(), 4, "log.* fields are left out: {object:?}");
}

#[test]
fn dotted_fields_of_other_targets_are_kept() {
    let records = capture(&[], || tracing::info!(log.line = 3u64, "x"));
    assert_eq!(parse(&records[0].line)["log.line"], 3);
}

#[test]
fn json_layer_writes_one_line_per_event() {
    let output = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = Arc::clone(&output);
    let make_writer = move || SharedBuffer(Arc::clone(&sink));
    let subscriber =
        tracing_subscriber::registry().with(crate::telemetry::JsonLayer::new(make_writer));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", request_id = "r-1");
        let _entered = span.enter();
        tracing::info!(user_name = "line\nbreak", "first");
        tracing::warn!("second");
    });

    let text = String::from_utf8(output.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(text.ends_with('\n'));
    let first = parse(lines[0]);
    assert_eq!(first["user_name"], "line\nbreak");
    assert_eq!(first["request_id"], "r-1");
    assert_eq!(parse(lines[1])["level"], "WARN");
}

/// A writer that appends to a shared buffer.
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
