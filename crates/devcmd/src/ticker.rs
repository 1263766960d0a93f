//! The thread that drives the core's timers in real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use devcmd_core::Dispatcher;

/// Longest sleep between two ticks: bounds how late a deadline fires.
const TICK_MAX: Duration = Duration::from_millis(5);

/// A running ticker; stopped and joined by [`Ticker::stop`].
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts calling `core.tick()` every few milliseconds.
    pub(crate) fn start(core: Arc<Dispatcher>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("devcmd-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    // How late the earliest due deadline is when we get to it.
                    if let Some(due) = core.next_deadline() {
                        let now = core.now();
                        if due <= now {
                            metrics::histogram!(devcmd_metrics::names::TIMER_LAG_SECONDS)
                                .record(now.saturating_since(due).as_secs_f64());
                        }
                    }
                    core.tick();
                    std::thread::sleep(TICK_MAX);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the ticker thread panicked");
        }
    }
}
