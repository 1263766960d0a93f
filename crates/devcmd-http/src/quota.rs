//! The per-application API quota, on `governor`.
//!
//! Each application gets its own direct (unkeyed) limiter, so each can have
//! its own quota (governor's keyed limiter shares one quota among all keys).
//! The limiters sit in a concurrent map; the hot path is one map read and one
//! atomic compare-and-swap. The limiter reads time from the core's [`Clock`],
//! so a virtual clock drives it in tests.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use devcmd_core::{AppId, Clock, Quota};
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota as GovernorQuota, RateLimiter};

/// The core's clock seen by governor, in nanoseconds (millisecond steps).
#[derive(Clone)]
pub struct QuotaClock(Arc<dyn Clock>);

impl GovernorClock for QuotaClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.now().as_millis().saturating_mul(1_000_000))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, QuotaClock, NoOpMiddleware<Nanos>>;

/// Why a quota cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a quota needs at least one call in a period of at least one second")]
pub struct BadQuota;

/// Turns a platform quota (calls per period) into governor's: a burst of
/// `calls`, refilled one call each `period / calls`.
pub fn governor_quota(q: Quota) -> Result<GovernorQuota, BadQuota> {
    let calls = NonZeroU32::new(q.calls).ok_or(BadQuota)?;
    if q.period_s == 0 {
        return Err(BadQuota);
    }
    let period = Duration::from_secs(u64::from(q.period_s)) / q.calls;
    let period = period.max(Duration::from_nanos(1));
    GovernorQuota::with_period(period)
        .map(|g| g.allow_burst(calls))
        .ok_or(BadQuota)
}

/// Every application's limiter.
pub struct Throttle {
    clock: QuotaClock,
    default: GovernorQuota,
    limiters: DashMap<AppId, Arc<Limiter>>,
}

impl Throttle {
    /// A throttle using `default` for applications without their own quota.
    pub fn new(clock: Arc<dyn Clock>, default: Quota) -> Result<Self, BadQuota> {
        Ok(Self {
            clock: QuotaClock(clock),
            default: governor_quota(default)?,
            limiters: DashMap::new(),
        })
    }

    /// Counts one call of `app`. `own` is the app's own quota, read only the
    /// first time the app calls. Over quota: the seconds to wait (at least 1).
    pub fn check(&self, app: &AppId, own: impl FnOnce() -> Option<Quota>) -> Result<(), u64> {
        let limiter = match self.limiters.get(app) {
            Some(l) => Arc::clone(&l),
            None => {
                let quota = own().and_then(|q| governor_quota(q).ok()).unwrap_or(self.default);
                let fresh = Arc::new(RateLimiter::direct_with_clock(quota, self.clock.clone()));
                Arc::clone(&self.limiters.entry(app.clone()).or_insert(fresh))
            }
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Forgets an application's limiter (its quota changed).
    pub fn reset(&self, app: &AppId) {
        self.limiters.remove(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devcmd_core::{Timestamp, VirtualClock};

    #[test]
    fn the_default_quota_is_a_burst_of_100_refilled_every_600_ms() {
        let clock = VirtualClock::new(Timestamp::from_millis(1_000_000));
        let t = Throttle::new(Arc::new(clock.clone()), Quota::default()).unwrap();
        let a = AppId::new("a").unwrap();
        for i in 0..100 {
            assert_eq!(t.check(&a, || None), Ok(()), "call {i}");
        }
        assert_eq!(t.check(&a, || None), Err(1));
        clock.advance(Duration::from_millis(599));
        assert!(t.check(&a, || None).is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(t.check(&a, || None), Ok(()));
        assert!(t.check(&a, || None).is_err());
    }

    #[test]
    fn an_own_quota_is_used_and_apps_do_not_share() {
        let clock = VirtualClock::new(Timestamp::from_millis(0));
        let t = Throttle::new(Arc::new(clock.clone()), Quota::default()).unwrap();
        let small = AppId::new("small").unwrap();
        let other = AppId::new("other").unwrap();
        let own = || Some(Quota { calls: 2, period_s: 10 });
        assert!(t.check(&small, own).is_ok());
        assert!(t.check(&small, own).is_ok());
        assert_eq!(t.check(&small, own), Err(5));
        assert!(t.check(&other, || None).is_ok());
    }

    #[test]
    fn zero_quotas_are_refused() {
        assert_eq!(governor_quota(Quota { calls: 0, period_s: 60 }).unwrap_err(), BadQuota);
        assert_eq!(governor_quota(Quota { calls: 1, period_s: 0 }).unwrap_err(), BadQuota);
    }
}
