//! The daemon serving zos.perf over the relay (`[bus.relay] enabled`):
//! `zos-perf run` connects to the test relay as its own twin and answers
//! `zos-perf call --twin` from another twin, through the same store as the
//! local bus; after the relay drops every connection it reconnects and
//! answers again.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::interop::rmb_js_batch;
use common::rmbgrid::{spawn_serving, store_fresh_cpu, RmbGrid, MNEMONIC_A, MNEMONIC_B};
use common::{KillOnDrop, RedisServer};
use serde_json::{json, Value};
use zos_perf::rmb::error::exit;
use zos_perf::rmb::{Identity, KeyType};

const CALLER: u32 = 100;
const SERVER: u32 = 300;

fn wait_online(g: &RmbGrid) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !g.relay.is_online(SERVER, None) {
        assert!(
            Instant::now() < deadline,
            "the daemon never came online on the relay"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn call(g: &RmbGrid, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zos-perf"))
        .arg("call")
        .args(args)
        .args(g.caller_args())
        .args(["--kernel-cmdline", "/dev/null", "--timeout", "5s"])
        .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
        .env_remove("ZOS_PERF_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `call --twin 300 zos.perf.get {"Name":"cpu-benchmark"}`, which must
/// succeed: the JSON it prints.
fn get_cpu(g: &RmbGrid) -> Value {
    let out = call(
        g,
        &[
            "--twin",
            "300",
            "zos.perf.get",
            r#"{"Name":"cpu-benchmark"}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A redis holding a fresh cpu-benchmark result, the grid (caller twin
/// 100, serving twin 300) and `zos-perf run` serving over the relay.
struct Served {
    daemon: KillOnDrop,
    g: RmbGrid,
    redis: RedisServer,
    stored: Value,
    _config: tempfile::NamedTempFile,
}

fn served() -> Served {
    let redis = RedisServer::start();
    // A fresh result: the daemon does not run a task that has one (and
    // deletes the results of disabled tasks, so this one stays enabled).
    let stored = store_fresh_cpu(&redis);
    let g = RmbGrid::start();
    g.add_caller_and_server(CALLER, SERVER, true);
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let text = g.serving_config(Some(&redis.url()), "chain_timeout = \"2s\"\n");
    config.write_all(text.as_bytes()).unwrap();
    let daemon = spawn_serving(config.path());
    wait_online(&g);
    Served {
        daemon,
        g,
        redis,
        stored,
        _config: config,
    }
}

#[test]
fn the_daemon_answers_over_the_relay_and_comes_back_after_a_relay_restart() {
    let Served {
        g,
        redis,
        stored,
        daemon: _daemon,
        ..
    } = served();

    assert_eq!(get_cpu(&g), stored);
    let out = call(&g, &["--twin", "300", "zos.perf.get_all"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([stored])
    );
    let out = call(&g, &["--twin", "300", "zos.perf.nope"]);
    assert_eq!(out.status.code(), Some(i32::from(exit::REMOTE_ERROR)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("function is not found"));
    let out = call(
        &g,
        &["--twin", "300", "zos.perf.get", r#"{"Name":"iperf"}"#],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("result not found"));

    // The relay drops every connection, as a restart does: the daemon
    // comes back with a fresh token and answers again.
    g.relay.kick_all();
    let deadline = Instant::now() + Duration::from_secs(2);
    while g.relay.is_online(SERVER, None) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_online(&g);
    assert_eq!(get_cpu(&g), stored, "after the restart");
    // The local bus keeps working beside it.
    let local = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
        .args([
            "call",
            "zos.perf.get",
            r#"{"Name":"cpu-benchmark"}"#,
            "--redis",
            &redis.url(),
        ])
        .args(["--kernel-cmdline", "/dev/null"])
        .env_remove("ZOS_PERF_CONFIG")
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&local.stdout).unwrap(),
        stored
    );
}

#[test]
fn the_typescript_client_calls_the_daemon_and_verifies_its_replies() {
    let Served {
        g,
        stored,
        daemon: _daemon,
        redis: _redis,
        ..
    } = served();
    let server = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap();
    let twin = |id: u32, who: &Identity, kt: KeyType| {
        json!({"id": id, "account": hex::encode(who.account_id()), "keyType": kt.as_str(),
               "relay": g.relay.host(), "pk": hex::encode(who.secp256k1_public())})
    };
    // An sr25519 and an ed25519 caller, each with a session id of its own.
    // The TypeScript client insists on its pk being on chain (it would
    // update the twin otherwise) and then encrypts, so both calls are
    // encrypted both ways; plain calls are covered by rmb_e2e. All six
    // calls in one run of the client (rmb_js_batch), each on a connection
    // of its own.
    let callers = [KeyType::Sr25519, KeyType::Ed25519];
    let mut ops = Vec::new();
    for (i, kt) in callers.into_iter().enumerate() {
        let id = 400 + i as u32;
        let mnemonic = if i == 0 {
            MNEMONIC_A
        } else {
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
        };
        let who = Identity::from_secret(mnemonic, kt).unwrap();
        g.add_twin(id, &who, true);
        let twins = json!([twin(id, &who, kt), twin(SERVER, &server, KeyType::Ed25519)]);
        for (command, payload) in [
            ("zos.perf.get", r#"{"Name":"cpu-benchmark"}"#),
            ("zos.perf.get_all", ""),
            ("zos.perf.nope", "{}"),
        ] {
            ops.push((
                "call",
                json!({"mnemonic": mnemonic, "keyType": kt.as_str(), "relayUrl": g.relay.url(),
                       "sid": format!("ts-{i}"), "twins": twins, "dest": SERVER,
                       "command": command, "payload": payload}),
            ));
        }
    }
    let out = rmb_js_batch(&ops);
    for (kt, out) in callers.into_iter().zip(out.chunks(3)) {
        assert_eq!(out[0]["result"], stored, "{kt}: {}", out[0]);
        assert_eq!(out[1]["result"], json!([stored]), "{kt}: {}", out[1]);
        assert!(
            out[2]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("function is not found"),
            "{kt}: {}",
            out[2]
        );
    }
}
