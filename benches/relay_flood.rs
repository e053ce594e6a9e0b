//! The relay transport under a flood (issue "Bounded under any remote
//! input", item 2): one twin sends ~4 MiB envelopes with forged signatures
//! to the daemon serving over the test relay, while the chain stand-in
//! takes 8 s to answer for that twin. Measures the daemon's peak RSS
//! (`VmHWM`), how long it took to refuse them all, and how many chain
//! lookups of the sender it made.
//!
//! Run: `cargo bench --bench figures -- relay_flood`. Writes the "relay flood" row of
//! the section "Under hostile input" of BENCHMARKS.md.

use crate::{common, support};
use std::time::{Duration, Instant};

use common::chain::ChainServer;
use common::observe::{get, sample};
use common::rmbgrid::{store_fresh_cpu, RmbGrid, MNEMONIC_A};
use common::served::serving_daemon;
use common::{wait_for, RedisServer};
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Payload, Request};
use zos_perf::rmb::relay_link::{self, RelayOptions};
use zos_perf::rmb::twin;
use zos_perf::rmb::{Identity, KeyType};

const CALLER: u32 = 100;
const SERVER: u32 = 300;
const FLOOD: usize = 128;
const PAYLOAD: usize = (4 << 20) - 4096;
const CHAIN_DELAY: Duration = Duration::from_secs(8);
const FORGER: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

pub fn main() {
    let redis = RedisServer::start();
    store_fresh_cpu(&redis);
    let g = RmbGrid::start();
    g.add_caller_and_server(CALLER, SERVER, true);
    // The daemon asks a chain of its own (the same twins), so that slowing
    // and counting its lookups leaves the relay's alone.
    let chain = ChainServer::start();
    let dir = tempfile::tempdir().unwrap();
    let daemon = serving_daemon(
        &g,
        &redis,
        dir.path(),
        SERVER,
        "30s",
        Some((&chain, &[CALLER, SERVER])),
    );
    let addr = daemon.addr();
    let pid = daemon.child.id();
    std::thread::sleep(Duration::from_secs(3));
    let idle = common::burst::status_kib(pid, "VmRSS");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = twin::twin_key(CALLER);
    let (took, lookups) = rt.block_on(async {
        let who = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap();
        let link = relay_link::open(
            &g.relay.url(),
            &who,
            CALLER,
            Some("flood"),
            &RelayOptions::default(),
        )
        .await
        .expect("caller connects");
        wait_for(Duration::from_secs(10), "the caller on the relay", || {
            g.relay.is_online(CALLER, Some("flood")).then_some(())
        });
        chain.slow_reads_of(key.clone(), CHAIN_DELAY);
        let before = chain.reads_of(&key);
        let forger = Identity::from_secret(FORGER, KeyType::Sr25519).unwrap();
        let payload = vec![b' '; PAYLOAD];
        let t = Instant::now();
        for n in 0..FLOOD {
            let mut env = Envelope {
                uid: format!("flood-{n}"),
                timestamp: zos_perf::unix_time::unix_now(),
                expiration: 600,
                source: Some(Address::session(CALLER, Some("flood".into()))),
                destination: Some(Address::twin(SERVER)),
                message: Some(Body::Request(Request {
                    command: "zos.perf.get".into(),
                })),
                schema: Some(envelope::SCHEMA_JSON.into()),
                payload: Some(Payload::Plain(payload.clone())),
                ..Envelope::default()
            };
            env.sign(&forger);
            link.sender().send(&env).await.expect("send");
        }
        let refused = "zos_perf_relay_refused_requests_total{reason=\"bad_signature\"}";
        wait_for(Duration::from_secs(600), "the flood refused", || {
            let body = get(addr, "/metrics", "").body;
            (sample(&body, refused) == Some(FLOOD as f64)).then_some(())
        });
        (t.elapsed(), chain.reads_of(&key) - before)
    });
    let peak = common::burst::status_kib(pid, "VmHWM");
    drop(daemon);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let row = format!(
        "| relay flood: {FLOOD} envelopes of 4 MiB with forged signatures from one twin, the chain answering for it in {} s | daemon peak RSS (`VmHWM`) **{:.1} MiB** (idle {:.1} MiB); all refused (104) in {:.1} s; {lookups} chain lookup(s) of the sender; limit 64 MiB | `cargo bench --bench figures -- relay_flood`, {} |",
        CHAIN_DELAY.as_secs(),
        mib(peak),
        mib(idle),
        took.as_secs_f64(),
        support::machine().rsplit("; ").next().unwrap_or_default(),
    );
    println!("{row}");
    println!("Machine: {}", support::machine());
    write_row("| relay flood", &row);
}

/// Replaces the row starting with `prefix` in "Under hostile input" (the
/// section is shared with other benches' rows), or adds the section.
fn write_row(prefix: &str, row: &str) {
    let path = support::benchmarks_file();
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
    if let Some(l) = lines.iter_mut().find(|l| l.starts_with(prefix)) {
        *l = row.to_string();
    } else if let Some(h) = lines.iter().position(|l| l == "## Under hostile input") {
        let end = (h + 1..lines.len())
            .find(|&i| lines[i].starts_with("## ") || lines[i].starts_with("<!--"))
            .unwrap_or(lines.len());
        let at = (h..end)
            .rev()
            .find(|&i| lines[i].starts_with('|'))
            .map_or(end, |i| i + 1);
        lines.insert(at, row.to_string());
    } else {
        lines.push(String::new());
        lines.push("## Under hostile input".into());
        lines.push(String::new());
        lines.push(format!("Machine: {}", support::machine()));
        lines.push(String::new());
        lines.push("| input | figure | measured by |".into());
        lines.push("|---|---|---|".into());
        lines.push(row.to_string());
    }
    if let Err(e) = std::fs::write(&path, lines.join("\n") + "\n") {
        eprintln!("cannot write {}: {e}", path.display());
    }
}
