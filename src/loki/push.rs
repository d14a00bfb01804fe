//! HTTP delivery of encoded batches, with Loki's retry rules.
//!
//! - 2xx: delivered.
//! - 429, 5xx and transport errors (refused, reset, timed out): retried with
//!   exponential backoff and full jitter until the batch's total retry time
//!   would pass its limit. Then the batch is dropped as `rate_limited` when
//!   the last failure was 429, or as `rejected` otherwise.
//! - 413: the batch is split in halves, which are sent one after the other. A
//!   single entry that is still too large is dropped as `rejected`.
//! - 400: Loki may have stored the valid entries of the batch, so nothing is
//!   resent. When Loki's message states `total ignored: N out of M`, only N
//!   entries count as dropped, otherwise all of them do.
//! - Any other status (401, 403, 422, other 4xx, and 3xx because redirects
//!   are not followed): dropped as `rejected`, no retry.
//!
//! A request whose response never arrives in time may have been stored, so
//! a retry after a timeout can deliver a batch twice.
//!
//! When shutdown starts during a backoff, or has started before a batch's
//! first backoff, the batch is retried at once. Later backoffs end at the
//! shutdown deadline at the latest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use tokio::sync::watch;

use super::config::Auth;
use super::diag::{Value, WarnKind};
use super::encode::{EncodedBatch, Encoder};
use super::metrics::DropReason;
use super::worker::Shared;

/// Maximum length of Loki's error message in a warning, in bytes.
const MAX_LOGGED_MESSAGE_BYTES: usize = 512;

/// Exponential backoff with full jitter: before retry `n` (from 0) the
/// pusher sleeps a uniformly random time between zero and
/// `min(max, min * 2^n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    /// Limit on the time from a batch's first attempt to its last retry.
    pub max_total: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
            max_total: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Returns the ceiling of the delay before retry `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.min.saturating_mul(factor).min(self.max)
    }

    /// Draws the delay before retry `attempt`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// The result of one HTTP attempt.
#[derive(Debug)]
enum Attempt {
    Delivered,
    PartiallyRejected(String),
    TooLarge,
    Rejected(StatusCode, String),
    Retry(Failure),
}

/// A retryable failure.
#[derive(Debug)]
enum Failure {
    RateLimited(String),
    Server(StatusCode, String),
    Transport(String),
}

impl Failure {
    fn loki_is_down(&self) -> bool {
        !matches!(self, Failure::RateLimited(_))
    }

    fn drop_reason(&self) -> DropReason {
        match self {
            Failure::RateLimited(_) => DropReason::RateLimited,
            _ => DropReason::Rejected,
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::RateLimited(message) => format!("429 Too Many Requests: {message}"),
            Failure::Server(status, message) => format!("{status}: {message}"),
            Failure::Transport(error) => error.clone(),
        }
    }
}

/// Outcome of a batch handed to [`Pusher::push_one`].
enum Settled {
    Done,
    Split(EncodedBatch),
}

/// Sends batches to one Loki push URL.
#[derive(Debug)]
pub struct Pusher {
    pub client: reqwest::Client,
    pub url: reqwest::Url,
    pub tenant: Option<String>,
    pub auth: Option<Auth>,
    pub backoff: Backoff,
    pub shared: Arc<Shared>,
}

impl Pusher {
    /// Delivers a batch or accounts for every entry of it as dropped. Gives
    /// up with reason `shutdown` once the deadline in `deadline` passes.
    pub async fn push(
        &self,
        batch: EncodedBatch,
        encoder: &mut Encoder,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let Settled::Split(too_large) = self.push_one(batch, deadline).await else {
                continue;
            };
            match encoder.split(too_large) {
                Ok((first, second)) => {
                    pending.push(second);
                    pending.push(first);
                }
                Err(single) => {
                    let message = "413 Payload Too Large for a single entry";
                    self.drop_batch(&single, DropReason::Rejected, WarnKind::Rejected, message);
                }
            }
        }
    }

    async fn push_one(
        &self,
        batch: EncodedBatch,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Settled {
        let first_attempt = Instant::now();
        let mut retry = 0;
        let mut shutdown_retry_done = false;
        loop {
            if deadline_passed(deadline) {
                return self.drop_at_shutdown(&batch);
            }
            let attempt = tokio::select! {
                attempt = self.send(&batch) => attempt,
                () = wait_for_deadline(deadline) => return self.drop_at_shutdown(&batch),
            };
            let failure = match attempt {
                Attempt::Retry(failure) => failure,
                Attempt::TooLarge => return Settled::Split(batch),
                settled => {
                    self.settle(&batch, settled);
                    return Settled::Done;
                }
            };
            self.shared.metrics.set_up(!failure.loki_is_down());
            let delay = self.backoff.delay(retry);
            if first_attempt.elapsed() + delay > self.backoff.max_total {
                let message = format!("retry time exhausted, last error: {}", failure.describe());
                let kind = WarnKind::RetriesExhausted;
                self.drop_batch(&batch, failure.drop_reason(), kind, &message);
                return Settled::Done;
            }
            self.warn_retry(&batch, &failure, delay);
            self.shared.metrics.retried();
            // A backoff can last far longer than the shutdown deadline, so the
            // start of shutdown ends it with an immediate retry, once per batch.
            if shutdown_retry_done {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wait_for_deadline(deadline) => return self.drop_at_shutdown(&batch),
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wait_for_shutdown_start(deadline.clone()) => shutdown_retry_done = true,
                }
            }
            retry += 1;
        }
    }

    async fn send(&self, batch: &EncodedBatch) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "snappy")
            .body(batch.body.clone());
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        request = match &self.auth {
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            None => request,
        };

        let started = Instant::now();
        let result = request.send().await;
        let attempt = match result {
            Ok(response) => classify(response).await,
            Err(error) => Attempt::Retry(Failure::Transport(error_chain(&error))),
        };
        self.shared.metrics.observe_push(started.elapsed());
        attempt
    }

    fn settle(&self, batch: &EncodedBatch, attempt: Attempt) {
        let metrics = &self.shared.metrics;
        metrics.set_up(true);
        match attempt {
            Attempt::Delivered => {
                metrics.sent(batch.entry_count as u64, batch.cost as u64);
                metrics.batch_sent(batch.raw_bytes as u64, batch.body.len() as u64);
            }
            Attempt::PartiallyRejected(message) => self.settle_partial(batch, &message),
            Attempt::Rejected(status, message) => {
                let message = format!("{status}: {message}");
                self.drop_batch(batch, DropReason::Rejected, WarnKind::Rejected, &message);
            }
            Attempt::TooLarge | Attempt::Retry(_) => unreachable!("handled by push_one"),
        }
    }

    fn settle_partial(&self, batch: &EncodedBatch, message: &str) {
        let total = batch.entry_count as u64;
        // NOTE: Loki names no count when a single entry is invalid, and a body
        // it cannot parse gets 400 too, so without a count every entry is
        // counted as rejected. Entries stored anyway are then missing from `sent`.
        let rejected = ignored_entry_count(message)
            .filter(|&ignored| ignored <= total)
            .unwrap_or(total);
        let metrics = &self.shared.metrics;
        // The cost is split by entry share, since which entries failed is unknown.
        let rejected_cost = (batch.cost as u64 * rejected)
            .checked_div(total)
            .unwrap_or(0);
        metrics.drop_queued(DropReason::Rejected, rejected, rejected_cost);
        metrics.sent(total - rejected, batch.cost as u64 - rejected_cost);
        if rejected < total {
            metrics.batch_sent(batch.raw_bytes as u64, batch.body.len() as u64);
        }
        self.shared.diag.warn(
            WarnKind::Rejected,
            "Loki rejected entries with 400 Bad Request; they are not resent",
            &[
                ("rejected_entries", Value::U64(rejected)),
                ("batch_entries", Value::U64(total)),
                ("loki_message", Value::Str(message)),
            ],
        );
    }

    fn drop_batch(&self, batch: &EncodedBatch, reason: DropReason, kind: WarnKind, message: &str) {
        let entries = batch.entry_count as u64;
        self.shared
            .metrics
            .drop_queued(reason, entries, batch.cost as u64);
        self.shared.diag.warn(
            kind,
            "dropped a batch of log entries that Loki did not accept",
            &[
                ("reason", Value::Str(reason.as_str())),
                ("entries", Value::U64(entries)),
                ("error", Value::Str(message)),
            ],
        );
    }

    fn drop_at_shutdown(&self, batch: &EncodedBatch) -> Settled {
        let entries = batch.entry_count as u64;
        let metrics = &self.shared.metrics;
        metrics.drop_queued(DropReason::Shutdown, entries, batch.cost as u64);
        Settled::Done
    }

    fn warn_retry(&self, batch: &EncodedBatch, failure: &Failure, delay: Duration) {
        let error = failure.describe();
        self.shared.diag.warn(
            WarnKind::PushFailed,
            "push to Loki failed, retrying",
            &[
                ("url", Value::Str(self.url.as_str())),
                ("entries", Value::U64(batch.entry_count as u64)),
                ("retry_in_ms", Value::U64(delay.as_millis() as u64)),
                ("error", Value::Str(&error)),
            ],
        );
    }
}

async fn classify(response: reqwest::Response) -> Attempt {
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let message = match response.text().await {
        Ok(body) => shorten(body.trim()),
        Err(error) => format!(
            "(failed to read the response body: {})",
            error_chain(&error)
        ),
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => Attempt::Retry(Failure::RateLimited(message)),
        StatusCode::PAYLOAD_TOO_LARGE => Attempt::TooLarge,
        StatusCode::BAD_REQUEST => Attempt::PartiallyRejected(message),
        s if s.is_server_error() => Attempt::Retry(Failure::Server(s, message)),
        s => Attempt::Rejected(s, message),
    }
}

/// Reads how many entries a Loki 400 message reports as rejected.
///
/// The ingester writes `total ignored: N out of M` once per stream, and the
/// distributor writes `N errors like: …` once per kind of error. The counts
/// of the first form are summed if present, else those of the second.
/// Returns `None` when the message has neither form.
pub fn ignored_entry_count(message: &str) -> Option<u64> {
    sum_counts_after(message, "total ignored: ")
        .or_else(|| sum_counts_before(message, " errors like: "))
}

fn sum_counts_after(message: &str, marker: &str) -> Option<u64> {
    let mut total = None;
    for (index, _) in message.match_indices(marker) {
        let rest = &message[index + marker.len()..];
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let count: u64 = rest[..digits_len].parse().ok()?;
        total = Some(total.unwrap_or(0) + count);
    }
    total
}

fn sum_counts_before(message: &str, marker: &str) -> Option<u64> {
    let mut total = None;
    for (index, _) in message.match_indices(marker) {
        let before = &message[..index];
        let digits_len = before.bytes().rev().take_while(u8::is_ascii_digit).count();
        let count: u64 = before[index - digits_len..].parse().ok()?;
        total = Some(total.unwrap_or(0) + count);
    }
    total
}

fn shorten(message: &str) -> String {
    if message.len() <= MAX_LOGGED_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut cut = MAX_LOGGED_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes in total)", &message[..cut], message.len())
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn deadline_passed(deadline: &watch::Receiver<Option<Instant>>) -> bool {
    deadline.borrow().is_some_and(|at| Instant::now() >= at)
}

/// Completes as soon as a shutdown deadline is set.
async fn wait_for_shutdown_start(mut deadline: watch::Receiver<Option<Instant>>) {
    if deadline.wait_for(Option::is_some).await.is_err() {
        // The handle is gone, so no deadline can be set any more.
        std::future::pending::<()>().await;
    }
}

/// Completes once a shutdown deadline is set and has passed.
pub async fn wait_for_deadline(deadline: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let current = *deadline.borrow_and_update();
        if let Some(at) = current {
            tokio::time::sleep_until(at.into()).await;
            return;
        }
        if deadline.changed().await.is_err() {
            // The handle is gone, so no deadline can be set any more.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_doubles_up_to_max() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(500));
        assert_eq!(backoff.ceiling(1), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(16));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(30));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn backoff_delay_stays_under_ceiling() {
        let backoff = Backoff::default();
        for attempt in 0..10 {
            for _ in 0..100 {
                assert!(backoff.delay(attempt) <= backoff.ceiling(attempt));
            }
        }
    }

    #[test]
    fn backoff_delay_is_jittered() {
        let backoff = Backoff::default();
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.delay(4)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn ignored_count_is_summed_over_streams() {
        let message = "entry with timestamp 2020 ignored, reason: 'too old',\n\
            user 'fake', total ignored: 1 out of 3 for stream: {a=\"b\"}\n\
            user 'fake', total ignored: 2 out of 5 for stream: {a=\"c\"}";
        assert_eq!(ignored_entry_count(message), Some(3));
    }

    #[test]
    fn distributor_error_groups_are_summed() {
        let message = "2 errors like: entry too old; 1 errors like: line too long";
        assert_eq!(ignored_entry_count(message), Some(3));
    }

    #[test]
    fn ignored_count_absent_or_malformed() {
        assert_eq!(ignored_entry_count("error parsing labels"), None);
        assert_eq!(ignored_entry_count("total ignored: x out of 3"), None);
    }

    #[test]
    fn long_messages_are_shortened() {
        let message = "é".repeat(MAX_LOGGED_MESSAGE_BYTES);
        let short = shorten(&message);
        assert!(short.len() < message.len());
        assert!(short.ends_with(&format!("({} bytes in total)", message.len())));
    }
}
