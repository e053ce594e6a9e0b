//! The command line of `zos-perf` ([`args`]: the clap definitions `main.rs`
//! parses) and the implementations of its commands, one file per group:
//! [`run`] (the daemon, one task now), [`tasks`] (the task table),
//! [`results`] (stored results, [`human`] rendering), [`history`] (a task's
//! stored history), [`call`] (the bus, as
//! the RMB peer calls it), [`check`] (what this machine lacks). [`error`]
//! holds the exit codes, [`logging`] the log format and colour,
//! [`completions`] the shell completions and the man page; over the grid's
//! relay: [`identity`], [`remote`] (`call --node/--twin`) and [`fleet`],
//! with their shared flags in [`rmb`].

/// `println!` that never panics: `zos-perf tasks | head -1` closes the
/// pipe early, and a command must not die of that.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that never panics, for the same reason.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// `print!` that never panics.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

pub mod args;
pub mod call;
pub mod check;
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
use zos_perf::redis::server;
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
    outln!(
        "{}",
        serde_json::to_string_pretty(result).map_err(anyhow::Error::from)?
    );
    Ok(())
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
    zos_perf::redis::connect_once(&url)
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

/// `text` cut to `width` characters, the last one an ellipsis when cut.
pub fn ellipsize(text: &str, width: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
