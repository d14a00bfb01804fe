//! A stdout writer that never blocks the thread that logs.
//!
//! Lines go through a bounded channel to one writer thread. When stdout stops
//! draining (a stalled log driver, a full pipe), the channel fills and further lines
//! are dropped and counted in `nixtla_stdout_dropped_lines_total` instead of
//! stalling requests. The Loki path is unaffected: it has its own queue.
//! [`NonBlockingStdout::flush`] waits, with a time limit, until the writer thread
//! has written everything queued before the call.

use std::{
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    time::Duration,
};

/// Lines that may wait for the writer thread before new ones are dropped.
pub const STDOUT_QUEUE_LINES: usize = 65_536;

enum Message {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// Cheap to clone; all clones feed the same writer thread.
#[derive(Clone)]
pub struct NonBlockingStdout {
    sender: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for NonBlockingStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonBlockingStdout")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl NonBlockingStdout {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(STDOUT_QUEUE_LINES);
        std::thread::Builder::new()
            .name("nixtla-stdout".into())
            .spawn(move || write_until_closed(receiver))?;
        Ok(Self {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `line` plus a newline; drops and counts it when the queue is full.
    pub fn write_line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send(bytes);
    }

    fn send(&self, bytes: Vec<u8>) {
        if self.sender.try_send(Message::Line(bytes)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because stdout did not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued so far is written, or `limit` passes.
    /// Returns false when the limit passed first.
    pub fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        let queued = self.sender.send_timeout_compat(Message::Flush(done), limit);
        queued && wait.recv_timeout(limit).is_ok()
    }

    /// Appends the drop counter in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let name = "nixtla_stdout_dropped_lines_total";
        out.push_str(&format!(
            "# HELP {name} Log lines not written because stdout was stalled.\n"
        ));
        out.push_str(&format!(
            "# TYPE {name} counter\n{name} {}\n",
            self.dropped()
        ));
    }
}

/// Hands each `write` call to the writer thread as one unit. `JsonLayer` writes a
/// whole line per call, so lines never interleave.
pub struct QueuedWrite<'a>(&'a NonBlockingStdout);

impl std::io::Write for QueuedWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlockingStdout {
    type Writer = QueuedWrite<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedWrite(self)
    }
}

trait SendTimeout {
    fn send_timeout_compat(&self, message: Message, limit: Duration) -> bool;
}

impl SendTimeout for SyncSender<Message> {
    /// `SyncSender` has no timed send, so this retries `try_send` until `limit`.
    fn send_timeout_compat(&self, mut message: Message, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.try_send(message) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
    }
}

fn write_until_closed(receiver: Receiver<Message>) {
    let stdout = std::io::stdout();
    for message in receiver {
        match message {
            Message::Line(bytes) => {
                // A logger has nowhere to report its own failed write.
                let _ = stdout.lock().write_all(&bytes);
            }
            Message::Flush(done) => {
                let _ = stdout.lock().flush();
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_waits_for_queued_lines() {
        let stdout = NonBlockingStdout::start().unwrap();
        stdout.write_line("{\"test\":\"flush\"}");
        assert!(stdout.flush(Duration::from_secs(5)));
        assert_eq!(stdout.dropped(), 0);
    }
}
