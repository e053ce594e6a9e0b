//! How `zos-perf` logs: the filter, the format (text or one JSON object a
//! line, for journald, Loki or Elastic) and colour.
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is not set, so a
//! log redirected to a file holds no escape codes. The writer is passed in
//! ([`init`]), so what carries the lines (stderr today, a writer that
//! survives a failing sink tomorrow) is chosen apart from their format.
//!
//! Precedence: `--log` / `ZOS_PERF_LOG`, then `log` in the file, then
//! `info`; the same for the format. A filter that does not parse, or a bare
//! word that is not a level (`--log verbose` would otherwise select a
//! target named "verbose" and silently log nothing), is a usage error
//! naming the directive.
//!
//! The filter is `tracing`'s target filter (`Targets`): a comma-separated
//! list of `level` and `target=level` directives. Span and field filters
//! (`target[span{field=value}]=level`) are refused: supporting them would
//! ship a regular-expression engine, a quarter of a megabyte of the binary,
//! for a syntax the operator pages never asked for.

use std::io::IsTerminal;

use anyhow::bail;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging as resolved from the flags, the environment and the file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub filter: String,
    pub format: LogFormat,
    pub colour: bool,
}

/// The level names a bare directive may be.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl Settings {
    /// Resolves and checks the settings; `flag_*` win over `file_*`.
    pub fn resolve(
        flag_filter: Option<&str>,
        flag_format: Option<LogFormat>,
        file_filter: Option<&str>,
        file_format: Option<&str>,
    ) -> anyhow::Result<Settings> {
        let (filter, whence) = match (flag_filter, file_filter) {
            (Some(f), _) => (f, "--log"),
            (None, Some(f)) => (f, "log (configuration file)"),
            (None, None) => ("info", "default"),
        };
        check_filter(filter).map_err(|e| anyhow::anyhow!("{whence}: {e}"))?;
        let format = match (flag_format, file_format) {
            (Some(f), _) => f,
            (None, Some("json")) => LogFormat::Json,
            _ => LogFormat::Text,
        };
        Ok(Settings {
            filter: filter.to_string(),
            format,
            colour: colour_wanted(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ),
        })
    }
}

/// Colour on a terminal, unless `NO_COLOR` is set to anything non-empty
/// (no-color.org).
pub fn colour_wanted(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Checks a filter, one directive at a time, so the error names the one
/// that is wrong.
pub fn check_filter(filter: &str) -> anyhow::Result<()> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if directive.contains(['[', '{', ']', '}']) {
            bail!(
                "bad log directive {directive:?}: span and field filters are not supported; \
                 write level or target=level, e.g. zos_perf::monitor=debug"
            );
        }
        let bare = !directive.contains(['=', ':']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            bail!(
                "bad log directive {directive:?}: a bare word must be a level ({}); \
                 to select a target write target=level, e.g. zos_perf=debug",
                LEVELS.join(", ")
            );
        }
        if let Err(e) = directive.parse::<Targets>() {
            bail!("bad log directive {directive:?}: {e}");
        }
    }
    Ok(())
}

/// Installs the global subscriber writing to `writer`.
pub fn init(settings: &Settings, writer: BoxMakeWriter) {
    // Checked in `Settings::resolve`; `info` is only a safety net.
    let filter = settings
        .filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        // The writer never fails; tracing's own fallback would print to a
        // stderr that may be a closed pipe.
        .log_internal_errors(false);
    // try_init: a subscriber already set (a test harness) is kept.
    let _ = match settings.format {
        // Every field escaped (remote errors, stored values): one event,
        // one line, no control character from outside.
        LogFormat::Text => builder
            .fmt_fields(zos_perf::logging::escaped_fields())
            .with_ansi(settings.colour)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .finish()
            .with(filter)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_directive_by_directive() {
        assert!(check_filter("info").is_ok());
        assert!(check_filter("warn,zos_perf=debug").is_ok());
        assert!(check_filter("zos_perf::monitor=trace").is_ok());
        let e = check_filter("info,verbose").unwrap_err().to_string();
        assert!(e.contains("\"verbose\""), "{e}");
        let e = check_filter("zos_perf=loud").unwrap_err().to_string();
        assert!(e.contains("\"zos_perf=loud\""), "{e}");
        assert!(check_filter("WARN,zos_perf::bus=TRACE").is_ok());
        let e = check_filter("zos_perf[run{task=cpu}]=debug")
            .unwrap_err()
            .to_string();
        assert!(e.contains("span and field filters"), "{e}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".into())));
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(!colour_wanted(false, None));
    }
}
