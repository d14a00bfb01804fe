//! Caller-side cost per event: the time `info!` takes on the calling thread
//! with this crate's Loki layer, with tracing-loki 0.2.7, and with
//! tracing-subscriber's JSON formatter writing to `io::sink` (the floor).
//!
//! Two measurements per subscriber:
//! - criterion's `caller_cost/<subscriber>`: the mean cost in a tight loop,
//!   with criterion's statistics;
//! - a per-call histogram: every call timed with `Instant`, in bursts of
//!   100 calls with a 1 ms pause after each, so the background task keeps up
//!   and no queue fills. It gives the median and p99, and is written to
//!   `target/bench-results/caller_cost.json`.
//!
//! Both shippers push to an in-process HTTP sink that answers 204, so no
//! network or Loki cost reaches the caller. Run with
//! `cargo bench --bench caller_cost`.

mod common;

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Installed, NullLoki, Percentiles, Shipper};
use criterion::Criterion;
use serde_json::json;

/// Calls timed per subscriber for the histogram.
const HISTOGRAM_CALLS: usize = 200_000;
/// Calls per burst; a 1 ms pause follows each burst.
const BURST: usize = 100;

fn main() {
    if let Ok(name) = std::env::var("NIXTLA_BENCH_CALLGRIND") {
        let shipper = Shipper::parse(&name)
            .unwrap_or_else(|| panic!("unknown subscriber {name:?} in NIXTLA_BENCH_CALLGRIND"));
        profile_calls(shipper, 20_000);
        return;
    }
    let bench = common::bench_mode();
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let sink = NullLoki::start();
    let runtime = common::shipper_runtime();
    let request_ids = common::request_ids(4096);
    let calls = if bench { HISTOGRAM_CALLS } else { 2 * BURST };

    let mut results = Vec::new();
    let timer_overhead = timer_overhead_ns();
    for shipper in Shipper::ALL {
        let installed = common::install(shipper, runtime.handle(), &sink.url, |b| b);
        let entries_before = sink.entries();
        let sequence = Cell::new(0u64);
        let log_next = || {
            let n = sequence.get();
            sequence.set(n + 1);
            common::log_activity(n, &request_ids[n as usize % request_ids.len()]);
        };

        tracing::dispatcher::with_default(&installed.dispatch, || {
            let mut group = criterion.benchmark_group("caller_cost");
            group.bench_function(shipper.name(), |b| b.iter(&log_next));
            group.finish();
        });
        let criterion_calls = sequence.get();
        let tight_loop = delivery(&installed, &sink, entries_before, criterion_calls);

        let entries_before = sink.entries();
        let mut samples = Vec::with_capacity(calls);
        tracing::dispatcher::with_default(&installed.dispatch, || {
            time_calls(&log_next, calls, &mut samples);
        });
        let paced = delivery(&installed, &sink, entries_before, calls as u64);
        let percentiles = Percentiles::from_samples(&mut samples);

        let stopped = runtime.block_on(installed.shutdown(Duration::from_secs(30)));
        println!(
            "{:>13}: per call p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns ({} calls); \
             paced delivery {paced}; tight-loop delivery {tight_loop}; stopped cleanly: {}",
            shipper.name(),
            percentiles.p50_ns,
            percentiles.p99_ns,
            percentiles.p999_ns,
            percentiles.max_ns,
            percentiles.samples,
            stopped.finished,
        );
        results.push(json!({
            "subscriber": shipper.name(),
            "per_call": percentiles,
            "paced_delivery": paced,
            "tight_loop_delivery": tight_loop,
        }));
    }
    criterion.final_summary();
    println!("Instant::now() pair overhead: {timer_overhead} ns (included in every sample)");
    if bench {
        common::write_results(
            "caller_cost",
            &json!({
                "burst_calls": BURST,
                "pause_after_burst_ms": 1,
                "timer_overhead_ns": timer_overhead,
                "subscribers": results,
            }),
        );
    }
}

/// Logs `calls` events through `shipper` and stops it, for a profiler such
/// as callgrind: `NIXTLA_BENCH_CALLGRIND=nixtla valgrind --tool=callgrind
/// target/release/deps/caller_cost-*`. Callgrind runs one thread at a time,
/// so the background task's cost shows up in the same profile.
fn profile_calls(shipper: Shipper, calls: u64) {
    let sink = NullLoki::start();
    let runtime = common::shipper_runtime();
    let request_ids = common::request_ids(4096);
    let installed = common::install(shipper, runtime.handle(), &sink.url, |b| b);
    tracing::dispatcher::with_default(&installed.dispatch, || {
        for n in 0..calls {
            common::log_activity(n, &request_ids[n as usize % request_ids.len()]);
            if n % 100 == 99 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    runtime.block_on(installed.shutdown(Duration::from_secs(60)));
    let received = sink.wait_for_entries(calls, Duration::from_secs(2), Duration::from_secs(60));
    println!("{}: {received}/{calls} events received", shipper.name());
}

/// Times each of `calls` calls of `log_next` into `samples`, in bursts.
fn time_calls(log_next: &impl Fn(), calls: usize, samples: &mut Vec<u64>) {
    while samples.len() < calls {
        for _ in 0..BURST.min(calls - samples.len()) {
            let start = Instant::now();
            log_next();
            samples.push(start.elapsed().as_nanos() as u64);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Describes how many of `logged` events reached the sink, and for this
/// crate's layer how many it counted as dropped.
fn delivery(installed: &Installed, sink: &NullLoki, before: u64, logged: u64) -> String {
    if installed.shipper == Shipper::JsonSink {
        return "n/a".to_owned();
    }
    let received = sink.wait_for_entries(
        before + logged,
        Duration::from_secs(2),
        Duration::from_secs(30),
    ) - before;
    match installed.snapshot() {
        Some(snapshot) => format!(
            "{received}/{logged} received, {} dropped in total (queue_full {})",
            snapshot.dropped(),
            snapshot.dropped_queue_full
        ),
        None => format!("{received}/{logged} received"),
    }
}

/// Returns the median cost of timing an empty call, in nanoseconds.
fn timer_overhead_ns() -> u64 {
    let mut samples: Vec<u64> = (0..10_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    Percentiles::from_samples(&mut samples).p50_ns
}
