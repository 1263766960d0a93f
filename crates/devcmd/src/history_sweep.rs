//! The thread that deletes the stored history past its retention.

use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use devcmd_core::Timestamp;
use devcmd_store::FjallStore;

/// How often the history is swept.
const EVERY: Duration = Duration::from_secs(5);
/// Deletions per store batch: bounded, so one sweep never holds the writer long.
const BATCH: usize = 10_000;

/// A running sweeper; stopped and joined by [`HistorySweep::stop`].
pub(crate) struct HistorySweep {
    stop: SyncSender<()>,
    thread: Option<JoinHandle<()>>,
}

impl HistorySweep {
    /// Every few seconds, deletes from `store` the history of commands that
    /// ended more than `retention` before `now()`, in batches of [`BATCH`].
    pub(crate) fn start(
        store: Arc<FjallStore>,
        retention: Duration,
        now: impl Fn() -> Timestamp + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("devcmd-history-sweep".into())
            .spawn(move || {
                // Woken by the interval, or by `stop` (a message or the sender dropped).
                while stopped.recv_timeout(EVERY) == Err(RecvTimeoutError::Timeout) {
                    let ended_before = Timestamp::from_millis(
                        now()
                            .as_millis()
                            .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX)),
                    );
                    loop {
                        match store.sweep_history(ended_before, BATCH) {
                            Ok(n) => {
                                metrics::counter!(devcmd_metrics::names::HISTORY_DELETED).increment(n as u64);
                                if n < BATCH {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "history sweep failed");
                                break;
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after the batch in hand) and waits for it.
    pub(crate) fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the history sweep thread panicked");
        }
    }
}
