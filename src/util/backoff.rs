//! Exponential backoff, written once: the Redis link's reconnects, the bus
//! handler's reconnects and reply pushes, the relay transport's reconnects,
//! the private redis-server's restarts, iperf's busy servers and the
//! healthcheck's retries all wait `initial`, then twice that, and so on up
//! to a cap. Each caller keeps its own loop (they differ in what ends it);
//! this type only says how long the next wait is.
//!
//! Reconnects to a shared service take [`Backoff::full_jitter`]: each wait
//! is drawn uniformly between zero and the step, so that thousands of
//! daemons that lost the same relay or Redis at the same moment spread
//! their attempts over the whole step instead of arriving together at every
//! step (the "full jitter" of exponential backoff). Retries whose timing is
//! zos's own (iperf, the healthcheck) keep their exact steps.

use std::time::Duration;

use rand::{Rng, RngExt};
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
    /// Each wait drawn uniformly from zero to the step.
    jitter: bool,
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
            jitter: false,
        }
    }

    /// Each wait drawn uniformly between zero and its step (the steps grow
    /// as before): reconnects of many daemons spread out instead of
    /// arriving together.
    pub fn full_jitter(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// The step of the next call to [`Backoff::advance`]: the wait itself,
    /// or its upper bound with [`Backoff::full_jitter`].
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Each wait `factor` times the one before instead of twice (zos's
    /// iperf retry grows by 1.5). A factor below 1 is read as 1.
    pub(crate) fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = Some(factor.max(1.0));
        self
    }

    /// The next wait; the step after it is twice as long, or `factor`
    /// times (up to the cap).
    pub fn advance(&mut self) -> Duration {
        self.advance_with(&mut rand::rng())
    }

    /// [`Backoff::advance`] drawing the jitter from `rng`.
    pub fn advance_with(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step();
        if self.jitter {
            step.mul_f64(rng.random_range(0.0..=1.0))
        } else {
            step
        }
    }

    /// The next step, growing the one after it.
    fn step(&mut self) -> Duration {
        let this = self.next;
        let grown = match self.factor {
            None => this.checked_mul(2),
            Some(f) => Duration::try_from_secs_f64(this.as_secs_f64() * f).ok(),
        };
        self.next = grown.unwrap_or(Duration::MAX).min(self.max);
        this
    }

    /// Starts again from `initial` (the thing retried worked for a while).
    pub fn reset(&mut self) {
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
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX).with_factor(1.5);
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
        let mut b = Backoff::new(Duration::MAX / 2 + s(1), Duration::MAX);
        b.advance();
        assert_eq!(b.advance(), Duration::MAX);
    }

    #[test]
    fn full_jitter_draws_each_wait_from_zero_to_its_step() {
        use rand::SeedableRng;
        let s = Duration::from_secs;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(s(2), s(60)).full_jitter();
        let mut steps = Vec::new();
        for _ in 0..8 {
            let step = b.peek();
            let wait = b.advance_with(&mut rng);
            assert!(wait <= step, "{wait:?} over its step {step:?}");
            steps.push(step);
        }
        assert_eq!(steps, [s(2), s(4), s(8), s(16), s(32), s(60), s(60), s(60)]);
        // Spread over the whole step: of many draws of a 60 s step, some
        // fall in each tenth of it.
        let mut tenths = [0u32; 10];
        for _ in 0..2000 {
            let wait = b.advance_with(&mut rng);
            tenths[((wait.as_secs_f64() / 6.0) as usize).min(9)] += 1;
        }
        assert!(tenths.iter().all(|&n| n > 100), "{tenths:?}");
        // Without it, the waits are the steps.
        let mut exact = Backoff::new(s(2), s(60));
        assert_eq!(exact.advance_with(&mut rng), s(2));
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
