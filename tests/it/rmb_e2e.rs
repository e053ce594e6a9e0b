//! `zos-perf call --twin/--node` and `zos-perf fleet` end to end: the real
//! binary, over real WebSockets on loopback, through the test relay, with
//! twins and nodes on the stand-in chain and test responders as the nodes.
//! Every way the far side can fail gives a clear error and its own exit
//! code, and nothing hangs.

use crate::common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::chain::Mode;
use common::graphql::{node, GraphQlServer, Grid};
use common::output::{assert_fails, assert_stderr, code, fleet_rows, stderr};
use common::rmbgrid::{seed, Behaviour, Responder, RmbGrid, MNEMONIC_A, MNEMONIC_B};
use serde_json::{json, Value};
use zos_perf::rmb::error::exit;
use zos_perf::rmb::twin::Twin;
use zos_perf::rmb::{Identity, KeyType};

const CALLER: u32 = 100;
const NODE_TWIN: u32 = 200;
const NODE: u32 = 7;

fn results() -> Value {
    json!([
        {"name": "cpu-benchmark", "description": "cpu", "timestamp": 1_700_000_000u64,
         "result": {"single": 1.25, "multi": 9.5, "threads": 8, "workloads": 0}},
        {"name": "healthcheck", "description": "health", "timestamp": 1_700_000_100u64,
         "result": {"cache": [], "network": []}}
    ])
}

fn caller() -> Identity {
    Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap()
}

fn node_identity() -> Identity {
    Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap()
}

/// A grid with the caller's twin and one node (twin 200, node 7).
fn grid(node_pk: bool) -> RmbGrid {
    let g = RmbGrid::start();
    g.add_twin(CALLER, &caller(), true);
    g.add_twin(NODE_TWIN, &node_identity(), node_pk);
    g.add_node(NODE, 1, NODE_TWIN);
    g
}

/// That grid with node 7's twin answering as `behaviour` says.
fn serving_grid(behaviour: Behaviour) -> (RmbGrid, Responder) {
    let g = grid(true);
    let r = Responder::start(&g, node_identity(), NODE_TWIN, results(), behaviour);
    (g, r)
}

struct Run {
    config: tempfile::NamedTempFile,
}

impl Run {
    fn new(extra: &str) -> Run {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        write!(
            config,
            "[rmb]\ntimeout = \"3s\"\nchain_timeout = \"1s\"\n{extra}"
        )
        .unwrap();
        Run { config }
    }

    /// `zos-perf call --twin TWIN zos.perf.get_all`.
    fn call_all(&self, g: &RmbGrid, twin: &str) -> Output {
        self.zos_perf(g, &["call", "--twin", twin, "zos.perf.get_all"])
    }

    /// Runs zos-perf with the caller's mnemonic in the environment; fails
    /// the test if the process outlives `limit`.
    fn zos_perf(&self, g: &RmbGrid, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
            .args(args)
            .args(["--relay", &g.relay.url(), "--chain", &g.chain.url()])
            .args(["--key-type", "sr25519", "--kernel-cmdline", "/dev/null"])
            .arg("--config")
            .arg(self.config.path())
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
            .env("ZOS_PERF_LOG", "error")
            .env_remove("ZOS_PERF_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("zos-perf {args:?} hung");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

#[test]
fn call_twin_and_node_get_the_stored_result_encrypted_and_plain() {
    for node_pk in [true, false] {
        let g = grid(node_pk);
        let responder =
            Responder::start(&g, node_identity(), NODE_TWIN, results(), Behaviour::Normal);
        let run = Run::new("");
        let out = run.zos_perf(
            &g,
            &[
                "call",
                "--twin",
                "200",
                "zos.perf.get",
                r#"{"Name":"cpu-benchmark"}"#,
            ],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(json_out(&out), results()[0]);
        let out = run.zos_perf(&g, &["call", "--node", "7", "zos.perf.get_all"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(json_out(&out), results());
        assert_eq!(responder.handled(), 2);
    }
}

#[test]
fn the_node_s_error_is_printed_with_its_own_exit_code() {
    let (g, _r) = serving_grid(Behaviour::Normal);
    let out = Run::new("").zos_perf(&g, &["call", "--twin", "200", "zos.perf.nope"]);
    assert_fails(
        &out,
        i32::from(exit::REMOTE_ERROR),
        "twin 200 answered error 0: function is not found",
    );
    let out = Run::new("").zos_perf(
        &g,
        &[
            "call",
            "--twin",
            "200",
            "zos.perf.get",
            r#"{"Name":"iperf"}"#,
        ],
    );
    assert_stderr(&out, "result not found");
}

#[test]
fn a_forged_reply_signature_is_rejected() {
    let (g, _r) = serving_grid(Behaviour::ForgedSignature);
    let out = Run::new("").call_all(&g, "200");
    assert_fails(
        &out,
        i32::from(exit::BAD_REPLY),
        "bad reply from twin 200: signature rejected",
    );
}

#[test]
fn a_garbage_frame_instead_of_the_reply_is_a_bad_reply() {
    let (g, _r) = serving_grid(Behaviour::Normal);
    g.relay.corrupt_deliveries_to(Some(CALLER));
    let out = Run::new("").call_all(&g, "200");
    assert_fails(&out, i32::from(exit::BAD_REPLY), "not an RMB envelope");
}

/// A twin whose `pk` on chain is not a secp256k1 key: nothing can be
/// sealed for it, and that is the chain's data being wrong (exit 8), not a
/// plain failure; the error names the twin.
#[test]
fn a_twin_whose_pk_on_chain_is_no_key_is_a_chain_error() {
    let g = grid(true);
    g.put_twin(Twin {
        id: NODE_TWIN,
        account_id: node_identity().account_id(),
        relay: Some(g.relay.host().into_bytes()),
        entities: vec![],
        pk: Some(vec![2; 10]),
    });
    let out = Run::new("").call_all(&g, "200");
    assert_fails(
        &out,
        i32::from(exit::CHAIN),
        "twin 200's pk does not decode: pk of 10 bytes is not a secp256k1 public key",
    );
}

#[test]
fn a_silent_node_times_out_and_an_unknown_twin_is_named() {
    let (g, _r) = serving_grid(Behaviour::Silent);
    let run = Run::new("");
    let out = run.zos_perf(
        &g,
        &[
            "call",
            "--twin",
            "200",
            "zos.perf.get_all",
            "--timeout",
            "1s",
        ],
    );
    assert_fails(
        &out,
        i32::from(exit::TIMEOUT),
        "no reply from twin 200 within 1s",
    );
    let out = run.call_all(&g, "999");
    assert_fails(
        &out,
        i32::from(exit::UNKNOWN_DESTINATION),
        "twin 999 does not exist",
    );
    let out = run.zos_perf(&g, &["call", "--node", "999", "zos.perf.get_all"]);
    assert_stderr(&out, "node 999 does not exist");
    // A twin without a relay cannot be routed to.
    g.put_twin(Twin {
        id: 300,
        account_id: [3; 32],
        relay: None,
        entities: vec![],
        pk: None,
    });
    let out = run.call_all(&g, "300");
    assert_fails(
        &out,
        i32::from(exit::UNKNOWN_DESTINATION),
        "twin 300 has no relay",
    );
}

#[test]
fn a_relay_dropping_the_connection_mid_call_fails_at_once() {
    let (g, _r) = serving_grid(Behaviour::Normal);
    g.relay.drop_senders_to(Some(NODE_TWIN));
    let started = Instant::now();
    // A long timeout: the failure must come from the lost connection.
    let out = Run::new("").zos_perf(
        &g,
        &[
            "call",
            "--twin",
            "200",
            "zos.perf.get_all",
            "--timeout",
            "20s",
        ],
    );
    assert_fails(
        &out,
        i32::from(exit::RELAY),
        "connection lost before the reply",
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_refused_token_and_an_unknown_caller_are_set_up_errors() {
    let g = grid(true);
    g.relay.refuse_tokens(true);
    let run = Run::new("");
    let out = run.call_all(&g, "200");
    assert_fails(&out, i32::from(exit::AUTH), "refused our token (401)");
    g.relay.refuse_tokens(false);
    // The chain maps our account to twin 100, but twin 100's account is
    // another one: the relay's signature check refuses us.
    g.put_twin(Twin {
        id: CALLER,
        account_id: [9; 32],
        relay: Some(g.relay.host().into_bytes()),
        entities: vec![],
        pk: None,
    });
    let out = run.call_all(&g, "200");
    assert_eq!(code(&out), i32::from(exit::AUTH), "{}", stderr(&out));
    // An ed25519 account of the same mnemonic has no twin at all.
    let out = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
        .args([
            "call",
            "--twin",
            "200",
            "zos.perf.get_all",
            "--key-type",
            "ed25519",
        ])
        .args([
            "--relay",
            &g.relay.url(),
            "--chain",
            &g.chain.url(),
            "--kernel-cmdline",
            "/dev/null",
        ])
        .arg("--config")
        .arg(run.config.path())
        .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
        .output()
        .unwrap();
    assert_fails(&out, i32::from(exit::AUTH), "has no twin on this chain");
}

#[test]
fn a_chain_answering_garbage_or_nothing_is_a_chain_error() {
    for mode in [Mode::Garbage, Mode::Silent, Mode::WrongResult] {
        let g = grid(true);
        g.chain.set_mode(mode);
        let started = Instant::now();
        let out = Run::new("").call_all(&g, "200");
        assert_eq!(
            code(&out),
            i32::from(exit::CHAIN),
            "{mode:?}: {}",
            stderr(&out)
        );
        assert_stderr(&out, "chain unreachable");
        assert!(started.elapsed() < Duration::from_secs(10), "{mode:?}");
    }
}

#[test]
fn secrets_never_come_from_the_command_line_and_bad_ones_are_named() {
    let g = grid(true);
    let run = Run::new("");
    let out = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
        .args([
            "identity",
            "--chain",
            &g.chain.url(),
            "--kernel-cmdline",
            "/dev/null",
        ])
        .arg("--config")
        .arg(run.config.path())
        .env_remove("ZOS_PERF_MNEMONIC")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_fails(&out, i32::from(exit::SECRET), "no secret");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mnemonic");
    std::fs::write(&file, "word word word").unwrap();
    let out = run.zos_perf(&g, &["identity", "--mnemonic-file", file.to_str().unwrap()]);
    assert_eq!(code(&out), i32::from(exit::SECRET));
    assert!(!stderr(&out).contains("word word"), "{}", stderr(&out));
}

#[test]
fn identity_prints_accounts_pk_and_twin() {
    let g = grid(true);
    let out = Run::new("").zos_perf(&g, &["identity", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json_out(&out);
    let me = caller();
    assert_eq!(v["key_type"], "sr25519");
    assert_eq!(v["sr25519"]["account"], hex::encode(me.sr25519_public()));
    assert_eq!(
        v["sr25519"]["ss58"],
        "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
    );
    assert_eq!(v["sr25519"]["twin"], CALLER);
    assert_eq!(v["ed25519"]["twin"], Value::Null);
    assert_eq!(v["pk"], hex::encode(me.secp256k1_public()));
    assert_eq!(v["twin"]["relay"], json!([g.relay.host()]));
    assert_eq!(v["twin"]["pk_matches"], true);
}

#[test]
fn fleet_shows_every_node_and_the_one_that_is_down() {
    let g = grid(true);
    let mut graphql = Grid::default();
    let mut responders = Vec::new();
    for i in 0..4u32 {
        let (node_id, twin_id) = (10 + i, 1000 + i);
        let who = Identity::from_secret(&seed(i), KeyType::Ed25519).unwrap();
        g.add_twin(twin_id, &who, true);
        g.add_node(node_id, 5, twin_id);
        graphql.nodes.push(node(node_id, 5, None, None, ""));
        if i != 2 {
            responders.push(Responder::start(
                &g,
                who,
                twin_id,
                results(),
                Behaviour::Normal,
            ));
        }
    }
    let gql = GraphQlServer::grid(graphql);
    let run = Run::new(&format!("[grid]\ngraphql_urls = [\"{}\"]\n", gql.url()));
    let out = run.zos_perf(&g, &["fleet", "--farm", "5", "--json"]);
    assert_eq!(code(&out), i32::from(exit::PARTIAL), "{}", stderr(&out));
    let rows = fleet_rows(&out);
    assert_eq!(rows.len(), 4);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["node"], 10 + i as u64);
        assert_eq!(r["twin"], 1000 + i as u64);
        if i == 2 {
            assert!(
                r["error"]
                    .as_str()
                    .unwrap()
                    .contains("no reply from twin 1002"),
                "{r}"
            );
        } else {
            assert_eq!(r["cpu_single"], 1.25, "{r}");
            assert_eq!(r["health_problems"], json!([]));
            assert!(r["error"].is_null());
        }
    }
    assert_stderr(&out, "1 of 4 nodes could not be asked");
    let out = run.zos_perf(
        &g,
        &["fleet", "--farm", "5", "--task", "cpu-benchmark", "--csv"],
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.lines().any(|l| l.starts_with("10,1000,1.25,9.5,")),
        "{csv}"
    );
    // Rows come as the nodes answer: the silent node's, after its timeout, last.
    assert!(csv.lines().last().unwrap().starts_with("12,1002,"), "{csv}");
    let out = run.zos_perf(&g, &["fleet", "--farm", "6"]);
    assert_fails(&out, 1, "farm 6: no node is up");
}
