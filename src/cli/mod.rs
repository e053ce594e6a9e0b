//! The command line of `zos-perf` ([`args`]: the clap definitions `main.rs`
//! parses) and the implementations of its commands, one file per group:
//! [`run`] (the daemon, one task now), [`tasks`] (the task table),
//! [`results`] (stored results, [`human`] rendering), [`history`] (a task's
//! stored history), [`call`] (the bus, as
//! the RMB peer calls it), [`check`] (what this machine lacks). [`error`]
//! holds the exit codes, [`logging`] the log format and colour,
//! [`completions`] the shell completions and the man page; over the grid's
//! relay: [`identity`], [`remote`] (`call --node/--twin`), [`fleet`] and
//! [`collect`],
//! with their shared flags in [`rmb`].

// What a command prints goes through these three: they never panic
// (`zos-perf tasks | head -1` closes the pipe early, and a command must not
// die of that), and they keep no control character but newlines and tabs
// (`text::escape`, `Keep::Lines`): a last line of defence under the
// escaping of each value from outside where it is formatted (a value's own
// newline is escaped there, `text::Escaped`). JSON output is made safe
// before (`text::json`), so it passes unchanged.

/// `println!` that never panics nor prints a control character.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let text = zos_perf::text::escape(&text, zos_perf::text::Keep::Lines);
        let _ = writeln!(std::io::stdout(), "{text}");
    }};
}

/// `eprintln!` that never panics nor prints a control character.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let text = zos_perf::text::escape(&text, zos_perf::text::Keep::Lines);
        let _ = writeln!(std::io::stderr(), "{text}");
    }};
}

/// `print!` that never panics nor prints a control character.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        let text = zos_perf::text::escape(&text, zos_perf::text::Keep::Lines);
        let _ = write!(std::io::stdout(), "{text}");
    }};
}

pub mod args;
pub mod call;
pub mod check;
pub mod collect;
pub mod completions;
pub mod error;
pub mod fleet;
pub mod history;
pub mod human;
pub mod identity;
pub mod logging;
pub mod remote;
pub mod results;
pub mod rmb;
pub mod run;
pub mod tasks;

use std::io::IsTerminal;

use redis::aio::ConnectionManager;
use zos_perf::config::Config;
use zos_perf::node_redis::server;
use zos_perf::store::TaskResult;
use zos_perf::tasks::NAMES;

use error::{CliError, Exit};

/// The canonical spelling of a task name given on the command line, in
/// any case (as the bus accepts it).
pub fn task_name(name: &str) -> Result<&'static str, CliError> {
    NAMES
        .iter()
        .copied()
        .find(|n| n.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            CliError::msg(
                Exit::NotFound,
                format!("unknown task {name:?} (known: {})", NAMES.join(", ")),
            )
        })
}

/// Prints a stored result with its keys in record order (name,
/// description, timestamp, result), as `run-task` and the bus give them.
pub fn print_result(result: &TaskResult) -> Result<(), CliError> {
    outln!("{}", json(result)?);
    Ok(())
}

/// Pretty JSON as printed: exact JSON, with the control characters
/// serde_json leaves raw (DEL, C1) as `\u` escapes (`text::json`).
pub fn json(value: &impl serde::Serialize) -> Result<String, CliError> {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
    Ok(zos_perf::text::json(&text).into_owned())
}

/// Decodes a stored result; a value that is not one is a failure naming
/// the task.
pub fn decode(name: &str, raw: &str) -> Result<TaskResult, CliError> {
    serde_json::from_str(raw).map_err(|e| {
        CliError::msg(
            Exit::Failure,
            format!("{name}: the stored value is not a result: {e}"),
        )
    })
}

/// The Redis the read-only commands talk to.
pub async fn reader_url(config: &Config, default_redis: &str) -> anyhow::Result<String> {
    server::reader_url(config.redis.as_deref(), default_redis).await
}

/// A connection to that Redis; not answering is exit code 4.
pub async fn connect(config: &Config, default_redis: &str) -> Result<ConnectionManager, CliError> {
    let url = reader_url(config, default_redis).await?;
    zos_perf::node_redis::connect_once(&url)
        .await
        .map_err(|e| CliError::new(Exit::StoreUnreachable, e))
}

/// The width tables are fitted to: `COLUMNS` if set, else the terminal's,
/// else 80.
pub fn width() -> usize {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n.clamp(40, 1000);
    }
    if std::io::stdout().is_terminal() {
        if let Some(n) = terminal_width() {
            return n.clamp(40, 1000);
        }
    }
    80
}

fn terminal_width() -> Option<usize> {
    nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let ok = unsafe { tiocgwinsz(1, &mut size) }.is_ok();
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

/// `text` on one line (its control characters escaped) cut to `width`
/// characters, the last one an ellipsis when cut.
pub fn ellipsize(text: &str, width: usize) -> String {
    let one_line = zos_perf::text::escape(text, zos_perf::text::Keep::Nothing);
    if one_line.chars().count() <= width {
        return one_line.into_owned();
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
