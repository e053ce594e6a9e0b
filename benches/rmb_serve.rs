//! The daemon serving over the relay (`[bus.relay] enabled`), through the
//! test relay on loopback:
//!
//! - requests served per second: `CLIENTS` Rust clients (each its own
//!   session), each with `IN_FLIGHT` calls outstanding, encrypted both ways;
//! - the round trip p50/p99 from the grid's TypeScript client
//!   (tests/interop/rmb.js `bench`: one connection, sequential calls);
//! - the idle RSS of the daemon with the relay transport on.
//!
//! Run: `cargo bench --bench rmb_serve` (needs scripts/interop-setup).
//! Writes section `rmb_serve` of BENCHMARKS.md.

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::interop::rmb_js;
use common::rmbgrid::{seed, spawn_serving, store_fresh_cpu, RmbGrid, MNEMONIC_A, MNEMONIC_B};
use common::{wait_for, RedisServer};
use serde_json::json;
use zos_perf::grid::chain::{ChainClient, ChainOptions};
use zos_perf::rmb::relay_link::RelayOptions;
use zos_perf::rmb::twin::TwinDb;
use zos_perf::rmb::{Identity, KeyType, RmbClient};

const SERVER: u32 = 300;
const CLIENTS: u32 = 4;
const IN_FLIGHT: usize = 16;
const CALLS_PER_TASK: usize = 150;
const TS_CALLS: usize = 500;
/// Calls through the client's own `read()`, which polls once a second.
const TS_READ_CALLS: usize = 5;
const IDLE_SECONDS: u64 = 20;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("daemon status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// CPU time (user + system) of process `pid` so far, in clock ticks
/// (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    let after = &stat[stat.rfind(')').expect("stat's comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Milliseconds per clock tick: `/proc` counts in USER_HZ, 100 on Linux.
fn tick_ms() -> f64 {
    10.0
}

fn main() {
    let quick = std::env::var_os("ZOS_PERF_BENCH_QUICK").is_some();
    // A quick run may set the calls outstanding per session, to see how
    // throughput follows concurrency.
    let in_flight = std::env::var("ZOS_PERF_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|_| quick)
        .unwrap_or(IN_FLIGHT);
    let redis = RedisServer::start();
    store_fresh_cpu(&redis);
    let g = RmbGrid::start();
    let server = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap();
    g.add_twin(SERVER, &server, true);
    let mut config = tempfile::NamedTempFile::new().unwrap();
    config
        .write_all(g.serving_config(Some(&redis.url()), "").as_bytes())
        .unwrap();
    let daemon = spawn_serving(config.path());
    let pid = daemon.0.id();
    wait_for(Duration::from_secs(30), "the daemon on the relay", || {
        g.relay.is_online(SERVER, None).then_some(())
    });

    // Idle first: nothing but the relay connection's pings.
    std::thread::sleep(Duration::from_secs(3));
    let mut idle_max = 0;
    for _ in 0..if quick { 0 } else { IDLE_SECONDS } {
        std::thread::sleep(Duration::from_secs(1));
        idle_max = idle_max.max(rss_kib(pid));
    }
    let idle_end = rss_kib(pid);

    // Throughput: CLIENTS sessions, IN_FLIGHT calls outstanding on each.
    let callers: Vec<Identity> = (0..CLIENTS)
        .map(|i| {
            let who = Identity::from_secret(&seed(i), KeyType::Sr25519).unwrap();
            g.add_twin(400 + i, &who, true);
            who
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (served, took, daemon_ticks, own_ticks) = rt.block_on(async {
        let chain = ChainClient::new(vec![g.chain.url()], ChainOptions::default()).unwrap();
        let twins = Arc::new(TwinDb::new(Arc::new(chain), Duration::from_secs(300)));
        let mut clients = Vec::new();
        for who in callers {
            let c = RmbClient::connect(
                Arc::new(who),
                twins.clone(),
                &[g.relay.url()],
                &RelayOptions::default(),
            )
            .await
            .unwrap();
            clients.push(Arc::new(c));
        }
        let payload = br#"{"Name":"cpu-benchmark"}"#;
        for c in &clients {
            for _ in 0..20 {
                c.call(SERVER, "zos.perf.get", payload, Duration::from_secs(10))
                    .await
                    .unwrap();
            }
        }
        let t = Instant::now();
        let (daemon_before, own_before) = (cpu_ticks(&pid.to_string()), cpu_ticks("self"));
        let mut tasks = tokio::task::JoinSet::new();
        for c in &clients {
            for _ in 0..in_flight {
                let c = c.clone();
                tasks.spawn(async move {
                    for _ in 0..CALLS_PER_TASK {
                        c.call(SERVER, "zos.perf.get", payload, Duration::from_secs(30))
                            .await
                            .unwrap();
                    }
                });
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        (
            clients.len() * in_flight * CALLS_PER_TASK,
            t.elapsed(),
            cpu_ticks(&pid.to_string()) - daemon_before,
            cpu_ticks("self") - own_before,
        )
    });
    let busy_rss = rss_kib(pid);
    let per_call = |ticks: u64| ticks as f64 * tick_ms() / served as f64;
    eprintln!(
        "{:.0}/s; CPU per call: daemon {:.3} ms, callers + relay + chain {:.3} ms",
        served as f64 / took.as_secs_f64(),
        per_call(daemon_ticks),
        per_call(own_ticks)
    );
    if quick {
        return;
    }

    // The TypeScript client's round trip.
    let ts_caller = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap();
    g.add_twin(100, &ts_caller, true);
    let twin = |id: u32, who: &Identity, kt: &str| {
        json!({"id": id, "account": hex::encode(who.account_id()), "keyType": kt,
               "relay": g.relay.host(), "pk": hex::encode(who.secp256k1_public())})
    };
    let input = json!({"mnemonic": MNEMONIC_A, "keyType": "sr25519", "relayUrl": g.relay.url(),
        "sid": "bench", "twins": [twin(100, &ts_caller, "sr25519"), twin(SERVER, &server, "ed25519")],
        "dest": SERVER, "command": "zos.perf.get", "payload": r#"{"Name":"cpu-benchmark"}"#,
        "calls": TS_CALLS, "warmup": 50, "readCalls": TS_READ_CALLS});
    let ts = rmb_js("bench", input);
    drop(daemon);

    let mib = |kib: u64| kib as f64 / 1024.0;
    let body = format!(
        "`zos-perf run` serving `zos.perf.get` over the test relay on loopback (ed25519 serving twin; callers sr25519; payloads encrypted both ways, signatures checked both ways; daemon, relay, chain stand-in and callers on the same machine):\n\n\
         | what | figure |\n|---|---:|\n\
         | requests served per second ({CLIENTS} client sessions × {IN_FLIGHT} calls outstanding, {served} calls) | **{:.0}/s** |\n\
         | daemon CPU time per call served (user + system) | {:.3} ms |\n\
         | CPU time per call of the bench process (callers, test relay, chain stand-in) | {:.3} ms |\n\
         | TypeScript client (`@threefold/rmb_direct_client`), {} sequential calls, round trip p50 (send until the reply is verified, decrypted and parsed) | {:.2} ms |\n\
         | the same, p99 | {:.2} ms |\n\
         | the same, max | {:.2} ms |\n\
         | the same through the client's own `read()`, which looks for the reply once a second ({} calls), p50 | {:.0} ms |\n\
         | daemon idle RSS with the relay transport on (max over {IDLE_SECONDS} s, after 3 s settling) | {:.1} MiB |\n\
         | daemon idle RSS at the end of that | {:.1} MiB |\n\
         | daemon RSS after the throughput run | {:.1} MiB |\n",
        served as f64 / took.as_secs_f64(),
        per_call(daemon_ticks),
        per_call(own_ticks),
        ts["calls"],
        ts["p50_ms"].as_f64().unwrap_or(f64::NAN),
        ts["p99_ms"].as_f64().unwrap_or(f64::NAN),
        ts["max_ms"].as_f64().unwrap_or(f64::NAN),
        ts["read"]["calls"],
        ts["read"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        mib(idle_max),
        mib(idle_end),
        mib(busy_rss),
    );
    support::write_section("rmb_serve", "RMB served over the relay", &body);
}
