//! One iperf3 client run, as a child process: its arguments, its time
//! limit, and the retries while the server is busy.
//!
//! The child is spawned directly (no shell) in a process group of its own
//! ([`crate::child`]), so a run dropped by the monitor (timeout, shutdown)
//! takes its iperf3 with it. A run that sees `ctx.cancel`, passes its own
//! limit or writes too much kills the group and reaps the child, so nothing
//! is left behind, not even a zombie.

use std::net::IpAddr;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::report::{self, Measure, Protocol, Reading};
use super::IperfConfig;
use crate::tasks::child::{self, Ended, Limits};
use crate::util::backoff::Backoff;

/// The most of iperf3's output read; its report is a few kilobytes. An
/// iperf3 that writes more is killed at once (it would otherwise block on
/// the full pipe until the run timeout) and the entry says so.
const OUTPUT_LIMIT: usize = 8 * 1024 * 1024;
const STDERR_LIMIT: usize = 64 * 1024;

pub use crate::util::backoff::Cancelled;

/// The iperf3 arguments of one run (docs/tasks/iperf.md).
pub fn arguments(config: &IperfConfig, ip: IpAddr, protocol: Protocol) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--client".into(),
        ip.to_string(),
        "--port".into(),
        config.port.to_string(),
        "--interval".into(),
        "20".into(),
        // Unlimited: iperf3 limits UDP to 1 Mbit/s by default.
        "--bandwidth".into(),
        "0".into(),
        // The server sends: the grid has always measured this direction.
        "-R".into(),
        "--json".into(),
    ];
    if protocol == Protocol::Udp {
        args.extend(["--length".into(), "16B".into(), "--udp".into()]);
    }
    if let Some(d) = config.duration {
        // iperf3 takes whole seconds; round up so a short setting still runs.
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        args.extend(["--time".into(), secs.max(1).to_string()]);
    }
    args
}

/// Runs iperf3 against `ip`, retrying while the server answers busy: waits
/// `busy_backoff_initial`, doubling up to `busy_backoff_max`, at most
/// `busy_retries` times. A server still busy after that gives an entry with
/// iperf3's busy error.
pub async fn measure(
    config: &IperfConfig,
    ip: IpAddr,
    protocol: Protocol,
    cancel: &CancellationToken,
) -> Result<Measure, Cancelled> {
    let args = arguments(config, ip, protocol);
    let mut wait = Backoff::new(config.busy_backoff_initial, config.busy_backoff_max);
    let mut retries = 0;
    loop {
        let m = run_once(config, &args, Reading::Seed(protocol), cancel)
            .await?
            .measure;
        if !m.is_busy() || retries >= config.busy_retries {
            return Ok(m);
        }
        retries += 1;
        tracing::info!(
            %ip, protocol = protocol.as_str(), retry = retries,
            wait = %humantime::format_duration(wait.peek()), "server busy; retrying"
        );
        wait.sleep(cancel).await?;
    }
}

/// What one iperf3 process gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub measure: Measure,
    /// iperf3 printed a JSON report (its `error`, if any, is iperf3's own);
    /// false when it could not start, timed out or printed no report.
    pub reported: bool,
}

impl From<Measure> for Attempt {
    fn from(measure: Measure) -> Attempt {
        Attempt {
            measure,
            reported: false,
        }
    }
}

/// One iperf3 process, from spawn to reaped, in a process group of its
/// own that goes with it (see [`crate::child`]).
pub async fn run_once(
    config: &IperfConfig,
    args: &[String],
    reading: Reading,
    cancel: &CancellationToken,
) -> Result<Attempt, Cancelled> {
    let run_timeout = config.run_timeout();
    let program = config.iperf3.display().to_string();
    let mut cmd = Command::new(&config.iperf3);
    cmd.args(args);
    let limits = Limits {
        stdout: OUTPUT_LIMIT,
        stderr: STDERR_LIMIT,
        timeout: run_timeout,
    };
    let (status, stdout, stderr) = match child::run(&mut cmd, limits, cancel).await {
        Err(e) => return Ok(Measure::failed(format!("cannot start {program}: {e}")).into()),
        Ok(Ended::Exited {
            status,
            stdout,
            stderr,
        }) => (status, stdout, stderr),
        Ok(Ended::TooMuchOutput { stream, limit, .. }) => {
            return Ok(Measure::failed(format!(
                "{program} wrote more than {limit} bytes to {stream}; killed"
            ))
            .into())
        }
        Ok(Ended::TimedOut) => {
            return Ok(Measure::failed(format!(
                "iperf3 did not finish within {}; killed",
                humantime::format_duration(run_timeout)
            ))
            .into())
        }
        Ok(Ended::Cancelled) => return Err(Cancelled),
    };
    match report::parse_as(&stdout, reading) {
        Ok(measure) => Ok(Attempt {
            measure,
            reported: true,
        }),
        Err(parse_error) => {
            let stderr = String::from_utf8_lossy(&stderr);
            let stderr = stderr.trim();
            let mut msg = parse_error.to_string();
            if !status.success() {
                msg = format!("{program} exited with {status}; {msg}");
            }
            if !stderr.is_empty() {
                msg = format!("{msg}; stderr: {}", crate::util::text::clip(stderr, 300));
            }
            Ok(Measure::failed(msg).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn arguments_follow_the_spec_with_udp_and_duration_extras() {
        let mut c = IperfConfig::default();
        let v4: IpAddr = "198.51.100.2".parse().expect("ip");
        assert_eq!(
            arguments(&c, v4, Protocol::Tcp).join(" "),
            "--client 198.51.100.2 --port 300 --interval 20 --bandwidth 0 -R --json"
        );
        c.duration = Some(Duration::from_millis(1500));
        c.port = 5201;
        let v6: IpAddr = "2001:db8::2".parse().expect("ip");
        assert_eq!(
            arguments(&c, v6, Protocol::Udp).join(" "),
            "--client 2001:db8::2 --port 5201 --interval 20 --bandwidth 0 -R --json --length 16B --udp --time 2"
        );
    }
}
