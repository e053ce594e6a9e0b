//! The invariants of configuration and cron parsing, checked on one input:
//! shared by the fuzz target `config_cron` and by
//! `tests/it/fuzz_regressions.rs` (which replays `fuzz/regressions/config_cron/`).
//!
//! The input, as UTF-8, is read both as a configuration file
//! (`Config::from_toml`) and as a cron expression (`Schedule::parse`).
//! Nothing may panic or hang (the harness sees a panic as a crash and a
//! slow input as a timeout), and what parses must be usable:
//!
//! - a parsed configuration gives settings for every task, whose schedule
//!   is one that fires;
//! - a parsed schedule's next fire time after a fixed instant is later than
//!   it, is found again from one second before it, and the period near it
//!   is more than zero.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use zos_perf::config::Config;
use zos_perf::schedule::Schedule;
use zos_perf::tasks::TaskDefaults;
use zos_perf::tasks::NAMES;

/// Instants the schedules are asked about: the epoch, a leap day, an
/// ordinary day, the last second of a year and of a century.
pub fn instants() -> Vec<DateTime<Utc>> {
    [
        (1970, 1, 1, 0, 0, 0),
        (2024, 2, 29, 12, 30, 30),
        (2026, 6, 15, 5, 59, 59),
        (2030, 12, 31, 23, 59, 59),
        (2099, 12, 31, 23, 59, 59),
    ]
    .into_iter()
    .filter_map(|(y, mo, d, h, mi, s)| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single())
    .collect()
}

/// Runs `data` through both parsers, panicking on any broken invariant.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_config(text);
    if let Ok(schedule) = Schedule::parse(text) {
        check_schedule(&schedule);
    }
}

fn check_config(text: &str) {
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    let defaults = TaskDefaults {
        cron: "0 */15 * * * *",
        jitter: Duration::ZERO,
        timeout: Duration::from_secs(900),
        exclusive: false,
    };
    for name in NAMES {
        let settings = config
            .task_settings(name, &defaults)
            .expect("a parsed configuration gives every task its settings");
        assert!(!settings.timeout.is_zero(), "{name}: zero timeout accepted");
        check_schedule(&settings.schedule);
    }
    assert!(
        !config.grid_context().graphql_urls.is_empty(),
        "no GraphQL URL"
    );
    assert!(
        !config
            .sections
            .healthcheck
            .services_of(config.network)
            .is_empty(),
        "no healthcheck service"
    );
}

fn check_schedule(schedule: &Schedule) {
    for t in instants() {
        let Some(next) = schedule.next_after(t) else {
            continue;
        };
        assert!(
            next > t,
            "{:?}: next after {t} is {next}",
            schedule.as_str()
        );
        let again = schedule.next_after(next - chrono::Duration::seconds(1));
        assert_eq!(
            again,
            Some(next),
            "{:?}: next after {t} is {next}, but from a second before it",
            schedule.as_str()
        );
        if let Some(period) = schedule.period_near(t) {
            assert!(!period.is_zero(), "{:?}: zero period", schedule.as_str());
        }
    }
}
