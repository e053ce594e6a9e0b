//! `zos-perf collect` end to end: the real binary against test responders
//! on the test relay and the GraphQL stand-in, nodes that answer, are
//! down, too slow, answer junk or leave the grid; its `/metrics` through
//! promtool and a real Prometheus, its page in headless Chromium.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::graphql::{node, GraphQlServer, Grid};
use common::observe::{get, listen_addr, sample, strip_ansi};
use common::rmbgrid::{seed, Behaviour, Responder, RmbGrid, MNEMONIC_A};
use serde_json::{json, Value};
use zos_perf::rmb::error::exit;
use zos_perf::rmb::{Identity, KeyType};

const CALLER: u32 = 100;
const FARM: u32 = 5;

fn now() -> u64 {
    zos_perf::unix_time::unix_now()
}

/// Node `10 + i`'s results: figures that differ from node to node.
fn results(i: u32) -> Value {
    let t = now() - 60 * u64::from(i + 1);
    let f = f64::from(i);
    json!([
        {"name": "cpu-benchmark", "description": "cpu", "timestamp": t,
         "result": {"single": 1.0 + 0.125 * f, "multi": 0.25 + 0.03 * f, "threads": 8, "workloads": 0}},
        {"name": "iperf", "description": "iperf", "timestamp": t - 30, "result": [
            {"upload_speed": 2.0e8 + 1.0e7 * f, "download_speed": 4.0e8 + 5.0e7 * f, "node_id": 1,
             "node_ip": "198.51.100.2", "test_type": "tcp", "error": "", "cpu_report": {}},
            {"upload_speed": 9.9e9, "download_speed": 9.9e9, "node_id": 2,
             "node_ip": "198.51.100.3", "test_type": "tcp", "error": "busy", "cpu_report": {}}]},
        {"name": "healthcheck", "description": "health", "timestamp": t,
         "result": if i % 5 == 3 { json!({"cache": ["full"], "network": []}) } else { json!({"cache": [], "network": []}) }},
        {"name": "public-ip-validation", "description": "ips", "timestamp": t,
         "result": {"203.0.113.10/24": {"state": "valid", "reason": ""},
                    "203.0.113.11/24": {"state": if i % 4 == 1 { "invalid" } else { "valid" }, "reason": "x"}}},
        {"name": "provisiontest", "description": "vm", "timestamp": t,
         "result": if i % 7 == 4 { json!(["no marker within 2m0s"]) } else { json!([]) }}
    ])
}

/// How a node of the test farm behaves.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Answers,
    /// On the chain and listed, never connected to the relay.
    Down,
    /// Connected, never answers (slower than any timeout).
    Slow,
    /// Answers valid JSON that is not a list of results.
    Junk,
    /// Answers its error with markup and terminal escapes in it.
    Hostile,
}

const HOSTILE: &str = "<script>alert(1)</script>\u{1b}[31mred\nline";

/// A farm of nodes `10 + i` (twins `1000 + i`), as `kinds` say, listed
/// by the GraphQL stand-in.
struct Farm {
    g: RmbGrid,
    gql: GraphQlServer,
    _responders: Vec<Responder>,
    config: tempfile::NamedTempFile,
}

impl Farm {
    fn start(kinds: &[Kind]) -> Farm {
        let g = RmbGrid::start();
        let caller = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).expect("caller");
        g.add_twin(CALLER, &caller, true);
        let mut responders = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let i = i as u32;
            let who = Identity::from_secret(&seed(i), KeyType::Ed25519).expect("node identity");
            g.add_twin(1000 + i, &who, true);
            g.add_node(10 + i, FARM, 1000 + i);
            let (answers, behaviour) = match kind {
                Kind::Answers => (results(i), Behaviour::Normal),
                Kind::Down => continue,
                Kind::Slow => (results(i), Behaviour::Silent),
                Kind::Junk => (json!({"not": "results"}), Behaviour::Normal),
                Kind::Hostile => (json!(HOSTILE), Behaviour::Hostile),
            };
            responders.push(Responder::start(&g, who, 1000 + i, answers, behaviour));
        }
        let gql = GraphQlServer::grid(Farm::listing(kinds.len() as u32, &[]));
        let config = tempfile::NamedTempFile::new().expect("config");
        std::fs::write(
            config.path(),
            format!(
                "[rmb]\nchain_timeout = \"2s\"\n[grid]\ngraphql_urls = [\"{}\"]\n",
                gql.url()
            ),
        )
        .expect("write config");
        Farm {
            g,
            gql,
            _responders: responders,
            config,
        }
    }

    /// Nodes `10..10 + n` but `except`, up in the farm.
    fn listing(n: u32, except: &[u32]) -> Grid {
        let mut grid = Grid::default();
        for id in (10..10 + n).filter(|id| !except.contains(id)) {
            grid.nodes.push(node(id, FARM, None, None, ""));
        }
        grid
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zos-perf"));
        cmd.arg("collect")
            .args(args)
            .args(self.g.caller_args())
            .args(["--kernel-cmdline", "/dev/null"])
            .arg("--config")
            .arg(self.config.path())
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
            .env_remove("ZOS_PERF_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// `collect --once` with `args`; fails the test if it outlives a minute.
    fn once(&self, args: &[&str]) -> Output {
        let mut child = self
            .command(&["--once"])
            .args(args)
            .env("ZOS_PERF_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn collect");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("collect --once hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }

    /// A long-running collector on a port of its own choosing.
    fn serve(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(&["--farm", "5", "--listen", "127.0.0.1:0", "--log", "info"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn collect");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listen_addr(&strip_ansi(&line)) {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("collect says where it listens");
        Running { child, addr }
    }
}

struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn metrics(&self) -> String {
        let a = get(self.addr, "/metrics", "");
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    /// Scrapes until `done` holds (each round is a second apart).
    fn metrics_when(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        common::wait_for(Duration::from_secs(60), what, || {
            let m = self.metrics();
            done(&m).then_some(m)
        })
    }
}

fn node_sample(scrape: &str, family: &str, node: u32) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| l.contains(&format!("node_id=\"{node}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn once_json_reads_each_node_and_names_the_down_slow_and_junk_ones() {
    use Kind::*;
    let farm = Farm::start(&[Answers, Answers, Down, Slow, Junk, Hostile]);
    let out = farm.once(&["--farm", "5", "--json", "--timeout", "3s"]);
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::PARTIAL)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 of 6 nodes could not be asked"));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let rows = rows.as_array().expect("an array");
    let by_node: BTreeMap<u64, &Value> = rows
        .iter()
        .map(|r| (r["node"].as_u64().expect("node"), r))
        .collect();
    assert_eq!(
        by_node.keys().copied().collect::<Vec<_>>(),
        [10, 11, 12, 13, 14, 15]
    );
    for (node, i) in [(10, 0.0), (11, 1.0)] {
        let r = by_node[&node];
        assert_eq!(r["answered"], true, "{r}");
        assert_eq!(r["farm"], 5);
        assert_eq!(r["twin"], 1000 + node - 10);
        assert_eq!(r["cpu_single"], 1.0 + 0.125 * i, "{r}");
        assert_eq!(
            r["download"],
            4.0e8 + 5.0e7 * i,
            "the best run without error: {r}"
        );
        assert_eq!(r["health_failing"], 0);
        assert_eq!(r["provision_pass"], true);
        assert!(r["results"]["iperf"].as_u64().is_some(), "{r}");
        assert!(r["error"].is_null());
    }
    assert_eq!(by_node[&11]["ips"], json!([1, 1, 0]));
    let error = |n: u64| {
        by_node[&n]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for n in [12, 13, 14, 15] {
        assert_eq!(by_node[&n]["answered"], false, "{}", by_node[&n]);
        assert!(by_node[&n]["cpu_single"].is_null());
    }
    assert!(error(12).contains("twin 1002"), "down: {}", error(12));
    assert!(error(13).contains("1003"), "slow: {}", error(13));
    assert!(
        error(14).contains("not a list of results"),
        "junk: {}",
        error(14)
    );
    let hostile = error(15);
    assert!(hostile.contains("<script>"), "{hostile}");
    assert!(
        !hostile.contains(['\u{1b}', '\n']),
        "a node's error is kept on one line, escaped: {hostile:?}"
    );
}

#[test]
fn metrics_pass_promtool_and_a_node_that_leaves_the_grid_is_dropped() {
    use Kind::*;
    let farm = Farm::start(&[Answers, Answers, Down, Junk]);
    let c = farm.serve(&["--interval", "1s", "--jitter", "0s", "--timeout", "2s"]);
    let scrape = c.metrics_when("node 11's cpu score and node 12's failed poll", |m| {
        node_sample(m, "zos_perf_collect_cpu_single_seconds", 11).is_some()
            && node_sample(m, "zos_perf_collect_node_up", 12).is_some()
    });
    let out = common::pipe_into(
        Command::new("promtool").args(["check", "metrics"]),
        scrape.as_bytes(),
        "promtool must be installed (scripts/setup)",
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n--- scrape:\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s = |family: &str, node: u32| node_sample(&scrape, family, node);
    assert_eq!(s("zos_perf_collect_cpu_single_seconds", 11), Some(1.125));
    assert_eq!(s("zos_perf_collect_cpu_single_seconds", 10), Some(1.0));
    assert_eq!(s("zos_perf_collect_node_up", 10), Some(1.0));
    assert_eq!(s("zos_perf_collect_node_up", 12), Some(0.0), "down");
    assert_eq!(s("zos_perf_collect_node_up", 13), Some(0.0), "junk");
    assert_eq!(
        s("zos_perf_collect_iperf_best_download_bytes_per_second", 11),
        Some(4.5e8 / 8.0)
    );
    assert!(scrape.contains(
        "zos_perf_collect_public_ips{node_id=\"11\",farm_id=\"5\",twin_id=\"1001\",state=\"invalid\"} 1"
    ), "{scrape}");
    let stamp = s("zos_perf_collect_result_timestamp_seconds", 10).expect("a result time");
    assert!((55.0..600.0).contains(&(now() as f64 - stamp)), "{stamp}");
    assert!(s("zos_perf_collect_node_poll_duration_seconds", 12).is_some());
    assert_eq!(sample(&scrape, "zos_perf_collect_nodes_listed"), Some(4.0));

    // OpenMetrics, as Prometheus asks for it.
    let om = get(
        c.addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0\r\n",
    );
    assert!(om.body.ends_with("# EOF\n"));

    // Node 11 leaves the grid: gone at the next listing.
    farm.gql.set_handler({
        let grid = Farm::listing(4, &[11]);
        move |q| grid.answer(q)
    });
    let scrape = c.metrics_when("node 11 dropped", |m| {
        node_sample(m, "zos_perf_collect_node_up", 11).is_none()
    });
    assert_eq!(sample(&scrape, "zos_perf_collect_nodes_listed"), Some(3.0));
    assert_eq!(
        node_sample(&scrape, "zos_perf_collect_node_up", 10),
        Some(1.0)
    );
    assert!(!scrape.contains("node_id=\"11\""), "{scrape}");
}

#[test]
fn prometheus_scrapes_the_collector_and_a_query_gives_each_node_its_value() {
    use Kind::*;
    let farm = Farm::start(&[Answers, Answers, Answers, Down]);
    let c = farm.serve(&["--interval", "2s", "--timeout", "2s"]);
    c.metrics_when("a first round", |m| {
        node_sample(m, "zos_perf_collect_cpu_single_seconds", 12).is_some()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: zos-perf-collect\n    static_configs:\n      - targets: ['{}']\n",
            c.addr
        ),
    )
    .expect("prometheus config");
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    common::die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let mut child = cmd
        .spawn()
        .expect("prometheus must be installed (scripts/setup)");
    let stderr = child.stderr.take().expect("stderr");
    let _prometheus = common::KillOnDrop(child);
    // Its port: the address it says it listens on (it picked it).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("msg=\"Listening on\"") {
                let addr = line.split("address=").nth(1).map(|a| a.trim().to_string());
                let _ = tx.send(addr);
            }
        }
    });
    let prom = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("prometheus says where it listens");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::new();
    let query = |q: &str| -> Option<Value> {
        rt.block_on(async {
            client
                .get(format!("http://{prom}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        })
    };
    let values = common::wait_for(
        Duration::from_secs(90),
        "prometheus sees every node",
        || {
            let v = query("zos_perf_collect_cpu_single_seconds{job=\"zos-perf-collect\"}")?;
            let by_node: BTreeMap<String, String> = v["data"]["result"]
                .as_array()?
                .iter()
                .filter_map(|r| {
                    Some((
                        r["metric"]["node_id"].as_str()?.to_string(),
                        r["value"][1].as_str()?.to_string(),
                    ))
                })
                .collect();
            (by_node.len() == 3).then_some(by_node)
        },
    );
    assert_eq!(values["10"], "1");
    assert_eq!(values["11"], "1.125");
    assert_eq!(values["12"], "1.25");
    let down = query("zos_perf_collect_node_up == 0").expect("query");
    assert_eq!(
        down["data"]["result"][0]["metric"]["node_id"], "13",
        "{down}"
    );
}

/// The node ids of the table's rows, in the order the browser shows them.
fn row_order(dom: &str) -> Vec<u32> {
    let body = dom.split("<tbody>").nth(1).unwrap_or_default();
    body.split("<tr>")
        .skip(1)
        .filter_map(|row| {
            row.split("data-v=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn the_fleet_page_in_headless_chromium_sorts_and_escapes() {
    use Kind::*;
    let mut kinds = vec![Answers; 9];
    kinds.extend([Down, Hostile]);
    let farm = Farm::start(&kinds);
    let c = farm.serve(&["--interval", "1h", "--timeout", "2s"]);
    c.metrics_when("the first round", |m| {
        sample(m, "zos_perf_collect_rounds_total").is_some_and(|r| r >= 1.0)
    });
    let page = get(c.addr, "/", "");
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    let dir = tempfile::tempdir().expect("tempdir");

    // Sorted by the CPU score, slowest first, by the page's script: the
    // script ran under the page's CSP, or the order would be by node id.
    let url = format!("http://{}/#sort=cpu_single-", c.addr);
    let out = common::browser::chromium(&["--dump-dom", &url], &dir.path().join("profile-dom"));
    let dom = String::from_utf8_lossy(&out.stdout);
    let order = row_order(&dom);
    assert_eq!(order.len(), 11, "{dom}");
    assert_eq!(&order[..9], &[18, 17, 16, 15, 14, 13, 12, 11, 10], "{dom}");
    assert!(
        dom.contains("class=\"desc\""),
        "the sorted column is marked: {dom}"
    );
    assert!(dom.contains("no answer"), "{dom}");
    assert_eq!(
        dom.matches("<svg").count(),
        4,
        "the four distributions: {dom}"
    );
    assert!(dom.contains("<rect"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !dom.contains("<script>alert"),
        "a node's text is shown, never run: {dom}"
    );

    // By download, fastest first.
    let url = format!("http://{}/#sort=download-", c.addr);
    let out = common::browser::chromium(&["--dump-dom", &url], &dir.path().join("profile-dl"));
    let order = row_order(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(order.first(), Some(&18));

    let keep = std::env::var_os("ZOS_PERF_SCREENSHOT_DIR");
    let png = dir.path().join("collect.png");
    common::browser::chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
            &format!("http://{}/", c.addr),
        ],
        &dir.path().join("profile-shot"),
    );
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "screenshot"
    );
    if let Some(keep) = keep {
        std::fs::copy(&png, Path::new(&keep).join("collect.png")).expect("keep screenshot");
    }
}
