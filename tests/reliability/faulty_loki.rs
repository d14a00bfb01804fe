//! The Loki test receiver on a fixed port, which can go down and come back.
//!
//! Going down kills the receiver process, so its port refuses connections.
//! Before the kill, the receiver's push records are saved: it is first set
//! to reset every new push, then the pushes it is still processing are
//! awaited. So every push that received a 204 response is in the saved records.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::loki_common::{Receiver, free_port};

/// Maximum wait for the receiver to finish the pushes in progress.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FaultyLoki {
    pub url: String,
    port: u16,
    args: Vec<String>,
    current: Option<Receiver>,
    /// Push records of the receiver processes that were stopped.
    saved_requests: Vec<Value>,
}

impl FaultyLoki {
    /// Picks a port but starts nothing, so the URL refuses connections.
    pub fn new(args: &[&str]) -> Self {
        let port = free_port();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            current: None,
            saved_requests: Vec::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.current.is_some()
    }

    /// Starts a receiver on the port. Does nothing when one is running.
    pub fn come_up(&mut self) {
        if self.current.is_none() {
            let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
            self.current = Some(Receiver::start_on(self.port, &args));
        }
    }

    /// Saves the running receiver's push records and kills it.
    pub async fn go_down(&mut self) {
        let Some(receiver) = self.current.take() else {
            return;
        };
        receiver.fault(json!({"mode": "refuse"})).await;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while receiver.in_flight().await > 0 {
            assert!(
                Instant::now() < deadline,
                "the receiver still processes pushes after {SETTLE_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.saved_requests.extend(receiver.requests().await);
    }

    /// Sets a fault plan on the running receiver, if any.
    pub async fn fault(&self, plan: Value) {
        if let Some(receiver) = &self.current {
            receiver.fault(plan).await;
        }
    }

    /// Returns the push records of every receiver process so far.
    pub async fn all_requests(&self) -> Vec<Value> {
        let mut requests = self.saved_requests.clone();
        if let Some(receiver) = &self.current {
            requests.extend(receiver.requests().await);
        }
        requests
    }
}
