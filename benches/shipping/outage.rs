//! Outage memory: each shipper, in its own child process, logs 50,000
//! events per second while the receiver resets every push connection for
//! 30 s. The harness samples the child's RSS every 100 ms.
//!
//! Timeline per shipper: 5 s of normal delivery (the baseline RSS is the
//! highest sample of that phase), 30 s of outage, then logging goes on for
//! `recovery` while the backlog drains, and the shipper gets 60 s to flush
//! at shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::ChildArgs;
use crate::common::Shipper;
use crate::procs::{self, Receiver};

/// Settings of the outage figure.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub rate: u64,
    pub before: Duration,
    pub outage: Duration,
    pub recovery: Duration,
    /// This crate's queue bound.
    pub queue_max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate: 50_000,
            before: Duration::from_secs(5),
            outage: Duration::from_secs(30),
            recovery: Duration::from_secs(10),
            queue_max_bytes: 32 << 20,
        }
    }
}

pub async fn run(receiver: &Receiver, settings: Settings) -> Value {
    println!(
        "== outage: {} events/s, receiver resetting connections for {:?}",
        settings.rate, settings.outage
    );
    let mut out = serde_json::Map::new();
    for shipper in Shipper::LOKI {
        let result = run_one(receiver, settings, shipper).await;
        println!("{:>13}: {result}", shipper.name());
        out.insert(shipper.name().to_owned(), result);
    }
    out.insert(
        "queue_max_bytes".to_owned(),
        json!(settings.queue_max_bytes),
    );
    Value::Object(out)
}

async fn run_one(receiver: &Receiver, settings: Settings, shipper: Shipper) -> Value {
    receiver.reset().await;
    let logging = settings.before + settings.outage + settings.recovery;
    let events = settings.rate * logging.as_secs();
    let args = ChildArgs {
        shipper,
        url: receiver.url.clone(),
        events,
        rate: settings.rate,
        queue_max_bytes: Some(settings.queue_max_bytes),
        shutdown: Duration::from_secs(60),
    };
    let mut child = procs::spawn_child(&args);
    let started = child.next_line(Duration::from_secs(30));
    assert_eq!(started, "started", "the child printed {started:?} first");
    let start = Instant::now();
    let pid = child.pid();

    let outage_at = settings.before;
    let recovered_at = settings.before + settings.outage;
    let hard_limit = logging + Duration::from_secs(120);
    let (mut baseline, mut peak_outage, mut peak) = (0u64, 0u64, 0u64);
    let mut timeline = Vec::new();
    let mut in_outage = false;
    let mut recovered = false;
    while !child.exited() && start.elapsed() < hard_limit {
        let elapsed = start.elapsed();
        if !in_outage && !recovered && elapsed >= outage_at {
            receiver.fault(json!({"mode": "refuse"})).await;
            in_outage = true;
        }
        if in_outage && elapsed >= recovered_at {
            receiver.fault(json!({"mode": "none"})).await;
            in_outage = false;
            recovered = true;
        }
        if let Some(rss) = procs::rss_kib(pid) {
            if elapsed < outage_at {
                baseline = baseline.max(rss);
            } else if elapsed < recovered_at {
                peak_outage = peak_outage.max(rss);
            }
            peak = peak.max(rss);
            timeline.push((elapsed.as_millis() as u64, rss));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if in_outage {
        receiver.fault(json!({"mode": "none"})).await;
    }
    let result = if child.exited() {
        procs::child_result(&mut child, Duration::from_secs(5))
    } else {
        json!({"error": format!("killed after {hard_limit:?}")})
    };
    drop(child);
    let (accepted, _, failed) = receiver.totals().await;

    let mut summary = json!({
        "events": events,
        "accepted_by_receiver": accepted,
        "lost": events.saturating_sub(accepted),
        "failed_pushes": failed,
        "baseline_rss_kib": baseline,
        "peak_rss_during_outage_kib": peak_outage,
        "peak_rss_kib": peak,
        "peak_minus_baseline_kib": peak.saturating_sub(baseline),
        "child": result,
        "rss_timeline_ms_kib": every_nth(&timeline, 10),
    });
    if let Some(counters) = summary["child"]["counters"].as_object().cloned() {
        let count = |name: &str| counters[name].as_u64().unwrap_or(0);
        let accounted = count("sent") + count("dropped") + count("queued_entries");
        summary["drop_accounting"] = json!({
            "generated_equals_sent_plus_dropped_plus_queued": count("generated") == accounted,
            "receiver_accepted_equals_sent": accepted == count("sent"),
            "generated_equals_logged": count("generated") == events,
        });
    }
    summary
}

/// Keeps every `n`th sample, to keep the results file short.
fn every_nth(samples: &[(u64, u64)], n: usize) -> Vec<(u64, u64)> {
    samples.iter().step_by(n).copied().collect()
}
