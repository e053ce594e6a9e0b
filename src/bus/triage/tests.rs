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
