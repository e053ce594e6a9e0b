//! The iperf task against real iperf3 servers in namespaces this test
//! builds, with the grid's GraphQL played by the stand-in.
//!
//! Layout: a "client" namespace, where the task runs (on a thread moved
//! into it, with its own runtime) and where the GraphQL stand-in listens on
//! loopback; one "server" namespace per target, joined to the client by a
//! veth pair, holding 198.51.100.(4k+2)/30 and 2001:db8:k::2/64 and running
//! `iperf3 -s -p 300`. No traffic leaves these namespaces.

use crate::common;

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::graphql::{closed_url, node, GraphQlServer, Grid, Reply};
use common::{unique_name, IperfServer, NetNs, RedisServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::tasks::iperf::report::{Entry, BUSY};
use zos_perf::tasks::iperf::Iperf;
use zos_perf::tasks::{RunContext, Task};

/// This node's id in every test; never a target.
const ME: u32 = 1;

/// The client namespace and its servers.
struct Lab {
    client: NetNs,
    servers: Vec<IperfServer>,
}

impl Lab {
    fn new(servers: usize) -> Lab {
        let client = NetNs::new("ipc");
        let mut lab = Lab {
            client,
            servers: Vec::new(),
        };
        for k in 0..servers {
            lab.add_server(k);
        }
        lab
    }

    fn add_server(&mut self, k: usize) {
        self.servers
            .push(IperfServer::start(&self.client, "ips", k));
    }

    /// A GraphQL node object for server `k`.
    fn node(&self, k: usize, id: u32, farm: u32) -> Value {
        let s = &self.servers[k];
        let prefix6 = format!("{}/64", s.v6);
        node(
            id,
            farm,
            Some(&format!("{}/30", s.v4)),
            Some(&prefix6),
            "10.9.0.1",
        )
    }
}

/// Runs `f` on a thread moved into namespace `ns`, with a runtime of its
/// own, so that sockets and iperf3 children it makes live there. The test's
/// other threads stay where they are.
fn in_netns<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    let path = PathBuf::from("/var/run/netns").join(&ns.name);
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The iperf task of `config`.
fn iperf(config: &Config) -> Iperf {
    Iperf::new(&config.sections.iperf, &config.grid_context())
}

/// A configuration for tests: short runs, short backoff, the given GraphQL
/// URLs and iperf3 program; `extra` lines of `[iperf]` replace the defaults
/// they name.
fn config(urls: &[String], iperf3: &Path, extra: &str) -> Config {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let mut iperf: Vec<String> = [
        "mode = \"grid-nodes\"",
        "duration = \"1s\"",
        "run_timeout = \"30s\"",
        "busy_backoff_initial = \"500ms\"",
        "busy_backoff_max = \"1s\"",
        "busy_retries = 8",
    ]
    .iter()
    .filter(|line| {
        let key = line.split('=').next().unwrap_or_default();
        !extra.lines().any(|l| l.starts_with(key))
    })
    .map(|l| l.to_string())
    .collect();
    iperf.extend(extra.lines().map(str::to_string));
    let text = format!(
        "node_id = {ME}\n[grid]\ngraphql_urls = [{}]\ngraphql_timeout = \"5s\"\n\
         [iperf]\niperf3 = {:?}\n{}\n",
        urls.join(", "),
        iperf3.display().to_string(),
        iperf.join("\n")
    );
    Config::from_toml(&text).expect("test config")
}

use common::logged::Logged;

async fn run(task: &Iperf, cancel: CancellationToken) -> anyhow::Result<Vec<Entry>> {
    let ctx = RunContext::new(cancel);
    let value = task.run(&ctx).await?;
    Ok(serde_json::from_value(value).expect("result is an array of entries"))
}

fn assert_good(e: &Entry) {
    assert_eq!(e.error, "", "{e:?}");
    assert!(e.upload_speed > 0.0, "{e:?}");
    assert!(e.download_speed > 0.0, "{e:?}");
    assert!(e.cpu_report.host_total > 0.0, "{e:?}");
    assert!(e.cpu_report.remote_total > 0.0, "{e:?}");
}

fn shape(entries: &[Entry]) -> Vec<(u32, String, String)> {
    entries
        .iter()
        .map(|e| (e.node_id, e.test_type.clone(), e.node_ip.clone()))
        .collect()
}

fn expected_shape(id: u32, v4: IpAddr, v6: IpAddr) -> Vec<(u32, String, String)> {
    vec![
        (id, "tcp".into(), v4.to_string()),
        (id, "tcp".into(), v6.to_string()),
        (id, "udp".into(), v4.to_string()),
        (id, "udp".into(), v6.to_string()),
    ]
}

#[test]
fn one_node_gives_tcp_and_udp_over_v4_and_v6_with_speeds_and_cpu() {
    let lab = Lab::new(1);
    let s = &lab.servers[0];
    // Keeps each run's report, to compare with what the task stored.
    let tee = Logged::with_body("out=\"$(dirname \"$0\")/out.$$.json\"\niperf3 \"$@\" > \"$out\"\nrc=$?\ncat \"$out\"\nexit $rc");
    let (entries, queries) = in_netns(&lab.client, || {
        let mut grid = Grid::default();
        grid.nodes.push(lab.node(0, 10, 1));
        let gql = GraphQlServer::grid(grid);
        // The first URL is down: the second answers.
        let task = iperf(&config(&[closed_url(), gql.url()], &tee.program(), ""));
        let entries = block_on(run(&task, CancellationToken::new())).expect("iperf run");
        (entries, gql.queries())
    });
    assert_eq!(shape(&entries), expected_shape(10, s.v4, s.v6));
    entries.iter().for_each(assert_good);

    // The figures are the documented ones (docs/tasks/iperf.md), read from iperf3's own reports.
    // A run may meet the server still busy closing the previous test and
    // be retried: pair each entry with the last invocation of its run.
    let report_of = |pid: u32| -> Value {
        let text =
            std::fs::read_to_string(tee.dir().join(format!("out.{pid}.json"))).expect("report");
        serde_json::from_str(&text).expect("report json")
    };
    let calls: Vec<(u32, String)> = tee
        .calls()
        .into_iter()
        .filter(|(pid, _)| report_of(*pid)["error"].as_str() != Some(BUSY))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for (entry, (pid, args)) in entries.iter().zip(&calls) {
        assert!(
            args.starts_with(&format!(
                "--client {} --port 300 --interval 20 --bandwidth 0 -R --json",
                entry.node_ip
            )),
            "{args}"
        );
        assert_eq!(
            args.contains("--length 16B --udp"),
            entry.test_type == "udp",
            "{args}"
        );
        assert!(args.ends_with("--time 1"), "{args}");
        let report = report_of(*pid);
        let end = &report["end"];
        assert_eq!(
            entry.upload_speed,
            end["sum_sent"]["bits_per_second"].as_f64().expect("sent")
        );
        let download = if entry.test_type == "udp" {
            end["streams"][0]["udp"]["bits_per_second"]
                .as_f64()
                .expect("udp stream figure")
        } else {
            end["sum_received"]["bits_per_second"]
                .as_f64()
                .expect("received")
        };
        assert_eq!(entry.download_speed, download, "{}", entry.test_type);
        assert_eq!(
            entry.cpu_report.remote_user,
            end["cpu_utilization_percent"]["remote_user"]
                .as_f64()
                .expect("cpu")
        );
    }
    // The free farm and the other farms were both asked for, with filters.
    assert!(
        queries.iter().any(|q| q.contains("farmID_eq: 1")),
        "{queries:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.contains("nodesConnection(") && q.contains("farmID_not_eq: 1")),
        "{queries:?}"
    );
}

#[test]
fn a_busy_server_is_retried_until_it_is_free() {
    let lab = Lab::new(1);
    let s = &lab.servers[0];
    // Another client keeps the server busy for 2 s, at 1 Mbit/s: busy is
    // a matter of the one test slot, not of load, and at full speed it
    // would take a CPU for those 2 s.
    let busy: Vec<&str> = "iperf3 -c 127.0.0.1 -p 300 -t 2 -b 1M".split(' ').collect();
    let _busy = s.ns.spawn(&busy);
    common::wait_for(
        Duration::from_secs(10),
        "the other client connected",
        || {
            let out =
                s.ns.exec(&["ss", "-Htn", "state", "established", "( sport = :300 )"]);
            (!out.trim().is_empty()).then_some(())
        },
    );
    let logged = Logged::new();
    let entries = in_netns(&lab.client, || {
        let mut grid = Grid::default();
        grid.nodes.push(lab.node(0, 10, 1));
        let gql = GraphQlServer::grid(grid);
        let task = iperf(&config(&[gql.url()], &logged.program(), ""));
        block_on(run(&task, CancellationToken::new())).expect("iperf run")
    });
    assert_eq!(shape(&entries), expected_shape(10, s.v4, s.v6));
    entries.iter().for_each(assert_good);
    let calls = logged.calls();
    assert!(calls.len() > 4, "the busy answer was retried: {calls:?}");
    assert_eq!(calls[0].1, calls[1].1, "the retry repeats the same run");
}

#[test]
fn an_unreachable_target_gets_errors_and_zero_speeds_and_the_others_still_run() {
    let lab = Lab::new(1);
    let s = &lab.servers[0];
    let entries = in_netns(&lab.client, || {
        let mut grid = Grid::default();
        // Nothing routes to 203.0.113.0/24 or 2001:db8:ffff::/48 here.
        grid.nodes.push(node(
            5,
            1,
            Some("203.0.113.77/24"),
            Some("2001:db8:ffff::77/64"),
            "",
        ));
        grid.nodes.push(lab.node(0, 20, 7));
        let gql = GraphQlServer::grid(grid);
        let task = iperf(&config(&[gql.url()], Path::new("iperf3"), ""));
        block_on(run(&task, CancellationToken::new())).expect("iperf run")
    });
    let v4: IpAddr = "203.0.113.77".parse().expect("ip");
    let v6: IpAddr = "2001:db8:ffff::77".parse().expect("ip");
    let mut expected = expected_shape(5, v4, v6);
    expected.extend(expected_shape(20, s.v4, s.v6));
    assert_eq!(shape(&entries), expected);
    for e in &entries[..4] {
        assert!(
            e.error.starts_with("unable to connect to server: "),
            "{e:?}"
        );
        assert_eq!((e.upload_speed, e.download_speed), (0.0, 0.0), "{e:?}");
    }
    entries[4..].iter().for_each(assert_good);
}

#[test]
fn malformed_or_own_addresses_are_skipped_without_starting_iperf3() {
    let client = NetNs::new("ipc");
    // This node's own public address, on a local interface (a veth pair
    // inside the namespace: this kernel has no dummy links).
    let (a, b) = (unique_name("va"), unique_name("vb"));
    client.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    client.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", &a]);
    client.exec(&["ip", "link", "set", &a, "up"]);
    let logged = Logged::new();
    let entries = in_netns(&client, || {
        let mut grid = Grid::default();
        for (id, v4, v6) in [
            (2, "198.51.100.2; reboot", "2001:db8::2/64"),
            (3, "198.51.100.3/24", "2001:db8::3/200"),
            (4, "198.51.100.4/24", "198.51.100.44/24"),
            (5, "255.255.255.255/32", "2001:db8::5/64"),
            (6, "127.0.0.1/8", "::1/128"),
            (7, "198.51.100.1/24", "2001:db8::7/64"), // this node's own address
            (ME, "198.51.100.9/24", "2001:db8::9/64"), // this node
            (8, "203.0.113.8/24", "2001:db8:ffff::8/64"), // fine (unreachable)
        ] {
            grid.nodes.push(node(id, 1, Some(v4), Some(v6), ""));
        }
        let gql = GraphQlServer::grid(grid);
        let task = iperf(&config(&[gql.url()], &logged.program(), ""));
        block_on(run(&task, CancellationToken::new())).expect("iperf run")
    });
    let ids: HashSet<u32> = entries.iter().map(|e| e.node_id).collect();
    assert_eq!(ids, [8].into(), "{entries:?}");
    let calls = logged.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for (_, args) in &calls {
        assert!(
            args.contains("--client 203.0.113.8 ") || args.contains("--client 2001:db8:ffff::8 "),
            "{args}"
        );
    }
}

/// A grid of one node (9, farm 1) on documentation addresses that
/// nothing here routes to: the stand-in iperf3 decides each outcome.
fn one_unreachable_node() -> GraphQlServer {
    let mut grid = Grid::default();
    grid.nodes.push(node(
        9,
        1,
        Some("203.0.113.9/24"),
        Some("2001:db8:ffff::9/64"),
        "",
    ));
    GraphQlServer::grid(grid)
}

#[test]
fn a_run_past_its_time_limit_is_killed_and_reported() {
    let hang = Logged::with_body("exec sleep 30");
    let gql = one_unreachable_node();
    let cfg = config(
        &[gql.url()],
        &hang.program(),
        "run_timeout = \"300ms\"\nduration = \"100ms\"",
    );
    let task = iperf(&cfg);
    let entries = block_on(run(&task, CancellationToken::new())).expect("iperf run");
    assert_eq!(entries.len(), 4);
    for e in &entries {
        assert!(
            e.error.contains("did not finish within 300ms; killed"),
            "{e:?}"
        );
        assert_eq!((e.upload_speed, e.download_speed), (0.0, 0.0));
    }
    for (pid, _) in hang.calls() {
        assert!(!alive(pid), "iperf3 stand-in {pid} still alive");
    }
}

#[test]
fn output_that_is_not_a_report_becomes_the_entry_error() {
    let bad =
        Logged::with_body("echo 'iperf3: parameter error - bad port' >&2\necho garbage\nexit 1");
    let gql = one_unreachable_node();
    let task = iperf(&config(&[gql.url()], &bad.program(), ""));
    let entries = block_on(run(&task, CancellationToken::new())).expect("iperf run");
    assert_eq!(entries.len(), 4);
    for e in &entries {
        assert!(e.error.contains("not a JSON report"), "{e:?}");
        assert!(e.error.contains("exited with"), "{e:?}");
        assert!(e.error.contains("parameter error - bad port"), "{e:?}");
    }
}

#[test]
fn all_graphql_urls_down_fails_the_run_and_keeps_the_previous_result() {
    let redis = RedisServer::start();
    let previous = r#"{"name":"iperf","description":"Test public nodes network performance with both UDP and TCP over IPv4 and IPv6","timestamp":1700000000,"result":[{"upload_speed":1.5,"download_speed":2.5,"node_id":3,"node_ip":"198.51.100.3","test_type":"tcp","error":"","cpu_report":{"host_total":1.0,"host_user":0.5,"host_system":0.5,"remote_total":1.0,"remote_user":0.5,"remote_system":0.5}}]}"#;
    let _: () = redis::cmd("SET")
        .arg("perf.iperf")
        .arg(previous)
        .query(&mut redis.conn())
        .expect("seed previous result");

    let broken = GraphQlServer::start(|_| Reply::Status(502, "bad gateway".into()));
    let down = closed_url();
    let logged = Logged::new();
    let cfg = config(&[down.clone(), broken.url()], &logged.program(), "");
    let err = block_on(async {
        let shutdown = CancellationToken::new();
        let err = zos_perf::daemon::run_once(&cfg, &redis.url(), "iperf", shutdown.clone())
            .await
            .expect_err("run fails");
        shutdown.cancel();
        err
    });
    let msg = format!("{err:#}");
    assert!(msg.contains("no target list from GraphQL"), "{msg}");
    assert!(msg.contains(&down) && msg.contains(&broken.url()), "{msg}");
    assert!(msg.contains("502"), "{msg}");
    assert!(logged.calls().is_empty(), "no iperf3 without targets");
    let stored: String = redis::cmd("GET")
        .arg("perf.iperf")
        .query(&mut redis.conn())
        .expect("stored result");
    assert_eq!(
        stored, previous,
        "the previous result is kept byte for byte"
    );
}

#[test]
fn shutdown_during_a_run_leaves_no_iperf3_behind() {
    let lab = Lab::new(1);
    let logged = Logged::new();
    in_netns(&lab.client, || {
        let mut grid = Grid::default();
        grid.nodes.push(lab.node(0, 10, 1));
        let gql = GraphQlServer::grid(grid);
        let task = iperf(&config(
            &[gql.url()],
            &logged.program(),
            "duration = \"30s\"\nrun_timeout = \"60s\"\n",
        ));
        block_on(async {
            // 1. ctx.cancel fires: the run kills and reaps its iperf3 and fails.
            let cancel = CancellationToken::new();
            let run_fut = run(&task, cancel.clone());
            tokio::pin!(run_fut);
            let pid = tokio::select! {
                _ = &mut run_fut => panic!("the run ended before it was cancelled"),
                pid = running_iperf3(&logged, 0) => pid,
            };
            cancel.cancel();
            let started = Instant::now();
            let err = run_fut.await.expect_err("a cancelled run fails");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
            assert!(!alive(pid), "iperf3 {pid} left after cancel");

            // 2. The run's future is dropped (the monitor's timeout or
            //    shutdown): kill_on_drop takes iperf3 with it.
            let before = logged.calls().len();
            let mut run_fut = Box::pin(run(&task, CancellationToken::new()));
            let pid = tokio::select! {
                _ = &mut run_fut => panic!("the run ended early"),
                pid = running_iperf3(&logged, before) => pid,
            };
            drop(run_fut);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) {
                assert!(Instant::now() < deadline, "iperf3 {pid} left after drop");
                // Keep the runtime turning: it reaps the killed child.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    });
}

/// Waits until an invocation of the logged program, number `from` or
/// later, is a running iperf3 (not a zombie), and returns its pid. Later
/// ones count: a run may be retried when the server is still busy.
async fn running_iperf3(logged: &Logged, from: usize) -> u32 {
    loop {
        for (pid, _) in logged.calls().into_iter().skip(from) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains("(iperf3) ") && !stat.contains("(iperf3) Z") {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is still an iperf3 process, zombies included (a zombie was
/// not reaped: it is left behind too).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "<pid> (<comm>) <state> ...": a recycled pid has another comm.
        Ok(stat) => stat.contains("(iperf3)") || stat.contains("(sleep)"),
        Err(_) => false,
    }
}

#[test]
fn a_zero_or_too_long_duration_is_refused_by_configuration() {
    let err = Config::from_toml("[iperf]\nduration = \"0s\"\n").expect_err("zero");
    assert!(format!("{err:#}").contains("iperf.duration"), "{err:#}");
    let err = Config::from_toml("[iperf]\nduration = \"90s\"\nrun_timeout = \"60s\"\n")
        .expect_err("too long");
    assert!(format!("{err:#}").contains("iperf.run_timeout"), "{err:#}");
}
