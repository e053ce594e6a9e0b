//! When the relay transport connects again after losing its connection,
//! and what it says about it.
//!
//! The pause grows from 2 s to 60 s with full jitter ([`Backoff`]), so that
//! the daemons of a whole grid that lost the same relay at once come back
//! spread over each step, and it starts again from 2 s only after a
//! connection was healthy for [`HEALTHY`]: a relay that accepts the
//! upgrade and drops the connection at once is not knocked on every 2 s.
//!
//! A connection the relay closes within [`QUICK`] of the upgrade, three
//! times in a row, is most likely another holder of our twin: the grid's
//! relay closes both connections when a second one arrives for the same
//! twin, so two holders knock each other off at every reconnect. Then the
//! pause is at least [`CONTESTED_PAUSE`], an error says so, and the
//! metrics show it, until a connection lasts.

use std::time::Duration;

use rand::Rng;

use crate::util::backoff::Backoff;

pub const FIRST: Duration = Duration::from_secs(2);
pub const MAX: Duration = Duration::from_secs(60);
/// A connection that lasted this long was healthy: the pause starts again
/// from [`FIRST`].
pub const HEALTHY: Duration = Duration::from_secs(60);
/// A connection closed within this long of the upgrade was closed "right
/// after connecting".
pub const QUICK: Duration = Duration::from_secs(10);
/// Closes right after connecting, in a row, that mean another holder.
pub const CONTESTED_AFTER: u32 = 3;
/// The least pause once contested: at most one attempt a minute.
pub const CONTESTED_PAUSE: Duration = Duration::from_secs(60);

/// How a connection attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Ended {
    /// No connection was made.
    Failed,
    /// Connected, then lost after this long.
    Lasted(Duration),
}

/// The pause before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub wait: Duration,
    /// The relay closed the last [`CONTESTED_AFTER`] (or more)
    /// connections right after connecting.
    pub contested: bool,
    /// This connection was closed right after connecting.
    pub quick: bool,
}

/// The reconnect state of one relay transport.
#[derive(Debug)]
pub struct Reconnects {
    backoff: Backoff,
    quick_closes: u32,
}

impl Default for Reconnects {
    fn default() -> Self {
        Reconnects {
            backoff: Backoff::new(FIRST, MAX).full_jitter(),
            quick_closes: 0,
        }
    }
}

impl Reconnects {
    /// Closes right after connecting, in a row, so far.
    pub fn quick_closes(&self) -> u32 {
        self.quick_closes
    }

    /// The pause after an attempt that ended so.
    pub fn after(&mut self, ended: Ended, rng: &mut impl Rng) -> Pause {
        let quick = match ended {
            Ended::Failed => false,
            Ended::Lasted(d) if d >= HEALTHY => {
                self.backoff.reset();
                self.quick_closes = 0;
                false
            }
            Ended::Lasted(d) if d < QUICK => {
                self.quick_closes = self.quick_closes.saturating_add(1);
                true
            }
            Ended::Lasted(_) => {
                self.quick_closes = 0;
                false
            }
        };
        let contested = self.quick_closes >= CONTESTED_AFTER;
        let mut wait = self.backoff.advance_with(rng);
        if contested {
            wait += CONTESTED_PAUSE;
        }
        Pause {
            wait,
            contested,
            quick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(25)
    }

    /// The relay that drops every connection at once: the pauses grow, and
    /// after three such closes there is at most one attempt a minute.
    #[test]
    fn closes_right_after_connecting_do_not_reset_the_pause() {
        let mut r = Reconnects::default();
        let mut rng = rng();
        let pauses: Vec<Pause> = (0..20)
            .map(|_| r.after(Ended::Lasted(Duration::from_millis(5)), &mut rng))
            .collect();
        assert!(pauses.iter().all(|p| p.quick));
        assert!(!pauses[0].contested && !pauses[1].contested);
        for p in &pauses[2..] {
            assert!(p.contested, "{p:?}");
            assert!(p.wait >= CONTESTED_PAUSE, "{p:?}");
        }
        // In 45 s, as in the issue: at most 3 attempts (it was 21).
        let mut at = Duration::ZERO;
        let attempts = pauses
            .iter()
            .take_while(|p| {
                at += p.wait;
                at <= Duration::from_secs(45)
            })
            .count();
        assert!(attempts <= 3, "{attempts} attempts within 45 s");
    }

    #[test]
    fn only_a_healthy_connection_starts_the_pause_again() {
        let mut r = Reconnects::default();
        let mut rng = rng();
        for _ in 0..5 {
            r.after(Ended::Failed, &mut rng);
        }
        // Up for 30 s: more than "right after connecting", not yet healthy.
        let p = r.after(Ended::Lasted(Duration::from_secs(30)), &mut rng);
        assert!(!p.quick && !p.contested);
        assert_eq!(
            r.backoff.peek(),
            MAX,
            "reset by a connection not yet healthy"
        );
        let p = r.after(Ended::Lasted(HEALTHY), &mut rng);
        assert!(p.wait <= FIRST, "{p:?}");
        assert_eq!(r.quick_closes(), 0);
    }

    #[test]
    fn a_connection_that_lasts_ends_the_contest_and_failures_do_not_count() {
        let mut r = Reconnects::default();
        let mut rng = rng();
        let quick = Ended::Lasted(Duration::from_secs(1));
        r.after(quick, &mut rng);
        r.after(quick, &mut rng);
        r.after(Ended::Failed, &mut rng); // no connection: says nothing
        assert!(r.after(quick, &mut rng).contested);
        let p = r.after(Ended::Lasted(HEALTHY), &mut rng);
        assert!(!p.contested && p.wait <= FIRST, "{p:?}");
    }

    /// Full jitter: the pauses of many daemons after the same event spread
    /// over the whole step.
    #[test]
    fn pauses_are_spread_over_the_step() {
        let mut rng = rng();
        let waits: Vec<Duration> = (0..500)
            .map(|_| Reconnects::default().after(Ended::Failed, &mut rng).wait)
            .collect();
        assert!(waits.iter().all(|w| *w <= FIRST));
        let early = waits.iter().filter(|w| **w < FIRST / 4).count();
        let late = waits.iter().filter(|w| **w > FIRST * 3 / 4).count();
        assert!(early > 50 && late > 50, "early {early}, late {late}");
    }
}
