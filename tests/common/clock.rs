//! A clock for tests: time stands still until the test moves it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use zos_perf::schedule::Timekeeper;

/// A clock for tests: time stands still until the test moves it, and every
/// sleep is a short real pause so that the monitor keeps re-reading `now`.
///
/// It records what it is asked: the longest sleep (the monitor must never
/// ask for more than its slice) and how many sleeps began, so a test can
/// wait until the monitor has read the clock again instead of sleeping.
/// [`ManualClock::hold_longer_than`] makes sleeps longer than a bound last
/// until [`ManualClock::release`], so that a long wait (such as the jitter)
/// can be seen while it lasts, while the monitor's loop goes on.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    poll: Duration,
    longest_ms: Arc<AtomicU64>,
    sleeps: Arc<AtomicU64>,
    held: Arc<watch::Sender<Option<Duration>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            poll: Duration::from_millis(2),
            longest_ms: Arc::new(AtomicU64::new(0)),
            sleeps: Arc::new(AtomicU64::new(0)),
            held: Arc::new(watch::channel(None).0),
        }
    }

    /// Steps the clock to `t` (forward or backward), as NTP or a resume would.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub fn advance(&self, d: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += d;
    }

    /// The longest sleep asked for so far.
    pub fn longest_sleep(&self) -> Duration {
        Duration::from_millis(self.longest_ms.load(Ordering::SeqCst))
    }

    /// How many sleeps have begun.
    pub fn sleeps(&self) -> u64 {
        self.sleeps.load(Ordering::SeqCst)
    }

    /// Waits (in real time, at most `limit`) until `n` more sleeps have
    /// begun: the monitor's loop reads `now` before each of its sleeps, so
    /// after two of them it has seen the clock as it is now.
    pub async fn wait_sleeps(&self, n: u64, limit: Duration) {
        let target = self.sleeps() + n;
        let end = tokio::time::Instant::now() + limit;
        while self.sleeps() < target {
            assert!(
                tokio::time::Instant::now() < end,
                "the monitor did not sleep {n} more times within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Every sleep longer than `bound` lasts until [`Self::release`].
    pub fn hold_longer_than(&self, bound: Duration) {
        self.held.send_replace(Some(bound));
    }

    /// Ends every held sleep; sleeps are short real pauses again.
    pub fn release(&self) {
        self.held.send_replace(None);
    }
}

impl Timekeeper for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep(&self, d: Duration) -> futures::future::BoxFuture<'static, ()> {
        self.longest_ms.fetch_max(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        let pause = d.min(self.poll);
        let mut held = self.held.subscribe();
        let holds = move |bound: &Option<Duration>| bound.is_some_and(|b| d > b);
        Box::pin(async move {
            if holds(&held.borrow_and_update()) {
                let _ = held.wait_for(|b| !holds(b)).await;
            } else {
                tokio::time::sleep(pause).await;
            }
        })
    }
}
