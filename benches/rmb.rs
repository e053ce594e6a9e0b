//! RMB over the relay:
//!
//! - per envelope: build + sign + encrypt + serialize a request, and parse +
//!   verify + decrypt it, with ed25519 and sr25519 signers;
//! - the round trip of a call through the test relay (loopback) to a test
//!   responder, p50/p99, in-process client and the whole `zos-perf call`
//!   process;
//! - `zos-perf fleet` over a farm of 100 responders: wall time and peak RSS.
//!
//! Run: `cargo bench --bench rmb`. Writes section `rmb` of BENCHMARKS.md.

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/common/mod.rs"]
mod common;

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
const FLEET: u32 = 100;

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

fn main() {
    let mut body = String::new();
    body += &format!("Per envelope (median of {ENVELOPES}; a `zos.perf.get` request with its payload encrypted, as `call` sends it):\n\n");
    body += "| signer | build + encrypt + sign + serialize | parse + verify + decrypt |\n|---|---:|---:|\n";
    for kt in [KeyType::Ed25519, KeyType::Sr25519] {
        let (seal, open) = envelope_costs(kt);
        body += &format!("| {kt} | {} | {} |\n", us(seal), us(open));
    }

    // Round trip through the test relay.
    let g = RmbGrid::start();
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

    // Fleet over 100 responders.
    let mut graphql = Grid::default();
    let mut responders = Vec::new();
    for i in 0..FLEET {
        let who = Identity::from_secret(&seed(i), KeyType::Ed25519).unwrap();
        g.add_twin(5000 + i, &who, true);
        g.add_node(500 + i, 9, 5000 + i);
        graphql.nodes.push(node(500 + i, 9, None, None, ""));
        responders.push(Responder::start(
            &g,
            who,
            5000 + i,
            results(),
            Behaviour::Normal,
        ));
    }
    let gql = GraphQlServer::grid(graphql);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("[grid]\ngraphql_urls = [\"{}\"]\n", gql.url()),
    )
    .unwrap();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        // Reaped by wait4 in wait_with_rss, which also gives its peak RSS.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
            .args(["fleet", "--farm", "9", "--json"])
            .args(g.caller_args())
            .args(["--kernel-cmdline", "/dev/null"])
            .arg("--config")
            .arg(config.path())
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (status, rss_kib) = wait_with_rss(child.id() as i32);
        runs.push((t.elapsed(), rss_kib));
        assert_eq!(status, 0, "fleet failed");
    }
    let answered: usize = responders.iter().map(Responder::handled).sum();
    assert_eq!(answered, 3 * FLEET as usize);
    runs.sort();
    let (time, _) = runs[1];
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    body += &format!(
        "\n`zos-perf fleet --farm 9 --json` over {FLEET} nodes, each a test responder on its own relay connection (GraphQL stand-in, default concurrency 16): \
         **{}** wall time (median of 3), peak RSS **{:.1} MiB** (largest of 3).\n",
        ms(time),
        rss as f64 / 1024.0
    );
    support::write_section("rmb", "RMB over the relay", &body);
}

/// Waits for `pid` and returns its exit status and peak RSS in KiB.
fn wait_with_rss(pid: i32) -> (i32, i64) {
    use nix::libc;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}
