//! The invariants of the bus request path, checked on one message popped
//! from a request list: shared by the fuzz target `bus_request` and by
//! `tests/it/fuzz_regressions.rs` (which replays `fuzz/regressions/bus_request/`).
//!
//! The path is the handler's own, without Redis: `triage` decides the fate
//! of the raw bytes, `Answer::reply` encodes the reply from a store
//! [`Snapshot`]. The oracle reads the same bytes as loose JSON and checks:
//!
//! - nothing panics (the caller's harness sees a panic as a crash);
//! - a JSON object whose `ret` names a `msgbus.` list (at most 1,024 bytes,
//!   not under `msgbus.zos.` or `msgbus.system.` but `msgbus.system.reply`)
//!   is answered or, when `now + exp` has passed, expired (never answered,
//!   whatever else is wrong with it); anything else is dropped (bytes that
//!   are not UTF-8 only in unknown fields may be answered: serde skips
//!   those unread);
//! - an answer goes to that `ret`, exactly once, with the request's `ref` and
//!   `src` as `ref` and `dst` (a `src` over `MAX_SRC` bytes is dropped, a
//!   `ref` over `MAX_FIELD` bytes is refused with an error and not echoed);
//! - the reply is a JSON object of exactly `ver ref dat dst shm now err`;
//!   an error reply has `dat` `""`, no `shm`, a known code and a bounded
//!   message; a success carries the snapshot's JSON for what was asked;
//! - every message we write (error replies, drop reasons) stays short,
//!   whatever the input: a caller's junk must not blow up replies and logs.

use base64::Engine;
use serde_json::{Map, Value};
use zos_perf::bus::commands::{Command, Query};
use zos_perf::bus::message::{Reply, BASE64, JSON_SCHEMA, VERSION};
use zos_perf::bus::snapshot::Snapshot;
use zos_perf::bus::triage::{triage, Incoming, MAX_FIELD, MAX_SRC};
use zos_perf::bus::ErrorCode;
use zos_perf::tasks::NAMES;

/// The unix time the messages are popped at.
pub const NOW: u64 = 1_700_000_000;

/// The longest message (error reply or drop reason) any input may cause.
pub const MAX_MESSAGE: usize = 2048;

/// Two stores: one with a result of each kind (absent, JSON, not JSON,
/// JSON with escapes and non-ASCII), one with all four present.
fn stores() -> [Vec<(&'static str, Option<String>)>; 2] {
    [
        vec![
            (NAMES[0], None),
            (
                NAMES[1],
                Some(r#"{"name":"cpu-benchmark","result":{"single":1.5}}"#.into()),
            ),
            (NAMES[2], Some("not json {".into())),
            (
                NAMES[3],
                Some("{\"s\":\"é\\\"\\n✓\",\"n\":[1,2.5,null]}".into()),
            ),
        ],
        NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, Some(format!("{{\"name\":{n:?},\"i\":{i}}}"))))
            .collect(),
    ]
}

/// What the store holds for `name`, if it is JSON (what may be served).
fn served(store: &[(&'static str, Option<String>)], name: &str) -> Option<String> {
    store
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.clone())
        .filter(|v| serde_json::from_str::<Value>(v).is_ok())
}

/// Runs `raw` through both commands and both stores, panicking on any
/// broken invariant.
pub fn check(raw: &[u8]) {
    // The strict parse skips unknown fields without validating their UTF-8
    // (serde's `IgnoredAny`), so a request whose only invalid bytes lie
    // there is answered: the oracle reads such bytes lossily and lets them
    // be either answered or dropped.
    let text = String::from_utf8_lossy(raw);
    let utf8 = matches!(text, std::borrow::Cow::Borrowed(_));
    let loose: Option<Map<String, Value>> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let usable_ret = loose
        .as_ref()
        .and_then(|m| m.get("ret"))
        .and_then(Value::as_str)
        .filter(|s| s.starts_with("msgbus.") && s.len() <= 1024)
        .filter(|s| {
            *s == "msgbus.system.reply"
                || !(s.starts_with("msgbus.zos.") || s.starts_with("msgbus.system."))
        });
    for cmd in Command::ALL {
        for store in stores() {
            check_one(cmd, raw, utf8, loose.as_ref(), usable_ret, &store);
        }
    }
}

fn check_one(
    cmd: Command,
    raw: &[u8],
    utf8: bool,
    loose: Option<&Map<String, Value>>,
    usable_ret: Option<&str>,
    store: &[(&'static str, Option<String>)],
) {
    let answer = match triage(cmd, raw, NOW, 0) {
        Incoming::Dropped(reason) => {
            let long_src = loose
                .and_then(|m| m.get("src"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.len() > MAX_SRC);
            assert!(
                usable_ret.is_none() || !utf8 || long_src,
                "dropped a request with a usable ret: {reason}"
            );
            assert!(
                reason.len() <= MAX_MESSAGE,
                "drop reason of {} bytes",
                reason.len()
            );
            return;
        }
        Incoming::Expired => {
            let map = loose.expect("expired: the request is a JSON object");
            assert!(usable_ret.is_some(), "expired without a usable ret");
            // Expiry is decided first, whatever the version says.
            let (sent, exp) = times(map).expect("expired: now and exp are integers");
            assert!(
                sent.saturating_add(exp) < NOW,
                "expired but now + exp is not past"
            );
            return;
        }
        Incoming::Answer(answer) => answer,
    };
    let map = loose.expect("answered: the request is a JSON object");
    let ret = usable_ret.expect("answered: the request has a usable ret");
    assert_eq!(answer.ret, ret, "answer goes to the request's ret");

    // The reference and destination are the request's, or the reply is an
    // error (and then carries what could be read of them).
    // An oversized `ref` is refused and never echoed.
    let (want_ref, ref_ok) = match map.get("ref") {
        None | Some(Value::Null) => (None, true),
        Some(Value::String(s)) if s.len() > MAX_FIELD => (None, false),
        Some(Value::String(s)) => (Some(s.as_str()), true),
        Some(_) => (None, false),
    };
    let (want_dst, dst_ok) = match map.get("src") {
        Some(Value::String(s)) => (s.as_str(), true),
        _ => ("", false),
    };
    assert_eq!(answer.reference.as_deref(), want_ref, "answer ref");
    assert_eq!(answer.dst, want_dst, "answer dst");
    if let Some((sent, exp)) = times(map) {
        assert_eq!(answer.deadline, sent.saturating_add(exp), "deadline");
        assert!(
            sent.saturating_add(exp) >= NOW,
            "answered an expired request"
        );
    }
    if answer.outcome.is_ok() {
        assert!(ref_ok && dst_ok, "a malformed ref or src was not an error");
        assert_eq!(map.get("ver").and_then(Value::as_u64), Some(VERSION), "ver");
    }
    if let Ok(Query::One(name)) = answer.outcome {
        assert_eq!(cmd, Command::Get, "only get asks for one result");
        assert_eq!(
            payload_name(map).as_deref(),
            Some(name),
            "the name asked for"
        );
    }
    if answer.outcome == Ok(Query::All) {
        assert_eq!(cmd, Command::GetAll, "only get_all asks for all results");
    }

    let mut snapshot = Snapshot::new(store.to_vec());
    let (bytes, is_error) = answer.reply(&mut snapshot, NOW).expect("the reply encodes");
    let reply: Value = serde_json::from_slice(&bytes).expect("the reply is JSON");
    let reply = reply.as_object().expect("the reply is a JSON object");
    let mut keys: Vec<&str> = reply.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["dat", "dst", "err", "now", "ref", "shm", "ver"],
        "reply fields"
    );
    assert_eq!(reply["ver"], Value::from(VERSION), "reply ver");
    assert_eq!(reply["ref"].as_str(), want_ref, "reply ref");
    assert!(
        want_ref.is_some() || reply["ref"].is_null(),
        "reply ref is null"
    );
    assert_eq!(reply["dst"], Value::from(want_dst), "reply dst");
    assert_eq!(reply["now"], Value::from(NOW), "reply now");
    let typed: Reply = serde_json::from_slice(&bytes).expect("the reply reads back as a Reply");

    if is_error {
        assert_eq!(reply["dat"], Value::from(""), "error replies have dat \"\"");
        assert!(reply["shm"].is_null(), "error replies have no shm");
        let err = reply["err"].as_object().expect("error replies carry err");
        let mut keys: Vec<&str> = err.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message"], "err fields");
        let code = err["code"].as_u64().expect("err.code is an integer");
        let code = u32::try_from(code).ok().and_then(ErrorCode::from_code);
        assert!(code.is_some(), "err.code is one of ours: {}", err["code"]);
        let message = err["message"].as_str().expect("err.message is a string");
        assert!(!message.is_empty(), "err.message is empty");
        assert!(
            message.len() <= MAX_MESSAGE,
            "err.message of {} bytes",
            message.len()
        );
        assert!(typed.result().is_err(), "an error reply has no result");
        return;
    }
    assert!(reply["err"].is_null(), "success replies have err null");
    assert_eq!(reply["shm"], Value::from(JSON_SCHEMA), "success shm");
    assert!(ref_ok && dst_ok, "a malformed request got a success reply");
    let data = typed.result().expect("a success reply has a result");
    assert_eq!(
        BASE64.encode(&data),
        reply["dat"].as_str().unwrap_or_default()
    );
    let want = match answer.outcome {
        Ok(Query::One(name)) => served(store, name).expect("served only what is stored as JSON"),
        Ok(Query::All) => {
            let parts: Vec<String> = NAMES.iter().filter_map(|n| served(store, n)).collect();
            format!("[{}]", parts.join(","))
        }
        // No history is read into this snapshot: a history query is
        // answered 7 (result not found), an error reply, above.
        Ok(Query::History(_)) => panic!("a history query got a success reply"),
        Err(_) => panic!("a failed request got a success reply"),
    };
    assert_eq!(
        String::from_utf8(data).expect("result is UTF-8"),
        want,
        "result"
    );
}

/// `now` and `exp` when both are non-negative integers.
fn times(map: &Map<String, Value>) -> Option<(u64, u64)> {
    Some((map.get("now")?.as_u64()?, map.get("exp")?.as_u64()?))
}

/// The task name a `zos.perf.get` payload asks for: the one key equal to
/// `name` in any case, in the JSON object that `dat` is the base64 of.
fn payload_name(map: &Map<String, Value>) -> Option<String> {
    let dat = map.get("dat")?.as_str()?;
    let bytes = BASE64.decode(dat).ok()?;
    let Value::Object(payload) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    let mut names = payload
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("name"));
    let (_, name) = names.next()?;
    if names.next().is_some() {
        return None;
    }
    name.as_str().map(str::to_string)
}
