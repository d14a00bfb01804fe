//! End to end: N events through each shipper, in its own child process,
//! into the Python Loki test receiver on 127.0.0.1, or into the in-process
//! null sink to see what the shippers sustain when the receiver is not the
//! bottleneck.
//!
//! Per run it reports lines delivered per second (from the first event to
//! the end of the shipper's shutdown flush), CPU seconds of the child per
//! 100k delivered lines, and lines lost (logged minus accepted by the
//! receiver). Each offered rate runs every shipper the same number of
//! times, alternating which goes first. The best lossless figure is the
//! highest delivered rate among the offered rates at which no run lost a line.

use std::time::Duration;

use serde_json::{Value, json};

use crate::child::ChildArgs;
use crate::common::{NullLoki, Shipper};
use crate::procs::{self, Receiver};
use crate::summary::{Spread, ratio};

/// Where the shippers push.
#[derive(Clone, Copy)]
pub enum Destination<'a> {
    Receiver(&'a Receiver),
    NullSink(&'a NullLoki),
}

impl Destination<'_> {
    fn url(&self) -> String {
        match self {
            Destination::Receiver(receiver) => receiver.url.clone(),
            Destination::NullSink(sink) => sink.url.clone(),
        }
    }

    /// Clears the receiver, or returns the sink's counts so far.
    async fn start_run(&self) -> (u64, u64) {
        match self {
            Destination::Receiver(receiver) => {
                receiver.reset().await;
                (0, 0)
            }
            Destination::NullSink(sink) => (sink.entries(), sink_requests(sink)),
        }
    }

    /// Returns (entries accepted, pushes answered 2xx, pushes that failed)
    /// since `start`.
    async fn totals_since(&self, start: (u64, u64)) -> (u64, u64, u64) {
        match self {
            Destination::Receiver(receiver) => receiver.totals().await,
            Destination::NullSink(sink) => {
                (sink.entries() - start.0, sink_requests(sink) - start.1, 0)
            }
        }
    }
}

fn sink_requests(sink: &NullLoki) -> u64 {
    sink.stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Settings of the end-to-end figure.
#[derive(Debug, Clone)]
pub struct Settings {
    pub events: u64,
    /// Offered rates in events per second; 0 logs as fast as possible.
    pub rates: Vec<u64>,
    pub repetitions: usize,
}

/// Returns the result key of a rate.
pub fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "unpaced".to_owned()
    } else {
        format!("rate_{rate}_per_s")
    }
}

pub async fn run(destination: Destination<'_>, settings: &Settings) -> Value {
    let mut out = serde_json::Map::new();
    let mut lossless: Vec<Option<(u64, f64)>> = vec![None; Shipper::LOKI.len()];
    for &rate in &settings.rates {
        println!(
            "== end to end, {}: {} events per run",
            rate_label(rate),
            settings.events
        );
        let (summary, runs) = run_rate(destination, settings, rate).await;
        for (index, shipper) in Shipper::LOKI.into_iter().enumerate() {
            let mine: Vec<&Value> = runs
                .iter()
                .filter(|(s, _)| *s == shipper)
                .map(|(_, run)| run)
                .collect();
            let no_loss = mine.iter().all(|run| run["lost"] == json!(0));
            let lines_per_s = summary[shipper.name()]["lines_per_s"]["median"]
                .as_f64()
                .unwrap_or(0.0);
            let best = lossless[index].map_or(0.0, |(_, best)| best);
            if no_loss && lines_per_s > best {
                lossless[index] = Some((rate, lines_per_s));
            }
        }
        out.insert(rate_label(rate), summary);
    }

    let mut best = serde_json::Map::new();
    for (index, shipper) in Shipper::LOKI.into_iter().enumerate() {
        let value = lossless[index].map(|(rate, lines_per_s)| {
            json!({"offered": rate_label(rate), "median_lines_per_s": lines_per_s})
        });
        best.insert(shipper.name().to_owned(), value.unwrap_or(Value::Null));
    }
    let lines = |index: usize| lossless[index].map_or(0.0, |(_, lines_per_s)| lines_per_s);
    best.insert(
        "ratio_nixtla_to_tracing_loki".to_owned(),
        json!(ratio(lines(0), lines(1))),
    );
    out.insert("best_lossless".to_owned(), Value::Object(best));
    Value::Object(out)
}

/// Runs every repetition at one rate; returns the summary and the runs.
async fn run_rate(
    destination: Destination<'_>,
    settings: &Settings,
    rate: u64,
) -> (Value, Vec<(Shipper, Value)>) {
    let mut runs: Vec<(Shipper, Value)> = Vec::new();
    for repetition in 0..settings.repetitions {
        let mut order = Shipper::LOKI;
        if repetition % 2 == 1 {
            order.reverse();
        }
        for shipper in order {
            let start = destination.start_run().await;
            let args = ChildArgs {
                shipper,
                url: destination.url(),
                events: settings.events,
                rate,
                queue_max_bytes: None,
                shutdown: Duration::from_secs(60),
            };
            let mut child = procs::spawn_child(&args);
            let result = procs::child_result(&mut child, Duration::from_secs(300));
            let (accepted, ok, failed) = destination.totals_since(start).await;
            let run = summarize_run(&result, settings.events, accepted, ok, failed);
            println!("{:>13}: {run}", shipper.name());
            runs.push((shipper, run));
        }
    }

    let mut out = serde_json::Map::new();
    let mut medians = Vec::new();
    for shipper in Shipper::LOKI {
        let mine: Vec<&Value> = runs
            .iter()
            .filter(|(s, _)| *s == shipper)
            .map(|(_, run)| run)
            .collect();
        let field = |name: &str| Spread::of(mine.iter().map(|r| r[name].as_f64().unwrap_or(0.0)));
        let lines_per_s = field("lines_per_s");
        medians.push(lines_per_s.median);
        out.insert(
            shipper.name().to_owned(),
            json!({
                "lines_per_s": lines_per_s,
                "cpu_s_per_100k_lines": field("cpu_s_per_100k_lines"),
                "lost": field("lost"),
                "runs": mine,
            }),
        );
    }
    out.insert(
        "lines_per_s_ratio_nixtla_to_tracing_loki".to_owned(),
        json!(ratio(medians[0], medians[1])),
    );
    (Value::Object(out), runs)
}

fn summarize_run(result: &Value, events: u64, accepted: u64, ok: u64, failed: u64) -> Value {
    let total_s = result["total_s"].as_f64().unwrap_or(f64::NAN);
    let cpu_s = result["cpu_user_s"].as_f64().unwrap_or(0.0)
        + result["cpu_system_s"].as_f64().unwrap_or(0.0);
    json!({
        "logged": events,
        "accepted": accepted,
        "lost": events.saturating_sub(accepted),
        "lines_per_s": accepted as f64 / total_s,
        "cpu_s": cpu_s,
        "cpu_s_per_100k_lines": cpu_s / accepted.max(1) as f64 * 100_000.0,
        "logging_s": result["logged_s"],
        "total_s": total_s,
        "pushes_ok": ok,
        "pushes_failed": failed,
        "max_rss_kib": result["max_rss_kib"],
        "finished": result["finished"],
        "counters": result["counters"],
    })
}
