//! Simulated signed-in users. Each client keeps its own cookies and loops
//! over pages, API calls, sign-out and sign-in until the run ends.

use std::time::{Duration, Instant};

use rand::Rng as _;
use reqwest::{Method, StatusCode};

/// Maximum number of failure descriptions kept for an assertion message.
const MAX_FAILURE_SAMPLES: usize = 10;

/// Time limit of one request. A request that takes longer counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum number of provider redirects followed in one sign-in.
const MAX_PROVIDER_HOPS: usize = 10;

/// Idle time after which a client drops a pooled connection. Node.js servers,
/// the test provider among them, close idle keep-alive connections after 5 s
/// (`server.keepAliveTimeout`), and a request sent on a connection as it closes
/// fails with a reset. Clients sign in again every few seconds, so without
/// this they would hit that race at the provider.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts and latencies of the requests sent to the app. The provider's own
/// redirects during sign-in are counted apart, since the app does not serve them.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub requests: u64,
    pub failed: u64,
    pub failure_samples: Vec<String>,
    pub provider_failures: u64,
    pub provider_failure_samples: Vec<String>,
    pub sign_ins: u64,
    pub sign_outs: u64,
    /// Latency of every app request, in microseconds. Sorted by [`Self::merge_all`].
    pub latencies_us: Vec<u64>,
}

impl LoadStats {
    /// Merges the stats of every client and sorts the latencies.
    pub fn merge_all(parts: Vec<LoadStats>) -> LoadStats {
        let mut total = LoadStats::default();
        for part in parts {
            total.requests += part.requests;
            total.failed += part.failed;
            total.provider_failures += part.provider_failures;
            total.sign_ins += part.sign_ins;
            total.sign_outs += part.sign_outs;
            total.latencies_us.extend(part.latencies_us);
            for sample in part.provider_failure_samples {
                if total.provider_failure_samples.len() < MAX_FAILURE_SAMPLES {
                    total.provider_failure_samples.push(sample);
                }
            }
            for sample in part.failure_samples {
                if total.failure_samples.len() < MAX_FAILURE_SAMPLES {
                    total.failure_samples.push(sample);
                }
            }
        }
        total.latencies_us.sort_unstable();
        total
    }

    /// Returns the latency at quantile `q` (0 to 1) by the nearest-rank method.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        Duration::from_micros(self.latencies_us[index])
    }

    fn record_failure(&mut self, description: String) {
        self.failed += 1;
        if self.failure_samples.len() < MAX_FAILURE_SAMPLES {
            self.failure_samples.push(description);
        }
    }
}

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub clients: usize,
    pub duration: Duration,
    /// Mean pause between two requests of one client. Each pause is drawn
    /// uniformly from zero to twice this.
    pub think_time: Duration,
    /// Share of steps, from 0 to 1, in which a signed-in client signs out.
    /// It signs in again on its next step.
    pub sign_out_share: f64,
}

/// Runs `plan.clients` clients against `base_url` until `plan.duration` has
/// passed since the call, and returns their merged stats.
pub async fn run_load(base_url: String, plan: LoadPlan) -> LoadStats {
    let deadline = Instant::now() + plan.duration;
    let tasks: Vec<_> = (0..plan.clients)
        .map(|_| {
            let mut client = LoadClient::new(&base_url);
            tokio::spawn(async move {
                client.run_until(deadline, plan).await;
                client.stats
            })
        })
        .collect();
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        parts.push(task.await.expect("a load client panicked"));
    }
    LoadStats::merge_all(parts)
}

struct LoadClient {
    http: reqwest::Client,
    base_url: String,
    signed_in: bool,
    stats: LoadStats,
}

/// What a client does in one step while signed in.
#[derive(Debug, Clone, Copy)]
enum Step {
    Greeting,
    Me,
    Home,
    SignOut,
}

impl LoadClient {
    fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .expect("build a load client");
        Self {
            http,
            base_url: base_url.to_owned(),
            signed_in: false,
            stats: LoadStats::default(),
        }
    }

    async fn run_until(&mut self, deadline: Instant, plan: LoadPlan) {
        while Instant::now() < deadline {
            if self.signed_in {
                let step = choose_step(plan.sign_out_share);
                self.take_step(step).await;
            } else {
                self.sign_in().await;
            }
            let pause = plan.think_time.mul_f64(rand::rng().random_range(0.0..2.0));
            tokio::time::sleep(pause).await;
        }
    }

    async fn take_step(&mut self, step: Step) {
        match step {
            Step::Greeting => {
                self.app_request(Method::GET, "/nixtla", is_ok).await;
            }
            Step::Me => {
                self.app_request(Method::GET, "/api/me", is_ok).await;
            }
            Step::Home => {
                self.app_request(Method::GET, "/", is_ok).await;
            }
            Step::SignOut => {
                self.app_request(Method::POST, "/logout", is_redirect).await;
                self.stats.sign_outs += 1;
                self.signed_in = false;
            }
        }
    }

    /// Runs `/login`, the provider's redirects and the callback. Marks the
    /// client signed in when the callback redirects to `/nixtla`.
    async fn sign_in(&mut self) {
        let Some(login) = self
            .app_request(Method::GET, "/login?next=/nixtla", is_redirect)
            .await
        else {
            return;
        };
        let Some(callback) = self.follow_provider(&login).await else {
            return;
        };
        let Some(landing) = self.app_request(Method::GET, &callback, is_redirect).await else {
            return;
        };
        if landing == "/nixtla" {
            self.stats.sign_ins += 1;
            self.signed_in = true;
        } else {
            let message = format!("GET /auth redirected to {landing:?}, expected /nixtla");
            self.stats.record_failure(message);
        }
    }

    /// Follows the provider's redirects from `authorize_url` until one leads
    /// back to the app, and returns that path with its query.
    async fn follow_provider(&mut self, authorize_url: &str) -> Option<String> {
        let mut url = url::Url::parse(authorize_url).ok()?;
        let app_callback = format!("{}/auth", self.base_url);
        for _ in 0..MAX_PROVIDER_HOPS {
            if url.as_str().starts_with(&app_callback) {
                let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
                return Some(format!("{}{query}", url.path()));
            }
            let location = match self.http.get(url.clone()).send().await {
                Ok(response) if response.status().is_redirection() => location_of(&response),
                Ok(response) => {
                    let status = response.status();
                    self.record_provider_failure(format!("GET {url}: status {status}"));
                    return None;
                }
                Err(error) => {
                    self.record_provider_failure(format!("GET {url}: {error:?}"));
                    return None;
                }
            };
            url = match location.and_then(|location| url.join(&location).ok()) {
                Some(next) => next,
                None => {
                    self.record_provider_failure(format!("GET {url}: no valid Location"));
                    return None;
                }
            };
        }
        self.record_provider_failure(format!(
            "no redirect to the app after {MAX_PROVIDER_HOPS} hops"
        ));
        None
    }

    fn record_provider_failure(&mut self, description: String) {
        self.stats.provider_failures += 1;
        if self.stats.provider_failure_samples.len() < MAX_FAILURE_SAMPLES {
            self.stats.provider_failure_samples.push(description);
        }
    }

    /// Sends one request to the app, reads the whole body and records its
    /// latency. Returns the `Location` header (or an empty string) when the
    /// status passes `expected`, else records a failure and returns `None`.
    async fn app_request(
        &mut self,
        method: Method,
        path_and_query: &str,
        expected: fn(StatusCode) -> bool,
    ) -> Option<String> {
        let url = format!("{}{path_and_query}", self.base_url);
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let started = Instant::now();
        let result = self.http.request(method.clone(), &url).send().await;
        self.stats.requests += 1;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.stats
                    .record_failure(format!("{method} {path}: request failed: {error}"));
                return None;
            }
        };
        let status = response.status();
        let location = location_of(&response).unwrap_or_default();
        let body = response.bytes().await;
        let elapsed = started.elapsed();
        self.stats.latencies_us.push(elapsed.as_micros() as u64);
        if let Err(error) = body {
            let message = format!("{method} {path}: failed to read the body: {error}");
            self.stats.record_failure(message);
            return None;
        }
        if !expected(status) {
            let message = format!("{method} {path}: unexpected status {status}");
            self.stats.record_failure(message);
            return None;
        }
        Some(location)
    }
}

/// Picks a step: sign-out with `sign_out_share`, the rest split 40:35:25
/// between the greeting page, the API and the start page.
fn choose_step(sign_out_share: f64) -> Step {
    let mut rng = rand::rng();
    if rng.random_bool(sign_out_share) {
        return Step::SignOut;
    }
    match rng.random_range(0..100) {
        0..40 => Step::Greeting,
        40..75 => Step::Me,
        _ => Step::Home,
    }
}

fn is_ok(status: StatusCode) -> bool {
    status == StatusCode::OK
}

fn is_redirect(status: StatusCode) -> bool {
    status.is_redirection()
}

fn location_of(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(reqwest::header::LOCATION)?;
    value.to_str().ok().map(str::to_owned)
}
