//! Markdown tables of fault matrix outcomes.

use std::fmt::Write as _;

use super::scenario::{Mode, Outcome};

/// Renders the load and latency table, with p99 relative to the no-fault run.
pub fn latency_table(outcomes: &[Outcome]) -> String {
    let baseline_p99 = outcomes
        .iter()
        .find(|outcome| outcome.mode == Mode::NoFault)
        .map(|outcome| outcome.load.latency_quantile(0.99));
    let mut out = String::from(
        "| mode | requests | failed | sign-ins | p50 ms | p99 ms | p99 vs no fault | max ms | peak RSS MiB | shutdown s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for outcome in outcomes {
        let load = &outcome.load;
        let p99 = load.latency_quantile(0.99);
        let ratio = match baseline_p99 {
            Some(base) if !base.is_zero() => {
                format!("{:.2}x", p99.as_secs_f64() / base.as_secs_f64())
            }
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.2} |",
            outcome.mode.name(),
            load.requests,
            load.failed,
            load.sign_ins,
            millis(load.latency_quantile(0.5)),
            millis(p99),
            ratio,
            millis(load.latency_quantile(1.0)),
            outcome.peak_rss_kib as f64 / 1024.0,
            outcome.shutdown_time.as_secs_f64(),
        );
    }
    out
}

/// Renders the entry accounting table: the shipper's shutdown report next to
/// what the receiver stored.
pub fn entries_table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| mode | generated | delivered | dropped: queue_full / rate_limited / rejected / line_too_long / shutdown | generated = delivered + dropped | stored by receiver | duplicates | retries | push responses | MiB sent, raw / compressed | largest push KiB |\n\
         |---|---:|---:|---|---|---:|---:|---:|---|---|---:|\n",
    );
    for outcome in outcomes {
        let Some(report) = &outcome.report else {
            let _ = writeln!(
                out,
                "| {} | no shutdown report | | | | | | | | | |",
                outcome.mode.name()
            );
            continue;
        };
        let dropped = [
            "queue_full",
            "rate_limited",
            "rejected",
            "line_too_long",
            "shutdown",
        ]
        .map(|reason| report.dropped.get(reason).copied().unwrap_or(0).to_string())
        .join(" / ");
        let dropped_total: u64 = report.dropped.values().sum();
        let identity = if report.generated == report.delivered + dropped_total {
            "holds"
        } else {
            "BROKEN"
        };
        let statuses: Vec<String> = outcome
            .push_statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} | {:.0} |",
            outcome.mode.name(),
            report.generated,
            report.delivered,
            dropped,
            identity,
            outcome.stored,
            outcome.duplicates,
            outcome.retries,
            statuses.join(", "),
            outcome.bytes_sent as f64 / MIB,
            outcome.compressed_bytes_sent as f64 / MIB,
            outcome.largest_push_bytes as f64 / 1024.0,
        );
    }
    out
}

const MIB: f64 = 1024.0 * 1024.0;

fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
