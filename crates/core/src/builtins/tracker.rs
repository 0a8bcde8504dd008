//! What the experiment trackers ([`RemoteMonitor`](super::RemoteMonitor),
//! [`MLFlowLogger`](super::MLFlowLogger)) share: a background sender with a
//! bounded queue, so a tracker that is down or slow never stops or slows
//! training, and a small blocking HTTP client over `ureq`.
//!
//! The training thread only queues work ([`Sender::send`] never blocks: when
//! the queue is full the job is dropped) and waits for the queue to drain at
//! the end of training, for a bounded time ([`Sender::flush`]). The first
//! failure is kept for the training thread to report, once
//! ([`Sender::take_warning`]).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs waiting for the background thread, at most.
pub(crate) const QUEUE_CAPACITY: usize = 1024;

enum Message<J> {
    Job(J),
    Flush(SyncSender<()>),
}

/// What the background thread keeps for the training thread.
#[derive(Default)]
struct Shared {
    /// The first failure, until the training thread takes it.
    warning: Option<String>,
    /// Whether a failure was ever recorded (later ones are not reported).
    failed: bool,
}

/// A background thread that runs jobs in order, and the bounded queue to it.
pub(crate) struct Sender<J: Send + 'static> {
    tx: Option<SyncSender<Message<J>>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
    /// Jobs dropped because the queue was full.
    dropped: usize,
}

/// Records a failure of a job: the first one becomes the warning.
#[derive(Clone)]
pub(crate) struct FailureSink(Arc<Mutex<Shared>>);

impl FailureSink {
    /// Records `message` as the warning, unless an earlier failure was.
    pub(crate) fn fail(&self, message: impl Into<String>) {
        let mut shared = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !shared.failed {
            shared.failed = true;
            shared.warning = Some(message.into());
        }
    }
}

impl<J: Send + 'static> Sender<J> {
    /// Starts a thread named `name` that hands each job to `run`, in order.
    /// `run` reports failures through the [`FailureSink`] it is given.
    pub(crate) fn spawn<F>(name: &str, mut run: F) -> std::io::Result<Self>
    where
        F: FnMut(J, &FailureSink) + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<Message<J>>(QUEUE_CAPACITY);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sink = FailureSink(shared.clone());
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || worker(rx, &sink, &mut run))?;
        Ok(Self {
            tx: Some(tx),
            shared,
            thread: Some(thread),
            dropped: 0,
        })
    }

    /// Queues `job` without waiting; drops it when the queue is full (the
    /// tracker is far behind), which is reported once as a failure.
    pub(crate) fn send(&mut self, job: J) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Message::Job(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                FailureSink(self.shared.clone()).fail(format!(
                    "the tracker is too slow: {QUEUE_CAPACITY} requests are waiting, newer ones are dropped"
                ));
            }
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// Waits until every job queued so far has run, for `timeout` at most.
    /// Returns whether they all did.
    pub(crate) fn flush(&mut self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut message = Message::Flush(ack_tx);
        loop {
            match tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TrySendError::Full(_)) => return false,
                Err(TrySendError::Disconnected(_)) => return true,
            }
        }
        match ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Records a failure found on the training thread (reported like the
    /// background thread's, once).
    pub(crate) fn fail(&self, message: impl Into<String>) {
        FailureSink(self.shared.clone()).fail(message);
    }

    /// The first failure, once: `None` afterwards, and `None` if every job
    /// succeeded so far.
    pub(crate) fn take_warning(&mut self) -> Option<String> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .warning
            .take()
    }

    /// Jobs dropped because the queue was full.
    #[allow(dead_code)]
    pub(crate) fn dropped(&self) -> usize {
        self.dropped
    }

    /// Closes the queue: the thread ends after the jobs already queued.
    /// Does not wait for it.
    pub(crate) fn close(&mut self) {
        self.tx = None;
        self.thread = None;
    }
}

impl<J: Send + 'static> Drop for Sender<J> {
    fn drop(&mut self) {
        // Never block here: a tracker that hangs must not hang the caller.
        self.close();
    }
}

fn worker<J, F: FnMut(J, &FailureSink)>(rx: Receiver<Message<J>>, sink: &FailureSink, run: &mut F) {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Job(job) => run(job, sink),
            Message::Flush(ack) => {
                let _ = ack.try_send(());
            }
        }
    }
}

/// A reply: status code and body (any status: 4xx and 5xx are not errors
/// here).
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
}

/// A blocking HTTP client with short timeouts.
#[derive(Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
}

/// A request body and its content type.
pub(crate) enum Body<'a> {
    None,
    Bytes(&'a str, Vec<u8>),
    File(std::fs::File),
}

impl Http {
    /// A client whose requests give up after `timeout` (connecting: after
    /// 3 s at most), sending `headers` with each.
    pub(crate) fn new(timeout: Duration, headers: Vec<(String, String)>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout.min(Duration::from_secs(3))))
            .timeout_global(Some(timeout))
            .user_agent(concat!("burnfit/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, headers }
    }

    /// `method url` with `body`; `Err` when no reply came (refused,
    /// timed out, bad address).
    pub(crate) fn request(&self, method: &str, url: &str, body: Body<'_>) -> Result<Reply, String> {
        let has_content_type = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        let with_headers = |mut builder: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            for (key, value) in &self.headers {
                builder = builder.header(key.as_str(), value.as_str());
            }
            builder
        };
        let result = match method {
            "GET" => {
                let mut builder = self.agent.get(url);
                for (key, value) in &self.headers {
                    builder = builder.header(key.as_str(), value.as_str());
                }
                builder.call()
            }
            "POST" | "PUT" => {
                let builder = with_headers(if method == "POST" {
                    self.agent.post(url)
                } else {
                    self.agent.put(url)
                });
                match body {
                    Body::None => builder.send_empty(),
                    Body::Bytes(content_type, bytes) => {
                        let builder = if has_content_type {
                            builder
                        } else {
                            builder.header("Content-Type", content_type)
                        };
                        builder.send(bytes)
                    }
                    Body::File(file) => builder
                        .header("Content-Type", "application/octet-stream")
                        .send(file),
                }
            }
            other => return Err(format!("unsupported method {other}")),
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| format!("(unreadable reply: {e})"));
        Ok(Reply { status, body })
    }
}

/// Checks that `url` is an address the trackers can reach: `http://`, or
/// `https://` with the `trackers-https` feature.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") {
        Ok(())
    } else if lower.starts_with("https://") {
        if cfg!(feature = "trackers-https") {
            Ok(())
        } else {
            Err("https:// needs burnfit-core's `trackers-https` feature".into())
        }
    } else {
        Err(format!("`{url}` is not an http:// or https:// address"))
    }
}

/// `s` percent-encoded for a URL path (every byte but the unreserved ones
/// and `/`).
pub(crate) fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `s` encoded as Python's `urllib.parse.quote_plus` does (form fields):
/// unreserved bytes kept, space as `+`, every other byte `%XX`.
pub(crate) fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_plus_is_pythons() {
        // urllib.parse.quote_plus('{"epoch": 0, "loss": 0.5}')
        assert_eq!(
            quote_plus(r#"{"epoch": 0, "loss": 0.5}"#),
            "%7B%22epoch%22%3A+0%2C+%22loss%22%3A+0.5%7D"
        );
        assert_eq!(quote_plus("a~b-c_d.e/é"), "a~b-c_d.e%2F%C3%A9");
    }

    #[test]
    fn encode_path_keeps_slashes() {
        assert_eq!(encode_path("plots/a b.png"), "plots/a%20b.png");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:5000").is_ok());
        assert!(check_url("file:./mlruns").is_err());
        assert_eq!(
            check_url("https://example.org").is_ok(),
            cfg!(feature = "trackers-https")
        );
    }

    #[test]
    fn the_first_failure_is_reported_once_and_flush_waits() {
        let mut sender = Sender::spawn("test-sender", |job: u32, sink: &FailureSink| {
            std::thread::sleep(Duration::from_millis(5));
            if job % 2 == 1 {
                sink.fail(format!("job {job} failed"));
            }
        })
        .unwrap();
        for job in 0..6 {
            sender.send(job);
        }
        assert!(sender.flush(Duration::from_secs(30)));
        assert_eq!(sender.take_warning().as_deref(), Some("job 1 failed"));
        assert_eq!(sender.take_warning(), None);
        sender.send(7);
        assert!(sender.flush(Duration::from_secs(30)));
        assert_eq!(sender.take_warning(), None);
    }

    #[test]
    fn flush_gives_up_on_a_stuck_job() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let mut sender = Sender::spawn("test-stuck", move |_: (), _: &FailureSink| {
            let _ = release_rx.lock().unwrap().recv();
        })
        .unwrap();
        sender.send(());
        assert!(!sender.flush(Duration::from_millis(50)));
        release_tx.send(()).unwrap();
        assert!(sender.flush(Duration::from_secs(30)));
    }
}
