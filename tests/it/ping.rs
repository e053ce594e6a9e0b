//! The election's `ping`, against a fake `ping` first on PATH.
//!
//! One test only: it sets PATH for the whole process, which must not race
//! other tests of this binary. The fake answers by address: 192.0.2.1
//! replies (exit 0), 192.0.2.2 is silent (exit 1), 192.0.2.3 cannot run
//! (exit 2, as ping without permission for its socket), and the
//! 198.51.100.0/24 nodes are silent after a pause, logging when each starts
//! and ends so the test can count how many ran at once.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use zos_perf::grid::graphql::Node;
use zos_perf::tasks::public_ip::election::{lower_node_answering, ping};

const FAKE_PING: &str = r#"#!/bin/sh
for a in "$@"; do addr="$a"; done
case "$addr" in
  192.0.2.1) exit 0 ;;
  192.0.2.2) exit 1 ;;
  192.0.2.3) echo "ping: socket: Operation not permitted" >&2; exit 2 ;;
  198.51.100.*)
    echo "+" >> "$ZOS_PERF_TEST_PING_LOG"
    sleep 0.2
    echo "-" >> "$ZOS_PERF_TEST_PING_LOG"
    exit 1 ;;
esac
exit 3
"#;

fn node(id: u32, zos: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "nodeID": id, "farmID": 1,
        "interfaces": [{"name": "zos", "ips": zos}]
    }))
    .expect("node JSON")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_exit_statuses_and_at_most_8_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("ping");
    std::fs::write(&fake, FAKE_PING).expect("write fake ping");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let log = dir.path().join("ping.log");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Before any child is spawned; the only test of this binary.
    std::env::set_var("PATH", path);
    std::env::set_var("ZOS_PERF_TEST_PING_LOG", &log);

    assert!(ping(ip("192.0.2.1"), 1).await.expect("replies"));
    assert!(!ping(ip("192.0.2.2"), 1).await.expect("silent"));

    // A ping that cannot run is an error saying why, not a silent node.
    let err = format!(
        "{:#}",
        ping(ip("192.0.2.3"), 1)
            .await
            .expect_err("exit 2 is an error")
    );
    assert!(err.contains("192.0.2.3"), "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // ...and the election stops on it rather than electing this node.
    let err = lower_node_answering(&[node(3, "192.0.2.3")], 10, 1)
        .await
        .expect_err("the election fails when ping cannot run");
    assert!(format!("{err:#}").contains("Operation not permitted"));

    // Twenty silent lower nodes: every one is asked, never more than 8 at once.
    let nodes: Vec<Node> = (1..=20)
        .map(|i| node(i, &format!("198.51.100.{i}")))
        .collect();
    let elder = lower_node_answering(&nodes, 100, 1)
        .await
        .expect("silent nodes are no error");
    assert!(elder.is_none());
    let events = std::fs::read_to_string(&log).expect("ping log");
    let (mut now, mut max, mut started) = (0i32, 0i32, 0);
    for e in events.lines() {
        match e {
            "+" => {
                now += 1;
                started += 1;
                max = max.max(now);
            }
            "-" => now -= 1,
            other => panic!("unexpected log line {other:?}"),
        }
    }
    assert_eq!(started, 20, "every lower node was pinged");
    assert!(max <= 8, "{max} pings ran at once");
    assert!(max >= 2, "pings ran in parallel ({max} at once)");
}
