//! `zos-perf tasks`: one line per task (schedule, next fire, last result,
//! last outcome) fitted to the terminal, or every field as JSON (`--json`).
//! Then the clock check's last result, when the check is enabled.
//!
//! The settings shown are the daemon's: it publishes, in each task's
//! `perf:status` entry, whether it runs the task and with which schedule,
//! jitter and timeout. This command's own configuration is only a fallback
//! (a task no daemon has published), and where it differs from the
//! daemon's, a note below the table says how.

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
            zos_perf::clock_check::read_status(&mut conn)
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
            let here = Settings::of(s);
            let daemon = st.as_ref().and_then(Settings::published);
            let shown = daemon.clone().unwrap_or_else(|| here.clone());
            Row {
                name,
                enabled: shown.enabled,
                next_fire: shown
                    .enabled
                    .then(|| match (&daemon, &st) {
                        (Some(_), Some(st)) => st.next_fire,
                        _ => s.schedule.next_after(now).map(|t| t.timestamp()),
                    })
                    .flatten(),
                cron: shown.cron.clone(),
                jitter: shown.jitter,
                timeout: shown.timeout,
                exclusive: shown.exclusive,
                from_daemon: daemon.is_some(),
                differs: daemon.map(|d| here.differences(&d)).unwrap_or_default(),
                last_result: results.iter().find(|r| r.name == name).map(|r| r.timestamp),
                status: st,
            }
        })
        .collect();
    if as_json {
        let json: Vec<_> = rows.iter().map(Row::json).collect();
        outln!("{}", super::json(&json)?);
    } else {
        let w = width();
        out!("{}", table(&rows, now.timestamp(), w));
        out!("{}", provenance(&rows, w));
        if config.clock.is_enabled() {
            outln!("{}", zos_perf::clock_check::describe(clock.as_ref()));
        }
    }
    match unreachable {
        Some(e) => Err(CliError::msg(Exit::StoreUnreachable, format!("{e}"))),
        None => Ok(()),
    }
}

/// The settings a task runs with: this command's configuration's, or what
/// the daemon published.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    pub cron: String,
    pub jitter: u64,
    pub timeout: u64,
    pub exclusive: bool,
}

impl Settings {
    fn of(s: &zos_perf::config::TaskSettings) -> Settings {
        Settings {
            enabled: s.enabled,
            cron: s.schedule.as_str().to_string(),
            jitter: s.jitter.as_secs(),
            timeout: s.timeout.as_secs(),
            exclusive: s.exclusive,
        }
    }

    /// What a daemon published in `st`; `None` when no daemon wrote it
    /// (an entry of `run-task` alone, or of a daemon before `enabled`).
    pub fn published(st: &TaskStatus) -> Option<Settings> {
        Some(Settings {
            enabled: st.enabled?,
            cron: st.cron.clone(),
            jitter: st.jitter,
            timeout: st.timeout?,
            exclusive: st.exclusive,
        })
    }

    /// How `daemon` differs from these, one phrase per setting:
    /// `on here, off in the daemon`, `cron "a" here, "b" in the daemon`.
    pub fn differences(&self, daemon: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        let on = |b: bool| if b { "on" } else { "off" };
        if self.enabled != daemon.enabled {
            out.push(format!(
                "{} here, {} in the daemon",
                on(self.enabled),
                on(daemon.enabled)
            ));
        }
        if self.cron != daemon.cron {
            out.push(format!(
                "cron {:?} here, {:?} in the daemon",
                self.cron, daemon.cron
            ));
        }
        for (what, here, there) in [
            ("jitter", self.jitter, daemon.jitter),
            ("timeout", self.timeout, daemon.timeout),
        ] {
            if here != there {
                out.push(format!("{what} {here}s here, {there}s in the daemon"));
            }
        }
        if self.exclusive != daemon.exclusive {
            out.push(format!(
                "exclusive {} here, {} in the daemon",
                self.exclusive, daemon.exclusive
            ));
        }
        out
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
    /// Whether the settings above are the daemon's (else this command's).
    pub from_daemon: bool,
    /// How this command's configuration differs from the daemon's.
    pub differs: Vec<String>,
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
            "settings_from": if self.from_daemon { "daemon" } else { "config" },
            "config_differs": self.differs,
            "next_fire": self.next_fire,
            "last_result": self.last_result,
            "status": self.status,
        })
    }
}

/// The lines below the table: whose settings it shows, and how this
/// command's configuration differs from the daemon's. Each line at most
/// `width` characters.
pub fn provenance(rows: &[Row], width: usize) -> String {
    let mut lines = Vec::new();
    let unpublished: Vec<&str> = rows
        .iter()
        .filter(|r| !r.from_daemon)
        .map(|r| r.name)
        .collect();
    if !unpublished.is_empty() && unpublished.len() < rows.len() {
        lines.push(format!(
            "No daemon published the settings of {}: this command's configuration is shown for them.",
            unpublished.join(", ")
        ));
    } else if !unpublished.is_empty() {
        lines.push(
            "No daemon has published its settings: this command's configuration is shown."
                .to_string(),
        );
    }
    let differing: Vec<&Row> = rows.iter().filter(|r| !r.differs.is_empty()).collect();
    if !differing.is_empty() {
        lines.push(
            "The daemon's settings are shown; this command's configuration differs:".to_string(),
        );
        for r in differing {
            lines.push(format!("  {}: {}", r.name, r.differs.join("; ")));
        }
    }
    lines
        .iter()
        .map(|l| format!("{}\n", ellipsize(l, width)))
        .collect()
}

/// The outcome cell: `ok`, `ok, 6 problems`, `failed: <error>`, `off:
/// <why>`, `-`.
pub fn outcome(status: Option<&TaskStatus>) -> String {
    let Some(s) = status else { return "-".into() };
    if s.enabled == Some(false) {
        return match &s.off_reason {
            Some(why) => format!("off: {why}"),
            None => "off".into(),
        };
    }
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
