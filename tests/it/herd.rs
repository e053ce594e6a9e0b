//! Issue 28, "herd-safe at grid scale": 200 relay transports, each its own
//! twin, lose a relay that restarts, and come back spread out, all of
//! them, each serving a call afterwards (common::herd).
//!
//! On the grid's clock (a healthy connection lasts 60 s, the returns spread
//! over 45 s) a run takes about three minutes: that full run is the
//! `herd` bench (BENCHMARKS.md, "Reconnect herd"). Here the same policy
//! runs on a clock three times faster (`Policy::scaled`), so its goals are
//! checked in a third of their time: no window of a third of a second
//! holds more than 10 % of the returns, all are back within 30 s.

use std::time::Duration;

use crate::common;
use common::rmbgrid::RmbGrid;
use zos_perf::bus::relay::Policy;

const TRANSPORTS: usize = 200;
/// A third of a second stands for a second.
const SCALE: f64 = 1.0 / 3.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_gets_200_transports_back_spread_out_and_serving() {
    let policy = Policy {
        // Scaled it would be 20 s; any time past `quick` (3.3 s) will do.
        healthy: Duration::from_secs(4),
        ..Policy::default().scaled(SCALE)
    };
    let second = Duration::from_secs(1).mul_f64(SCALE);
    let within = Duration::from_secs(90).mul_f64(SCALE);
    let away = Duration::from_secs(5).mul_f64(SCALE);
    let mut grid = RmbGrid::start();
    let r = common::herd::restart(&mut grid, TRANSPORTS, policy, away, within).await;
    let histogram = r.histogram(second);
    assert_eq!(
        r.back.len(),
        TRANSPORTS,
        "not all back within {within:?}: {histogram:?}"
    );
    let busiest = r.busiest(second);
    assert!(
        busiest * 10 <= TRANSPORTS,
        "{busiest} of {TRANSPORTS} came back within {second:?}: {histogram:?}"
    );
    assert!(r.last().is_some_and(|t| t <= within), "{:?}", r.last());
    // The spread is used, not only bounded: the returns take more than a
    // third of the spread.
    let first = r.back[0];
    assert!(
        r.last().unwrap_or_default() - first > policy.spread / 3,
        "{histogram:?}"
    );
    assert_eq!(
        r.served, TRANSPORTS,
        "transports that did not serve a call: {:?}",
        r.call_errors
    );
}
