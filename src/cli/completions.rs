//! `zos-perf completions SHELL` and `zos-perf man`: generated from the clap
//! definitions, so they never drift from the real flags and subcommands.
//!
//! Both write to stdout and need no configuration and no Redis: the package
//! build runs them to produce the files it ships (scripts/package).

use std::io::Write;

use anyhow::Context;
use clap_complete::Shell;

/// Prints the completion script of `shell` for the command `cmd`.
pub fn print(shell: Shell, mut cmd: clap::Command) -> anyhow::Result<()> {
    let name = cmd.get_name().to_string();
    // clap_complete panics on a failed write: render into memory, then write
    // with an error the caller can report (a closed pipe, a full disk).
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    write_stdout(&out).with_context(|| format!("writing the {shell} completions"))
}

/// Prints the man page (roff, section 1) of the command `cmd`: its flags,
/// then every subcommand with its own arguments, then the files and signals.
/// One page holds it all: no zos-perf-<subcommand>(1) pages to ship.
pub fn print_man_page(cmd: clap::Command) -> anyhow::Result<()> {
    let name = cmd.get_name().to_string();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let about = sub.get_long_about().or(sub.get_about());
        let about = roff_text(&about.map(|a| a.to_string()).unwrap_or_default());
        out.extend_from_slice(format!(".SS \"{name} {}\"\n{about}\n", sub.get_name()).as_bytes());
        // Its own arguments, without the --help every subcommand has.
        let sub = sub.clone().disable_help_flag(true);
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            let mut options = Vec::new();
            clap_mangen::Man::new(sub).render_options_section(&mut options)?;
            let options = String::from_utf8_lossy(&options).replacen(".SH OPTIONS\n", "", 1);
            out.extend_from_slice(options.as_bytes());
        }
    }
    out.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    man.render_version_section(&mut out)?;
    write_stdout(&out).context("writing the man page")
}

/// FILES and SIGNALS: what an operator looks for in a daemon's page.
const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
/etc/zos\-perf/config.toml
The configuration read by the packaged service; every field is listed there, commented, with its default.
.TP
/run/zos\-perf/
The runtime directory: the socket of the private redis\-server lives here when the daemon runs one.
.TP
/tmp/flags/
Where the healthcheck sets the flags readonly\-cache and not\-reachable that the power daemon reads.
.SH SIGNALS
SIGTERM or SIGINT stops the daemon: scheduling stops, running runs are cancelled, and it exits 0 within 5 seconds.
SIGHUP reloads the configuration: one that does not validate is refused and the daemon goes on with the running one, the log saying why; one that validates is applied in the same process.
"#;

/// Plain text made safe for roff: a backslash written as `\e`, and a line
/// that would start with a control character (a dot or an apostrophe)
/// escaped with `\&`.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}
