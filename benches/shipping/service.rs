//! Service overhead: `wrk` loads `/nixtla` with a signed-in session cookie
//! for a fixed time at fixed concurrency. Loki shipping is off, on into the
//! Python test receiver, or on into the in-process null sink, which keeps
//! the receiver's CPU cost off the shared cores. Each run starts a fresh
//! service process, and runs rotate their order.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::NullLoki;
use crate::procs::{Process, Receiver};
use crate::summary::{Spread, ratio};

/// A 64-byte session key, the minimum the service accepts.
const SESSION_KEY: &str = "bench-session-key-bench-session-key-bench-session-key-bench-sessi";

/// Settings of the service figure.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub duration: Duration,
    pub connections: u32,
    pub threads: u32,
    pub repetitions: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shipping {
    Off,
    Receiver,
    NullSink,
}

impl Shipping {
    fn name(self) -> &'static str {
        match self {
            Shipping::Off => "off",
            Shipping::Receiver => "on_python_receiver",
            Shipping::NullSink => "on_null_sink",
        }
    }
}

pub async fn run(receiver: &Receiver, sink: &NullLoki, settings: Settings) -> Value {
    if Command::new("wrk").arg("--version").output().is_err() {
        panic!("wrk is not installed: install it with `apt-get install wrk` (Debian)");
    }
    println!(
        "== service overhead: wrk -t{} -c{} -d{}s on /nixtla",
        settings.threads,
        settings.connections,
        settings.duration.as_secs()
    );
    let mut order = [Shipping::Off, Shipping::Receiver, Shipping::NullSink];
    let mut runs: Vec<(Shipping, Value)> = Vec::new();
    for _ in 0..settings.repetitions {
        for shipping in order {
            receiver.reset().await;
            let loki_url = match shipping {
                Shipping::Off => None,
                Shipping::Receiver => Some(receiver.url.as_str()),
                Shipping::NullSink => Some(sink.url.as_str()),
            };
            let run = run_one(loki_url, settings).await;
            println!("{:>18}: {run}", shipping.name());
            runs.push((shipping, run));
        }
        order.rotate_left(1);
    }

    let mut out = serde_json::Map::new();
    let mut medians = std::collections::HashMap::new();
    for shipping in [Shipping::Off, Shipping::Receiver, Shipping::NullSink] {
        let mine: Vec<&Value> = runs
            .iter()
            .filter(|(s, _)| *s == shipping)
            .map(|(_, run)| run)
            .collect();
        let field = |name: &str| Spread::of(mine.iter().map(|r| r[name].as_f64().unwrap_or(0.0)));
        let spreads = [field("requests_per_s"), field("p50_ms"), field("p99_ms")];
        medians.insert(shipping, spreads.map(|s| s.median));
        out.insert(
            shipping.name().to_owned(),
            json!({
                "requests_per_s": spreads[0],
                "p50_ms": spreads[1],
                "p99_ms": spreads[2],
                "runs": mine,
            }),
        );
    }
    let off = medians[&Shipping::Off];
    for shipping in [Shipping::Receiver, Shipping::NullSink] {
        let on = medians[&shipping];
        out.insert(
            format!("ratios_{}_to_off", shipping.name()),
            json!({
                "throughput": ratio(on[0], off[0]),
                "p50": ratio(on[1], off[1]),
                "p99": ratio(on[2], off[2]),
            }),
        );
    }
    Value::Object(out)
}

async fn run_one(loki_url: Option<&str>, settings: Settings) -> Value {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_nixtla"));
    for (name, _) in std::env::vars() {
        if name.starts_with("LOKI_") || name.starts_with("OAUTH_") || name.starts_with("OIDC_") {
            command.env_remove(name);
        }
    }
    command
        .env("NIXTLA_LISTEN", format!("127.0.0.1:{port}"))
        .env("NIXTLA_PUBLIC_URL", &base)
        .env("SESSION_KEY", SESSION_KEY)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("NIXTLA_ENV", "bench");
    if let Some(url) = loki_url {
        command.env("LOKI_URL", url);
    }
    // The service's JSON log lines go to /dev/null.
    let service = Process::spawn_quiet("nixtla service", command);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    wait_until_healthy(&client, &base).await;
    let cookie = sign_in(&client, &base).await;
    let check = client
        .get(format!("{base}/nixtla"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /nixtla");
    assert_eq!(check.status(), 200, "the session cookie must open /nixtla");

    let target = format!("{base}/nixtla");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .arg(format!("-t{}", settings.threads))
            .arg(format!("-c{}", settings.connections))
            .arg(format!("-d{}s", settings.duration.as_secs()))
            .arg("--latency")
            .args(["-H", &format!("Cookie: {cookie}")])
            .arg(target)
            .output()
    })
    .await
    .expect("wrk thread")
    .expect("failed to run wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk failed: {text}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    drop(service);

    json!({
        "requests_per_s": wrk_value(&text, "Requests/sec:"),
        "p50_ms": wrk_latency_ms(&text, "50%"),
        "p99_ms": wrk_latency_ms(&text, "99%"),
        "non_2xx": wrk_value(&text, "Non-2xx or 3xx responses:").unwrap_or(0.0),
        "loki_sent": metric(&metrics, "nixtla_loki_entries_sent_total"),
        "loki_generated": metric(&metrics, "nixtla_loki_entries_generated_total"),
        "loki_dropped_queue_full": metric(&metrics, "nixtla_loki_dropped_entries_total{reason=\"queue_full\"}"),
    })
}

async fn wait_until_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service at {base} did not answer /healthz within 10 s");
}

/// Signs in through the development login form and returns the
/// `nixtla_session=...` cookie pair.
async fn sign_in(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/login"))
        .form(&[("name", "Ada Lovelace"), ("email", "ada@example.com")])
        .send()
        .await
        .expect("POST /login");
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("nixtla_session="))
        .and_then(|value| value.split(';').next())
        .unwrap_or_else(|| {
            panic!(
                "sign-in set no session cookie (status {})",
                response.status()
            )
        })
        .to_owned()
}

/// Reads the number after `label` in wrk's output.
fn wrk_value(text: &str, label: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with(label))?;
    line.trim_start()[label.len()..].trim().parse().ok()
}

/// Reads a latency percentile line of `wrk --latency`, such as `99%  3.21ms`.
fn wrk_latency_ms(text: &str, percentile: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with(percentile))?;
    let value = line.split_whitespace().nth(1)?;
    let (number, scale) = if let Some(us) = value.strip_suffix("us") {
        (us, 0.001)
    } else if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Reads a sample of the Prometheus text, by its full name and labels.
fn metric(text: &str, name: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))?;
    line[name.len()..].trim().parse().ok()
}
