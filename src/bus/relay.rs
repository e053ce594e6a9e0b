//! The relay transport: the daemon itself on the grid's relay, answering
//! `zos.perf.get` / `get_all` without an rmb-peer (docs/rmb.md, "Serving
//! over the relay").
//!
//! It connects as its own twin (from `[rmb]`: relays, chain, key type,
//! secret), without a session id, keeps the connection alive (pings, and a
//! new connection with a fresh token and a growing pause when it is lost),
//! and for each request:
//!
//! 1. refuses an expired one (102), one from a twin the chain does not know
//!    (103), one whose signature does not verify against the sender's
//!    account (104), an encrypted one from a sender without `pk` (105) or
//!    one that does not decrypt (106): each answered with that error code,
//!    as the grid's Rust peer does;
//! 2. answers the command from the store, through the same [`Command`] and
//!    [`Snapshot`] as the local transport;
//! 3. replies to the sender's session, signed, with the JSON schema, and
//!    encrypted when both twins have a `pk` on chain.
//!
//! Frames that are not envelopes, and envelopes that are not requests, are
//! dropped and counted; nothing stops the connection but the relay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::commands::Command;
use super::message::BASE64;
use super::snapshot::Snapshot;
use crate::rmb::envelope::{self, Address, Body, Envelope, Payload, Response};
use crate::rmb::relay::{self, Event, LinkSender, RelayOptions};
use crate::rmb::twin::{Twin, TwinDb};
use crate::rmb::{e2e, Identity, RmbError};
use crate::store::result_keys;
use crate::tasks::NAMES;

/// `[bus.relay]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayBusConfig {
    /// Serve over the relay with the `[rmb]` identity (off by default).
    pub enabled: bool,
}

/// The rmb-rs error codes a refused request is answered with.
pub mod code {
    pub const EXPIRED: u32 = 102;
    pub const UNKNOWN_TWIN: u32 = 103;
    pub const BAD_SIGNATURE: u32 = 104;
    pub const NO_PK: u32 = 105;
    pub const E2E: u32 = 106;
}

/// What the relay transport counts.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub answered: AtomicU64,
    pub refused: AtomicU64,
    pub dropped: AtomicU64,
    pub connects: AtomicU64,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Serves until `shutdown`, reconnecting as long as it takes.
pub async fn serve(
    redis: redis::Client,
    identity: Arc<Identity>,
    twins: Arc<TwinDb>,
    relays: Vec<String>,
    stats: Arc<RelayStats>,
    shutdown: CancellationToken,
) {
    let mut pause = BACKOFF_FIRST;
    let mut turn = 0usize;
    while !shutdown.is_cancelled() {
        let relay = &relays[turn % relays.len().max(1)];
        turn += 1;
        match connect(&identity, &twins, relay).await {
            Ok((link, me)) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                pause = BACKOFF_FIRST;
                tracing::info!(relay = %relay, twin = me.id, "serving zos.perf over the relay");
                let server = Server {
                    identity: &identity,
                    twins: &twins,
                    me,
                    redis: &redis,
                    stats: &stats,
                };
                if let Some(why) = server.run(link, &shutdown).await {
                    tracing::warn!(relay = %relay, reason = %why, "relay connection lost; reconnecting");
                }
            }
            Err(e) => {
                tracing::warn!(relay = %relay, error = %e, "cannot serve over the relay; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(BACKOFF_MAX);
    }
}

async fn connect(
    identity: &Identity,
    twins: &TwinDb,
    relay: &str,
) -> Result<(relay::Link, Arc<Twin>), RmbError> {
    let account = identity.account_id();
    let id = twins.twin_of_account(&account).await?.ok_or_else(|| {
        RmbError::Identity(format!(
            "account {} has no twin on this chain",
            hex::encode(account)
        ))
    })?;
    let me = twins.twin(id).await?;
    let link = relay::open(relay, identity, id, None, &RelayOptions::default()).await?;
    Ok((link, me))
}

struct Server<'a> {
    identity: &'a Identity,
    twins: &'a TwinDb,
    me: Arc<Twin>,
    redis: &'a redis::Client,
    stats: &'a RelayStats,
}

impl Server<'_> {
    /// Handles one connection; the reason it ended, `None` on shutdown.
    async fn run(&self, mut link: relay::Link, shutdown: &CancellationToken) -> Option<String> {
        let sender = link.sender();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return None,
                e = link.events.recv() => e,
            };
            match event {
                Some(Event::Envelope(env)) => self.handle(*env, &sender).await,
                Some(Event::Garbage(why)) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(reason = %why, "dropping an unreadable frame");
                }
                Some(Event::Closed(why)) => return Some(why),
                None => return Some("the connection task ended".into()),
            }
        }
    }

    async fn handle(&self, env: Envelope, sender: &LinkSender) {
        let (Some(Body::Request(req)), Some(src)) = (env.message.clone(), env.source.clone())
        else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (body, payload, caller) = match self.answer(&env, &req.command).await {
            Ok((json, caller)) => (Body::Response(Response {}), Some(json), Some(caller)),
            Err((code, message, caller)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(code, message = %message, source = src.twin, "refusing a request");
                (Body::Error(envelope::Error { code, message }), None, caller)
            }
        };
        let payload = match (
            payload,
            caller.as_ref().and_then(|c| c.public_key()),
            self.me.public_key(),
        ) {
            (None, _, _) => None,
            (Some(json), Some(pk), Some(_)) => match e2e::encrypt(self.identity, pk, &json) {
                Ok(c) => Some(Payload::Cipher(c)),
                Err(_) => Some(Payload::Plain(json)),
            },
            (Some(json), _, _) => Some(Payload::Plain(json)),
        };
        let mut reply = Envelope {
            uid: env.uid.clone(),
            timestamp: relay::unix_now(),
            expiration: 300,
            source: Some(Address::twin(self.me.id)),
            destination: Some(src),
            message: Some(body),
            schema: Some(envelope::SCHEMA_JSON.into()),
            payload,
            ..Envelope::default()
        };
        reply.sign(self.identity);
        if sender.send(&reply).await.is_ok() {
            self.stats.answered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The JSON answer and the caller's twin, or the refusal.
    async fn answer(
        &self,
        env: &Envelope,
        command: &str,
    ) -> Result<(Vec<u8>, Arc<Twin>), (u32, String, Option<Arc<Twin>>)> {
        if env.deadline() <= relay::unix_now() {
            return Err((
                code::EXPIRED,
                "envelope validation error: message has expired".into(),
                None,
            ));
        }
        let caller = self
            .twins
            .twin(env.source_twin())
            .await
            .map_err(|e| (code::UNKNOWN_TWIN, format!("unknown twin: {e}"), None))?;
        if let Err(e) = env.verify(&caller.account_id) {
            // The caller may have changed keys since it was cached.
            self.twins.forget_twin(caller.id).await;
            let fresh = self
                .twins
                .twin(caller.id)
                .await
                .map_err(|e| (code::UNKNOWN_TWIN, e.to_string(), None))?;
            env.verify(&fresh.account_id)
                .map_err(|_| (code::BAD_SIGNATURE, format!("bad signature: {e}"), None))?;
        }
        let fail = |code: u32, m: String| (code, m, Some(caller.clone()));
        let payload = match &env.payload {
            Some(Payload::Cipher(c)) => {
                let pk = caller
                    .public_key()
                    .ok_or_else(|| fail(code::NO_PK, "the sender twin has no public key".into()))?;
                e2e::decrypt(self.identity, pk, c).map_err(|e| fail(code::E2E, e))?
            }
            Some(Payload::Plain(p)) => p.clone(),
            None => Vec::new(),
        };
        let cmd = Command::ALL
            .into_iter()
            .find(|c| c.name() == command)
            .ok_or_else(|| fail(0, "function is not found".into()))?;
        let query = cmd.query(&payload).map_err(|e| fail(e.code, e.message))?;
        let mut conn = self
            .redis
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| fail(500, format!("the store is not reachable: {e}")))?;
        let stored: Vec<Option<String>> = redis::cmd("MGET")
            .arg(result_keys())
            .query_async(&mut conn)
            .await
            .map_err(|e| fail(500, format!("reading the store: {e}")))?;
        let mut snapshot = Snapshot::new(NAMES.into_iter().zip(stored).collect());
        let b64 = snapshot
            .answer(query)
            .map_err(|e| fail(e.code, e.message))?;
        let json = BASE64.decode(b64).map_err(|e| fail(500, e.to_string()))?;
        Ok((json, caller))
    }
}
