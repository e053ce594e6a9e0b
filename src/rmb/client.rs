//! Calling twins over the relay: send a signed (and, when the destination
//! has a `pk`, encrypted) request, wait for the reply with the same uid,
//! and trust it only after its signature checks out against the replying
//! twin's account.
//!
//! One [`RmbClient`] holds one relay connection under its own session id
//! (a fresh random one per client), so it never takes the place of
//! another client of the same twin; many calls may be in flight on it at
//! once. When the connection is lost every call in flight fails at once
//! with the reason, rather than waiting for its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::e2e;
use super::envelope::{self, Address, Body, Envelope, Payload, Request};
use super::error::RmbError;
use super::identity::{self, Identity};
use super::relay_link::{self, Event, Held, LinkSender, RelayOptions};
use super::twin::{Twin, TwinDb};
use crate::util::unix_time::unix_now;

/// Where a reply goes: the envelope with its frame's bytes still counted
/// against the link's read budget, so that replies read and not yet opened
/// (many calls in flight, `fleet`) stay within that budget.
type Waiter = oneshot::Sender<Result<(Envelope, Held), RmbError>>;

/// Calls in flight, by uid, with the twin each expects its reply from.
#[derive(Default)]
struct Pending {
    calls: HashMap<String, (u32, Waiter)>,
    /// Set once the connection is gone: later calls fail at once.
    closed: Option<String>,
}

/// A connected caller.
pub struct RmbClient {
    identity: Arc<Identity>,
    own: Arc<Twin>,
    sid: String,
    twins: Arc<TwinDb>,
    link: LinkSender,
    relay_url: String,
    pending: Arc<Mutex<Pending>>,
}

impl RmbClient {
    /// Finds our twin on chain, checks it can be answered, and connects to
    /// the first of `relays` that accepts us.
    pub async fn connect(
        identity: Arc<Identity>,
        twins: Arc<TwinDb>,
        relays: &[String],
        options: &RelayOptions,
    ) -> Result<RmbClient, RmbError> {
        let account = identity.account_id();
        let own_id = twins.twin_of_account(&account).await?.ok_or_else(|| {
            RmbError::Identity(format!(
                "{} account {} ({}) has no twin on this chain: create one (the grid dashboard does) with a relay and pk, see `zos-perf identity`",
                identity.key_type(),
                hex::encode(account),
                identity::ss58(&account)
            ))
        })?;
        let own = twins.twin(own_id).await?;
        check_own_twin(&identity, &own, relays);
        let sid = format!("zos-perf-{}", uuid::Uuid::new_v4().simple());
        let mut failures = Vec::new();
        for relay in relays {
            match relay_link::open(relay, &identity, own_id, Some(&sid), options).await {
                Ok(link) => {
                    let pending = Arc::new(Mutex::new(Pending::default()));
                    let sender = link.sender();
                    let relay_url = link.url.clone();
                    tokio::spawn(dispatch(link, pending.clone()));
                    return Ok(RmbClient {
                        identity,
                        own,
                        sid,
                        twins,
                        link: sender,
                        relay_url,
                        pending,
                    });
                }
                // The token is refused the same way by every relay of the
                // network: that is a set-up problem to report as such.
                Err(e @ RmbError::JwtRefused { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(relay = %relay, error = %e, "relay unreachable, trying the next");
                    failures.push(e.to_string());
                }
            }
        }
        Err(RmbError::Relay {
            url: relays.join(", "),
            reason: if failures.is_empty() {
                "no relay configured".into()
            } else {
                failures.join("; ")
            },
        })
    }

    pub fn twin_id(&self) -> u32 {
        self.own.id
    }

    pub fn session(&self) -> &str {
        &self.sid
    }

    pub fn relay_url(&self) -> &str {
        &self.relay_url
    }

    pub fn twins(&self) -> &Arc<TwinDb> {
        &self.twins
    }

    /// Whether the relay connection is gone (every call would fail at
    /// once): a long-running caller connects anew.
    pub fn is_closed(&self) -> bool {
        lock(&self.pending).closed.is_some()
    }

    /// Calls `command` on node `node` (through the node's twin).
    pub async fn call_node(
        &self,
        node: u32,
        command: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RmbError> {
        let twin = self.twins.node_twin(node).await?;
        self.call(twin, command, payload, timeout).await
    }

    /// Calls `command` on twin `twin` and returns the reply's payload.
    pub async fn call(
        &self,
        twin: u32,
        command: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RmbError> {
        let dest = self.twins.twin(twin).await?;
        if dest.relays().is_empty() {
            return Err(RmbError::NoRelay(twin));
        }
        let request = self.request(&dest, command, payload, timeout)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(reason) = &pending.closed {
                return Err(self.lost(reason));
            }
            pending.calls.insert(request.uid.clone(), (twin, tx));
        }
        let uid = request.uid.clone();
        if let Err(e) = self.link.send(&request).await {
            lock(&self.pending).calls.remove(&uid);
            return Err(e);
        }
        let (reply, held) = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply?,
            Ok(Err(_)) => return Err(self.lost("the connection task ended")),
            Err(_) => {
                lock(&self.pending).calls.remove(&uid);
                return Err(RmbError::Timeout {
                    twin,
                    after: timeout,
                });
            }
        };
        let opened = self.open_reply(&dest, reply).await;
        drop(held);
        opened
    }

    fn lost(&self, reason: &str) -> RmbError {
        RmbError::Relay {
            url: self.relay_url.clone(),
            reason: format!("connection lost before the reply: {reason}"),
        }
    }

    /// A signed request, its payload encrypted when `dest` has a `pk`.
    fn request(
        &self,
        dest: &Twin,
        command: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Envelope, RmbError> {
        let payload = match dest.public_key() {
            Some(pk) => Payload::Cipher(
                e2e::encrypt(&self.identity, pk, payload)
                    .map_err(|e| RmbError::sealing(dest.id, e))?,
            ),
            None => Payload::Plain(payload.to_vec()),
        };
        let mut env = Envelope {
            uid: uuid::Uuid::new_v4().to_string(),
            timestamp: unix_now(),
            expiration: timeout.as_secs().max(1),
            source: Some(Address::session(self.own.id, Some(self.sid.clone()))),
            destination: Some(Address::twin(dest.id)),
            message: Some(Body::Request(Request {
                command: command.to_string(),
            })),
            schema: Some(envelope::SCHEMA_JSON.to_string()),
            payload: Some(payload),
            relays: self.own.relays(),
            ..Envelope::default()
        };
        env.sign(&self.identity);
        Ok(env)
    }

    /// Checks and opens a reply from `dest`.
    async fn open_reply(&self, dest: &Arc<Twin>, reply: Envelope) -> Result<Vec<u8>, RmbError> {
        let bad = |reason: String| RmbError::BadReply {
            twin: dest.id,
            reason,
        };
        // The relay's own errors come unsigned and without a source.
        if reply.source_twin() == 0 && reply.signature.is_none() {
            return match reply.message {
                Some(Body::Error(e)) => Err(RmbError::RelayError(e.message)),
                _ => Err(bad("an unsigned envelope without a source".into())),
            };
        }
        if reply.source_twin() != dest.id {
            return Err(bad(format!(
                "the reply comes from twin {}",
                reply.source_twin()
            )));
        }
        if let Err(first) = reply.verify(&dest.account_id) {
            // The twin may have changed its keys since it was cached.
            self.twins.forget_twin(dest.id).await;
            let fresh = self.twins.twin(dest.id).await?;
            reply
                .verify(&fresh.account_id)
                .map_err(|_| bad(format!("signature rejected: {first}")))?;
        }
        let payload = match &reply.payload {
            Some(Payload::Cipher(c)) => {
                let pk = dest
                    .public_key()
                    .ok_or_else(|| bad("an encrypted reply, but the twin has no pk".into()))?;
                e2e::decrypt(&self.identity, pk, c).map_err(|e| bad(e.to_string()))?
            }
            Some(Payload::Plain(p)) => p.clone(),
            None => Vec::new(),
        };
        match reply.message {
            Some(Body::Response(_)) => Ok(payload),
            Some(Body::Error(e)) => Err(RmbError::Remote {
                twin: dest.id,
                code: e.code,
                message: e.message,
            }),
            _ => Err(bad("neither a response nor an error".into())),
        }
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Warns about an own twin that cannot work as it is on chain.
fn check_own_twin(identity: &Identity, own: &Twin, relays: &[String]) {
    let hosts = own.relays();
    if hosts.is_empty() {
        tracing::warn!(
            twin = own.id,
            "our twin has no relay on chain: replies cannot be routed back to us"
        );
    } else if !relays
        .iter()
        .filter_map(|r| relay_link::relay_host(r))
        .any(|h| hosts.contains(&h))
    {
        tracing::warn!(twin = own.id, on_chain = ?hosts, "our twin's relay on chain is not the relay we connect to: replies may not reach us");
    }
    match own.public_key() {
        Some(pk) if pk != identity.secp256k1_public() => tracing::warn!(
            twin = own.id,
            "our twin's pk on chain is not this secret's key: encrypted replies cannot be read"
        ),
        _ => {}
    }
}

/// A frame nobody can match to a call. With a single call in flight it can
/// only be its reply: fail it now.
fn fail_lone_call(pending: &Mutex<Pending>, url: &str, why: String) {
    let mut p = lock(pending);
    tracing::warn!(relay = %url, reason = %why, "unreadable frame from the relay");
    if p.calls.len() == 1 {
        if let Some(uid) = p.calls.keys().next().cloned() {
            if let Some((twin, tx)) = p.calls.remove(&uid) {
                let _ = tx.send(Err(RmbError::BadReply { twin, reason: why }));
            }
        }
    }
}

/// Hands each reply to the call waiting for its uid; ends when the
/// connection does, failing every call still waiting.
async fn dispatch(mut link: relay_link::Link, pending: Arc<Mutex<Pending>>) {
    let reason = loop {
        match link.events.recv().await {
            Some(Event::Envelope(env, held)) => {
                let waiter = lock(&pending).calls.remove(&env.uid);
                match waiter {
                    Some((_, tx)) => {
                        let _ = tx.send(Ok((*env, held)));
                    }
                    None => {
                        tracing::debug!(uid = %env.uid, source = env.source_twin(), "envelope for no call in flight, skipped")
                    }
                }
            }
            Some(Event::Garbage(why)) => fail_lone_call(&pending, &link.url, why),
            Some(Event::Oversized(n)) => fail_lone_call(
                &pending,
                &link.url,
                format!("a frame of {n} bytes, over the size limit"),
            ),
            Some(Event::Closed(why)) => break why,
            None => break "the connection task ended".to_string(),
        }
    };
    let mut p = lock(&pending);
    p.closed = Some(reason.clone());
    for (_, (_, tx)) in p.calls.drain() {
        let _ = tx.send(Err(RmbError::Relay {
            url: link.url.clone(),
            reason: format!("connection lost before the reply: {reason}"),
        }));
    }
}
