//! Text from outside never reaches the operator's terminal raw (issue 25,
//! item 5): the real binary against a node that answers with escape
//! sequences (through the test relay), a GraphQL stand-in whose errors
//! carry them, and a Redis holding them in stored results. Whatever the
//! output (text, table, CSV, log lines, the final error), no control
//! character but our own newlines reaches stdout or stderr; `--json`
//! output decodes to the exact original strings.

use crate::common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::graphql::{node, GraphQlServer, Grid, Reply};
use common::output::{code, stderr};
use common::rmbgrid::{seed, Behaviour, Responder, RmbGrid, MNEMONIC_A, MNEMONIC_B};
use common::RedisServer;
use serde_json::{json, Value};
use zos_perf::rmb::{Identity, KeyType};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

/// Every kind of control character a hostile text carries: a window title
/// (OSC 0, BEL), a clipboard write (OSC 52), clear screen (CSI), the C1
/// CSI (U+009B), a carriage return, DEL, NUL, and a newline followed by
/// something that looks like a line of ours.
const HOSTILE: &str = "t\u{1b}]0;owned\u{7}c\u{1b}]52;c;SGVsbG8=\u{7}s\u{1b}[2J\u{9b}31m\rx\u{7f}\u{0}\nFORGED 2026-12-06T10:00:00Z  WARN zos_perf: forged";

/// The control characters in `bytes` (decoded as UTF-8) other than
/// newline and tab, with their offsets.
fn raw_controls(bytes: &[u8]) -> Vec<(usize, char)> {
    String::from_utf8_lossy(bytes)
        .char_indices()
        .filter(|&(_, c)| c.is_control() && c != '\n' && c != '\t')
        .collect()
}

/// Neither stream of `out` holds a raw control character, and no line
/// starts with what the hostile text put after its newline.
fn assert_clean(what: &str, out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad = raw_controls(bytes);
        assert!(
            bad.is_empty(),
            "{what}: {name} holds raw control characters {bad:?}:\n{:?}",
            String::from_utf8_lossy(bytes)
        );
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.lines().any(|l| l.starts_with("FORGED")),
            "{what}: {name} has a forged line:\n{text}"
        );
    }
}

/// A run of the binary that fails the test if it outlives 30 s.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .env_remove("ZOS_PERF_CONFIG")
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zos-perf");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("zos-perf hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// `zos-perf` as the caller twin of `g`, with `config` and `args`.
fn over_relay(g: &RmbGrid, config: &str, args: &[&str]) -> Output {
    let mut file = tempfile::NamedTempFile::new().expect("config file");
    write!(
        file,
        "[rmb]\ntimeout = \"3s\"\nchain_timeout = \"1s\"\n{config}"
    )
    .expect("write config");
    run(Command::new(BIN)
        .args(args)
        .args(g.caller_args())
        .args(["--kernel-cmdline", "/dev/null", "--config"])
        .arg(file.path())
        .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
        .env("ZOS_PERF_LOG", "warn"))
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {:?} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

#[test]
fn a_node_s_reply_and_error_are_escaped_on_the_terminal() {
    let g = RmbGrid::start();
    g.add_caller_and_server(100, 200, true);
    let node = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).expect("node identity");
    let _node = Responder::start(&g, node, 200, json!(HOSTILE), Behaviour::Hostile);

    // A reply that is not JSON: printed as text, escaped, on one line.
    let out = over_relay(&g, "", &["call", "--twin", "200", "zos.perf.get", "{}"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_clean("call, non-JSON reply", &out);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(shown.contains("\\u{1b}]52;c;SGVsbG8="), "{shown}");

    // The node's error message: in the final error, escaped.
    let out = over_relay(&g, "", &["call", "--twin", "200", "zos.perf.get_all"]);
    assert_ne!(code(&out), 0);
    assert_clean("call, remote error", &out);
    assert!(stderr(&out).contains("\\nFORGED"), "{}", stderr(&out));
}

#[test]
fn fleet_table_csv_and_json_hold_a_node_s_text_safely() {
    let g = RmbGrid::start();
    g.add_twin(
        100,
        &Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap(),
        true,
    );
    let mut graphql = Grid::default();
    let results = json!([
        {"name": "healthcheck", "description": HOSTILE, "timestamp": 1_700_000_000u64,
         "result": {HOSTILE: ["boom"], "network": []}}
    ]);
    let mut responders = Vec::new();
    for i in 0..2u32 {
        let (node_id, twin_id) = (10 + i, 1000 + i);
        let who = Identity::from_secret(&seed(i), KeyType::Ed25519).unwrap();
        g.add_twin(twin_id, &who, true);
        g.add_node(node_id, 5, twin_id);
        graphql.nodes.push(node(node_id, 5, None, None, ""));
        // Node 10 answers with a check named by the hostile text, node 11
        // with an error made of it.
        let (answer, behaviour) = match i {
            0 => (results.clone(), Behaviour::Normal),
            _ => (json!(HOSTILE), Behaviour::Hostile),
        };
        responders.push(Responder::start(&g, who, twin_id, answer, behaviour));
    }
    let gql = GraphQlServer::grid(graphql);
    let config = format!("[grid]\ngraphql_urls = [\"{}\"]\n", gql.url());

    let table = over_relay(&g, &config, &["fleet", "--farm", "5"]);
    assert_clean("fleet table", &table);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("\\u{9b}31m"), "{text}");

    let csv = over_relay(&g, &config, &["fleet", "--farm", "5", "--csv"]);
    assert_clean("fleet --csv", &csv);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 3);

    let json = over_relay(&g, &config, &["fleet", "--farm", "5", "--json"]);
    assert_clean("fleet --json", &json);
    let rows = common::output::fleet_rows(&json);
    assert_eq!(
        rows[0]["health_problems"],
        json!([[HOSTILE, 1]]),
        "{rows:?}"
    );
    let error = rows[1]["error"].as_str().expect("node 11's error");
    assert!(error.ends_with(HOSTILE), "{error:?}");
}

#[test]
fn graphql_errors_and_http_bodies_are_escaped_in_logs_and_the_final_error() {
    let g = RmbGrid::start();
    g.add_twin(
        100,
        &Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap(),
        true,
    );
    let gql = GraphQlServer::start(|_| Reply::error(HOSTILE));
    let config = format!("[grid]\ngraphql_urls = [\"{}\"]\n", gql.url());
    for format in ["text", "json"] {
        let out = over_relay(
            &g,
            &config,
            &["--log-format", format, "fleet", "--farm", "5"],
        );
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert_clean(&format!("graphql errors, {format} log"), &out);
        let err = stderr(&out);
        assert!(err.contains("graphql errors: t\\u{1b}]0;owned"), "{err}");
        // The URL's failure is logged (warn), on one line.
        let logged: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("trying the next"))
            .collect();
        assert_eq!(logged.len(), 1, "{err}");
        if format == "json" {
            let line: Value = serde_json::from_str(logged[0]).expect("a JSON log line");
            assert!(line["error"]
                .as_str()
                .expect("error field")
                .contains("\\u{9b}"));
        }
    }
    gql.fail_with(Some(Reply::Status(502, HOSTILE.into())));
    let out = over_relay(&g, &config, &["fleet", "--farm", "5"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_clean("graphql HTTP error body", &out);
    assert!(stderr(&out).contains("HTTP 502"), "{}", stderr(&out));
}

/// A stored healthcheck result made of hostile text.
fn hostile_healthcheck() -> Value {
    json!({"name": "healthcheck", "description": HOSTILE, "timestamp": 1_700_000_000u64,
           "result": {HOSTILE: [HOSTILE], "cache": []}})
}

fn on_redis(redis: &RedisServer, args: &[&str]) -> Output {
    run(Command::new(BIN)
        .args(["--redis", &redis.url(), "--kernel-cmdline", "/dev/null"])
        .args(args)
        .env("ZOS_PERF_LOG", "warn"))
}

#[test]
fn stored_results_are_escaped_for_a_person_and_exact_in_json() {
    let redis = RedisServer::start();
    let stored = hostile_healthcheck();
    let unknown_shape = json!({"name": "cpu-benchmark", "description": "cpu",
        "timestamp": 1_700_000_000u64, "result": {"note": HOSTILE}});
    let mut conn = redis.conn();
    for (key, value) in [
        ("perf.healthcheck", &stored),
        ("perf.cpu-benchmark", &unknown_shape),
    ] {
        redis::cmd("SET")
            .arg(key)
            .arg(value.to_string())
            .query::<()>(&mut conn)
            .expect("store a result");
    }

    let human = on_redis(&redis, &["get", "healthcheck", "--human"]);
    assert_eq!(code(&human), 0, "{}", stderr(&human));
    assert_clean("get --human", &human);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("\\u{1b}]52;c;SGVsbG8="), "{text}");

    let all = on_redis(&redis, &["get-all", "--human"]);
    assert_eq!(code(&all), 0, "{}", stderr(&all));
    assert_clean("get-all --human", &all);

    let json = on_redis(&redis, &["get", "healthcheck"]);
    assert_clean("get (JSON)", &json);
    assert_eq!(json_out(&json), stored);
    let json = on_redis(&redis, &["get-all"]);
    assert_clean("get-all (JSON)", &json);
    assert_eq!(json_out(&json), json!([unknown_shape, stored]));
}
