//! `get_all` with 1,000,000 unrelated keys in Redis, side by side with the
//! plain approach (SCAN MATCH perf.* then GET per key).
//!
//! The `get_all` figure is the bus path a grid client sees: a
//! `zos.perf.get_all` request pushed to `msgbus.zos.perf.get_all`, answered
//! by the bus handler (in-process, on the same Redis), its reply popped from
//! the `ret` list. The store read alone (one MGET, what `zos-perf get-all`
//! does) is shown beside it.
//!
//! Run: `cargo bench --bench figures -- store`. Target: ≤ 0.3 ms median, ≥ 1000× faster.

use crate::{common, support};
use std::time::{Duration, Instant};

pub fn main() {
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
    let (ours, read, plain) = rt.block_on(async {
        let client = redis::Client::open(redis.url()).expect("client");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        // Ours, through the bus: request pushed, reply popped.
        let shutdown = tokio_util::sync::CancellationToken::new();
        let bus = tokio::spawn(zos_perf::bus::serve(
            client.clone(),
            zos_perf::bus::BusConfig::default(),
            shutdown.clone(),
        ));
        // BRPOP waits up to 10 s: the crate's default reply timeout is 500 ms.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(15)));
        let mut waiter = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect");
        let ret = "msgbus.bench.get_all";
        let mut ours = Vec::new();
        for i in 0..2000 {
            let request = serde_json::json!({"ver": 1, "ref": i.to_string(), "src": "42:abc",
                "cmd": "zos.perf.get_all", "exp": 600, "dat": "", "tag": null, "ret": ret,
                "shm": null, "now": chrono::Utc::now().timestamp()});
            let request = serde_json::to_vec(&request).expect("encode");
            let t = Instant::now();
            redis::cmd("LPUSH")
                .arg("msgbus.zos.perf.get_all")
                .arg(request)
                .query_async::<()>(&mut c)
                .await
                .expect("LPUSH");
            let (_, reply): (String, Vec<u8>) = redis::cmd("BRPOP")
                .arg(ret)
                .arg(10)
                .query_async(&mut waiter)
                .await
                .expect("a reply within 10 s");
            ours.push(t.elapsed());
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("reply JSON");
            assert_eq!(reply["ref"], i.to_string());
            assert!(reply["err"].is_null(), "{reply}");
        }
        shutdown.cancel();
        let _ = bus.await;
        // The store read alone: one bounded read (a Lua script checking each size inside Redis) of the known keys.
        let mut read = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let all = zos_perf::store::read_all_raw(&mut c)
                .await
                .expect("read_all_raw");
            read.push(t.elapsed());
            assert_eq!(all.len(), zos_perf::tasks::NAMES.len());
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
            assert_eq!(found.len(), zos_perf::tasks::NAMES.len());
        }
        (ours, read, plain)
    });
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        (support::percentile(&v, 50.0), support::percentile(&v, 99.0))
    };
    let (o50, o99) = stats(ours);
    let (r50, r99) = stats(read);
    let (p50, _) = stats(plain);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = zos_perf::tasks::NAMES.len();
    let body = format!(
        "Redis holds {keys} keys ({} unrelated), over a unix socket.\n\n\
| approach | median | p99 | runs |\n|---|---|---|---|\n\
| `zos.perf.get_all` over the bus: request pushed → reply popped | {:.3} ms | {:.3} ms | 2000 |\n\
| store read alone (`zos-perf get-all`): one bounded read of the {n} known keys | {:.3} ms | {:.3} ms | 2000 |\n\
| plain: SCAN MATCH perf.* + GET per key | {:.1} ms | | 5 |\n\n\
Speed-up of the bus median over the plain walk: **{:.0}×** (target ≥ 1000×; target median ≤ 0.3 ms).\n",
        keys - n as u64,
        ms(o50),
        ms(o99),
        ms(r50),
        ms(r99),
        ms(p50),
        p50.as_secs_f64() / o50.as_secs_f64()
    );
    support::write_section("get-all", "get_all with 1,000,000 unrelated keys", &body);
}
