//! What to do with one popped message: drop it, let it expire, or answer it
//! (with the query to run or the error to send).
//!
//! Well-formed requests take one strict, borrowing parse. Only when that
//! fails is the message looked at again as loose JSON, to find whether
//! there is anyone to answer (`ret`) and which field is at fault, so the
//! error reply names it.

use std::borrow::Cow;

use base64::Engine;
use serde_json::{Map, Value};

use super::commands::{Command, Query};
use super::error::{BusError, ErrorCode};
use super::message::{decoded_len, Reply, Request, BASE64, MAX_PAYLOAD, VERSION};
use super::snapshot::Snapshot;
use crate::node_redis::keys;
use crate::util::text::clip;

/// The fate of one message.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// Nothing to reply to: not JSON, not an object, or no usable `ret`.
    Dropped(String),
    /// `now + exp` has passed: the caller gave up.
    Expired,
    Answer(Answer<'a>),
}

/// A request that gets exactly one reply.
#[derive(Debug)]
pub struct Answer<'a> {
    pub ret: Cow<'a, str>,
    pub reference: Option<Cow<'a, str>>,
    pub dst: Cow<'a, str>,
    /// Unix second after which nobody waits for the reply any more.
    pub deadline: u64,
    pub outcome: Result<Query, BusError>,
}

impl Answer<'_> {
    /// The reply to push onto `ret`, encoded, answered from `snapshot` at
    /// unix time `now`; and whether it is an error reply. Pure (no Redis),
    /// so the whole path from popped bytes to reply can be fuzzed.
    pub fn reply(&self, snapshot: &mut Snapshot, now: u64) -> serde_json::Result<(Vec<u8>, bool)> {
        self.reply_coded(snapshot, now)
            .map(|(encoded, code)| (encoded, code.is_some()))
    }

    /// As [`Answer::reply`], with the error code of an error reply.
    pub(crate) fn reply_coded(
        &self,
        snapshot: &mut Snapshot,
        now: u64,
    ) -> serde_json::Result<(Vec<u8>, Option<u32>)> {
        let reference = self.reference.as_deref();
        let result = match &self.outcome {
            Err(e) => Err(e.clone()),
            Ok(query) => snapshot
                .dat(*query)
                .map(|d| Reply::encode_ok_parts(reference, &self.dst, [d.head, d.tail()], now)),
        };
        match result {
            Ok(encoded) => Ok((encoded?, None)),
            Err(e) => {
                let code = e.code;
                Ok((
                    Reply::error(reference, &self.dst, e, now).encode()?,
                    Some(code),
                ))
            }
        }
    }
}

impl Answer<'_> {
    /// About how many bytes the encoded reply takes (never less), known
    /// before it is made: what a transport budgets for.
    pub(crate) fn reply_estimate(&self, snapshot: &mut Snapshot) -> usize {
        let dat = match &self.outcome {
            Ok(query) => snapshot.dat(*query).map_or(0, |d| d.len()),
            Err(_) => 0,
        };
        let message = match &self.outcome {
            Err(e) => e.message.len(),
            Ok(_) => 256,
        };
        // Escaping may multiply a text by six (`\u0001`).
        dat + 6 * (self.dst.len() + self.reference.as_deref().map_or(0, str::len) + message) + 128
    }
}

/// The peer's own reply list.
pub(crate) const PEER_REPLY: &str = "msgbus.system.reply";

/// Where a reply may go. The peer names [`PEER_REPLY`], local clients a
/// list of their own under `msgbus.` (`msgbus.<client>.<id>`). A reply
/// pushed into a request queue would be read by that service as a request,
/// so the namespaces of the node's own services, `msgbus.zos.` and
/// `msgbus.system.` (other than [`PEER_REPLY`]), are refused, and so is
/// anything outside `msgbus.` or over 1,024 bytes.
fn unusable_ret(ret: &str) -> Option<String> {
    if ret.is_empty() {
        return Some("empty \"ret\"".into());
    }
    let shown = || clip(ret, 64);
    if !ret.starts_with(keys::MSGBUS_PREFIX) || ret.len() > 1024 {
        return Some(format!("\"ret\" {:?} is not a msgbus. list", shown()));
    }
    if ret != PEER_REPLY && (ret.starts_with("msgbus.zos.") || ret.starts_with("msgbus.system.")) {
        return Some(format!(
            "\"ret\" {:?} is in a request namespace (msgbus.zos., msgbus.system.): refusing to push a reply there",
            shown()
        ));
    }
    None
}

/// Decides the fate of `raw`, popped from the list of `cmd`, at unix time
/// `now`, tolerating a sender's clock up to `skew` seconds behind ours.
///
/// Expiry comes first: a request whose `now + exp + skew` has passed is
/// never answered, whatever else is wrong with it (nobody waits for it).
pub fn triage(cmd: Command, raw: &[u8], now: u64, skew: u64) -> Incoming<'_> {
    // Comparing against `now - skew` is comparing `sent + exp + skew`
    // against `now`, without overflow.
    let now = now.saturating_sub(skew);
    let req = match serde_json::from_slice::<Request>(raw) {
        Ok(req) => req,
        Err(strict) => return diagnose(raw, &strict, now, skew),
    };
    if let Some(why) = unusable_ret(&req.ret) {
        return Incoming::Dropped(why);
    }
    if req.expired_at(now) {
        return Incoming::Expired;
    }
    if let Some(why) = oversized_src(&req.src) {
        return Incoming::Dropped(why);
    }
    let deadline = req.now.saturating_add(req.exp).saturating_add(skew);
    let fields = [
        ("ref", req.reference.as_deref()),
        ("cmd", Some(req.cmd.as_ref())),
        ("tag", req.tag.as_deref()),
        ("shm", req.shm.as_deref()),
    ];
    if let Some(err) = oversized_field(&fields) {
        return Incoming::Answer(Answer {
            deadline,
            ret: req.ret,
            // Not echoed when it is the one too long.
            reference: req.reference.filter(|r| r.len() <= MAX_FIELD),
            dst: req.src,
            outcome: Err(err),
        });
    }
    let outcome = if req.ver != VERSION {
        Err(unsupported(&req.ver.to_string()))
    } else {
        payload(cmd, &req.dat)
    };
    Incoming::Answer(Answer {
        deadline,
        ret: req.ret,
        reference: req.reference,
        dst: req.src,
        outcome,
    })
}

/// The longest `ref`, `cmd`, `tag` or `shm` accepted (the peer's are
/// UUIDs and short names). A longer one is answered with error 3 and not
/// echoed back.
pub const MAX_FIELD: usize = 1024;
/// The longest `src`: a twin id and a connection id. A request with a
/// longer one cannot be addressed without echoing it, so it is dropped.
pub const MAX_SRC: usize = 256;

fn oversized_src(src: &str) -> Option<String> {
    (src.len() > MAX_SRC).then(|| {
        format!(
            "\"src\" is {} bytes long; the limit is {MAX_SRC}",
            src.len()
        )
    })
}

fn oversized_field(fields: &[(&str, Option<&str>)]) -> Option<BusError> {
    fields.iter().find_map(|(name, value)| {
        let len = value.map_or(0, str::len);
        (len > MAX_FIELD).then(|| {
            BusError::new(
                ErrorCode::PayloadTooLarge,
                format!("field {name:?} is {len} bytes long; the limit is {MAX_FIELD}"),
            )
        })
    })
}

/// The size limit first (from the length alone), then base64, then the
/// command's own reading of the payload.
fn payload(cmd: Command, dat: &str) -> Result<Query, BusError> {
    let size = decoded_len(dat);
    if size > MAX_PAYLOAD {
        return Err(BusError::new(
            ErrorCode::PayloadTooLarge,
            format!("payload too large: {size} bytes, the limit is {MAX_PAYLOAD}"),
        ));
    }
    if !cmd.reads_payload() {
        return cmd.query(&[]);
    }
    let bytes = BASE64.decode(dat.as_bytes()).map_err(|e| {
        BusError::new(
            ErrorCode::InvalidBase64,
            format!("dat is not valid base64: {e}"),
        )
    })?;
    cmd.query(&bytes)
}

fn unsupported(ver: &str) -> BusError {
    BusError::new(
        ErrorCode::UnsupportedVersion,
        format!(
            "unsupported protocol version {}: this service speaks version {VERSION}",
            clip(ver, 40)
        ),
    )
}

/// The slow path for a message the strict parse refused.
fn diagnose<'a>(raw: &[u8], strict: &serde_json::Error, now: u64, skew: u64) -> Incoming<'a> {
    let value: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return Incoming::Dropped(format!("not JSON: {e}")),
    };
    let Value::Object(map) = value else {
        return Incoming::Dropped("not a JSON object".into());
    };
    let ret = match map.get("ret") {
        Some(Value::String(s)) => match unusable_ret(s) {
            None => s.clone(),
            Some(why) => return Incoming::Dropped(why),
        },
        Some(_) => return Incoming::Dropped("\"ret\" is not a string".into()),
        None => return Incoming::Dropped("no \"ret\"".into()),
    };
    let string = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (dst, reference) = (string("src").unwrap_or_default(), string("ref"));
    if let Some(why) = oversized_src(&dst) {
        return Incoming::Dropped(why);
    }
    let reference = reference.filter(|r| r.len() <= MAX_FIELD);
    let int = |key: &str| map.get(key).and_then(Value::as_u64);
    let deadline = match (int("now"), int("exp")) {
        (Some(sent), Some(exp)) if sent.saturating_add(exp) < now => return Incoming::Expired,
        (Some(sent), Some(exp)) => sent.saturating_add(exp).saturating_add(skew),
        _ => now.saturating_add(skew),
    };
    let err = fault(&map, strict);
    Incoming::Answer(Answer {
        ret: Cow::Owned(ret),
        reference: reference.map(Cow::Owned),
        dst: Cow::Owned(dst),
        deadline,
        outcome: Err(err),
    })
}

/// The first thing wrong with the envelope of a request that has not
/// expired, in the order a reader needs the fields.
fn fault(map: &Map<String, Value>, strict: &serde_json::Error) -> BusError {
    match map.get("ver") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => return unsupported(&v.to_string()),
        None => return unsupported("(none)"),
    }
    let is_str = |k: &str| matches!(map.get(k), Some(Value::String(_)));
    let str_or_null = |k: &str| matches!(map.get(k), None | Some(Value::Null | Value::String(_)));
    if !is_str("src") {
        return BusError::invalid_request("src", "must be a string");
    }
    if !str_or_null("ref") {
        return BusError::invalid_request("ref", "must be a string or null");
    }
    for key in ["now", "exp"] {
        if map.get(key).and_then(Value::as_u64).is_none() {
            return BusError::invalid_request(key, "must be a non-negative integer");
        }
    }
    for key in ["dat", "cmd"] {
        if map.contains_key(key) && !is_str(key) {
            return BusError::invalid_request(key, "must be a string");
        }
    }
    for key in ["tag", "shm"] {
        if !str_or_null(key) {
            return BusError::invalid_request(key, "must be a string or null");
        }
    }
    BusError::new(
        ErrorCode::InvalidRequest,
        format!("invalid request: {strict}"),
    )
}

#[cfg(test)]
mod tests;
