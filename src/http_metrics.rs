//! Request counters and latency histograms, rendered in the Prometheus text format.
//!
//! Labels are the method (nine standard names or `other`), the route template and
//! the status code, all bounded sets, so the number of series stays small whatever
//! clients send.

use std::{collections::BTreeMap, fmt::Write, sync::Mutex, time::Duration};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_SECONDS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct HttpMetrics {
    inner: Mutex<Series>,
}

#[derive(Default)]
struct Series {
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    durations: BTreeMap<&'static str, Histogram>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS_SECONDS.len()],
    count: u64,
    sum_seconds: f64,
}

impl HttpMetrics {
    /// Counts one finished request. The lock is held for a few map updates only.
    pub fn observe(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        latency: Duration,
    ) {
        let mut series = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *series.requests.entry((method, route, status)).or_default() += 1;
        let histogram = series.durations.entry(route).or_default();
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS_SECONDS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
    }

    /// Appends the metrics in the Prometheus text format to `out`.
    pub fn render(&self, out: &mut String) {
        let series = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        out.push_str("# HELP nixtla_http_requests_total Finished HTTP requests.\n");
        out.push_str("# TYPE nixtla_http_requests_total counter\n");
        for ((method, route, status), count) in &series.requests {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            let _ = writeln!(out, "nixtla_http_requests_total{{{labels}}} {count}");
        }
        out.push_str("# HELP nixtla_http_request_duration_seconds Time to respond.\n");
        out.push_str("# TYPE nixtla_http_request_duration_seconds histogram\n");
        for (route, histogram) in &series.durations {
            render_histogram(out, route, histogram);
        }
    }
}

fn render_histogram(out: &mut String, route: &str, histogram: &Histogram) {
    let name = "nixtla_http_request_duration_seconds";
    for (bound, count) in BUCKETS_SECONDS.iter().zip(histogram.buckets) {
        let _ = writeln!(
            out,
            "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
        );
    }
    let count = histogram.count;
    let _ = writeln!(
        out,
        "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "{name}_sum{{route=\"{route}\"}} {}",
        histogram.sum_seconds
    );
    let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_request_is_counted_and_bucketed() {
        let metrics = HttpMetrics::default();
        metrics.observe("GET", "/nixtla", 200, Duration::from_millis(3));
        let mut text = String::new();
        metrics.render(&mut text);
        let counter =
            "nixtla_http_requests_total{method=\"GET\",route=\"/nixtla\",status=\"200\"} 1";
        assert!(text.contains(counter), "{text}");
        assert!(text.contains("le=\"0.001\"} 0"), "{text}");
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("_count{route=\"/nixtla\"} 1"), "{text}");
    }
}
