//! `zos-perf fleet` at grid scale: the real binary against the test relay,
//! the stand-in chain and the GraphQL stand-in, with many test responders
//! on one thread. The grid is listed page by page, no more calls are in
//! flight than `--concurrency` says, rows come out as nodes answer (before
//! the slowest has), every failing node is shown as such, and the memory
//! taken does not grow with what the nodes answered.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::graphql::{node, GraphQlServer, Grid};
use common::output::{code, fleet_rows, stderr};
use common::rmbgrid::{seed, Behaviour, Gauge, Responder, RmbGrid, MNEMONIC_A};
use serde_json::{json, Value};
use zos_perf::rmb::error::exit;
use zos_perf::rmb::{Identity, KeyType};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

fn results() -> Value {
    json!([{"name": "cpu-benchmark", "description": "cpu", "timestamp": 1_700_000_000u64,
            "result": {"single": 1.25, "multi": 9.5, "threads": 8, "workloads": 0}}])
}

/// A grid with the caller's twin (100) and `nodes` (node id, farm): node
/// N served by twin 10_000 + N, registered on chain and listed by the
/// GraphQL; their identities, to start responders with.
fn grid(nodes: &[(u32, u32)]) -> (RmbGrid, Grid, Vec<(Identity, u32)>) {
    let g = RmbGrid::start();
    g.add_twin(
        100,
        &Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap(),
        true,
    );
    let mut graphql = Grid::default();
    let mut members = Vec::new();
    for &(id, farm) in nodes {
        let who = Identity::from_secret(&seed(id), KeyType::Ed25519).unwrap();
        g.add_twin(10_000 + id, &who, true);
        g.add_node(id, farm, 10_000 + id);
        graphql.nodes.push(node(id, farm, None, None, ""));
        members.push((who, 10_000 + id));
    }
    (g, graphql, members)
}

/// The `fleet` command pointed at `g` and the GraphQL at `gql`, `[rmb]`
/// timeout `timeout`.
fn fleet(
    g: &RmbGrid,
    gql: &GraphQlServer,
    timeout: &str,
    args: &[&str],
) -> (Command, tempfile::NamedTempFile) {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        "[rmb]\ntimeout = \"{timeout}\"\nchain_timeout = \"2s\"\n[grid]\ngraphql_urls = [\"{}\"]\n",
        gql.url()
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("fleet")
        .args(args)
        .args(g.caller_args())
        .args(["--kernel-cmdline", "/dev/null", "--config"])
        .arg(config.path())
        .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
        .env("ZOS_PERF_LOG", "error")
        .env_remove("ZOS_PERF_CONFIG")
        .stdin(Stdio::null());
    (cmd, config)
}

/// Runs it to the end (at most 60 s), output collected.
fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zos-perf fleet");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("zos-perf fleet hung")
        .expect("zos-perf fleet output")
}

fn node_ids(rows: &[Value]) -> Vec<u64> {
    rows.iter().filter_map(|r| r["node"].as_u64()).collect()
}

#[test]
fn grid_lists_every_up_node_page_by_page() {
    // Eight nodes in three farms; the GraphQL gives at most 3 per page.
    let nodes = [
        (3, 1),
        (5, 2),
        (8, 1),
        (13, 3),
        (21, 2),
        (34, 1),
        (55, 3),
        (89, 2),
    ];
    let (g, graphql, members) = grid(&nodes);
    let _r = Responder::start_many(&g, members, results(), Behaviour::Normal, None);
    let gql = GraphQlServer::grid_paged(graphql, 3);

    let (cmd, _config) = fleet(&g, &gql, "10s", &["--grid", "--json"]);
    let out = run(cmd);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = fleet_rows(&out);
    assert_eq!(node_ids(&rows), vec![3, 5, 8, 13, 21, 34, 55, 89]);
    for r in &rows {
        assert_eq!(r["cpu_single"], 1.25, "{r}");
        assert_eq!(r["twin"], 10_000 + r["node"].as_u64().unwrap(), "{r}");
    }
    // Pages of 3 after the last node of the one before, to an empty one.
    let pages: Vec<Option<u64>> = gql
        .queries()
        .iter()
        .filter(|q| q.contains("nodes("))
        .map(|q| common::graphql::number_after(q, "nodeID_gt:"))
        .collect();
    assert_eq!(pages, vec![None, Some(8), Some(34), Some(89)]);

    // --farm pages the same way, over its own nodes only.
    let (cmd, _config) = fleet(&g, &gql, "10s", &["--farm", "2", "--csv"]);
    let out = run(cmd);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut listed: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, vec!["21", "5", "89"], "{csv}");
}

#[test]
fn no_more_calls_are_in_flight_than_concurrency_says() {
    let nodes: Vec<(u32, u32)> = (1..=12).map(|n| (n, 4)).collect();
    let (g, graphql, members) = grid(&nodes);
    // Each call is held until 3 are in flight together, and answered no
    // sooner than 300 ms after it came: a client asking more at once
    // (even one more) would be seen doing so.
    let gauge = Gauge::lingering(3, Duration::from_millis(300));
    let _r = Responder::start_many(
        &g,
        members,
        results(),
        Behaviour::Normal,
        Some(gauge.clone()),
    );
    let gql = GraphQlServer::grid(graphql);
    let (cmd, _config) = fleet(&g, &gql, "40s", &["--grid", "--json", "--concurrency", "3"]);
    let out = run(cmd);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fleet_rows(&out).len(), 12);
    assert_eq!(gauge.max(), 3, "calls in flight at once");

    // Out of range is refused before anything is asked.
    let (cmd, _config) = fleet(&g, &gql, "40s", &["--grid", "--concurrency", "0"]);
    assert_eq!(code(&run(cmd)), 2);
}

#[test]
fn nodes_down_silent_unknown_or_answering_junk_are_shown_as_such() {
    // 1 answers; 2 is silent; 3 answers junk with control characters; 4
    // has no connection to the relay (down); 5 is listed by the GraphQL
    // but unknown to the chain.
    let (g, mut graphql, mut members) = grid(&[(1, 7), (2, 7), (3, 7), (4, 7)]);
    graphql.nodes.push(node(5, 7, None, None, ""));
    members.truncate(3);
    let hostile = members.pop().unwrap();
    let silent = members.pop().unwrap();
    let _ok = Responder::start_many(&g, members, results(), Behaviour::Normal, None);
    let _silent = Responder::start_many(&g, vec![silent], results(), Behaviour::Silent, None);
    let junk = json!("bad\u{1b}[31m\u{9b}1mjunk\nline");
    let _junk = Responder::start_many(&g, vec![hostile], junk, Behaviour::Hostile, None);
    let gql = GraphQlServer::grid(graphql);

    let (cmd, _config) = fleet(&g, &gql, "2s", &["--farm", "7", "--json"]);
    let out = run(cmd);
    assert_eq!(code(&out), i32::from(exit::PARTIAL), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 of 5 nodes could not be asked"),
        "{}",
        stderr(&out)
    );
    let rows = fleet_rows(&out);
    assert_eq!(node_ids(&rows), vec![1, 2, 3, 4, 5]);
    let error = |i: usize| rows[i]["error"].as_str().unwrap_or("").to_string();
    assert!(rows[0]["error"].is_null(), "{}", rows[0]);
    assert!(error(1).contains("no reply from twin 10002"), "{}", rows[1]);
    // get_all: the junk came as the node's error message (exact in JSON).
    assert!(error(2).contains("bad\u{1b}[31m"), "{}", rows[2]);
    assert!(error(3).contains("no reply from twin 10004"), "{}", rows[3]);
    assert!(
        error(4).contains("node 5 does not exist on chain"),
        "{}",
        rows[4]
    );

    // The table: one line per node, the junk's text escaped.
    let (cmd, _config) = fleet(&g, &gql, "2s", &["--farm", "7", "--task", "cpu-benchmark"]);
    let out = run(cmd);
    assert_eq!(code(&out), i32::from(exit::PARTIAL), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{9b}'),
        "{table:?}"
    );
    let junk_line = table
        .lines()
        .find(|l| l.trim_start().starts_with("3 "))
        .expect("node 3's line");
    assert!(junk_line.contains("not JSON"), "{junk_line}");
}

#[test]
fn rows_come_out_before_the_slowest_node_answers() {
    let (g, graphql, mut members) = grid(&[(1, 8), (2, 8), (3, 8), (4, 8)]);
    let slow = members.remove(3);
    let _fast = Responder::start_many(&g, members, results(), Behaviour::Normal, None);
    // Node 4 answers only when the test lets it (or after Gauge::HOLD_MAX).
    let gate = Gauge::new(usize::MAX);
    let _slow = Responder::start_many(
        &g,
        vec![slow],
        results(),
        Behaviour::Normal,
        Some(gate.clone()),
    );
    let gql = GraphQlServer::grid(graphql);
    let (mut cmd, _config) = fleet(&g, &gql, "50s", &["--farm", "8", "--csv"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {what} within 20 s"))
    };
    assert!(next("header").starts_with("node,"));
    let mut first: Vec<String> = (0..3).map(|_| next("row of a fast node")).collect();
    first.sort();
    assert!(first[0].starts_with("1,10001,1.25,"), "{first:?}");
    assert!(first[1].starts_with("2,10002,") && first[2].starts_with("3,10003,"));
    // Node 4's call may reach its responder after the fast rows are out.
    common::wait_for(Duration::from_secs(20), "node 4 being asked", || {
        (gate.in_flight() == 1).then_some(())
    });
    gate.open();
    assert!(next("row of node 4").starts_with("4,10004,1.25,"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "fleet did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
}

/// The memory of a run does not grow with what the nodes answered:
/// 150 nodes answering 400 KB each (60 MB in all) are asked with a peak
/// resident set under 48 MiB (about 25 MiB measured; holding the answers
/// would take well over 60 MiB).
#[test]
fn memory_stays_bounded_whatever_the_nodes_answer() {
    let nodes: Vec<(u32, u32)> = (1..=150).map(|n| (n, 9)).collect();
    let (g, graphql, members) = grid(&nodes);
    let big = json!([{"name": "healthcheck", "description": "health", "timestamp": 1_700_000_000u64,
                      "result": {"cache": ["x".repeat(400_000)]}}]);
    let responders = Responder::start_many(&g, members, big, Behaviour::Normal, None);
    let gql = GraphQlServer::grid(graphql);
    let (mut cmd, _config) = fleet(
        &g,
        &gql,
        "30s",
        &[
            "--grid",
            "--json",
            "--task",
            "healthcheck",
            "--concurrency",
            "10",
        ],
    );
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (status, peak_kib) = common::rss::wait_with_peak_rss(&mut child);
    assert!(status.success());
    assert_eq!(responders.handled(), 150);
    assert!(peak_kib < 48 * 1024, "peak RSS {peak_kib} KiB");
}

/// A node's every result, as a daemon stores them (the samples of
/// docs/tasks/), one healthcheck check named with control characters,
/// dated in the future so that their age is 0 whenever the test runs.
fn every_result() -> Value {
    let at = 4_000_000_000u64;
    json!([
        {"name": "public-ip-validation", "description": "ips", "timestamp": at, "result": {
            "203.0.113.10/24": {"state": "valid", "reason": ""},
            "203.0.113.11/24": {"state": "invalid", "reason": "public ip or gateway data are not valid"},
            "203.0.113.12/24": {"state": "skipped", "reason": "ip is already assigned to a contract"},
            "203.0.113.13/24": {"state": "invalid", "reason": "public ip or gateway data are not valid"}}},
        {"name": "cpu-benchmark", "description": "cpu", "timestamp": at,
         "result": {"single": 1.2345, "multi": 0.456, "threads": 8, "workloads": 3}},
        {"name": "healthcheck", "description": "health", "timestamp": at, "result": {
            "cache": [],
            "net\u{1b}[31mwork, \"x\"": ["http://127.0.0.1:1/ is not reachable", "dns: refused"],
            "ntp": ["off by 3 s"]}},
        {"name": "iperf", "description": "iperf", "timestamp": at, "result": [
            {"download_speed": 2486042635.8868155, "error": "", "node_id": 10, "node_ip": "198.51.100.2", "test_type": "tcp", "upload_speed": 2475942424.8688827},
            {"download_speed": 4360128213.188838, "error": "", "node_id": 10, "node_ip": "2001:db8:1::2", "test_type": "tcp", "upload_speed": 4370032724.74572},
            {"download_speed": 3311974.2931670737, "error": "", "node_id": 10, "node_ip": "198.51.100.2", "test_type": "udp", "upload_speed": 3311974.2931670737},
            {"download_speed": 9e9, "error": "unable to connect to server: Network is unreachable", "node_id": 11, "node_ip": "203.0.113.7", "test_type": "tcp", "upload_speed": 9e9}]},
        {"name": "provisiontest", "description": "vm", "timestamp": at, "result": ["no marker within 20s"]}
    ])
}

/// What `fleet` prints, line by line in node order (rows come in the
/// order nodes answer), the header first.
fn sorted_stdout(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().collect();
    let json = lines.first().is_some_and(|l| l.starts_with('{'));
    let body = if json {
        &mut lines[..]
    } else {
        &mut lines[1..]
    };
    body.sort_by_key(|l| {
        l.trim_start_matches(|c: char| !c.is_ascii_digit())
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    });
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The table, the CSV and the JSON Lines of a node with every result,
/// one with only a CPU result and one answering junk, byte for byte: the
/// columns come from the tasks' views (not from task names in the CLI),
/// and what a node named is escaped in the table and the CSV.
#[test]
fn every_format_prints_the_same_bytes_for_every_task() {
    let (g, graphql, mut members) = grid(&[(1, 3), (2, 3), (3, 3)]);
    let hostile = members.pop().unwrap();
    let cpu_only = members.pop().unwrap();
    let _all = Responder::start_many(&g, members, every_result(), Behaviour::Normal, None);
    let cpu = json!([every_result()[1].clone()]);
    let _cpu = Responder::start_many(&g, vec![cpu_only], cpu, Behaviour::Normal, None);
    let junk = json!("bad\u{1b}[31mjunk");
    let _junk = Responder::start_many(&g, vec![hostile], junk, Behaviour::Hostile, None);
    let gql = GraphQlServer::grid(graphql);
    let mut got = String::new();
    for args in [
        &["--farm", "3"][..],
        &["--farm", "3", "--csv"],
        &["--farm", "3", "--json"],
        &["--farm", "3", "--task", "healthcheck"],
        &["--farm", "3", "--task", "iperf", "--csv"],
        &["--farm", "3", "--task", "public-ip-validation", "--json"],
    ] {
        let (cmd, _config) = fleet(&g, &gql, "10s", args);
        let out = run(cmd);
        assert_eq!(code(&out), i32::from(exit::PARTIAL), "{}", stderr(&out));
        got += &format!("$ fleet {}\n{}", args.join(" "), sorted_stdout(&out));
    }
    // The bytes `fleet` printed before its columns came from the views
    // (written by the binary of fe6e2f7 with FLEET_GOLDEN_WRITE=1).
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fleet.golden");
    if std::env::var_os("FLEET_GOLDEN_WRITE").is_some() {
        std::fs::write(golden, &got).expect("write tests/it/fleet.golden");
    }
    let want = std::fs::read_to_string(golden).expect("tests/it/fleet.golden");
    assert_eq!(
        got, want,
        "fleet's output differs from tests/it/fleet.golden"
    );
}
