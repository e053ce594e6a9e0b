//! One iperf3 client run, as a child process: its arguments, its time
//! limit, and the retries while the server is busy.
//!
//! The child is spawned directly (no shell) with `kill_on_drop`, so a run
//! dropped by the monitor (timeout, shutdown) takes its iperf3 with it. A
//! run that sees `ctx.cancel` or passes its own limit kills the child and
//! waits for it, so nothing is left behind, not even a zombie.

use std::net::IpAddr;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::report::{self, Measure, Protocol};
use super::IperfConfig;
use crate::util::backoff::Backoff;

/// The most of iperf3's output read; its report is a few kilobytes.
const OUTPUT_LIMIT: u64 = 8 * 1024 * 1024;

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
        let m = run_once(config, &args, protocol, cancel).await?;
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

/// One iperf3 process, from spawn to reaped.
async fn run_once(
    config: &IperfConfig,
    args: &[String],
    protocol: Protocol,
    cancel: &CancellationToken,
) -> Result<Measure, Cancelled> {
    let program = config.iperf3.display().to_string();
    let mut child = match Command::new(&config.iperf3)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Ok(Measure::failed(format!("cannot start {program}: {e}"))),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    enum End {
        Exited(std::io::Result<std::process::ExitStatus>, Vec<u8>, Vec<u8>),
        TimedOut,
        Cancelled,
    }
    let end = {
        let finish = async {
            let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
            End::Exited(status, out, err)
        };
        tokio::select! {
            end = finish => end,
            _ = tokio::time::sleep(config.run_timeout) => End::TimedOut,
            _ = cancel.cancelled() => End::Cancelled,
        }
    };
    let (status, stdout, stderr) = match end {
        End::Exited(status, out, err) => (status, out, err),
        End::TimedOut => {
            let _ = child.kill().await;
            return Ok(Measure::failed(format!(
                "iperf3 did not finish within {}; killed",
                humantime::format_duration(config.run_timeout)
            )));
        }
        End::Cancelled => {
            let _ = child.kill().await;
            return Err(Cancelled);
        }
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => return Ok(Measure::failed(format!("waiting for {program}: {e}"))),
    };
    match report::parse(&stdout, protocol) {
        Ok(m) => Ok(m),
        Err(parse_error) => {
            let stderr = String::from_utf8_lossy(&stderr);
            let stderr = stderr.trim();
            let mut msg = parse_error;
            if !status.success() {
                msg = format!("{program} exited with {status}; {msg}");
            }
            if !stderr.is_empty() {
                msg = format!("{msg}; stderr: {}", crate::util::text::clip(stderr, 300));
            }
            Ok(Measure::failed(msg))
        }
    }
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(OUTPUT_LIMIT).read_to_end(&mut buf).await;
    }
    buf
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
