//! RMB over the relay:
//!
//! - per envelope: build + sign + encrypt + serialize a request, and parse +
//!   verify + decrypt it, with ed25519 and sr25519 signers;
//! - the round trip of a call through the test relay (loopback) to a test
//!   responder, p50/p99, in-process client and the whole `zos-perf call`
//!   process;
//! - `zos-perf fleet` over grids of 100, 1,000 and 5,000 responders: wall
//!   time, fleet's CPU time and peak RSS.
//!
//! Run: `cargo bench --bench figures -- rmb`. Writes section `rmb` of BENCHMARKS.md.

use crate::{common, support};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::graphql::{node, GraphQlServer, Grid};
use common::rmbgrid::{seed, Behaviour, Responder, RmbGrid, MNEMONIC_A, MNEMONIC_B};
use serde_json::json;
use zos_perf::grid::chain::{ChainClient, ChainOptions};
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Payload, Request};
use zos_perf::rmb::relay_link::RelayOptions;
use zos_perf::rmb::twin::TwinDb;
use zos_perf::rmb::{e2e, Identity, KeyType, RmbClient};

const ENVELOPES: usize = 2_000;
const CALLS: usize = 2_000;
const CLI_RUNS: usize = 20;
/// Node counts of the fleet curve (`RMB_BENCH_FLEET=100,1000` for others).
const FLEET: &[u32] = &[100, 1_000, 5_000];
/// Nodes asked at once by the fleet runs.
const FLEET_CONCURRENCY: usize = 100;

fn results() -> serde_json::Value {
    json!([{"name": "cpu-benchmark", "description": "cpu", "timestamp": 1_700_000_000u64,
            "result": {"single": 1.25, "multi": 9.5, "threads": 8, "workloads": 0}}])
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Median per-envelope time of (seal, open) over `ENVELOPES` envelopes.
fn envelope_costs(kt: KeyType) -> (Duration, Duration) {
    let me = Identity::from_secret(MNEMONIC_A, kt).unwrap();
    let node = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap();
    let payload = br#"{"Name":"cpu-benchmark"}"#;
    let mut seal = Vec::with_capacity(ENVELOPES);
    let mut open = Vec::with_capacity(ENVELOPES);
    for i in 0..ENVELOPES {
        let t = Instant::now();
        let mut env = Envelope {
            uid: uuid::Uuid::new_v4().to_string(),
            timestamp: 1_700_000_000 + i as u64,
            expiration: 60,
            source: Some(Address::session(42, Some("bench".into()))),
            destination: Some(Address::twin(7)),
            message: Some(Body::Request(Request {
                command: "zos.perf.get".into(),
            })),
            schema: Some(envelope::SCHEMA_JSON.into()),
            payload: Some(Payload::Cipher(
                e2e::encrypt(&me, &node.secp256k1_public(), payload).unwrap(),
            )),
            ..Envelope::default()
        };
        env.sign(&me);
        let bytes = std::hint::black_box(env.to_bytes());
        seal.push(t.elapsed());
        let t = Instant::now();
        let got = Envelope::from_bytes(&bytes).unwrap();
        got.verify(&me.account_id()).unwrap();
        let Some(Payload::Cipher(c)) = &got.payload else {
            unreachable!()
        };
        let plain = e2e::decrypt(&node, &me.secp256k1_public(), c).unwrap();
        std::hint::black_box(plain);
        open.push(t.elapsed());
    }
    seal.sort();
    open.sort();
    (
        support::percentile(&seal, 50.0),
        support::percentile(&open, 50.0),
    )
}

pub fn main() {
    // A trial of the fleet curve only (other counts, a profiler): printed,
    // not written to BENCHMARKS.md.
    if std::env::var_os("RMB_BENCH_ONLY_FLEET").is_some() {
        let g = RmbGrid::start_like_the_grid();
        g.add_twin(
            100,
            &Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap(),
            true,
        );
        println!("{}", fleet_curve(&g));
        return;
    }
    let mut body = String::new();
    body += &format!("Per envelope (median of {ENVELOPES}; a `zos.perf.get` request with its payload encrypted, as `call` sends it):\n\n");
    body += "| signer | build + encrypt + sign + serialize | parse + verify + decrypt |\n|---|---:|---:|\n";
    for kt in [KeyType::Ed25519, KeyType::Sr25519] {
        let (seal, open) = envelope_costs(kt);
        body += &format!("| {kt} | {} | {} |\n", us(seal), us(open));
    }

    // Round trip through the test relay.
    let g = RmbGrid::start_like_the_grid();
    let caller = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap();
    let node_id = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap();
    g.add_twin(100, &caller, true);
    g.add_twin(200, &node_id, true);
    g.add_node(7, 1, 200);
    let _responder = Responder::start(&g, node_id, 200, results(), Behaviour::Normal);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut samples = rt.block_on(async {
        let chain = ChainClient::new(vec![g.chain.url()], ChainOptions::default()).unwrap();
        let twins = Arc::new(TwinDb::new(Arc::new(chain), Duration::from_secs(300)));
        let client = RmbClient::connect(
            Arc::new(caller),
            twins,
            &[g.relay.url()],
            &RelayOptions::default(),
        )
        .await
        .unwrap();
        let payload = br#"{"Name":"cpu-benchmark"}"#;
        for _ in 0..100 {
            client
                .call(200, "zos.perf.get", payload, Duration::from_secs(5))
                .await
                .unwrap();
        }
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let t = Instant::now();
            client
                .call(200, "zos.perf.get", payload, Duration::from_secs(5))
                .await
                .unwrap();
            samples.push(t.elapsed());
        }
        samples
    });
    samples.sort();
    let mut cli = Vec::with_capacity(CLI_RUNS);
    for _ in 0..CLI_RUNS {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
            .args([
                "call",
                "--node",
                "7",
                "zos.perf.get",
                r#"{"Name":"cpu-benchmark"}"#,
            ])
            .args(g.caller_args())
            .args(["--kernel-cmdline", "/dev/null"])
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
            .env_remove("ZOS_PERF_CONFIG")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli.push(t.elapsed());
    }
    cli.sort();
    body += &format!(
        "\nRound trip of a call through the test relay on loopback to a test responder (sr25519 caller, ed25519 node, payloads encrypted both ways, signatures checked both ways):\n\n\
         | what | p50 | p99 | max |\n|---|---:|---:|---:|\n\
         | one client, {CALLS} sequential calls after 100 of warm-up | {} | {} | {} |\n\
         | `zos-perf call --node 7` process, start to exit ({CLI_RUNS} runs: secret, chain lookups, relay connection, call) | {} | {} | {} |\n",
        ms(support::percentile(&samples, 50.0)),
        ms(support::percentile(&samples, 99.0)),
        ms(*samples.last().unwrap()),
        ms(support::percentile(&cli, 50.0)),
        ms(support::percentile(&cli, 99.0)),
        ms(*cli.last().unwrap()),
    );

    body += &fleet_curve(&g);
    support::write_section("rmb", "RMB over the relay", &body);
}

/// `zos-perf fleet` over a grid of responders, at each node count of
/// [`FLEET`]: wall time (median of 3), the child's CPU time (median of 3)
/// and peak RSS (largest of 3). Only the N responders of a count are up
/// during its runs: 5,000 idle responders on the bench's one thread (their
/// relay connections, pings and the relay's side of them) would slow the
/// answers of the 100 asked. `RMB_BENCH_WRAP="heaptrack -o /tmp/fleet"`
/// runs the processes under a profiler (the figures then are the
/// profiler's, not to be recorded).
fn fleet_curve(g: &RmbGrid) -> String {
    let counts: Vec<u32> = std::env::var("RMB_BENCH_FLEET")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| FLEET.to_vec());
    let wrap: Vec<String> = std::env::var("RMB_BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut body = format!(
        "\n`zos-perf fleet --grid --json --concurrency {FLEET_CONCURRENCY}` over a grid of N nodes, each a test responder on its own relay connection (the N responders all on one thread of the bench process, started for that N; the GraphQL stand-in lists the nodes in pages), stdout to /dev/null: wall time from start to exit (median of 3), fleet's own CPU time (user + system, median of 3) and peak RSS (largest of 3):\n\n\
         | nodes | wall time | per node | fleet's CPU | peak RSS |\n|---:|---:|---:|---:|---:|\n"
    );
    let mut registered = 0;
    for &n in &counts {
        let mut members = Vec::new();
        for i in 0..n {
            let who = Identity::from_secret(&seed(i), KeyType::Ed25519).unwrap();
            if i >= registered {
                g.add_twin(50_000 + i, &who, true);
                g.add_node(10_000 + i, 9, 50_000 + i);
            }
            members.push((who, 50_000 + i));
        }
        registered = registered.max(n);
        let responders = Responder::start_many(g, members, results(), Behaviour::Normal, None);
        let mut graphql = Grid::default();
        for i in 0..n {
            graphql.nodes.push(node(10_000 + i, 9, None, None, ""));
        }
        let gql = GraphQlServer::grid(graphql);
        let config = gql.config_file();
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let mut cmd = match wrap.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(env!("CARGO_BIN_EXE_zos-perf"));
                    c
                }
                None => Command::new(env!("CARGO_BIN_EXE_zos-perf")),
            };
            let mut child = cmd
                .args(fleet_args())
                .args(g.caller_args())
                .args(["--kernel-cmdline", "/dev/null"])
                .arg("--config")
                .arg(config.path())
                .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let (status, rss_kib, cpu) = common::rss::wait_with_peak_rss_and_cpu(&mut child);
            assert!(status.success(), "fleet failed over {n} nodes");
            runs.push((t.elapsed(), cpu, rss_kib));
            eprintln!(
                "fleet over {n} nodes: {:?}, CPU {cpu:?}, {rss_kib} KiB",
                t.elapsed()
            );
        }
        assert_eq!(responders.handled(), 3 * n as usize, "every node answered");
        drop(responders);
        let rss = runs.iter().map(|r| r.2).max().unwrap_or(0);
        runs.sort();
        let time = runs[1].0;
        let mut cpus: Vec<Duration> = runs.iter().map(|r| r.1).collect();
        cpus.sort();
        body += &format!(
            "| {n} | {} | {:.2} ms | {} | **{:.1} MiB** |\n",
            ms(time),
            time.as_secs_f64() * 1e3 / f64::from(n),
            ms(cpus[1]),
            rss as f64 / 1024.0
        );
    }
    body += "\nPeak RSS is the child's own high-water mark (`VmHWM`, read every millisecond until it exits); its CPU time is `/proc/<pid>/stat`'s utime + stime read with it. \
             The figures before issue 28 (77.5 MiB at 100 nodes, 693.8 MiB at 1,000: \"0.7 MiB per node\") were not fleet's: \
             they were `wait4`'s `ru_maxrss`, which for a child started with `posix_spawn` carries the high-water mark of \
             the parent's memory it ran on until its `exec`, here the bench process holding one relay connection, \
             its buffers and keys per responder (about 0.3 MiB each, 1.4 GiB at 5,000). Read as the child's own, \
             fleet's memory does not grow with the nodes: the node list is 8 bytes a node, the twin cache stops at 1,024 \
             entries, rows are printed and dropped, and the calls in flight (at most the concurrency) hold their replies' \
             frames against the relay link's 16 MiB read budget. See docs/rmb.md (\"The fleet view\").\n";
    body
}

/// The fleet command line of the curve.
fn fleet_args() -> Vec<String> {
    let concurrency = FLEET_CONCURRENCY.to_string();
    ["fleet", "--grid", "--json", "--concurrency", &concurrency]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
