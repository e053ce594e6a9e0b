//! When a task runs: a 6-field cron expression in UTC, a random jitter, and
//! the clock both are read from.
//!
//! Due times come from the wall clock (UTC), because schedules are written
//! in wall time. Waiting uses the runtime's monotonic timer, but only in
//! bounded slices (see `monitor`), so a wall-clock step or a suspend is seen
//! within one slice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use rand::RngExt;

/// A parsed cron expression: `sec min hour day-of-month month day-of-week`.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

impl Schedule {
    /// Parses a 6-field expression. Ranges, lists, steps and month/day names
    /// are standard; when both day fields are restricted either may match,
    /// as in classic cron.
    pub fn parse(expr: &str) -> anyhow::Result<Schedule> {
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            anyhow::bail!(
                "invalid cron expression {expr:?}: expected 6 fields (sec min hour day-of-month month day-of-week), found {fields}"
            );
        }
        // Seconds first and required; `0/10` accepted as `*/10` was before.
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .sloppy_ranges(true)
            .build()
            .parse(expr)
            .map_err(|e| anyhow::anyhow!("invalid cron expression {expr:?}: {e}"))?;
        // croner takes some fields that select nothing (`,` or `L` as the
        // seconds, minutes or hours) and would then search second by
        // second up to the year 5000 for a match: minutes of CPU at start-up
        // (found by fuzzing, fuzz/regressions/config_cron). Refuse them first.
        let p = &cron.pattern;
        let empty = [
            (
                "second",
                (0..60).any(|v| p.second_match(v).unwrap_or(false)),
            ),
            (
                "minute",
                (0..60).any(|v| p.minute_match(v).unwrap_or(false)),
            ),
            ("hour", (0..24).any(|v| p.hour_match(v).unwrap_or(false))),
        ]
        .into_iter()
        .find_map(|(field, any)| (!any).then_some(field));
        if let Some(field) = empty {
            anyhow::bail!("invalid cron expression {expr:?}: its {field} field selects no {field}");
        }
        let schedule = Schedule {
            expr: expr.to_string(),
            cron,
        };
        // An expression that never fires (e.g. 30 February) is as useless as
        // a malformed one: refuse it at start-up rather than idle forever.
        if schedule.next_after(Utc::now()).is_none() {
            anyhow::bail!("invalid cron expression {expr:?}: it never fires");
        }
        Ok(schedule)
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The schedule's period near `t`: the gap between the next two fire
    /// times. Used to judge when a stored result is stale.
    pub fn period_near(&self, t: DateTime<Utc>) -> Option<Duration> {
        let a = self.next_after(t)?;
        let b = self.next_after(a)?;
        (b - a).to_std().ok()
    }
}

/// A random delay drawn uniformly from `[0, max]` (millisecond steps).
pub(crate) fn jitter_delay(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let ms = max.as_millis().min(u64::MAX as u128) as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// The wall clock the monitor reads, and how it waits. Injectable so that
/// tests can step time without touching the machine's clock.
pub trait Timekeeper: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Waits about `d` of real time.
    fn sleep(&self, d: Duration) -> futures::future::BoxFuture<'static, ()>;
}

/// The real UTC clock and the runtime's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Timekeeper for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid date")
    }

    fn next(expr: &str, t: DateTime<Utc>) -> DateTime<Utc> {
        Schedule::parse(expr)
            .expect("parse")
            .next_after(t)
            .expect("fires")
    }

    #[test]
    fn spec_defaults_fire_where_expected() {
        let t = at(2026, 1, 1, 5, 59, 59);
        assert_eq!(next("0 0 */6 * * *", t), at(2026, 1, 1, 6, 0, 0));
        assert_eq!(
            next("0 0 */6 * * *", at(2026, 1, 1, 6, 0, 0)),
            at(2026, 1, 1, 12, 0, 0)
        );
        assert_eq!(
            next("0 */15 * * * *", at(2026, 1, 1, 6, 0, 0)),
            at(2026, 1, 1, 6, 15, 0)
        );
    }

    #[test]
    fn second_steps_lists_and_ranges() {
        let t = at(2026, 3, 1, 0, 0, 0);
        assert_eq!(next("*/10 * * * * *", t), at(2026, 3, 1, 0, 0, 10));
        assert_eq!(
            next("5,20,40 * * * * *", at(2026, 3, 1, 0, 0, 20)),
            at(2026, 3, 1, 0, 0, 40)
        );
        assert_eq!(
            next("0 10-12 * * * *", at(2026, 3, 1, 0, 12, 0)),
            at(2026, 3, 1, 1, 10, 0)
        );
    }

    #[test]
    fn month_and_day_of_week_fields_with_names() {
        // 2026-03-01 is a Sunday.
        let t = at(2026, 3, 1, 0, 0, 0);
        assert_eq!(next("0 0 9 * * MON", t), at(2026, 3, 2, 9, 0, 0));
        assert_eq!(
            next("0 0 9 * * 1-5", at(2026, 3, 6, 9, 0, 0)),
            at(2026, 3, 9, 9, 0, 0)
        );
        assert_eq!(next("0 0 0 1 JUN *", t), at(2026, 6, 1, 0, 0, 0));
        assert_eq!(next("0 30 1 15 1,7 *", t), at(2026, 7, 15, 1, 30, 0));
    }

    #[test]
    fn invalid_expressions_are_refused_with_the_expression() {
        for bad in [
            "* * * * *",
            "61 * * * * *",
            "0 0 */6 * * * *",
            "a b c d e f",
            "",
        ] {
            let err = Schedule::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn the_refusals_say_why() {
        for (bad, found) in [("* * * * *", 5), ("0 0 */6 * * * *", 7), ("", 0)] {
            let err = Schedule::parse(bad).expect_err(bad).to_string();
            assert!(
                err.contains(&format!(
                    "expected 6 fields (sec min hour day-of-month month day-of-week), found {found}"
                )),
                "{bad:?}: {err}"
            );
        }
        // 30 February: a valid pattern that selects no day at all.
        let err = Schedule::parse("0 0 0 30 2 *")
            .expect_err("30 February")
            .to_string();
        assert!(err.ends_with("\"0 0 0 30 2 *\": it never fires"), "{err}");
    }

    #[test]
    fn fields_that_select_nothing_are_refused_without_a_search() {
        for (bad, field) in [
            (", * * * * *", "second"),
            ("L * * * * *", "second"),
            ("* , * * * *", "minute"),
            ("0 L * * * *", "minute"),
            ("0 0 , * * *", "hour"),
        ] {
            let started = std::time::Instant::now();
            let err = Schedule::parse(bad).expect_err(bad).to_string();
            // croner (since 3) refuses `L` outside the day fields itself;
            // `,` still reaches our check.
            assert!(
                err.contains(&format!("{field} field")) || err.contains("illegal character 'L'"),
                "{bad}: {err}"
            );
            // Without the check, the search runs for seconds to minutes.
            assert!(started.elapsed() < Duration::from_secs(2), "{bad}");
        }
    }

    #[test]
    fn period_of_the_defaults() {
        let t = at(2026, 1, 1, 1, 0, 0);
        let p = |e: &str| {
            Schedule::parse(e)
                .expect("parse")
                .period_near(t)
                .expect("period")
        };
        assert_eq!(p("0 0 */6 * * *"), Duration::from_secs(6 * 3600));
        assert_eq!(p("0 */15 * * * *"), Duration::from_secs(900));
        assert_eq!(p("* * * * * *"), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_bounds_and_zero_adds_nothing() {
        assert_eq!(jitter_delay(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_millis(50);
        let draws: Vec<_> = (0..2000).map(|_| jitter_delay(max)).collect();
        assert!(draws.iter().all(|d| *d <= max));
        // Uniform over [0, 50] ms: both halves are well used.
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(25))
            .count();
        assert!(
            (700..1300).contains(&low),
            "low half drawn {low} times of 2000"
        );
    }
}
