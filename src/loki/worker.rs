//! The background task: takes entries off the queue, batches, encodes and
//! pushes them, one request at a time so each stream's entries arrive in order.
//!
//! While no batch is open the task waits on the queue, so the first entry
//! wakes it. While a batch is open it drains the queue every
//! [`DRAIN_INTERVAL`] instead, because a send that wakes a parked task costs
//! the logging thread a system call. Waking on every send, strace of the
//! caller-cost benchmark counted one such call per 12 events.
//!
//! On shutdown it stops waiting for batches to fill, drains what the queue
//! holds, and pushes it until the deadline. Whatever is still unsent then is
//! counted as dropped with reason `shutdown`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tracing::instrument::WithSubscriber as _;

use super::batch::{Batch, Batcher, Entry};
use super::diag::Diagnostics;
use super::encode::Encoder;
use super::metrics::{DropReason, Metrics};
use super::push::Pusher;

/// Entries taken off the queue per wake-up.
const RECEIVE_CHUNK: usize = 256;

/// How often the queue is drained while a batch is open. Entries wait at
/// most this long on top of the batch's time limit.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// State shared by the layer, the task and the handle.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub diag: Diagnostics,
    /// Set when shutdown starts; the layer drops new entries from then on.
    pub closed: AtomicBool,
}

/// The shipper's background task. Spawn it on a Tokio runtime, because
/// nothing is sent until it runs. It finishes after [`super::LokiHandle::shutdown`].
#[must_use = "the task sends nothing unless it is spawned"]
pub struct LokiTask(Pin<Box<dyn Future<Output = ()> + Send + 'static>>);

impl Future for LokiTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for LokiTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LokiTask")
    }
}

/// Everything the task owns.
pub struct Worker {
    pub receiver: mpsc::UnboundedReceiver<Entry>,
    pub stream: Arc<str>,
    pub batcher: Batcher,
    pub encoder: Encoder,
    pub pusher: Pusher,
    pub deadline: watch::Receiver<Option<Instant>>,
    pub finished: watch::Sender<bool>,
}

impl Worker {
    /// Wraps the worker loop into a task. While it runs, `tracing` events
    /// from the task itself (from the HTTP client, for example) go to a
    /// subscriber that discards them, so they cannot loop back into the queue.
    pub fn into_task(self) -> LokiTask {
        let task = self
            .run()
            .with_subscriber(tracing::subscriber::NoSubscriber::default());
        LokiTask(Box::pin(task))
    }

    async fn run(mut self) {
        let mut received = Vec::with_capacity(RECEIVE_CHUNK);
        let mut shutdown = self.deadline.clone();
        loop {
            let Some(flush_at) = self.batcher.flush_at() else {
                // Nothing is batched: wait for the next entry to wake the task.
                tokio::select! {
                    biased;
                    () = wait_for_shutdown(&mut shutdown) => break,
                    count = self.receiver.recv_many(&mut received, RECEIVE_CHUNK) => {
                        if count == 0 {
                            break;
                        }
                        self.add_all(&mut received).await;
                    }
                }
                continue;
            };
            // A batch is open: sleep until the next drain or the flush time,
            // without asking the queue to wake the task.
            let wake_at = flush_at.min(Instant::now() + DRAIN_INTERVAL);
            tokio::select! {
                biased;
                () = wait_for_shutdown(&mut shutdown) => break,
                () = tokio::time::sleep_until(wake_at.into()) => {}
            }
            let senders_left = self.add_available(&mut received).await;
            if self
                .batcher
                .flush_at()
                .is_some_and(|at| at <= Instant::now())
            {
                self.flush().await;
            }
            if !senders_left {
                break;
            }
        }
        self.drain().await;
        let _ = self.finished.send(true);
    }

    /// Batches what the queue holds without waiting for more. Returns false
    /// when every sender is gone and the queue is empty.
    async fn add_available(&mut self, received: &mut Vec<Entry>) -> bool {
        loop {
            match self.receiver.try_recv() {
                Ok(entry) => {
                    received.push(entry);
                    if received.len() == RECEIVE_CHUNK {
                        self.add_all(received).await;
                    }
                }
                Err(TryRecvError::Empty) => {
                    self.add_all(received).await;
                    return true;
                }
                Err(TryRecvError::Disconnected) => {
                    self.add_all(received).await;
                    return false;
                }
            }
        }
    }

    async fn add_all(&mut self, received: &mut Vec<Entry>) {
        let now = Instant::now();
        for entry in received.drain(..) {
            if let Some(full) = self.batcher.push(&self.stream, entry, now) {
                self.send(full).await;
            }
        }
    }

    async fn flush(&mut self) {
        if let Some(batch) = self.batcher.take() {
            self.send(batch).await;
        }
    }

    async fn send(&mut self, batch: Batch) {
        let encoded = self.encoder.encode_batch(batch);
        self.pusher
            .push(encoded, &mut self.encoder, &mut self.deadline)
            .await;
    }

    /// Pushes everything queued, then counts what is left after the deadline.
    async fn drain(&mut self) {
        let mut received = Vec::with_capacity(RECEIVE_CHUNK);
        while let Ok(entry) = self.receiver.try_recv() {
            received.push(entry);
            if received.len() == RECEIVE_CHUNK {
                self.add_all(&mut received).await;
            }
        }
        self.add_all(&mut received).await;
        self.flush().await;
        // Entries that raced past the closed flag are lost.
        self.receiver.close();
        while let Ok(entry) = self.receiver.try_recv() {
            let cost = entry.cost() as u64;
            self.pusher
                .shared
                .metrics
                .drop_queued(DropReason::Shutdown, 1, cost);
        }
    }
}

/// Completes as soon as a shutdown deadline is set.
async fn wait_for_shutdown(deadline: &mut watch::Receiver<Option<Instant>>) {
    if deadline.wait_for(Option::is_some).await.is_err() {
        // The handle is gone without a shutdown, so the task runs until the
        // queue's senders are gone too.
        std::future::pending::<()>().await;
    }
}
