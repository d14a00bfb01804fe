//! Loki faults under load, end to end: the binary, the test OpenID provider
//! and the fault-injecting receiver, with signed-in clients on pages, the
//! API, sign-in and sign-out while the receiver fails.
//!
//! Each test below is a short run (20 clients, 4 s) of one mode that asserts
//! the hard promises: no failed request, every entry delivered or counted as
//! dropped, the receiver's count matching the shipper's, bounded memory. The
//! full run (200 clients, 30 s per mode) is `full_fault_matrix`, ignored by
//! default:
//!
//! ```text
//! tests/run.sh -- --ignored --nocapture full_fault_matrix
//! ```

mod common;
mod loki_common;
mod reliability;

use std::fmt::Write as _;

use reliability::scenario::{Mode, Settings, run_mode};
use reliability::table::{entries_table, latency_table};

/// Peak RSS limit of the app in a short run, in MiB. The short runs cap the
/// queue at 8 MiB, and the app itself stays near 30 MiB in these runs.
const SHORT_RUN_RSS_LIMIT_MIB: u64 = 96;

async fn check_short(mode: Mode) {
    let outcome = run_mode(mode, Settings::short()).await;
    println!("{}", latency_table(std::slice::from_ref(&outcome)));
    println!("{}", entries_table(std::slice::from_ref(&outcome)));
    outcome.assert_promises();
    outcome.assert_peak_rss_below(SHORT_RUN_RSS_LIMIT_MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fault() {
    check_short(Mode::NoFault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_down_at_start() {
    check_short(Mode::DownAtStart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_down_mid_run() {
    check_short(Mode::DownMidRun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_flapping() {
    check_short(Mode::Flapping).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_hanging() {
    check_short(Mode::Hanging).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_slow() {
    check_short(Mode::Slow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_slow_past_timeout() {
    check_short(Mode::SlowPastTimeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_rate_limit_bursts() {
    check_short(Mode::RateLimitBursts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_server_errors() {
    check_short(Mode::ServerErrors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_partial_rejects() {
    check_short(Mode::PartialRejects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_body_too_large() {
    check_short(Mode::TooLarge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_connection_resets() {
    check_short(Mode::ConnectionResets).await;
}

/// Runs every mode at full size, one after the other, writes the tables to
/// `target/reliability/fault-matrix.md`, then asserts the promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes about 7 minutes; run it by hand, see the module docs"]
async fn full_fault_matrix() {
    let settings = Settings::full();
    let mut outcomes = Vec::new();
    for mode in Mode::selected() {
        eprintln!("fault matrix: running {}", mode.name());
        outcomes.push(run_mode(mode, settings).await);
    }

    let mut document = String::new();
    let load = settings.load;
    let _ = writeln!(
        document,
        "{} clients, {} s per mode, think time {} ms, queue {}\n",
        load.clients,
        load.duration.as_secs(),
        load.think_time.as_millis(),
        settings
            .queue_max_bytes
            .map_or("32 MiB (default)".to_owned(), |b| format!("{b} bytes")),
    );
    document.push_str(&latency_table(&outcomes));
    document.push('\n');
    document.push_str(&entries_table(&outcomes));
    for outcome in &outcomes {
        let load = &outcome.load;
        if load.failed > 0 || load.provider_failures > 0 || !outcome.login_failures.is_empty() {
            let _ = writeln!(
                document,
                "\n{}: failed requests {:?}; failed provider steps {:?}; sign-in failures logged {:?}",
                outcome.mode.name(),
                load.failure_samples,
                load.provider_failure_samples,
                outcome.login_failures
            );
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    std::fs::create_dir_all(&dir).expect("create target/reliability");
    std::fs::write(dir.join("fault-matrix.md"), &document).expect("write the tables");
    println!("{document}");

    for outcome in &outcomes {
        outcome.assert_promises();
    }
}
