//! `zos-perf call --node ID | --twin ID`: a command to a node anywhere on
//! the grid, through the relay.

use std::time::Duration;

use zos_perf::config::Config;
use zos_perf::rmb::RmbError;
use zos_perf::text::{self, Keep};

use super::rmb::{RmbArgs, Settings};

/// Who is called.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Node(u32),
    Twin(u32),
}

/// Calls `cmd` on `target` and prints the result (pretty JSON when it is
/// JSON, else the text with its control characters escaped).
pub async fn call(
    config: &Config,
    args: &RmbArgs,
    target: Target,
    cmd: &str,
    payload: Option<&str>,
    timeout: Option<Duration>,
) -> Result<(), RmbError> {
    let settings = Settings::resolve(config, args);
    let timeout = timeout.unwrap_or(settings.timeout);
    let client = settings.connect().await?;
    let payload = payload.unwrap_or_default().as_bytes();
    let reply = match target {
        Target::Node(n) => client.call_node(n, cmd, payload, timeout).await?,
        Target::Twin(t) => client.call(t, cmd, payload, timeout).await?,
    };
    outln!("{}", pretty(&reply));
    Ok(())
}

/// Pretty JSON (exact, no raw control character: `text::json`), or the
/// bytes as one line of text when they are not JSON: a node's answer is
/// anything the node chose to send.
pub fn pretty(reply: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(reply) {
        Ok(v) => super::json(&v).unwrap_or_default(),
        Err(_) => text::escape(&String::from_utf8_lossy(reply), Keep::Nothing).into_owned(),
    }
}
