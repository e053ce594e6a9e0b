//! `get_all` with 1,000,000 unrelated keys in Redis, side by side with the
//! plain approach (SCAN MATCH perf.* then GET per key).
//!
//! Run: `cargo bench --bench store`. Target: ≤ 0.3 ms median, ≥ 1000× faster.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

fn main() {
    let redis = common::RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut conn = redis.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1_000_000)
        .query(&mut conn)
        .expect("populate");
    for name in zos_perf::tasks::NAMES {
        let value = format!(
            r#"{{"name":"{name}","description":"d","timestamp":1700000000,"result":{{}}}}"#
        );
        let _: () = redis::cmd("SET")
            .arg(format!("perf.{name}"))
            .arg(value)
            .query(&mut conn)
            .expect("SET");
    }
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (ours, plain) = rt.block_on(async {
        let client = redis::Client::open(redis.url()).expect("client");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        // Ours: one MGET of the known keys.
        let mut ours = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let all = zos_perf::store::read_all_raw(&mut c)
                .await
                .expect("read_all_raw");
            ours.push(t.elapsed());
            assert_eq!(all.len(), 4);
        }
        // Plain: walk the keyspace.
        let mut plain = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut cursor: u64 = 0;
            let mut found = Vec::new();
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg("perf.*")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await
                    .expect("SCAN");
                for key in batch {
                    let v: Option<String> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .expect("GET");
                    found.extend(v);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            plain.push(t.elapsed());
            assert_eq!(found.len(), 4);
        }
        (ours, plain)
    });
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        (support::percentile(&v, 50.0), support::percentile(&v, 99.0))
    };
    let (o50, o99) = stats(ours);
    let (p50, _) = stats(plain);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let body = format!(
        "Redis holds {keys} keys ({} unrelated), over a unix socket.\n\n\
| approach | median | p99 | runs |\n|---|---|---|---|\n\
| `get_all`: one MGET of the 4 known keys | {:.3} ms | {:.3} ms | 2000 |\n\
| plain: SCAN MATCH perf.* + GET per key | {:.1} ms | | 5 |\n\n\
Speed-up of the median: **{:.0}×** (target ≥ 1000×; target median ≤ 0.3 ms).\n",
        keys - 4,
        ms(o50),
        ms(o99),
        ms(p50),
        p50.as_secs_f64() / o50.as_secs_f64()
    );
    support::write_section("get-all", "get_all with 1,000,000 unrelated keys", &body);
}
