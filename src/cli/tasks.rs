//! `zos-perf tasks`: one line per task: schedule, jitter, next fire time,
//! last result, last outcome.

use zos_perf::config::Config;
use zos_perf::monitor;
use zos_perf::redis;
use zos_perf::store;
use zos_perf::tasks;

use super::reader_url;

/// Prints the table; with no Redis, the configuration only.
pub async fn show(config: Config, default_redis: &str) -> anyhow::Result<()> {
    let registered = monitor::register(
        &config,
        tasks::registry(&config.sections, &config.grid_context()),
    )?;
    let url = reader_url(&config, default_redis).await?;
    let (status, results) = match redis::connect_once(&url).await {
        // Either may be unreadable (a key of the wrong type): say so and
        // show the rest, the configuration at least.
        Ok(mut conn) => {
            let status = store::read_status(&mut conn).await.unwrap_or_else(|e| {
                say(&format!("{e:#} (showing no status)"));
                Default::default()
            });
            let results = store::read_all(&mut conn).await.unwrap_or_else(|e| {
                say(&format!("{e:#} (showing no results)"));
                Default::default()
            });
            (status, results)
        }
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "zos-perf: {e:#} (showing the configuration only)"
            );
            Default::default()
        }
    };
    let now = chrono::Utc::now();
    println!(
        "{:<22} {:<8} {:<16} {:>6}  {:<20} {:<20} LAST OUTCOME",
        "TASK", "ENABLED", "CRON", "JITTER", "NEXT FIRE (UTC)", "LAST RESULT (UTC)"
    );
    for (name, s) in monitor::describe(&registered) {
        let st = status.get(name);
        let next = st
            .and_then(|s| s.next_fire)
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .or_else(|| s.schedule.next_after(now));
        let last = results
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| chrono::DateTime::from_timestamp(r.timestamp, 0));
        let outcome = match st.and_then(|s| s.last_outcome) {
            Some(o) => match st.and_then(|s| s.last_error.as_deref()) {
                Some(err) => format!("{}: {err}", o.as_str()),
                None => o.as_str().to_string(),
            },
            None => "-".into(),
        };
        let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<22} {:<8} {:<16} {:>5}s  {:<20} {:<20} {}",
            name,
            if s.enabled { "yes" } else { "no" },
            s.schedule.as_str(),
            s.jitter.as_secs(),
            if s.enabled { fmt(next) } else { "-".into() },
            fmt(last),
            outcome
        );
    }
    Ok(())
}

/// A line on stderr that never panics.
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "zos-perf: {message}");
}
