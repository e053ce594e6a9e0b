//! Exponential backoff, written once: the Redis link's reconnects, the bus
//! handler's reconnects and reply pushes, iperf's busy servers and the
//! healthcheck's retries all wait `initial`, then twice that, and so on up
//! to a cap. Each caller keeps its own loop (they differ in what ends it);
//! this type only says how long the next wait is.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The work was cancelled (shutdown or a run's timeout) while it waited or
/// retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// A sequence of waits: `initial`, doubling each time (or growing by the
/// factor of [`Backoff::with_factor`]), never above `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    /// None: doubling, exactly.
    factor: Option<f64>,
}

impl Backoff {
    /// Waits from `initial` up to `max` (a `max` below `initial` is read as
    /// `initial`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            factor: None,
        }
    }

    /// Doubling without a cap.
    pub(crate) fn uncapped(initial: Duration) -> Backoff {
        Backoff::new(initial, Duration::MAX)
    }

    /// The wait the next call to [`Backoff::advance`] returns.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Each wait `factor` times the one before instead of twice (zos's
    /// iperf retry grows by 1.5). A factor below 1 is read as 1.
    pub(crate) fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = Some(factor.max(1.0));
        self
    }

    /// The next wait; the one after it is twice as long, or `factor` times
    /// (up to the cap).
    pub fn advance(&mut self) -> Duration {
        let this = self.next;
        let grown = match self.factor {
            None => this.checked_mul(2),
            Some(f) => Duration::try_from_secs_f64(this.as_secs_f64() * f).ok(),
        };
        self.next = grown.unwrap_or(Duration::MAX).min(self.max);
        this
    }

    /// Starts again from `initial` (the thing retried worked for a while).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Sleeps the next wait, or less if `cancel` fires first.
    pub async fn sleep(&mut self, cancel: &CancellationToken) -> Result<(), Cancelled> {
        let wait = self.advance();
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = cancel.cancelled() => Err(Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_factor_grows_the_waits_by_it() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(10), s(90)).with_factor(1.5);
        let waits: Vec<_> = (0..6).map(|_| b.advance()).collect();
        assert_eq!(
            waits,
            [
                s(10),
                s(15),
                Duration::from_millis(22_500),
                Duration::from_millis(33_750),
                Duration::from_micros(50_625_000),
                Duration::from_micros(75_937_500)
            ]
        );
        assert_eq!(b.advance(), s(90));
        let mut huge = Backoff::uncapped(Duration::MAX).with_factor(1.5);
        assert_eq!(
            (huge.advance(), huge.advance()),
            (Duration::MAX, Duration::MAX)
        );
    }

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(5));
        let waits: Vec<_> = (0..5).map(|_| b.advance()).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(5), s(5)]);
        b.reset();
        assert_eq!(b.peek(), s(1));
        let mut b = Backoff::new(s(3), s(1));
        assert_eq!((b.advance(), b.advance()), (s(3), s(3)));
        let mut b = Backoff::uncapped(Duration::MAX / 2 + s(1));
        b.advance();
        assert_eq!(b.advance(), Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_stops_when_cancelled() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        cancel.cancel();
        assert_eq!(b.sleep(&cancel).await, Err(Cancelled));
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        assert_eq!(b.sleep(&CancellationToken::new()).await, Ok(()));
    }
}
