//! The child process that logs through one shipper, so that CPU time and
//! peak RSS belong to that shipper alone.
//!
//! `shipping child --shipper NAME --url URL --events N [--rate PER_S]
//! [--queue-max-bytes B] [--shutdown-s S]`
//!
//! It prints `started` when the first event is logged, then one JSON line
//! with its counts, CPU time and peak RSS after the shipper stopped.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{self, Shipper};

/// Paced logging sends one burst per this period.
const BURST_PERIOD: Duration = Duration::from_millis(2);

/// Settings of one child run.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    pub shipper: Shipper,
    pub url: String,
    pub events: u64,
    /// Events per second; 0 logs as fast as the calling thread can.
    pub rate: u64,
    /// This crate's queue bound; `None` keeps the 32 MiB default.
    pub queue_max_bytes: Option<usize>,
    pub shutdown: Duration,
}

impl ChildArgs {
    /// Returns the arguments that make a child run with these settings.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "child".to_owned(),
            "--shipper".to_owned(),
            self.shipper.name().to_owned(),
            "--url".to_owned(),
            self.url.clone(),
            "--events".to_owned(),
            self.events.to_string(),
            "--rate".to_owned(),
            self.rate.to_string(),
            "--shutdown-s".to_owned(),
            self.shutdown.as_secs().to_string(),
        ];
        if let Some(bytes) = self.queue_max_bytes {
            args.push("--queue-max-bytes".to_owned());
            args.push(bytes.to_string());
        }
        args
    }

    fn parse(args: &[String]) -> Result<Self, String> {
        let mut parsed = ChildArgs {
            shipper: Shipper::Nixtla,
            url: String::new(),
            events: 0,
            rate: 0,
            queue_max_bytes: None,
            shutdown: Duration::from_secs(30),
        };
        let mut pairs = args.iter();
        while let Some(name) = pairs.next() {
            let value = pairs
                .next()
                .ok_or_else(|| format!("missing value after {name}"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|e| format!("invalid {name} {value:?}: {e}"))
            };
            match name.as_str() {
                "--shipper" => {
                    parsed.shipper = Shipper::parse(value)
                        .ok_or_else(|| format!("unknown shipper {value:?}"))?;
                }
                "--url" => parsed.url = value.clone(),
                "--events" => parsed.events = number()?,
                "--rate" => parsed.rate = number()?,
                "--queue-max-bytes" => parsed.queue_max_bytes = Some(number()? as usize),
                "--shutdown-s" => parsed.shutdown = Duration::from_secs(number()?),
                other => return Err(format!("unknown child option {other:?}")),
            }
        }
        if parsed.url.is_empty() {
            return Err("missing --url".to_owned());
        }
        Ok(parsed)
    }
}

/// Runs the child: logs, stops the shipper, prints the result line.
pub fn main(args: &[String]) {
    let args = ChildArgs::parse(args).unwrap_or_else(|error| {
        eprintln!("shipping child: {error}");
        std::process::exit(2);
    });
    let runtime = common::shipper_runtime();
    let queue_max_bytes = args.queue_max_bytes;
    let installed =
        common::install(
            args.shipper,
            runtime.handle(),
            &args.url,
            |builder| match queue_max_bytes {
                Some(bytes) => builder.queue_max_bytes(bytes),
                None => builder,
            },
        );
    let request_ids = common::request_ids(4096);

    println!("started");
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    tracing::dispatcher::with_default(&installed.dispatch, || {
        log_paced(args.events, args.rate, start, &request_ids);
    });
    let logged_s = start.elapsed().as_secs_f64();
    let stopped = runtime.block_on(installed.shutdown(args.shutdown));
    let total_s = start.elapsed().as_secs_f64();
    let usage = resource_usage();

    let snapshot = stopped.snapshot.map(|s| {
        json!({
            "generated": s.generated,
            "sent": s.sent,
            "dropped": s.dropped(),
            "dropped_queue_full": s.dropped_queue_full,
            "dropped_rejected": s.dropped_rejected,
            "dropped_rate_limited": s.dropped_rate_limited,
            "dropped_shutdown": s.dropped_shutdown,
            "queued_entries": s.queued_entries,
            "retries": s.retries,
            "batches_sent": s.batches_sent,
        })
    });
    let result = json!({
        "shipper": args.shipper.name(),
        "events": args.events,
        "rate": args.rate,
        "logged_s": logged_s,
        "total_s": total_s,
        "finished": stopped.finished,
        "cpu_user_s": usage.user_s,
        "cpu_system_s": usage.system_s,
        "max_rss_kib": usage.max_rss_kib,
        "counters": snapshot,
    });
    println!("{result}");
}

/// Logs `events` activity events at `rate` per second in bursts, or as fast
/// as possible when `rate` is 0.
fn log_paced(events: u64, rate: u64, start: Instant, request_ids: &[String]) {
    let burst = if rate == 0 {
        events
    } else {
        (rate * BURST_PERIOD.as_micros() as u64 / 1_000_000).max(1)
    };
    let mut sequence = 0;
    let mut bursts = 0u32;
    while sequence < events {
        let end = (sequence + burst).min(events);
        for n in sequence..end {
            common::log_activity(n, &request_ids[n as usize % request_ids.len()]);
        }
        sequence = end;
        bursts += 1;
        if rate > 0 {
            // Each burst is due at a fixed time, so a late wake-up is caught up.
            let due = start + BURST_PERIOD * bursts;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
}

struct Usage {
    user_s: f64,
    system_s: f64,
    max_rss_kib: i64,
}

/// Reads this process's CPU time and peak RSS with `getrusage`.
fn resource_usage() -> Usage {
    // SAFETY: `getrusage` only writes the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(
            libc::getrusage(libc::RUSAGE_SELF, &mut usage),
            0,
            "getrusage failed"
        );
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        user_s: seconds(usage.ru_utime),
        system_s: seconds(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.ru_maxrss,
    }
}
