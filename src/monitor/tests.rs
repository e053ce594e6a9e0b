use super::*;
use chrono::TimeZone;

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 10, h, m, s)
        .single()
        .expect("valid time")
}

fn plan(expr: &str, now: DateTime<Utc>) -> Plan {
    Plan::new(vec![Schedule::parse(expr).expect("cron")], now)
}

#[test]
fn a_forward_jump_of_a_day_fires_once_then_follows_the_new_time() {
    let mut p = plan("0 */15 * * * *", at(6, 0, 1));
    assert!(p.due(at(6, 10, 0)).is_empty());
    let jumped = at(6, 10, 0) + chrono::Duration::days(1);
    assert_eq!(p.due(jumped).len(), 1, "one catch-up run");
    // Nothing more until the next quarter hour of the new time.
    assert!(p.due(jumped + chrono::Duration::seconds(1)).is_empty());
    assert_eq!(p.next(0), Some(at(6, 15, 0) + chrono::Duration::days(1)));
}

#[test]
fn a_small_backward_jump_does_not_fire_the_same_time_again() {
    let mut p = plan("0 * * * * *", at(11, 59, 50));
    assert_eq!(p.due(at(12, 0, 0)).len(), 1);
    // NTP steps back 30 s: 12:00:00 must not fire a second time.
    assert!(p.due(at(11, 59, 30)).is_empty());
    assert!(p.due(at(12, 0, 0)).is_empty());
    assert!(p.due(at(12, 0, 59)).is_empty());
    assert_eq!(p.due(at(12, 1, 0)).len(), 1);
}

#[test]
fn a_long_backward_jump_restarts_the_schedule_from_the_new_time() {
    let mut p = plan("0 */15 * * * *", at(12, 14, 0));
    assert_eq!(p.due(at(12, 15, 0)).len(), 1);
    let back = at(12, 15, 0) - chrono::Duration::days(1);
    assert!(p.due(back).is_empty());
    assert_eq!(p.next(0), Some(at(12, 30, 0) - chrono::Duration::days(1)));
}

#[test]
fn wait_is_the_time_to_the_earliest_due() {
    let p = Plan::new(
        vec![
            Schedule::parse("0 0 * * * *").expect("cron"),
            Schedule::parse("30 * * * * *").expect("cron"),
        ],
        at(6, 0, 0),
    );
    assert_eq!(p.wait(at(6, 0, 10)), Duration::from_secs(20));
}

#[test]
fn startup_runs_missing_and_stale_results_only() {
    let s = Schedule::parse("0 0 */6 * * *").expect("cron");
    let now = at(13, 0, 0);
    let result = |age_h: i64| {
        Some(TaskResult {
            name: "t".into(),
            description: "d".into(),
            timestamp: (now - chrono::Duration::hours(age_h)).timestamp(),
            result: Value::Null,
        })
    };
    assert_eq!(startup_reason(&None, &s, now), Some("no stored result"));
    assert_eq!(startup_reason(&result(5), &s, now), None);
    assert_eq!(startup_reason(&result(11), &s, now), None);
    assert!(startup_reason(&result(13), &s, now).is_some());
    let mut future = result(0).expect("result");
    future.timestamp = now.timestamp() + 86_400;
    assert_eq!(
        startup_reason(&Some(future), &s, now),
        Some("stored result is stamped in the future")
    );
    let mut ancient = result(0).expect("result");
    ancient.timestamp = i64::MIN;
    assert!(startup_reason(&Some(ancient), &s, now).is_some());
}
