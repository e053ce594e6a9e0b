//! `zos-perf call`: a bus command through Redis, the way the RMB peer sends it.

use std::time::Duration;

use zos_perf::bus::local::client;
use zos_perf::bus::Command;
use zos_perf::config::Config;
use zos_perf::node_redis;

use super::error::{CliError, Exit};
use super::reader_url;

/// Calls `cmd` with `payload` and prints the result. An error reply is
/// printed with its code and message; no reply is exit code 5, and the
/// hint says why nothing may have answered.
pub async fn call(
    config: &Config,
    default_redis: &str,
    cmd: &str,
    payload: Option<String>,
    timeout: Duration,
) -> Result<(), CliError> {
    let url = reader_url(config, default_redis).await?;
    let redis = node_redis::client(&url).map_err(|e| CliError::new(Exit::Usage, e))?;
    let payload = payload.unwrap_or_default();
    let reply = match client::call(&redis, cmd, payload.as_bytes(), timeout).await {
        Ok(reply) => reply,
        Err(e) => {
            let Some(no_reply) = e.downcast_ref::<client::NoReply>() else {
                return Err(e.into());
            };
            let known = Command::ALL.iter().any(|c| c.name() == cmd);
            let hint = if no_reply.picked_up {
                "something took the request but did not answer in time: try a longer --timeout"
                    .to_string()
            } else if known {
                format!("is `zos-perf run` serving the bus on {url}?")
            } else {
                format!(
                    "zos-perf serves only {}",
                    Command::ALL.map(|c| c.name()).join(" and ")
                )
            };
            return Err(CliError::msg(Exit::TimedOut, format!("{e}: {hint}")));
        }
    };
    let result = reply
        .result()
        .map_err(|e| CliError::from(anyhow::Error::new(e).context(cmd.to_string())))?;
    // Whatever answered on the bus wrote this: exact JSON or escaped text.
    outln!("{}", super::remote::pretty(&result));
    Ok(())
}
