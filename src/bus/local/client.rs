//! The local client behind `zos-perf call`: it stands in for the RMB peer,
//! so an operator can check the bus on a node without the grid.
//!
//! It pushes one request onto `msgbus.<cmd>` with a `ret` list of its own
//! (`msgbus.zos-perf-call.<random>`: nothing else reads it, so it never
//! steals a reply meant for the real peer) and BRPOPs that list for the
//! reply.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use redis::AsyncConnectionConfig;

use crate::bus::message::{Reply, Request, BASE64, JSON_SCHEMA, VERSION};
use crate::node_redis::{keys, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::util::unix_time::unix_now;

/// The caller this client says it is: twin 0, connection `zos-perf-call`.
pub(crate) const SOURCE: &str = "0:zos-perf-call";

/// Sends `cmd` with `payload` and waits up to `timeout` for its reply.
pub async fn call(
    client: &redis::Client,
    cmd: &str,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<Reply<'static>> {
    let ret = keys::call_reply_list(rand::random::<u64>());
    let reference = format!("{:016x}", rand::random::<u64>());
    let request = Request {
        ver: VERSION,
        reference: Some(reference.as_str().into()),
        src: SOURCE.into(),
        cmd: cmd.into(),
        exp: timeout.as_secs_f64().ceil().max(1.0) as u64,
        dat: BASE64.encode(payload).into(),
        tag: None,
        ret: ret.as_str().into(),
        shm: Some(JSON_SCHEMA.into()),
        now: unix_now(),
    };
    let encoded = serde_json::to_vec(&request).context("encoding the request")?;

    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(timeout + RESPONSE_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| {
            format!(
                "cannot connect to redis at {}",
                client.get_connection_info().addr()
            )
        })?;
    let list = keys::request_list(cmd);
    redis::cmd("LPUSH")
        .arg(&list)
        .arg(&encoded)
        .query_async::<()>(&mut conn)
        .await
        .with_context(|| format!("pushing the request onto {list}"))?;
    // BRPOP 0 would wait forever.
    let wait = timeout.as_secs_f64().max(0.01);
    let popped: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
        .arg(&ret)
        .arg(wait)
        .query_async(&mut conn)
        .await
        .with_context(|| format!("waiting for the reply on {ret}"))?;
    let Some((_, raw)) = popped else {
        // Nobody answered: take the request back so no server finds it
        // later, and drop any late reply, which would only litter.
        let removed: i64 = redis::pipe()
            .cmd("LREM")
            .arg(&list)
            .arg(1)
            .arg(&encoded)
            .cmd("DEL")
            .arg(&ret)
            .ignore()
            .query_async::<(i64,)>(&mut conn)
            .await
            .map(|(n,)| n)
            .unwrap_or(0);
        return Err(NoReply {
            cmd: cmd.to_string(),
            waited: timeout,
            picked_up: removed == 0,
        }
        .into());
    };
    let reply: Reply<'static> = serde_json::from_slice(&raw).with_context(|| {
        format!(
            "the reply on {ret} is not a bus reply: {}",
            String::from_utf8_lossy(&raw)
        )
    })?;
    if reply.reference.as_deref() != Some(reference.as_str()) {
        anyhow::bail!(
            "the reply on {ret} carries ref {:?}, not ours ({reference:?})",
            reply.reference
        );
    }
    Ok(reply)
}

/// No reply came within the timeout. `picked_up` is true when the request
/// was no longer in its list: something took it and did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("no reply to {cmd} within {}{}", humantime::format_duration(*waited), if *picked_up { " (the request was taken but not answered)" } else { " (nothing took the request; it was removed again)" })]
pub struct NoReply {
    pub cmd: String,
    pub waited: Duration,
    pub picked_up: bool,
}

/// The result bytes as pretty JSON, or as text when they are not JSON.
pub fn pretty(result: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(result) {
        Ok(value) => serde_json::to_string_pretty(&value)
            .unwrap_or_else(|_| String::from_utf8_lossy(result).into_owned()),
        Err(_) => String::from_utf8_lossy(result).into_owned(),
    }
}
