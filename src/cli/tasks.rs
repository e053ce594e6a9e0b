//! `zos-perf tasks`: one line per task (schedule, next fire, last result,
//! last outcome) fitted to the terminal, or every field as JSON (`--json`).
//! Then the clock check's last result, when the check is enabled.

use serde_json::json;
use zos_perf::config::Config;
use zos_perf::monitor;
use zos_perf::store::{self, Outcome, TaskStatus};
use zos_perf::tasks;
use zos_perf::text::Escaped;

use super::error::{CliError, Exit};
use super::human::age;
use super::{connect, ellipsize, width};

/// Prints the table or the JSON. With no Redis it shows the configuration
/// only, and exits 4.
pub async fn show(config: Config, default_redis: &str, as_json: bool) -> Result<(), CliError> {
    let registered = monitor::register(
        &config,
        tasks::registry(&config.sections, &config.grid_context()),
    )
    .map_err(|e| CliError::new(Exit::Usage, e))?;
    let (status, results, clock, unreachable) = match connect(&config, default_redis).await {
        // Any of them may be unreadable (a key of the wrong type): say so
        // and show the rest, the configuration at least.
        Ok(mut conn) => (
            store::read_status(&mut conn).await.unwrap_or_else(|e| {
                errln!(
                    "zos-perf: {} (showing no status)",
                    Escaped(&format!("{e:#}"))
                );
                Default::default()
            }),
            store::read_all(&mut conn).await.unwrap_or_else(|e| {
                errln!(
                    "zos-perf: {} (showing no results)",
                    Escaped(&format!("{e:#}"))
                );
                Default::default()
            }),
            zos_perf::clock::read_status(&mut conn)
                .await
                .unwrap_or_else(|e| {
                    errln!(
                        "zos-perf: {} (showing no clock check)",
                        Escaped(&format!("{e:#}"))
                    );
                    None
                }),
            None,
        ),
        Err(e) => {
            errln!(
                "zos-perf: {} (showing the configuration only)",
                Escaped(&e.to_string())
            );
            (Default::default(), Vec::new(), None, Some(e))
        }
    };
    let now = chrono::Utc::now();
    let rows: Vec<Row> = monitor::describe(&registered)
        .into_iter()
        .map(|(name, s)| {
            let st = status.get(name).cloned();
            Row {
                name,
                enabled: s.enabled,
                cron: s.schedule.as_str().to_string(),
                jitter: s.jitter.as_secs(),
                timeout: s.timeout.as_secs(),
                exclusive: s.exclusive,
                next_fire: s
                    .enabled
                    .then(|| {
                        st.as_ref()
                            .and_then(|s| s.next_fire)
                            .or_else(|| s.schedule.next_after(now).map(|t| t.timestamp()))
                    })
                    .flatten(),
                last_result: results.iter().find(|r| r.name == name).map(|r| r.timestamp),
                status: st,
            }
        })
        .collect();
    if as_json {
        let json: Vec<_> = rows.iter().map(Row::json).collect();
        outln!("{}", super::json(&json)?);
    } else {
        out!("{}", table(&rows, now.timestamp(), width()));
        if config.clock.is_enabled() {
            outln!("{}", zos_perf::clock::describe(clock.as_ref()));
        }
    }
    match unreachable {
        Some(e) => Err(CliError::msg(Exit::StoreUnreachable, format!("{e}"))),
        None => Ok(()),
    }
}

/// One task: its settings and what Redis holds of it.
pub struct Row {
    pub name: &'static str,
    pub enabled: bool,
    pub cron: String,
    pub jitter: u64,
    pub timeout: u64,
    pub exclusive: bool,
    pub next_fire: Option<i64>,
    pub last_result: Option<i64>,
    pub status: Option<TaskStatus>,
}

impl Row {
    fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "enabled": self.enabled,
            "cron": self.cron,
            "jitter": self.jitter,
            "timeout": self.timeout,
            "exclusive": self.exclusive,
            "next_fire": self.next_fire,
            "last_result": self.last_result,
            "status": self.status,
        })
    }
}

/// The outcome cell: `ok`, `ok, 6 problems`, `failed: <error>`, `-`.
pub fn outcome(status: Option<&TaskStatus>) -> String {
    let Some(s) = status else { return "-".into() };
    match s.last_outcome {
        None => "-".into(),
        Some(Outcome::Ok) => match s.problems {
            Some(0) | None => "ok".into(),
            Some(1) => "ok, 1 problem".into(),
            Some(n) => format!("ok, {n} problems"),
        },
        Some(o) => match &s.last_error {
            Some(err) => format!("{}: {err}", o.as_str()),
            None => o.as_str().into(),
        },
    }
}

/// The table, each line at most `width` characters: the last column (the
/// outcome, whose errors can be long) is clipped with an ellipsis.
pub fn table(rows: &[Row], now: i64, width: usize) -> String {
    let cron_w = rows
        .iter()
        .map(|r| r.cron.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.name.to_string(),
                if r.enabled { "yes" } else { "no" }.to_string(),
                r.cron.clone(),
                r.next_fire
                    .map(|t| age(now - t).replace(" ago", ""))
                    .map(|a| {
                        if a.starts_with("in ") {
                            a.replace(", ahead of this clock", "")
                        } else {
                            "due".into()
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
                r.last_result
                    .map(|t| age(now - t))
                    .unwrap_or_else(|| "-".into()),
                outcome(r.status.as_ref()),
            ]
        })
        .collect();
    let next_w = cells
        .iter()
        .map(|c| c[3].chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let last_w = cells
        .iter()
        .map(|c| c[4].chars().count())
        .max()
        .unwrap_or(0)
        .max(11);
    let line = |c: [&str; 6]| {
        let fixed = format!(
            "{:<name_w$} {:<3} {:<cron_w$} {:<next_w$} {:<last_w$} ",
            c[0], c[1], c[2], c[3], c[4]
        );
        let room = width.saturating_sub(fixed.chars().count()).max(8);
        let full = format!("{fixed}{}", ellipsize(c[5], room));
        // A cron wider than the screen still must not wrap the line.
        ellipsize(&full, width)
    };
    let mut out = line(["TASK", "ON", "CRON", "NEXT", "LAST RESULT", "LAST OUTCOME"]);
    out.push('\n');
    for c in &cells {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]));
        out.push('\n');
    }
    out
}
