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
use crate::redis::keys;
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

    /// Whether this is a `zos.perf.history` request (its records are read
    /// from Redis for the batch).
    pub fn asks_history(&self) -> bool {
        matches!(self.outcome, Ok(Query::History(_)))
    }

    /// As [`Answer::reply`], with the error code of an error reply.
    pub fn reply_coded(
        &self,
        snapshot: &mut Snapshot,
        now: u64,
    ) -> serde_json::Result<(Vec<u8>, Option<u32>)> {
        let reference = self.reference.as_deref();
        let result = match &self.outcome {
            Err(e) => Err(e.clone()),
            Ok(query) => snapshot
                .answer(*query)
                .map(|b64| Reply::encode_ok(reference, &self.dst, b64, now)),
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

/// The peer's own reply list.
pub const PEER_REPLY: &str = "msgbus.system.reply";

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
mod tests {
    use super::*;
    use serde_json::json;

    fn req(fields: Value) -> Vec<u8> {
        let mut base = json!({"ver": 1, "ref": "r1", "src": "42:abc", "cmd": "zos.perf.get",
            "exp": 60, "dat": BASE64.encode(br#"{"Name":"iperf"}"#), "tag": null,
            "ret": "msgbus.test.x", "shm": null, "now": 1000});
        for (k, v) in fields.as_object().expect("object") {
            if v == &json!("<remove>") {
                base.as_object_mut().expect("object").remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        serde_json::to_vec(&base).expect("encode")
    }

    fn error_of(raw: &[u8]) -> BusError {
        match triage(Command::Get, raw, 1000, 0) {
            Incoming::Answer(a) => a.outcome.expect_err("should be an error"),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_request_is_answered_with_its_query() {
        match triage(Command::Get, &req(json!({})), 1000, 0) {
            Incoming::Answer(a) => {
                assert_eq!(a.outcome, Ok(Query::One("iperf")));
                assert_eq!(
                    (a.ret.as_ref(), a.dst.as_ref()),
                    ("msgbus.test.x", "42:abc")
                );
                assert_eq!(a.reference.as_deref(), Some("r1"));
                assert_eq!(a.deadline, 1060);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn envelope_faults_name_the_field() {
        let e = error_of(&req(json!({"exp": -1})));
        assert_eq!((e.code, e.message.contains("\"exp\"")), (1, true), "{e}");
        let e = error_of(&req(json!({"src": 42})));
        assert_eq!((e.code, e.message.contains("\"src\"")), (1, true), "{e}");
        let e = error_of(&req(json!({"tag": 3})));
        assert_eq!((e.code, e.message.contains("\"tag\"")), (1, true), "{e}");
        let e = error_of(&req(json!({"ver": "1"})));
        assert_eq!(e.code, 2, "{e}");
        let e = error_of(&req(json!({"ver": "<remove>"})));
        assert_eq!(e.code, 2, "{e}");
    }

    #[test]
    fn expired_requests_are_not_answered_even_when_oddly_formed() {
        assert!(matches!(
            triage(Command::Get, &req(json!({"now": 900, "exp": 10})), 1000, 0),
            Incoming::Expired
        ));
        assert!(matches!(
            triage(
                Command::Get,
                &req(json!({"now": 900, "exp": 10, "tag": 5})),
                1000,
                0
            ),
            Incoming::Expired
        ));
    }

    #[test]
    fn expiry_is_decided_before_the_version() {
        for raw in [
            req(json!({"now": 900, "exp": 10, "ver": 7})),
            req(json!({"now": 900, "exp": 10, "ver": "<remove>"})),
            req(json!({"now": 900, "exp": 10, "ver": "x", "src": 3})),
        ] {
            assert!(
                matches!(triage(Command::Get, &raw, 1000, 0), Incoming::Expired),
                "{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    #[test]
    fn a_sender_clock_behind_ours_is_tolerated_up_to_the_skew() {
        // Sent at 900 with 30 s to live, popped at 1000 by our clock.
        let raw = req(json!({"now": 900, "exp": 30}));
        assert!(matches!(
            triage(Command::Get, &raw, 1000, 0),
            Incoming::Expired
        ));
        match triage(Command::Get, &raw, 1000, 300) {
            Incoming::Answer(a) => {
                assert_eq!(a.outcome, Ok(Query::One("iperf")));
                assert_eq!(a.deadline, 1230);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            triage(Command::Get, &raw, 1231, 300),
            Incoming::Expired
        ));
    }

    #[test]
    fn oversized_fields_are_refused_and_never_echoed() {
        let long = "r".repeat(MAX_FIELD + 1);
        match triage(Command::Get, &req(json!({"ref": long})), 1000, 0) {
            Incoming::Answer(a) => {
                assert_eq!(a.reference, None);
                let e = a.outcome.expect_err("too long");
                assert_eq!(e.code, 3, "{e}");
                assert!(e.message.contains("\"ref\""), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match triage(Command::Get, &req(json!({"tag": long})), 1000, 0) {
            Incoming::Answer(a) => {
                assert_eq!(a.reference.as_deref(), Some("r1"));
                assert_eq!(a.outcome.expect_err("too long").code, 3);
            }
            other => panic!("{other:?}"),
        }
        let src = "s".repeat(MAX_SRC + 1);
        assert!(matches!(
            triage(Command::Get, &req(json!({"src": src})), 1000, 0),
            Incoming::Dropped(_)
        ));
        // The slow path (a field of the wrong type) bounds them too.
        match triage(Command::Get, &req(json!({"ref": long, "tag": 5})), 1000, 0) {
            Incoming::Answer(a) => assert_eq!(a.reference, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_to_reply_to_is_dropped() {
        for raw in [
            b"not json".to_vec(),
            b"[1,2]".to_vec(),
            req(json!({"ret": "<remove>"})),
            req(json!({"ret": ""})),
            req(json!({"ret": "perf.iperf"})),
            req(json!({"ret": "msgbus"})),
            req(json!({"ret": 5})),
            req(json!({"ret": "msgbus.zos.statistics.get"})),
            req(json!({"ret": "msgbus.zos.perf.get"})),
            req(json!({"ret": "msgbus.system.local"})),
        ] {
            assert!(
                matches!(triage(Command::Get, &raw, 1000, 0), Incoming::Dropped(_)),
                "{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    #[test]
    fn ret_is_used_up_to_1024_bytes() {
        let ret = |len: usize| format!("msgbus.{}", "x".repeat(len - "msgbus.".len()));
        match triage(Command::Get, &req(json!({ "ret": ret(1024) })), 1000, 0) {
            Incoming::Answer(a) => assert_eq!(a.ret.len(), 1024),
            other => panic!("1024 bytes: {other:?}"),
        }
        assert!(matches!(
            triage(Command::Get, &req(json!({ "ret": ret(1025) })), 1000, 0),
            Incoming::Dropped(_)
        ));
    }

    #[test]
    fn the_peers_reply_list_and_client_lists_are_usable() {
        for ret in [
            "msgbus.system.reply",
            "msgbus.test.x",
            "msgbus.zos-perf-call.1f",
        ] {
            assert!(
                matches!(
                    triage(Command::Get, &req(json!({ "ret": ret })), 1000, 0),
                    Incoming::Answer(_)
                ),
                "{ret}"
            );
        }
    }

    #[test]
    fn get_all_ignores_its_payload() {
        match triage(
            Command::GetAll,
            &req(json!({"dat": "!!not base64"})),
            1000,
            0,
        ) {
            Incoming::Answer(a) => assert_eq!(a.outcome, Ok(Query::All)),
            other => panic!("{other:?}"),
        }
    }
}
