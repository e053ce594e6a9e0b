//! The iperf task in `public-servers` mode (zos 2026): real `iperf3 -s` in a
//! server namespace, the server list from a stand-in over real HTTP on the
//! client namespace's loopback. Both modes' results are decoded into mirror
//! structs of the Go types of their era, refusing any other field.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::graphql::{node, GraphQlServer, Grid};
use common::{in_netns, wait_for, IperfPair, NetNs};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::tasks::iperf::servers::NO_SERVER;
use zos_perf::tasks::iperf::Iperf;
use zos_perf::tasks::{RunContext, Task};

/// zos 2026's `IperfResult` (pkg/perf/iperf/iperf_types.go), field for field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GoIperfResult2026 {
    upload_speed: f64,
    download_speed: f64,
    server_host: String,
    server_ip: String,
    server_port: i64,
    test_type: String,
    error: String,
    cpu_report: GoCpuReport,
}

/// The seed era's `IperfResult`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GoIperfResultSeed {
    upload_speed: f64,
    download_speed: f64,
    node_id: u32,
    node_ip: String,
    test_type: String,
    error: String,
    cpu_report: GoCpuReport,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GoCpuReport {
    host_total: f64,
    host_user: f64,
    host_system: f64,
    remote_total: f64,
    remote_user: f64,
    remote_system: f64,
}

use common::logged::Logged;

/// Serves `body` with `status` to every GET, on 127.0.0.1 of the calling
/// thread's namespace; returns its URL. Lives as long as the runtime.
async fn list_server(status: u16, body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/servers.json",
        listener.local_addr().expect("addr")
    );
    common::loopback::serve_http(listener, status, String::new(), body);
    url
}

/// The `[iperf]` section of a public-servers test: short runs and retries.
fn config(list_url: &str, iperf3: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "[iperf]\nmode = \"public-servers\"\nserver_list_url = {list_url:?}\n\
         iperf3 = {:?}\nduration = \"1s\"\nrun_timeout = \"30s\"\n\
         server_connect_timeout = \"500ms\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n{extra}",
        iperf3.display().to_string()
    );
    Config::from_toml(&text).expect("test config")
}

/// One run of the task in namespace `ns`, with the list served there.
fn run_in(
    ns: &NetNs,
    status: u16,
    list: String,
    iperf3: PathBuf,
    extra: &'static str,
) -> anyhow::Result<Value> {
    in_netns(&ns.name, move || async move {
        let url = list_server(status, list).await;
        let task = task_of(&config(&url, &iperf3, extra));
        assert_eq!(
            task.description(),
            "Test network performance against public iperf3 servers with both UDP and TCP"
        );
        task.run(&RunContext::new(CancellationToken::new())).await
    })
}

/// Waits until no IPv6 address of `ns` is tentative: until then, the first
/// IPv6 connection over a fresh veth can take more than a second.
fn ipv6_settled(ns: &NetNs) {
    wait_for(Duration::from_secs(10), "IPv6 addresses settled", || {
        ns.exec(&["ip", "-6", "addr", "show", "tentative"])
            .trim()
            .is_empty()
            .then_some(())
    });
}

/// The task as the registry builds it from `config`.
fn task_of(config: &Config) -> Iperf {
    Iperf::new(&config.sections.iperf, &config.grid_context())
}

fn decode(value: &Value) -> Vec<GoIperfResult2026> {
    serde_json::from_value(value.clone()).expect("decodes into zos 2026's IperfResult")
}

#[test]
fn tcp_then_udp_against_the_one_reachable_server_of_a_messy_list() {
    let pair = IperfPair::start("ipc", "ips");
    ipv6_settled(&pair.client);
    ipv6_settled(&pair.server);
    let logged = Logged::new();
    let list = json!([
        {"IP/HOST": "198.51.100.2", "PORT": "not-a-port"},
        {"IP/HOST": "", "PORT": "300"},
        {"IP/HOST": "198.51.100.2", "PORT": "9"},
        {"IP/HOST": "2001:db8:1::2", "PORT": "300-310", "SITE": "Lab"},
        {"IP/HOST": "198.51.100.2"},
    ])
    .to_string();
    let value = run_in(
        &pair.client,
        200,
        list,
        logged.program(),
        "server_tries = 5\n",
    )
    .expect("run");
    let entries = decode(&value);
    assert_eq!(entries.len(), 2, "{value}");
    for (e, kind) in entries.iter().zip(["tcp", "udp"]) {
        assert_eq!(e.test_type, kind);
        assert_eq!(e.error, "", "{e:?}");
        assert_eq!(e.server_host, "2001:db8:1::2");
        assert_eq!(e.server_ip, "2001:db8:1::2");
        assert_eq!(e.server_port, 300);
        assert!(e.upload_speed > 0.0 && e.download_speed > 0.0, "{e:?}");
        assert!(e.cpu_report.host_total > 0.0, "{e:?}");
    }
    let calls = logged.args();
    let runs: Vec<&String> = calls.iter().filter(|c| !c.contains("busy")).collect();
    assert_eq!(
        runs.first().map(|s| s.as_str()),
        Some("--client 2001:db8:1::2 --port 300 --time 1 --json")
    );
    assert_eq!(
        runs.last().map(|s| s.as_str()),
        Some("--client 2001:db8:1::2 --port 300 --time 1 --json --udp --bandwidth 10M")
    );
}

#[test]
fn a_host_name_is_resolved_for_server_ip() {
    let ns = NetNs::new("iph");
    // Only on IPv4: "localhost" also resolves to ::1, which refuses.
    let _server = ns.spawn(&["iperf3", "-s", "-p", "5201", "-B", "127.0.0.1"]);
    wait_for(Duration::from_secs(10), "iperf3 listening", || {
        let out = ns.exec(&["ss", "-Hltn", "sport = :5201"]);
        (!out.trim().is_empty()).then_some(())
    });
    let list = json!([{"IP/HOST": "localhost", "PORT": "5201"}]).to_string();
    let value = run_in(&ns, 200, list, "iperf3".into(), "").expect("run");
    let entries = decode(&value);
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert_eq!(e.server_host, "localhost");
        assert_eq!(e.server_ip, "127.0.0.1");
        assert_eq!(e.error, "", "{e:?}");
    }
}

#[test]
fn silent_servers_are_passed_over_and_the_tries_are_bounded() {
    let pair = IperfPair::start("ipc", "ips");
    // 203.0.113.0/24 is routed to a gateway that drops everything.
    for cmd in [
        "ip link add d0 type veth peer name d1",
        "ip link set d0 up",
        "ip link set d1 up",
        "ip addr add 192.0.2.1/24 dev d0",
        "ip neigh replace 192.0.2.254 lladdr 02:00:00:00:02:54 dev d0 nud permanent",
        "ip route add 203.0.113.0/24 via 192.0.2.254 dev d0",
    ] {
        pair.client.exec(&cmd.split(' ').collect::<Vec<_>>());
    }
    let silent = |n: u8| json!({"IP/HOST": format!("203.0.113.{n}"), "PORT": "5201"});
    // Whatever the shuffle, 4 tries reach the good one.
    let list = json!([silent(1), silent(2), silent(3), {"IP/HOST": "198.51.100.2", "PORT": "300"}])
        .to_string();
    let value = run_in(
        &pair.client,
        200,
        list,
        "iperf3".into(),
        "server_tries = 4\n",
    )
    .expect("run");
    let entries = decode(&value);
    assert!(entries
        .iter()
        .all(|e| e.server_ip == "198.51.100.2" && e.error.is_empty()));

    let list = json!([silent(1), silent(2), silent(3)]).to_string();
    let err = run_in(
        &pair.client,
        200,
        list,
        "iperf3".into(),
        "server_tries = 2\n",
    )
    .expect_err("no server");
    let msg = format!("{err:#}");
    assert!(msg.starts_with(NO_SERVER), "{msg}");
    assert!(msg.contains("2 tried of 3 listed"), "{msg}");
    assert!(msg.contains("no answer within 500ms"), "{msg}");
}

#[test]
fn a_busy_server_is_retried_with_the_2026_backoff() {
    let pair = IperfPair::start("ipc", "ips");
    // Another client keeps the server busy for a while (at 1 Mbit/s: the
    // server's one test slot is what is busy, not a CPU).
    let busy: Vec<&str> = "iperf3 -c 198.51.100.2 -p 300 -t 3 -b 1M"
        .split(' ')
        .collect();
    let other = pair.client.spawn(&busy);
    wait_for(Duration::from_secs(10), "the other client's test", || {
        let out = pair
            .server
            .exec(&["ss", "-Htn", "state", "established", "sport = :300"]);
        (out.lines().count() >= 2).then_some(())
    });
    let logged = Logged::new();
    let list = json!([{"IP/HOST": "198.51.100.2", "PORT": "300"}]).to_string();
    let value = run_in(&pair.client, 200, list, logged.program(), "retries = 6\n").expect("run");
    drop(other);
    let entries = decode(&value);
    assert!(
        entries
            .iter()
            .all(|e| e.error.is_empty() && e.upload_speed > 0.0),
        "{value}"
    );
    let tcp_runs = logged
        .args()
        .iter()
        .filter(|c| !c.contains("--udp"))
        .count();
    assert!(
        tcp_runs >= 2,
        "the busy TCP run was retried: {:?}",
        logged.args()
    );
}

#[test]
fn iperf3s_own_error_is_kept_where_zos_stores_an_empty_one() {
    let ns = NetNs::new("ipe");
    let value = in_netns(&ns.name, || async {
        // Accepts connections and closes them: iperf3 exits 1 with a JSON
        // error, where zos would store "".
        let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = fake.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = fake.accept().await {
                drop(conn);
            }
        });
        let list = json!([{"IP/HOST": "127.0.0.1", "PORT": port}]).to_string();
        let url = list_server(200, list).await;
        let task = task_of(&config(
            &url,
            std::path::Path::new("iperf3"),
            "retries = 0\n",
        ));
        task.run(&RunContext::new(CancellationToken::new())).await
    })
    .expect("run");
    let entries = decode(&value);
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert!(!e.error.is_empty(), "iperf3's error text is kept: {e:?}");
        assert_eq!((e.upload_speed, e.download_speed), (0.0, 0.0));
    }
}

#[test]
fn a_broken_list_fails_the_run_with_the_reason() {
    let ns = NetNs::new("ipl");
    for (status, body, want) in [
        (200, "<html>maintenance</html>", "not JSON"),
        (
            200,
            "{\"IP/HOST\": \"x\", \"PORT\": \"1\"}",
            "not a JSON array",
        ),
        (500, "[]", "unexpected status code: 500"),
        // Only 200 is the list, as zos has it; other 2xx are not.
        (203, "[]", "unexpected status code: 203"),
        (200, "[]", "0 tried of 0 listed"),
    ] {
        let err =
            run_in(&ns, status, body.to_string(), "iperf3".into(), "").expect_err("broken list");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("failed to fetch public iperf3 server"),
            "{msg}"
        );
        assert!(msg.contains(want), "{want}: {msg}");
    }
}

/// zos fails the run when iperf3 is missing (so the previous result
/// stays), before fetching the list; it stores no zero-speed entries.
#[test]
fn a_missing_iperf3_fails_the_run_and_stores_no_entries() {
    let ns = NetNs::new("ipm");
    // A reachable server: without the check, the run would store two
    // entries with zero speeds and iperf3's absence as their error.
    let _server = ns.spawn(&["iperf3", "-s", "-p", "5201", "-B", "127.0.0.1"]);
    wait_for(Duration::from_secs(10), "iperf3 listening", || {
        let out = ns.exec(&["ss", "-Hltn", "sport = :5201"]);
        (!out.trim().is_empty()).then_some(())
    });
    let list = json!([{"IP/HOST": "127.0.0.1", "PORT": "5201"}]).to_string();
    let err = run_in(&ns, 200, list, "/nonexistent/iperf3".into(), "")
        .expect_err("a run without iperf3 fails");
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("iperf not found: /nonexistent/iperf3: not found or not executable"),
        "{msg}"
    );
}

#[test]
fn grid_nodes_mode_still_stores_the_seed_shape() {
    let pair = IperfPair::start("ipc", "ips");
    let value = in_netns(&pair.client.name, move || async move {
        let mut grid = Grid::default();
        grid.nodes
            .push(node(10, 1, Some("198.51.100.2/30"), Some("2001:db8:1::2/64"), "192.0.2.9"));
        let gql = GraphQlServer::grid(grid);
        let config = Config::from_toml(&format!(
            "node_id = 1\n[grid]\ngraphql_urls = [{:?}]\n[iperf]\nmode = \"grid-nodes\"\nduration = \"1s\"\n\
             other_farm_nodes = 0\nbusy_backoff_initial = \"500ms\"\nbusy_backoff_max = \"1s\"\n",
            gql.url()
        ))
        .expect("config");
        let task = task_of(&config);
        assert_eq!(
            task.description(),
            "Test public nodes network performance with both UDP and TCP over IPv4 and IPv6"
        );
        let v = task.run(&RunContext::new(CancellationToken::new())).await;
        drop(gql);
        v
    })
    .expect("run");
    let entries: Vec<GoIperfResultSeed> =
        serde_json::from_value(value.clone()).expect("decodes into the seed's IperfResult");
    assert_eq!(entries.len(), 4, "{value}");
    assert!(
        entries
            .iter()
            .all(|e| e.node_id == 10 && e.error.is_empty()),
        "{value}"
    );
}
