//! The relay transport: the daemon itself on the grid's relay, answering
//! `zos.perf.get` / `get_all` without an rmb-peer (docs/rmb.md, "Serving
//! over the relay").
//!
//! It connects as its own twin (from `[rmb]`: relays, chain, key type,
//! secret), without a session id, keeps the connection alive (pings, and a
//! new connection with a fresh token after a growing, jittered pause when it
//! is lost, spread over 45 s when a healthy connection is lost so that the
//! daemons of a restarted relay do not return together: [`reconnect`]), and
//! for each request:
//!
//! 1. refuses an expired one (102; a sender's clock may be behind ours by
//!    `[bus] clock_skew`, as on the local transport), one from a twin the
//!    chain does not know (103), one whose signature does not verify
//!    against the sender's account (104, a wrong key type byte included),
//!    an encrypted one from a sender without `pk` (105), one that does not
//!    decrypt (106), or one whose payload is over the bus's limit (3): each
//!    answered with that error code, as the grid's Rust peer does;
//! 2. answers the command from the store, through the same [`Command`] and
//!    [`Snapshot`] (bounded reads) as the local transport;
//! 3. replies to the sender's session, signed, with the JSON schema, and
//!    encrypted when both twins have a `pk` on chain.
//!
//! Frames that are not envelopes, frames over the size limit (skipped
//! unread, see [`crate::rmb::relay_link`]) and envelopes that are not requests
//! are dropped and counted ([`stats`]); nothing stops the connection but
//! the relay. Requests are handled concurrently, up to [`IN_FLIGHT`] at a
//! time, and the bytes of the requests held (read, queued or being
//! handled) are bounded by the link's read budget
//! ([`RelayOptions::read_budget`]); past either the connection is read no
//! further until one is done. The sender's twin is looked up once however
//! many of its envelopes wait for it (coalesced in [`TwinDb`]).

pub mod reconnect;
mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::commands::Command;
use super::message::{BASE64, MAX_PAYLOAD};
use super::snapshot::Snapshot;
use crate::node_redis::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::rmb::envelope::{self, Address, Body, Envelope, Payload, Response};
use crate::rmb::relay_link::{self, Event, Held, LinkSender, RelayOptions};
use crate::rmb::twin::{Twin, TwinDb};
use crate::rmb::{e2e, Identity, RmbError};
use crate::util::unix_time::unix_now;

pub use stats::{Dropped, Refusal, RelayStats};

/// `[bus.relay]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayBusConfig {
    /// Serve over the relay with the `[rmb]` identity (off by default).
    pub enabled: bool,
}

/// How the relay transport serves.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How far a sender's clock may be behind ours (`[bus] clock_skew`).
    pub clock_skew: Duration,
    /// The connection's timing and frame limit.
    pub relay: RelayOptions,
    /// When to connect again after losing the relay ([`reconnect`]): the
    /// grid's times by default; a simulation may run them scaled.
    pub reconnect: Policy,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            clock_skew: super::BusConfig::default().clock_skew,
            relay: RelayOptions::default(),
            reconnect: Policy::default(),
        }
    }
}

/// Requests handled at the same time on one connection, at most.
pub const IN_FLIGHT: usize = 64;
/// The longest cipher accepted: the payload limit plus the nonce and tag.
const MAX_CIPHER: usize = MAX_PAYLOAD + 12 + 16;

pub use reconnect::{Policy, CONTESTED_AFTER, CONTESTED_PAUSE, QUICK};

/// Serves until `shutdown`, reconnecting as long as it takes.
pub async fn serve(
    redis: redis::Client,
    identity: Arc<Identity>,
    twins: Arc<TwinDb>,
    relays: Vec<String>,
    stats: Arc<RelayStats>,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let store = Arc::new(Store {
        client: redis,
        conn: Mutex::new(None),
    });
    let mut reconnects = reconnect::Reconnects::new(options.reconnect);
    let mut turn = 0usize;
    while !shutdown.is_cancelled() {
        let relay = &relays[turn % relays.len().max(1)];
        turn += 1;
        let ended = match connect(&identity, &twins, relay, &options.relay).await {
            Ok((link, me)) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                stats.connected.store(1, Ordering::Relaxed);
                let since = tokio::time::Instant::now();
                tracing::info!(relay = %relay, twin = me.id, "serving zos.perf over the relay");
                let server = Arc::new(Server {
                    identity: identity.clone(),
                    twins: twins.clone(),
                    me,
                    store: store.clone(),
                    stats: stats.clone(),
                    skew: options.clock_skew.as_secs(),
                    history_turn: Semaphore::new(1),
                });
                let ended = server.run(link, &shutdown).await;
                stats.connected.store(0, Ordering::Relaxed);
                let Some(why) = ended else { break };
                let lasted = since.elapsed();
                tracing::warn!(relay = %relay, reason = %why, lasted = %humantime::format_duration(round(lasted)),
                    "relay connection lost; reconnecting");
                reconnect::Ended::Lasted(lasted)
            }
            Err(e) => {
                tracing::warn!(relay = %relay, error = %e, "cannot serve over the relay; retrying");
                reconnect::Ended::Failed
            }
        };
        let pause = reconnects.after(ended, &mut rand::rng());
        if pause.quick {
            stats.quick_closes.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .contested
            .store(u64::from(pause.contested), Ordering::Relaxed);
        if pause.contested {
            tracing::error!(relay = %relay, closes = reconnects.quick_closes(),
                retry_in = %humantime::format_duration(round(pause.wait)),
                "the relay closed our connection right after connecting {} times in a row: \
                 most likely another connection holds this twin (another zos-perf, or the node's \
                 own rmb-peer with the node's twin); give zos-perf a twin of its own",
                reconnects.quick_closes());
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause.wait) => {}
        }
    }
}

/// `d` to whole milliseconds, for log lines.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

async fn connect(
    identity: &Identity,
    twins: &TwinDb,
    relay: &str,
    options: &RelayOptions,
) -> Result<(relay_link::Link, Arc<Twin>), RmbError> {
    let account = identity.account_id();
    let id = twins.twin_of_account(&account).await?.ok_or_else(|| {
        RmbError::Identity(format!(
            "account {} has no twin on this chain",
            hex::encode(account)
        ))
    })?;
    let me = twins.twin(id).await?;
    let link = relay_link::open(relay, identity, id, None, options).await?;
    Ok((link, me))
}

/// The store's Redis, connected on first use and kept (it heals itself).
struct Store {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
}

impl Store {
    async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let c = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

struct Server {
    identity: Arc<Identity>,
    twins: Arc<TwinDb>,
    me: Arc<Twin>,
    store: Arc<Store>,
    stats: Arc<RelayStats>,
    /// Seconds a sender's clock may be behind ours.
    skew: u64,
    /// One `zos.perf.history` answer is built at a time: each can hold up
    /// to 8 MiB of records, their base64, the decoded JSON and its sealed
    /// copy until the reply is handed to the link's write budget, so 64 of
    /// them at once (the requests in flight) would not be bounded by the
    /// read and write budgets. The other commands answer from the five
    /// result keys and go on beside it.
    history_turn: Semaphore,
}

/// Why a request got an error reply: a refusal of the envelope, or an
/// error of the command (or of the store).
enum Failure {
    Refused(Refusal, String),
    Command(u32, String),
}

impl Failure {
    fn code_and_message(self) -> (u32, String) {
        match self {
            Failure::Refused(r, m) => (r.code(), m),
            Failure::Command(c, m) => (c, m),
        }
    }
}

impl Server {
    /// Handles one connection; the reason it ended, `None` on shutdown.
    async fn run(
        self: &Arc<Self>,
        mut link: relay_link::Link,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let sender = link.sender();
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return None,
                e = link.events.recv() => e,
            };
            match event {
                Some(Event::Envelope(env, held)) => {
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        p = permits.clone().acquire_owned() => p,
                    };
                    let (me, sender) = (self.clone(), sender.clone());
                    tokio::spawn(async move {
                        me.handle(*env, held, &sender).await;
                        drop(permit);
                    });
                }
                Some(Event::Garbage(why)) => {
                    self.stats.drop_frame(Dropped::NotEnvelope);
                    tracing::debug!(reason = %why, "dropping an unreadable frame");
                }
                Some(Event::Oversized(len)) => {
                    self.stats.drop_frame(Dropped::Oversized);
                    tracing::debug!(bytes = len, "dropped a frame over the size limit, unread");
                }
                Some(Event::Closed(why)) => return Some(why),
                None => return Some("the connection task ended".into()),
            }
        }
    }

    /// Answers one request; its frame's bytes stay counted (`held`) until
    /// it no longer needs them.
    async fn handle(&self, env: Envelope, held: Held, sender: &LinkSender) {
        let (Some(Body::Request(req)), Some(src)) = (&env.message, env.source.clone()) else {
            self.stats.drop_frame(Dropped::NotRequest);
            return;
        };
        // Held until the reply is handed to the link (its write budget).
        let _turn = if req.command == Command::History.name() {
            match self.history_turn.acquire().await {
                Ok(turn) => Some(turn),
                Err(_) => return,
            }
        } else {
            None
        };
        let (caller, outcome) = self.answer(&env, &req.command).await;
        let uid = env.uid.clone();
        drop(env);
        drop(held);
        let (body, payload) = match outcome {
            Ok(json) => (Body::Response(Response {}), Some(json)),
            Err(failure) => {
                if let Failure::Refused(why, _) = &failure {
                    self.stats.refuse(*why);
                } else {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                let (code, message) = failure.code_and_message();
                tracing::debug!(code, message = %message, source = src.twin, "refusing a request");
                (Body::Error(envelope::Error { code, message }), None)
            }
        };
        let answered = matches!(body, Body::Response(_));
        let payload = match (
            payload,
            caller.as_ref().and_then(|c| c.public_key()),
            self.me.public_key(),
        ) {
            (None, _, _) => None,
            (Some(json), Some(pk), Some(_)) => match e2e::encrypt(&self.identity, pk, &json) {
                Ok(c) => Some(Payload::Cipher(c)),
                Err(_) => Some(Payload::Plain(json)),
            },
            (Some(json), _, _) => Some(Payload::Plain(json)),
        };
        let mut reply = Envelope {
            uid,
            timestamp: unix_now(),
            expiration: 300,
            source: Some(Address::twin(self.me.id)),
            destination: Some(src),
            message: Some(body),
            schema: Some(envelope::SCHEMA_JSON.into()),
            payload,
            ..Envelope::default()
        };
        reply.sign(&self.identity);
        if sender.send(&reply).await.is_err() {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        } else if answered {
            self.stats.answered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The caller's twin (when known) and the JSON answer or the failure.
    async fn answer(
        &self,
        env: &Envelope,
        command: &str,
    ) -> (Option<Arc<Twin>>, Result<Vec<u8>, Failure>) {
        let now = unix_now();
        // Comparing against `now - skew` is comparing `deadline + skew`
        // against `now`, without overflow.
        if env.deadline() <= now.saturating_sub(self.skew) {
            let m = "envelope validation error: message has expired".to_string();
            return (None, Err(Failure::Refused(Refusal::Expired, m)));
        }
        let caller = match self.verified_caller(env).await {
            Ok(c) => c,
            Err(f) => return (None, Err(f)),
        };
        let outcome = self.run_command(env, command, &caller).await;
        (Some(caller), outcome)
    }

    /// The sender's twin, its signature checked against its account (a
    /// cached twin that fails is looked up afresh once: keys change).
    async fn verified_caller(&self, env: &Envelope) -> Result<Arc<Twin>, Failure> {
        let lookup = |e: RmbError| match e {
            RmbError::UnknownTwin(id) => {
                Failure::Refused(Refusal::UnknownTwin, format!("unknown twin id '{id}'"))
            }
            other => Failure::Command(500, format!("failed to get twin information: {other}")),
        };
        let caller = self.twins.twin(env.source_twin()).await.map_err(lookup)?;
        if let Err(e) = env.verify(&caller.account_id) {
            let fresh = self.twins.twin_afresh(caller.id).await.map_err(lookup)?;
            env.verify(&fresh.account_id).map_err(|_| {
                Failure::Refused(
                    Refusal::BadSignature,
                    format!("invalid envelope signature: {e}"),
                )
            })?;
            return Ok(fresh);
        }
        Ok(caller)
    }

    async fn run_command(
        &self,
        env: &Envelope,
        command: &str,
        caller: &Twin,
    ) -> Result<Vec<u8>, Failure> {
        let too_large = |n: usize| {
            Failure::Refused(
                Refusal::TooLarge,
                format!("payload too large: {n} bytes, the limit is {MAX_PAYLOAD}"),
            )
        };
        let payload = match &env.payload {
            Some(Payload::Cipher(c)) if c.len() > MAX_CIPHER => return Err(too_large(c.len())),
            Some(Payload::Cipher(c)) => {
                let pk = caller.public_key().ok_or_else(|| {
                    Failure::Refused(Refusal::NoPublicKey, "sender twin has no public key".into())
                })?;
                e2e::decrypt(&self.identity, pk, c).map_err(|e| {
                    Failure::Refused(Refusal::Undecryptable, format!("e2e error: {e}"))
                })?
            }
            Some(Payload::Plain(p)) if p.len() > MAX_PAYLOAD => return Err(too_large(p.len())),
            Some(Payload::Plain(p)) => p.clone(),
            None => Vec::new(),
        };
        let cmd = Command::ALL
            .into_iter()
            .find(|c| c.name() == command)
            .ok_or_else(|| Failure::Command(0, "function is not found".into()))?;
        let query = cmd
            .query(&payload)
            .map_err(|e| Failure::Command(e.code, e.message))?;
        let store_error =
            |e: redis::RedisError| Failure::Command(500, format!("reading the store: {e}"));
        let mut conn = self.store.conn().await.map_err(store_error)?;
        let mut snapshot = Snapshot::read(&mut conn, &[query])
            .await
            .map_err(store_error)?;
        let b64 = snapshot
            .answer(query)
            .map_err(|e| Failure::Command(e.code, e.message))?;
        BASE64
            .decode(b64)
            .map_err(|e| Failure::Command(500, e.to_string()))
    }
}
