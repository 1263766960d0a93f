//! A callback address (scheme, host, port) and its health: consecutive
//! failures and suspension, shared by every lane pushing to it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use devcmd_core::{Clock, Timestamp};

use crate::CallbackStats;

/// Why a callback URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("callbackUrl: {0}")]
pub struct BadUrl(pub &'static str);

/// Checks a callback URL: absolute, `http` or `https`, with a host. Returns
/// the address it belongs to (`scheme://host:port`).
pub fn address_of(url: &str) -> Result<String, BadUrl> {
    let u = url::Url::parse(url).map_err(|_| BadUrl("not an absolute URL"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(BadUrl("only http and https are supported"));
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or(BadUrl("no host"))?;
    let port = u.port_or_known_default().ok_or(BadUrl("no port"))?;
    Ok(format!("{}://{host}:{port}", u.scheme()))
}

/// What the gate lets a lane do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The address is healthy.
    Normal,
    /// The suspension is over and this lane probes for everyone.
    Probe,
}

/// The health of one address.
#[derive(Debug, Default)]
pub(crate) struct Health {
    consecutive_failures: AtomicU32,
    /// Milliseconds; 0 when not suspended.
    suspended_until: AtomicU64,
    probing: AtomicBool,
}

impl Health {
    /// Waits while the address is suspended; after the suspension one lane
    /// probes and the others wait for its answer.
    pub(crate) async fn pass(&self, clock: &dyn Clock, step: Duration) -> Pass {
        loop {
            let until = self.suspended_until.load(Ordering::Acquire);
            if until == 0 {
                return Pass::Normal;
            }
            let now = clock.now().as_millis();
            if now >= until
                && self
                    .probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Pass::Probe;
            }
            tokio::time::sleep(step).await;
        }
    }

    pub(crate) fn succeeded(&self, stats: &CallbackStats) {
        self.consecutive_failures.store(0, Ordering::Release);
        if self.suspended_until.swap(0, Ordering::AcqRel) != 0 {
            stats.resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.probing.store(false, Ordering::Release);
    }

    pub(crate) fn failed(&self, pass: Pass, now: Timestamp, limit: u32, suspend_for: Duration, stats: &CallbackStats) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let until = now.saturating_add(suspend_for).as_millis().max(1);
        match pass {
            Pass::Probe => {
                self.suspended_until.store(until, Ordering::Release);
                self.probing.store(false, Ordering::Release);
                stats.suspensions.fetch_add(1, Ordering::Relaxed);
            }
            Pass::Normal if n >= limit => {
                if self
                    .suspended_until
                    .compare_exchange(0, until, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    stats.suspensions.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(failures = n, "callback address suspended");
                }
            }
            Pass::Normal => {}
        }
    }

    /// Whether the address is suspended now.
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspended_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_scheme_host_and_port() {
        assert_eq!(
            address_of("http://127.0.0.1:9999/cmd/callbackUrl").unwrap(),
            "http://127.0.0.1:9999"
        );
        assert_eq!(
            address_of("https://app.example.com/v1.0.0/messageReceiver/cmd").unwrap(),
            "https://app.example.com:443"
        );
        assert_eq!(address_of("HTTP://A.example/x").unwrap(), "http://a.example:80");
        for bad in [
            "",
            "/relative",
            "ftp://x/y",
            "mailto:a@b",
            "http://",
            "javascript:alert(1)",
            "file:///etc/passwd",
        ] {
            assert!(address_of(bad).is_err(), "{bad}");
        }
    }
}
