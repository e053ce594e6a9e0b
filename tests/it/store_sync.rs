//! The store's sync loop telling a real loss from its own writes: "redis
//! had lost results" is logged when Redis no longer holds what was written,
//! never because an entry changed in memory while a pass was checking it
//! (a fresh start, when every task's status changes within the first
//! second, logged it twice).

use crate::common;

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use common::observe::{config, Observed};
use common::{only_task, wait_for, RedisServer};
use tokio_util::sync::CancellationToken;
use zos_perf::node_redis::RedisLink;
use zos_perf::store::{ResultStore, State, SYNC_INTERVAL};

/// A status that changes while a pass is checking it is not a loss: the
/// pass is stopped right after it has taken its snapshot (its first poll
/// sends the pipeline and waits), the status changes, and the pass ends.
#[tokio::test(flavor = "current_thread")]
async fn a_status_changed_during_a_pass_is_not_counted_as_lost() {
    let redis = RedisServer::start();
    let shutdown = CancellationToken::new();
    let link = RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
    let store = ResultStore::new(link);
    assert!(store.load(Duration::from_secs(5)).await, "redis answers");
    store.update_status("cpu-benchmark", |s| s.state = State::Waiting);
    let first = store.sync_once().await.expect("sync").expect("connected");
    assert_eq!(first.restored, 0);

    for change in [State::Running, State::Idle, State::Waiting] {
        let mut pass = pin!(store.sync_once());
        // On this single-threaded runtime the connection's driver has not
        // run yet: the pass has its snapshot and waits for Redis.
        assert!(
            matches!(futures::poll!(pass.as_mut()), Poll::Pending),
            "a pass needs a round trip"
        );
        store.update_status("cpu-benchmark", |s| s.state = change);
        let report = pass.await.expect("sync").expect("connected");
        assert_eq!(report.restored, 0, "a change in memory taken for a loss");
        // The change itself is written by the next pass, and nothing is lost.
        let next = store.sync_once().await.expect("sync").expect("connected");
        assert_eq!(next.restored, 0);
    }

    // A real loss still counts.
    let _: () = redis::cmd("DEL")
        .arg("perf:status")
        .query(&mut redis.conn())
        .expect("DEL");
    let report = store.sync_once().await.expect("sync").expect("connected");
    assert_eq!(report.restored, 1, "the deleted status entry");
    shutdown.cancel();
}

const WARNING: &str = "redis had lost results";

/// The shipped binary on an empty Redis: its first seconds (every task's
/// status written and changed at once) log no loss; deleting what it wrote
/// does.
#[test]
fn a_fresh_start_raises_no_alarm_and_a_real_loss_does() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    // iperf without its program fails at once: its status goes through
    // waiting, running and idle within the first second, then stays (the
    // next fire time is a year away).
    let cfg = config(
        dir.path(),
        &format!(
            "{}cron = \"0 0 0 1 1 *\"\n[iperf]\niperf3 = \"/nonexistent/iperf3\"\n",
            only_task("iperf")
        ),
    );
    let mut daemon = Observed::start(&[], &cfg, &redis.url(), false);
    wait_for(Duration::from_secs(20), "the start-up run", || {
        daemon.log().contains("run failed").then_some(())
    });
    // A few sync passes (one a second) after it.
    std::thread::sleep(SYNC_INTERVAL * 3);
    assert!(
        !daemon.log().contains(WARNING),
        "a false alarm on a fresh start:\n{}",
        daemon.log()
    );

    let _: () = redis::cmd("DEL")
        .arg("perf:status")
        .query(&mut redis.conn())
        .expect("DEL");
    wait_for(Duration::from_secs(10), "the loss logged", || {
        daemon.log().contains(WARNING).then_some(())
    });
    assert!(daemon.stop().success(), "{}", daemon.log());
}
