//! Harness for the figures that need processes and a receiver: end-to-end
//! delivery (`e2e`), memory during a Loki outage (`outage`) and the
//! overhead of shipping on the service (`service`).
//!
//! ```text
//! cargo bench --bench shipping -- [e2e] [outage] [service] [--quick]
//! ```
//!
//! With no figure named it runs all three, which takes about 10 minutes;
//! `--quick` shortens every phase for a trial run. Everything binds
//! 127.0.0.1, every wait has a limit, and every process it starts is killed
//! when the harness ends. Results go to `target/bench-results/shipping.json`.
//!
//! Under `cargo test` (no `--bench` flag) it only checks, with 2,000 events,
//! that both shippers deliver into the receiver, which takes a few seconds.
//!
//! Needs the Loki test receiver's Python packages (`tests/run.sh` installs
//! them into `target/test-venv`) and, for `service`, `wrk` (Debian package).

#[path = "../common/mod.rs"]
mod common;

mod child;
mod e2e;
mod outage;
mod procs;
mod service;
mod summary;

use std::time::Duration;

use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        child::main(&args[1..]);
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("failed to start the harness runtime");
    if !common::bench_mode() {
        runtime.block_on(smoke_check());
        return;
    }

    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for name in &named {
        assert!(
            ["e2e", "outage", "service"].contains(name),
            "unknown figure {name:?}: use e2e, outage or service"
        );
    }
    let wanted = |name: &str| named.is_empty() || named.contains(&name);

    let receiver = procs::Receiver::start();
    // The sink runs its own runtime, so it is started and dropped outside
    // the harness's runtime.
    let sink = common::NullLoki::start();
    let mut results = serde_json::Map::new();
    results.insert("machine".into(), machine());
    runtime.block_on(async {
        if wanted("e2e") {
            let settings = e2e::Settings {
                events: if quick { 20_000 } else { 100_000 },
                rates: vec![25_000, 50_000, 100_000, 200_000, 0],
                repetitions: if quick { 1 } else { 3 },
            };
            let destination = e2e::Destination::Receiver(&receiver);
            results.insert("e2e".into(), e2e::run(destination, &settings).await);
            save(&results);
            println!("== the same into the in-process null sink");
            let destination = e2e::Destination::NullSink(&sink);
            results.insert(
                "e2e_null_sink".into(),
                e2e::run(destination, &settings).await,
            );
            save(&results);
        }
        if wanted("outage") {
            let mut settings = outage::Settings::default();
            if quick {
                settings.before = Duration::from_secs(2);
                settings.outage = Duration::from_secs(5);
                settings.recovery = Duration::from_secs(3);
            }
            results.insert("outage".into(), outage::run(&receiver, settings).await);
            save(&results);
        }
        if wanted("service") {
            let settings = service::Settings {
                duration: Duration::from_secs(if quick { 5 } else { 30 }),
                connections: 32,
                threads: 2,
                repetitions: if quick { 1 } else { 3 },
            };
            let result = service::run(&receiver, &sink, settings).await;
            results.insert("service".into(), result);
            save(&results);
        }
    });
    results.insert("machine".into(), machine());
    save(&results);
}

/// Writes the results so far, so a failure in a later figure keeps them.
fn save(results: &serde_json::Map<String, serde_json::Value>) {
    common::write_results("shipping", &serde_json::Value::Object(results.clone()));
}

/// Checks that both shippers deliver a few events through their child
/// processes into the receiver.
async fn smoke_check() {
    let receiver = procs::Receiver::start();
    let settings = e2e::Settings {
        events: 2_000,
        rates: vec![20_000],
        repetitions: 1,
    };
    let result = e2e::run(e2e::Destination::Receiver(&receiver), &settings).await;
    let paced = &result[e2e::rate_label(20_000)];
    for shipper in common::Shipper::LOKI {
        let accepted = &paced[shipper.name()]["runs"][0]["accepted"];
        assert!(
            accepted.as_u64().is_some_and(|n| n > 0),
            "{} delivered nothing: {result}",
            shipper.name()
        );
    }
    let ours = &paced["nixtla"]["runs"][0];
    assert_eq!(ours["lost"], json!(0), "nixtla lost events: {ours}");
}

/// Describes the machine: core count, CPU model and load average, because
/// other processes on a shared machine skew every figure.
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "load_average_at_end": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}
