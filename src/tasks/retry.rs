//! Retrying a failing check before its result is stored, with zos's
//! cadence (the healthcheck's checks and provisiontest's VM test).
//!
//! A blip (a relay restarting, a DNS hiccup) should not make a node look
//! broken for a quarter of an hour, and a recovery should show soon. zos
//! retries its checks with the randomised exponential backoff of the Go
//! library cenkalti/backoff (v2), and so does this module, to the
//! nanosecond:
//!
//! - Each wait is drawn uniformly from `interval ± 50 %`
//!   ([`RANDOMIZATION`]), every nanosecond in that range equally likely
//!   (float64 rounding can add one at the top, as in the library).
//! - The interval starts at `initial` and is multiplied by
//!   [`MULTIPLIER`] (1.5) after each wait, but never exceeds
//!   `max_interval`: once the next interval would pass it (or it already
//!   has), it *is* `max_interval`. zos's `max_interval` (30 s) is below its
//!   `initial` (3 min), so after the first wait every wait is 30 s ± 50 %.
//! - After an attempt fails, another follows only while no more than
//!   `total` has passed since the first attempt started; the last attempt
//!   can therefore start up to one wait after `total`.
//!
//! With zos's settings (3 min, 30 s, 10 min) the first retry comes 1.5 to
//! 4.5 min after the first attempt, then one every 15 to 45 s: about 15
//! attempts in all, so a service that recovers at minute 4 is seen within
//! a minute. One thing differs on purpose: a `total` of zero means no
//! retry here (in the Go library it means retrying for ever).

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How much each wait is randomised, either way (the library's default).
pub const RANDOMIZATION: f64 = 0.5;
/// How the interval grows after each wait (the library's default).
pub const MULTIPLIER: f64 = 1.5;

/// How a failing check is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The interval of the first wait.
    pub initial: Duration,
    /// The longest interval (before randomisation).
    pub max_interval: Duration,
    /// No retry once this much time has passed since the first attempt
    /// started. Zero: no retry.
    pub total: Duration,
}

impl Default for RetryPolicy {
    /// zos's: 3 min, 30 s, 10 min.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(3 * 60),
            max_interval: Duration::from_secs(30),
            total: Duration::from_secs(10 * 60),
        }
    }
}

/// The waits of one series of attempts.
#[derive(Debug)]
pub struct Waits<R> {
    backoff: RetryPolicy,
    interval: Duration,
    rng: R,
}

impl<R: Rng> Waits<R> {
    /// The waits of `backoff`, randomised from `rng`.
    pub fn new(backoff: RetryPolicy, rng: R) -> Waits<R> {
        Waits {
            backoff,
            interval: backoff.initial,
            rng,
        }
    }

    /// The wait before the next attempt, `elapsed` after the first attempt
    /// started; `None`: no more attempts.
    pub fn next(&mut self, elapsed: Duration) -> Option<Duration> {
        if self.backoff.total.is_zero() || elapsed > self.backoff.total {
            return None;
        }
        let wait = randomized(self.interval, self.rng.random::<f64>());
        self.interval = grown(self.interval, self.backoff.max_interval);
        Some(wait)
    }
}

/// `interval ± RANDOMIZATION`, `unit` in `[0, 1)` choosing where: every
/// whole nanosecond of the closed range is equally likely.
fn randomized(interval: Duration, unit: f64) -> Duration {
    let ns = interval.as_nanos() as f64;
    let low = ns * (1.0 - RANDOMIZATION);
    let high = ns * (1.0 + RANDOMIZATION);
    // `high - low + 1` spreads [0, 1) over low ..= high once truncated.
    let drawn = low + unit.clamp(0.0, 1.0) * (high - low + 1.0);
    // Float to integer saturates: a huge interval gives u64::MAX ns.
    Duration::from_nanos(drawn as u64)
}

/// The interval after `interval`: times [`MULTIPLIER`], or `max` once
/// that would reach past it.
fn grown(interval: Duration, max: Duration) -> Duration {
    if interval.as_nanos() as f64 >= max.as_nanos() as f64 / MULTIPLIER {
        max
    } else {
        interval.mul_f64(MULTIPLIER)
    }
}

/// What the attempts of one check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The errors of the last attempt (empty: it passed).
    pub errors: Vec<String>,
    /// How many attempts were made.
    pub attempts: u32,
}

pub use crate::util::backoff::Cancelled;

/// Runs `attempt` (given its number, from 1) until it returns no errors or
/// the backoff gives up. `cancel` stops the attempts and the waits between
/// them at once.
pub async fn retry<F, Fut>(
    backoff: RetryPolicy,
    cancel: &CancellationToken,
    label: &str,
    attempt: F,
) -> Result<Retried, Cancelled>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    retry_with(backoff, rand::make_rng::<StdRng>(), cancel, label, attempt).await
}

/// [`retry`] with the waits randomised from `rng` (tests seed it).
pub async fn retry_with<R, F, Fut>(
    backoff: RetryPolicy,
    rng: R,
    cancel: &CancellationToken,
    label: &str,
    mut attempt: F,
) -> Result<Retried, Cancelled>
where
    R: Rng,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let started = Instant::now();
    let mut waits = Waits::new(backoff, rng);
    let mut n = 0u32;
    loop {
        n = n.saturating_add(1);
        let errors = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Cancelled),
            errors = attempt(n) => errors,
        };
        let wait = if errors.is_empty() {
            None
        } else {
            waits.next(started.elapsed())
        };
        let Some(wait) = wait else {
            if n > 1 {
                tracing::info!(
                    check = label,
                    attempts = n,
                    passed = errors.is_empty(),
                    "retries done"
                );
            }
            return Ok(Retried {
                errors,
                attempts: n,
            });
        };
        tracing::warn!(check = label, attempt = n, ?errors,
            retry_in = ?wait, "check failed; retrying");
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Cancelled),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::sync::{Arc, Mutex};

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A stand-in for the random source that always yields `unit`.
    struct Fixed(u64);

    impl rand::TryRng for Fixed {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok((self.0 >> 32) as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0);
            Ok(())
        }
    }

    /// Attempts that fail `fails` times, recording when each started.
    fn failing(
        fails: u32,
        starts: Arc<Mutex<Vec<Instant>>>,
    ) -> impl FnMut(u32) -> futures::future::Ready<Vec<String>> {
        move |n| {
            starts.lock().expect("lock").push(Instant::now());
            futures::future::ready(if n <= fails {
                vec![format!("attempt {n} failed")]
            } else {
                Vec::new()
            })
        }
    }

    /// Whether `d` is `want`, give or take `slack` of rounding.
    fn near(d: Option<Duration>, want: Duration, slack: Duration) -> bool {
        d.is_some_and(|d| d + slack >= want && d <= want + slack)
    }

    #[test]
    fn zos_settings_wait_3_min_then_30_s_each_within_half_either_way() {
        // The lowest and the highest draws bound every wait; the highest
        // can land a nanosecond past the range, float64 rounding as in the
        // library itself.
        let ns = Duration::from_nanos(1);
        for (bits, first, then) in [(0u64, s(90), s(15)), (u64::MAX, s(270), s(45))] {
            let mut w = Waits::new(RetryPolicy::default(), Fixed(bits));
            let d = w.next(Duration::ZERO);
            assert!(near(d, first, ns), "{d:?}");
            for _ in 0..20 {
                let d = w.next(s(200));
                assert!(near(d, then, ns), "{d:?}");
            }
        }
        // The middle draw: the intervals themselves.
        let mut w = Waits::new(RetryPolicy::default(), Fixed(1 << 63));
        let waits: Vec<Duration> = (0..3).filter_map(|_| w.next(s(1))).collect();
        assert_eq!(waits, [s(180), s(30), s(30)]);
    }

    #[test]
    fn the_interval_grows_by_half_until_the_maximum() {
        let b = RetryPolicy {
            initial: s(10),
            max_interval: s(60),
            total: s(3600),
        };
        let mut w = Waits::new(b, Fixed(1 << 63));
        let waits: Vec<Duration> = (0..7).filter_map(|_| w.next(s(1))).collect();
        // 10, 15, 22.5, 33.75, 50.625; then 50.625 × 1.5 would pass 60: 60.
        assert_eq!(
            waits,
            [
                s(10),
                s(15),
                Duration::from_millis(22_500),
                Duration::from_micros(33_750_000),
                Duration::from_micros(50_625_000),
                s(60),
                s(60)
            ]
        );
    }

    #[test]
    fn no_wait_once_the_total_has_passed_and_none_with_a_zero_total() {
        let mut w = Waits::new(RetryPolicy::default(), Fixed(0));
        assert!(w.next(s(600)).is_some(), "at the limit itself: one more");
        assert_eq!(w.next(s(600) + Duration::from_nanos(1)), None);
        let none = RetryPolicy {
            total: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(Waits::new(none, Fixed(0)).next(Duration::ZERO), None);
    }

    #[test]
    fn draws_cover_the_whole_range_uniformly() {
        let mut rng = StdRng::seed_from_u64(27);
        let draws: Vec<Duration> = (0..4000)
            .map(|_| randomized(s(30), rng.random::<f64>()))
            .collect();
        assert!(draws.iter().all(|d| *d >= s(15) && *d <= s(45)));
        let low = draws.iter().filter(|d| **d < s(30)).count();
        assert!((1800..2200).contains(&low), "{low} of 4000 below 30 s");
        let huge = randomized(Duration::MAX, 0.99);
        assert_eq!(huge, Duration::from_nanos(u64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_keeps_failing_is_tried_about_15_times_in_zos_cadence() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let r = retry_with(
            RetryPolicy::default(),
            StdRng::seed_from_u64(2026),
            &CancellationToken::new(),
            "t",
            failing(u32::MAX, starts.clone()),
        )
        .await
        .expect("not cancelled");
        let offsets: Vec<Duration> = starts
            .lock()
            .expect("lock")
            .iter()
            .map(|s| *s - t0)
            .collect();
        assert_eq!(r.attempts as usize, offsets.len());
        assert_eq!(r.errors, [format!("attempt {} failed", r.attempts)]);
        // First retry after 3 min ± 50 %, then 30 s ± 50 % apart (the
        // runtime's timer rounds each wait up to the millisecond).
        let ms = Duration::from_millis(1);
        assert!(
            offsets[1] >= s(90) && offsets[1] <= s(270) + ms,
            "{offsets:?}"
        );
        for pair in offsets[1..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= s(15) && gap <= s(45) + ms, "{offsets:?}");
        }
        // The last attempt follows a failure at or before 10 min.
        let n = offsets.len();
        assert!(offsets[n - 2] <= s(600), "{offsets:?}");
        assert!(offsets[n - 1] > s(600), "{offsets:?}");
        assert!((10..=30).contains(&n), "{n} attempts: {offsets:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_back_at_minute_4_passes_within_a_minute() {
        let t0 = Instant::now();
        for seed in 0..50 {
            let start = Instant::now();
            let r = retry_with(
                RetryPolicy::default(),
                StdRng::seed_from_u64(seed),
                &CancellationToken::new(),
                "t",
                |_| {
                    let up = start.elapsed() >= s(240);
                    futures::future::ready(if up { vec![] } else { vec!["down".into()] })
                },
            )
            .await
            .expect("not cancelled");
            assert!(r.errors.is_empty());
            let took = start.elapsed();
            let late = took.saturating_sub(s(240));
            assert!(
                took >= s(240) && late <= s(45) + Duration::from_millis(1),
                "seed {seed}: {took:?}"
            );
        }
        assert!(t0.elapsed() > s(50 * 240));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_ends_the_retries() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let b = RetryPolicy {
            initial: Duration::from_millis(100),
            max_interval: Duration::from_millis(100),
            total: s(10),
        };
        let r = retry_with(
            b,
            Fixed(1 << 63),
            &CancellationToken::new(),
            "t",
            failing(3, starts.clone()),
        )
        .await
        .expect("not cancelled");
        assert_eq!(
            r,
            Retried {
                errors: vec![],
                attempts: 4
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_total_means_one_attempt() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let b = RetryPolicy {
            total: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let r = retry(b, &CancellationToken::new(), "t", failing(5, starts))
            .await
            .expect("not cancelled");
        assert_eq!(r.attempts, 1);
        assert_eq!(r.errors, ["attempt 1 failed"]);
    }

    #[tokio::test]
    async fn cancel_interrupts_the_wait_at_once() {
        let cancel = CancellationToken::new();
        let b = RetryPolicy {
            initial: s(3600),
            max_interval: s(3600),
            total: s(7200),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = std::time::Instant::now();
        let canceller = async {
            // Once the first attempt has failed, the retry is waiting an hour.
            rx.recv().await;
            cancel.cancel();
        };
        let retried = retry(b, &cancel, "t", |n| {
            let _ = tx.send(n);
            futures::future::ready(vec!["down".to_string()])
        });
        let (r, ()) = tokio::join!(retried, canceller);
        assert_eq!(r, Err(Cancelled));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
