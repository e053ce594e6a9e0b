//! The clock check against a stand-in tfchain (real WebSocket JSON-RPC
//! answering `state_getStorage` of `Timestamp.Now` with a SCALE moment) and
//! stand-in HTTP time services over real HTTP on loopback, with an
//! injected clock.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::chain::{ChainServer, Mode};
use common::clock::ManualClock;
use common::RedisServer;
use tokio_util::sync::CancellationToken;
use zos_perf::clock_check::{self, ClockCheck, ClockStatus};
use zos_perf::config::Config;
use zos_perf::grid::chain::key;
use zos_perf::node_redis::RedisLink;

/// "Now" for the sources.
fn truth() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 19, 20, 5).unwrap()
}

/// A chain whose last block is at `t`.
fn chain_at(t: DateTime<Utc>) -> ChainServer {
    let chain = ChainServer::start();
    let ms = u64::try_from(t.timestamp_millis()).expect("after 1970");
    chain.insert(key::plain("Timestamp", "Now"), ms.to_le_bytes().to_vec());
    chain
}

/// An HTTP server on 127.0.0.1 answering every request (GET or HEAD) with
/// `status`, a `Date` header of `date` and `body`. Returns its base URL.
async fn http_at(status: u16, date: Option<DateTime<Utc>>, body: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let date = date
        .map(|d| format!("Date: {}\r\n", d.format("%a, %d %b %Y %H:%M:%S GMT")))
        .unwrap_or_default();
    common::loopback::serve_http(listener, status, date, body.to_string());
    url
}

/// A port of 127.0.0.1 where nothing listens.
fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}/", l.local_addr().expect("addr"))
}

/// A check of `chain`, `services` and `dates`, with the node clock at
/// `node_now` and the command appending a line to `marker`.
fn check(
    chain: &[String],
    services: &[String],
    dates: &[String],
    node_now: DateTime<Utc>,
    marker: &Path,
) -> (ClockCheck, Arc<ManualClock>) {
    let q = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[clock]\nsubstrate_urls = [{}]\ntime_services = [{}]\ndate_urls = [{}]\n\
         timeout = \"2s\"\ncommand = [\"sh\", \"-c\", \"echo corrected >> {}\"]\n",
        q(chain),
        q(services),
        q(dates),
        marker.display()
    );
    let config = Config::from_toml(&text).expect("config");
    let clock = Arc::new(ManualClock::new(node_now));
    (
        ClockCheck::from_config(&config.clock, &config.grid_context(), clock.clone())
            .expect("clock check"),
        clock,
    )
}

fn corrections(marker: &Path) -> usize {
    std::fs::read_to_string(marker)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_small_skew_is_reported_from_tfchain_and_nothing_is_run() {
    let chain = chain_at(truth());
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    let node = truth() + chrono::TimeDelta::seconds(30);
    let (mut c, _) = check(&[chain.url()], &[], &[], node, &marker);
    let s = c.check().await;
    assert_eq!(s.source.as_deref(), Some("tfchain"));
    assert_eq!(s.skew, Some(30.0));
    assert_eq!(s.error, None);
    assert_eq!(s.threshold, 600);
    assert_eq!(s.checked_at, node.timestamp());
    assert_eq!(corrections(&marker), 0);
    assert!(chain.calls().iter().any(|m| m == "state_getStorage"));
}

#[tokio::test]
async fn a_large_confirmed_skew_runs_the_command_once_per_ten_minutes() {
    let chain = chain_at(truth());
    let service = http_at(
        200,
        None,
        r#"{"datetime": "2026-11-30T19:20:05.250000+00:00"}"#,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    let node = truth() - chrono::TimeDelta::minutes(20);
    let (mut c, clock) = check(&[chain.url()], &[service], &[], node, &marker);
    let s = c.check().await;
    assert_eq!(s.skew, Some(-1200.0));
    assert_eq!(s.source.as_deref(), Some("tfchain"));
    assert_eq!(corrections(&marker), 1);
    assert_eq!(s.last_correction, Some(node.timestamp()));
    assert_eq!(s.last_correction_result.as_deref(), Some("ok"));
    // Still off a minute later: not run again within 10 minutes.
    clock.advance(chrono::TimeDelta::minutes(1));
    let s = c.check().await;
    assert_eq!(corrections(&marker), 1);
    assert_eq!(s.last_correction, Some(node.timestamp()));
}

#[tokio::test]
async fn every_source_failing_is_an_error_naming_each() {
    let chain = ChainServer::with_mode(Mode::Garbage);
    let garbage = http_at(200, None, r#"{"datetime": "yesterday at noon"}"#).await;
    let not_json = http_at(200, None, "<html>").await;
    let no_date = http_at(200, None, "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    let (mut c, _) = check(
        &[chain.url()],
        &[garbage.clone(), not_json.clone(), closed_url()],
        &[no_date],
        truth() + chrono::TimeDelta::hours(3),
        &marker,
    );
    let s = c.check().await;
    assert_eq!(s.skew, None);
    let e = s.error.expect("error");
    assert!(
        e.starts_with("failed to get time from all servers: tfchain: "),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "{garbage}: time \"yesterday at noon\" is in no known format"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("{not_json}: answer is not JSON")),
        "{e}"
    );
    assert!(e.contains("answer has no Date header"), "{e}");
    assert_eq!(corrections(&marker), 0);
}

#[tokio::test]
async fn a_garbage_answer_passes_to_the_next_source_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    let chain = ChainServer::start(); // Timestamp.Now holds nothing
    let bad = http_at(200, None, r#"{"currentDateTime": "2026-11-30 19:20"}"#).await;
    let minute = http_at(200, None, r#"{"currentDateTime": "2026-11-30T19:20Z"}"#).await;
    let naive = http_at(200, None, r#"{"dateTime": "2026-11-30T19:20:05.5"}"#).await;
    let (mut c, _) = check(
        &[chain.url()],
        &[bad, minute.clone(), naive],
        &[],
        truth(),
        &marker,
    );
    let s = c.check().await;
    assert_eq!(s.source, Some(minute));
    assert_eq!(s.skew, Some(5.0));
}

#[tokio::test]
async fn a_source_that_disagrees_wildly_is_passed_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    // The chain is half a year behind; the two HTTP sources agree with the
    // node's clock.
    let chain = chain_at(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    let service = http_at(200, None, r#"{"datetime": "2026-11-30T19:20:06Z"}"#).await;
    let date = http_at(404, Some(truth()), "").await;
    let (mut c, _) = check(
        &[chain.url()],
        std::slice::from_ref(&service),
        &[date],
        truth(),
        &marker,
    );
    let s = c.check().await;
    assert_eq!(s.source, Some(service));
    assert_eq!(s.skew, Some(-1.0));
    assert_eq!(corrections(&marker), 0);

    // With only the Date header to confirm, it still carries the day.
    let chain = chain_at(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    let date = http_at(200, Some(truth()), "").await;
    let (mut c, _) = check(
        &[chain.url()],
        &[closed_url()],
        std::slice::from_ref(&date),
        truth(),
        &marker,
    );
    let s = c.check().await;
    assert_eq!(s.source, Some(format!("Date header of {date}")));
    assert_eq!(s.skew, Some(0.0));
    assert_eq!(corrections(&marker), 0);

    // Two sources, both far from the node and from each other: no word to
    // trust, nothing is run.
    let chain = chain_at(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    let later = http_at(200, None, r#"{"datetime": "2026-12-30T19:20:05Z"}"#).await;
    let (mut c, _) = check(&[chain.url()], &[later], &[], truth(), &marker);
    let s = c.check().await;
    assert_eq!(s.skew, None);
    assert!(s
        .error
        .expect("error")
        .starts_with("clock sources disagree: tfchain says skew"));
    assert_eq!(corrections(&marker), 0);
}

#[tokio::test]
async fn the_status_lands_in_perf_status_beside_the_tasks() {
    let redis = RedisServer::start();
    let shutdown = CancellationToken::new();
    let link = RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
    let mut conn = link.ready(&shutdown).await.expect("redis answers");
    let status = ClockStatus {
        skew: Some(-1.5),
        source: Some("tfchain".into()),
        checked_at: truth().timestamp(),
        error: None,
        threshold: 600,
        last_correction: None,
        last_correction_result: None,
    };
    clock_check::publish(&link, &status).await;
    assert_eq!(
        clock_check::read_status(&mut conn).await.expect("read"),
        Some(status.clone())
    );
    // Task statuses are still read, the clock field left out of them.
    let tasks = zos_perf::store::read_status(&mut conn)
        .await
        .expect("tasks");
    assert!(tasks.is_empty(), "{tasks:?}");
    assert_eq!(
        clock_check::describe(Some(&status)),
        "clock: skew -1.5s against tfchain at 2026-11-30 19:20:05 UTC"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn the_loop_publishes_and_stops_on_shutdown() {
    let redis = RedisServer::start();
    let chain = chain_at(truth());
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, _) = check(&[chain.url()], &[], &[], truth(), &dir.path().join("m"));
    let shutdown = CancellationToken::new();
    let link = RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
    let mut conn = link.ready(&shutdown).await.expect("redis answers");
    let task = tokio::spawn(clock_check::run(
        c,
        Duration::from_millis(50),
        link,
        shutdown.clone(),
    ));
    let mut stored = None;
    for _ in 0..200 {
        stored = clock_check::read_status(&mut conn).await.expect("read");
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(stored.expect("published").skew, Some(0.0));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("no panic");
}
