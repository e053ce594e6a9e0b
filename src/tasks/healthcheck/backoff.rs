//! Retrying a failing check before its result is stored.
//!
//! A blip (a relay restarting, a DNS hiccup) should not make a node look
//! broken for a quarter of an hour, so a check that fails is tried again
//! after `initial`, then after twice that, and so on, until it passes or
//! `total` has passed since the first attempt. Waits never reach past that
//! limit: the last wait is cut short so that one final attempt looks at the
//! service at the limit itself. With the defaults (3 min, 10 min) the
//! attempts start at 0, 3, 9 and 10 minutes.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a failing check is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait; each next wait is twice the one before.
    pub initial: Duration,
    /// No attempt starts later than this after the first. Zero: no retry.
    pub total: Duration,
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
/// the backoff's total time is used up. `cancel` stops the attempts and the
/// waits between them at once.
pub async fn retry<F, Fut>(
    backoff: Backoff,
    cancel: &CancellationToken,
    label: &str,
    mut attempt: F,
) -> Result<Retried, Cancelled>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let deadline = Instant::now() + backoff.total;
    let mut waits = crate::util::backoff::Backoff::uncapped(backoff.initial);
    let mut n = 0u32;
    loop {
        n += 1;
        let errors = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Cancelled),
            errors = attempt(n) => errors,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if errors.is_empty() || left.is_zero() {
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
        }
        let this_wait = waits.advance().min(left);
        tracing::warn!(check = label, attempt = n, ?errors,
            retry_in = ?this_wait, "check failed; retrying");
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Cancelled),
            _ = tokio::time::sleep(this_wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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

    #[tokio::test(start_paused = true)]
    async fn waits_double_and_a_pass_ends_the_retries() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let b = Backoff {
            initial: ms(100),
            total: ms(10_000),
        };
        let r = retry(
            b,
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
        let offsets: Vec<u128> = starts
            .lock()
            .expect("lock")
            .iter()
            .map(|s| (*s - t0).as_millis())
            .collect();
        assert_eq!(offsets, [0, 100, 300, 700]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_spec_defaults_try_at_0_3_9_and_10_minutes_then_keep_the_last_errors() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let b = Backoff {
            initial: 3 * min,
            total: 10 * min,
        };
        let r = retry(
            b,
            &CancellationToken::new(),
            "t",
            failing(u32::MAX, starts.clone()),
        )
        .await
        .expect("not cancelled");
        assert_eq!(
            r,
            Retried {
                errors: vec!["attempt 4 failed".into()],
                attempts: 4
            }
        );
        let offsets: Vec<u64> = starts
            .lock()
            .expect("lock")
            .iter()
            .map(|s| (*s - t0).as_secs())
            .collect();
        assert_eq!(offsets, [0, 180, 540, 600]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_total_means_one_attempt() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let b = Backoff {
            initial: Duration::ZERO,
            total: Duration::ZERO,
        };
        let r = retry(
            b,
            &CancellationToken::new(),
            "t",
            failing(5, starts.clone()),
        )
        .await
        .expect("not cancelled");
        assert_eq!(r.attempts, 1);
        assert_eq!(r.errors, ["attempt 1 failed"]);
    }

    #[tokio::test]
    async fn cancel_interrupts_the_wait_at_once() {
        let cancel = CancellationToken::new();
        let b = Backoff {
            initial: Duration::from_secs(3600),
            total: Duration::from_secs(7200),
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
