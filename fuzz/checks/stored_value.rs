//! The invariants of a stored value as the bus and the CLI read it: raw
//! bytes (any bytes: Redis is open to anyone on the node), checked by
//! `store::checked` and served from a bus `Snapshot`. Shared by the fuzz
//! target `stored_value` and by `tests/it/fuzz_regressions.rs`.
//!
//! - nothing panics;
//! - a value is served exactly when it is UTF-8 JSON, and served as stored;
//! - anything else is error 8 whose message names the key and stays short;
//! - a value reported too large or of another type is error 8 too, and
//!   `get_all` leaves every unservable value out.

use base64::Engine;
use zos_perf::bus::commands::Query;
use zos_perf::bus::message::BASE64;
use zos_perf::bus::snapshot::Snapshot;
use zos_perf::store::checked;
use zos_perf::store::fetch::Fetched;

/// The longest error message any stored value may cause.
pub const MAX_MESSAGE: usize = 2048;

pub fn check(data: &[u8]) {
    let json = std::str::from_utf8(data)
        .ok()
        .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok());
    match checked("perf.iperf", Fetched::Bytes(data.to_vec())) {
        Ok(Some(text)) => assert_eq!(Some(text.as_str()), json, "served what is not JSON"),
        Ok(None) => panic!("bytes read as absent"),
        Err(e) => {
            assert!(json.is_none(), "refused JSON: {e:#}");
            assert!(format!("{e:#}").contains("perf.iperf"), "{e:#}");
        }
    }
    let mut snapshot = Snapshot::fetched(vec![
        ("iperf", Fetched::Bytes(data.to_vec())),
        ("healthcheck", Fetched::TooLarge(data.len())),
        ("cpu-benchmark", Fetched::WrongType("hash".into())),
    ]);
    match snapshot.answer(Query::One("iperf")) {
        Ok(b64) => {
            let served = BASE64.decode(b64).expect("base64");
            assert_eq!(Some(served.as_slice()), json.map(str::as_bytes));
        }
        Err(e) => {
            assert!(json.is_none(), "refused JSON: {e}");
            assert_eq!(e.code, 8);
            assert!(e.message.len() <= MAX_MESSAGE, "{} bytes", e.message.len());
        }
    }
    for name in ["healthcheck", "cpu-benchmark"] {
        let e = snapshot.answer(Query::One(name)).expect_err(name);
        assert_eq!(e.code, 8);
        assert!(e.message.contains(&format!("perf.{name}")), "{e}");
    }
    let all = snapshot.answer(Query::All).expect("get_all");
    let all: serde_json::Value =
        serde_json::from_slice(&BASE64.decode(all).expect("base64")).expect("get_all is JSON");
    let want = usize::from(json.is_some());
    assert_eq!(all.as_array().map(Vec::len), Some(want), "get_all: {all}");
}
