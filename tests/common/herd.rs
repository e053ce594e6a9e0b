//! A herd of relay transports against one relay that restarts (issue 28,
//! "herd-safe"): `n` of the daemon's own relay transports
//! (`zos_perf::bus::relay::serve`) in this process, each its own twin with
//! its own key and its own twin cache, all serving the same real Redis.
//! Once every connection has been up long enough to count as healthy, the
//! test relay is stopped (connections closed, port refusing) and started
//! again on the same port; the relay's own clock says when each twin's
//! upgrade came back. Then a caller twin asks every one of them
//! `zos.perf.get` over the relay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use zos_perf::bus::relay::{Policy, RelayStats, ServeOptions};
use zos_perf::grid::chain::{ChainClient, ChainOptions};
use zos_perf::rmb::relay_link::RelayOptions;
use zos_perf::rmb::twin::TwinDb;
use zos_perf::rmb::{Identity, KeyType, RmbClient};

use super::rmbgrid::{seed, store_fresh_cpu, RmbGrid, MNEMONIC_A};
use super::RedisServer;

/// The caller's twin; the transports are `FIRST_TWIN..FIRST_TWIN + n`.
const CALLER: u32 = 90;
const FIRST_TWIN: u32 = 10_000;
/// Calls in flight at once after the restart.
const CALLS_AT_ONCE: usize = 32;

/// What a restart did.
#[derive(Debug)]
pub struct Restart {
    pub n: usize,
    /// How long the relay was away.
    pub away: Duration,
    /// When each transport was back (its first upgrade after the stop),
    /// from the stop, sorted; fewer than `n` if some never came back
    /// within the limit.
    pub back: Vec<Duration>,
    /// Transports that answered `zos.perf.get` with the stored result
    /// afterwards.
    pub served: usize,
    /// The first few failed calls, for a failure message.
    pub call_errors: Vec<String>,
}

impl Restart {
    /// The most returns within any window of `window` (sliding).
    pub fn busiest(&self, window: Duration) -> usize {
        let mut first = 0;
        let mut most = 0;
        for (i, t) in self.back.iter().enumerate() {
            while *t - self.back[first] >= window {
                first += 1;
            }
            most = most.max(i + 1 - first);
        }
        most
    }

    /// Returns per `bin` from the stop: `(bin index, count)`, every bin
    /// from the first return to the last.
    pub fn histogram(&self, bin: Duration) -> Vec<(u64, usize)> {
        let index = |t: &Duration| (t.as_secs_f64() / bin.as_secs_f64()) as u64;
        let (Some(lo), Some(hi)) = (self.back.first(), self.back.last()) else {
            return Vec::new();
        };
        let mut counts = vec![0usize; (index(hi) - index(lo) + 1) as usize];
        for t in &self.back {
            counts[(index(t) - index(lo)) as usize] += 1;
        }
        (index(lo)..).zip(counts).collect()
    }

    /// The last return, from the stop.
    pub fn last(&self) -> Option<Duration> {
        self.back.last().copied()
    }
}

/// Runs `n` transports with `policy` on `grid`, restarts the relay once
/// they are all healthy (away for `away`), and waits up to `limit` after
/// the stop for them to come back.
pub async fn restart(
    grid: &mut RmbGrid,
    n: usize,
    policy: Policy,
    away: Duration,
    limit: Duration,
) -> Restart {
    let redis = RedisServer::start();
    let stored: Value = store_fresh_cpu(&redis);
    let client = redis::Client::open(redis.url()).expect("redis client");
    let chain = Arc::new(
        ChainClient::new(vec![grid.chain.url()], ChainOptions::default()).expect("chain client"),
    );
    let caller = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).expect("caller identity");
    grid.add_twin(CALLER, &caller, true);
    let shutdown = CancellationToken::new();
    let options = ServeOptions {
        reconnect: policy,
        ..ServeOptions::default()
    };
    let mut transports = tokio::task::JoinSet::new();
    let twins: Vec<u32> = (0..n as u32).map(|i| FIRST_TWIN + i).collect();
    for &id in &twins {
        let me = Identity::from_secret(&seed(id), KeyType::Ed25519).expect("transport identity");
        grid.add_twin(id, &me, true);
        transports.spawn(zos_perf::bus::relay::serve(
            client.clone(),
            Arc::new(me),
            Arc::new(TwinDb::new(chain.clone(), Duration::from_secs(3600))),
            vec![grid.relay.url()],
            Arc::new(RelayStats::default()),
            options,
            shutdown.clone(),
        ));
    }
    let all_online = |grid: &RmbGrid| twins.iter().all(|&id| grid.relay.is_online(id, None));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_online(grid) {
        assert!(
            Instant::now() < deadline,
            "the {n} transports never all connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Healthy: lasted `policy.healthy` (a little more, for the last one).
    tokio::time::sleep(policy.healthy + Duration::from_secs(1)).await;
    assert!(
        all_online(grid),
        "a transport lost the relay before the restart"
    );

    let stopped = Instant::now();
    tokio::task::block_in_place(|| grid.relay.stop());
    tokio::time::sleep(away.saturating_sub(stopped.elapsed())).await;
    let away = stopped.elapsed();
    tokio::task::block_in_place(|| grid.relay.start_again());
    let first_back = |grid: &RmbGrid| {
        let mut back: HashMap<u32, Instant> = HashMap::new();
        for (twin, at) in grid.relay.upgrades_since(stopped) {
            back.entry(twin).or_insert(at);
        }
        back
    };
    let deadline = stopped + limit;
    let back = loop {
        let back = first_back(grid);
        if back.len() >= n || Instant::now() >= deadline {
            break back;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut back: Vec<Duration> = back
        .iter()
        .filter(|(twin, _)| twins.contains(twin))
        .map(|(_, at)| *at - stopped)
        .collect();
    back.sort();

    // Every one serves a call.
    let caller = RmbClient::connect(
        Arc::new(caller),
        Arc::new(TwinDb::new(chain.clone(), Duration::from_secs(3600))),
        &[grid.relay.url()],
        &RelayOptions::default(),
    )
    .await
    .expect("the caller connects");
    let caller = &caller;
    let stored = &stored;
    let results: Vec<Result<(), String>> = futures::stream::iter(twins.iter().copied())
        .map(|twin| async move {
            let reply = caller
                .call(
                    twin,
                    "zos.perf.get",
                    br#"{"Name":"cpu-benchmark"}"#,
                    Duration::from_secs(30),
                )
                .await
                .map_err(|e| format!("twin {twin}: {e}"))?;
            let got: Value =
                serde_json::from_slice(&reply).map_err(|e| format!("twin {twin}: {e}"))?;
            (got == *stored)
                .then_some(())
                .ok_or_else(|| format!("twin {twin} answered {got}"))
        })
        .buffer_unordered(CALLS_AT_ONCE)
        .collect()
        .await;
    shutdown.cancel();
    while transports.join_next().await.is_some() {}
    let served = results.iter().filter(|r| r.is_ok()).count();
    let call_errors = results
        .into_iter()
        .filter_map(Result::err)
        .take(5)
        .collect();
    Restart {
        n,
        away,
        back,
        served,
        call_errors,
    }
}
