//! The metrics listener, the textfile and the dashboard, checked with the
//! real tools that read them: promtool, a Prometheus server, node_exporter's
//! file format, and headless Chromium.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::observe::{config, exchange, get, sample, Observed, ALL_DISABLED, BIN};
use common::{closed_port, wait_for, KillOnDrop, NetNs, RedisServer};
use serde_json::{json, Value};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn set(redis: &RedisServer, key: &str, value: &Value) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value.to_string())
        .query(&mut redis.conn())
        .expect("SET");
}

fn stored(redis: &RedisServer, name: &str, ts: i64, result: Value) -> Value {
    let v = json!({"name": name, "description": "d", "timestamp": ts, "result": result});
    set(redis, &format!("perf.{name}"), &v);
    v
}

fn iperf_result(k: f64) -> Value {
    let e = |ip: &str, t: &str, down: f64, up: f64, err: &str| {
        json!({"upload_speed": up * k, "download_speed": down * k, "node_id": 7, "node_ip": ip,
               "test_type": t, "error": err, "cpu_report": {"host_total": 1.0, "host_user": 0.5,
               "host_system": 0.5, "remote_total": 1.0, "remote_user": 0.5, "remote_system": 0.5}})
    };
    json!([
        e("198.51.100.2", "tcp", 9.1e8, 4.2e8, ""),
        e("198.51.100.6", "tcp", 7.0e8, 3.0e8, ""),
        e("2001:db8::2", "tcp", 8.0e8, 5.0e8, ""),
        e("198.51.100.2", "udp", 1.0e6, 1.0e6, ""),
        e(
            "2001:db8::6",
            "udp",
            0.0,
            0.0,
            "the server is busy running a test. try again later"
        ),
    ])
}

fn public_ip_result() -> Value {
    json!({"203.0.113.10/24": {"state": "valid", "reason": ""},
           "203.0.113.11/24": {"state": "valid", "reason": ""},
           "203.0.113.12/24": {"state": "invalid", "reason": "public ip does not match farm ip"},
           "203.0.113.13/24": {"state": "skipped", "reason": "ip is already assigned to a contract"}})
}

fn promtool_check(text: &str) {
    let out = common::pipe_into(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
        "promtool must be installed (scripts/setup)",
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n--- scrape:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_scrape_after_every_task_ran_passes_promtool() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["cache", "flags"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    let service = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open = service.local_addr().expect("addr").port();
    let closed = closed_port();
    // iperf and public-ip-validation fail at once (their grid is a closed
    // port); their earlier results stay and are exported.
    stored(&redis, "iperf", now() - 60, iperf_result(1.0));
    stored(
        &redis,
        "public-ip-validation",
        now() - 60,
        public_ip_result(),
    );
    let cfg = config(
        dir.path(),
        &format!(
            "farm_id = 1\nnode_id = 1\n\
[grid]\ngraphql_urls = [\"http://127.0.0.1:{closed}/graphql\"]\ngraphql_timeout = \"2s\"\n\
[healthcheck]\ncache_dir = \"{0}/cache\"\nflags_dir = \"{0}/flags\"\nbackoff_total = \"0s\"\n\
connect_timeout = \"2s\"\nservices = [\"http://127.0.0.1:{open}\", \"http://127.0.0.1:{closed}\"]\n\
[tasks.cpu-benchmark]\njitter = 0\n[tasks.healthcheck]\njitter = 0\n\
[tasks.iperf]\ncron = \"*/2 * * * * *\"\njitter = 0\n\
[tasks.public-ip-validation]\ncron = \"*/2 * * * * *\"\njitter = 0\n\
[metrics]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().display()
        ),
    );
    let daemon = Observed::start(&[], &cfg, &redis.url(), true);
    let addr = daemon.addr();
    let tasks = [
        "cpu-benchmark",
        "healthcheck",
        "iperf",
        "public-ip-validation",
    ];
    wait_for(Duration::from_secs(180), "every task to have run", || {
        let body = get(addr, "/metrics", "").body;
        tasks
            .iter()
            .all(|t| {
                sample(&body, &format!("zos_perf_task_runs_total{{task=\"{t}\"}}")).unwrap_or(0.0)
                    >= 1.0
            })
            .then_some(body)
    });
    // Some bus traffic, one answer and one error.
    for payload in [r#"{"Name":"cpu-benchmark"}"#, r#"{"Name":"bogus"}"#] {
        let _ = Command::new(BIN)
            .args(["--redis", &redis.url(), "call", "zos.perf.get", payload])
            .output()
            .expect("call");
    }
    let scrape = wait_for(Duration::from_secs(10), "bus counters", || {
        let body = get(addr, "/metrics", "").body;
        (sample(&body, "zos_perf_bus_replies_total{code=\"6\"}") == Some(1.0)).then_some(body)
    });
    promtool_check(&scrape);

    let cpu: Value = serde_json::from_str(
        &redis::cmd("GET")
            .arg("perf.cpu-benchmark")
            .query::<String>(&mut redis.conn())
            .expect("cpu result"),
    )
    .expect("JSON");
    assert_eq!(
        sample(&scrape, "zos_perf_cpu_single_seconds"),
        cpu["result"]["single"].as_f64()
    );
    assert_eq!(
        sample(&scrape, "zos_perf_cpu_threads"),
        cpu["result"]["threads"].as_f64()
    );
    assert_eq!(
        sample(
            &scrape,
            "zos_perf_healthcheck_failing_items{check=\"network\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "zos_perf_healthcheck_failing_items{check=\"cache\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "zos_perf_iperf_best_download_bytes_per_second{test_type=\"tcp\",family=\"ipv4\"}"
        ),
        Some(9.1e8 / 8.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "zos_perf_iperf_failed_targets{test_type=\"udp\",family=\"ipv6\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "zos_perf_public_ips{state=\"valid\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&scrape, "zos_perf_public_ips{state=\"invalid\"}"),
        Some(1.0)
    );
    assert!(sample(&scrape, "zos_perf_task_failures_total{task=\"iperf\"}").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        sample(
            &scrape,
            "zos_perf_bus_requests_total{command=\"zos.perf.get\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&scrape, "zos_perf_bus_replies_total{code=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "zos_perf_bus_request_duration_seconds_count"),
        Some(2.0)
    );
    assert!(sample(&scrape, "process_resident_memory_bytes").unwrap_or(0.0) > 1e6);
    assert!(scrape.contains("zos_perf_build_info{version=\""));

    // OpenMetrics when asked, as Prometheus asks.
    let om = get(
        addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    );
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/openmetrics-text")));
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.contains("# TYPE zos_perf_task_runs counter"));
    let text = get(addr, "/metrics", "Accept: text/plain\r\n");
    assert!(text
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    drop(service);
}

#[test]
fn prometheus_scrapes_the_daemon_and_sees_the_stored_cpu_score() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    stored(
        &redis,
        "cpu-benchmark",
        now() - 60,
        json!({"single": 1.234, "multi": 2.468, "threads": 2, "workloads": 0}),
    );
    // Both run in a namespace of their own, where the ports are ours.
    let ns = NetNs::new("zpm");
    let cfg = config(
        dir.path(),
        &format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:9108\"\n",
            ALL_DISABLED.replace("[tasks.cpu-benchmark]\nenabled = false\n", "")
        ),
    );
    let _daemon = Observed::start(&["ip", "netns", "exec", &ns.name], &cfg, &redis.url(), true);
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: zos-perf\n    static_configs:\n      - targets: ['127.0.0.1:9108']\n",
    )
    .expect("prometheus config");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "prometheus"])
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus must be installed (scripts/setup)");
    let _prometheus = KillOnDrop(child);

    let found = common::in_netns(&ns.name, || async {
        let client = reqwest::Client::new();
        let query = |q: &'static str| {
            let client = client.clone();
            async move {
                let r = client
                    .get("http://127.0.0.1:9090/api/v1/query")
                    .query(&[("query", q)])
                    .send()
                    .await
                    .ok()?;
                let v: Value = r.json().await.ok()?;
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            }
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let up = query("up{job=\"zos-perf\"}").await;
            let cpu = query("zos_perf_cpu_single_seconds").await;
            if up.as_deref() == Some("1") && cpu.is_some() {
                return Some((up, cpu));
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let (up, cpu) = found.unwrap_or_else(|| {
        panic!(
            "prometheus never saw the daemon up with a cpu score:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        )
    });
    assert_eq!(up.as_deref(), Some("1"));
    assert_eq!(cpu.as_deref(), Some("1.234"));
}

/// Seeds results and a history of `n` runs for every task.
fn seed_history(redis: &RedisServer, n: i64) {
    let t0 = now() - n * 3600;
    for (name, make) in [
        (
            "cpu-benchmark",
            Box::new(
                |i: i64| json!({"single": 1.1 + (i % 7) as f64 * 0.03, "multi": 2.3 + (i % 5) as f64 * 0.05, "threads": 2, "workloads": i % 3}),
            ) as Box<dyn Fn(i64) -> Value>,
        ),
        (
            "iperf",
            Box::new(|i: i64| iperf_result(0.8 + (i % 6) as f64 * 0.05)),
        ),
        (
            "healthcheck",
            Box::new(|i: i64| {
                if i % 9 == 4 {
                    json!({"cache": [], "network": ["wss://relay.grid.tf is not reachable: timed out after 5s connecting to 203.0.113.10:443"]})
                } else {
                    json!({"cache": [], "network": []})
                }
            }),
        ),
        ("public-ip-validation", Box::new(|_| public_ip_result())),
        (
            "provisiontest",
            Box::new(|i: i64| {
                if i % 13 == 6 {
                    json!(["no marker within 2m0s: the guest's console stayed silent"])
                } else {
                    json!([])
                }
            }),
        ),
    ] {
        let records: Vec<String> = (0..n)
            .rev()
            .map(|i| json!({"name": name, "description": "d", "timestamp": t0 + i * 3600, "result": make(i)}).to_string())
            .collect();
        let _: () = redis::cmd("RPUSH")
            .arg(format!("zos-perf:history:{name}"))
            .arg(&records)
            .query(&mut redis.conn())
            .expect("RPUSH");
        stored(redis, name, t0 + (n - 1) * 3600, make(n - 1));
    }
}

/// Every task scheduled on 1 January only: nothing runs during the test.
fn nothing_runs() -> String {
    [
        "cpu-benchmark",
        "healthcheck",
        "iperf",
        "public-ip-validation",
    ]
    .iter()
    .map(|t| format!("[tasks.{t}]\ncron = \"0 0 0 1 1 *\"\njitter = 0\n"))
    .collect()
}

#[test]
fn the_dashboard_in_headless_chromium_shows_every_task_and_its_charts() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    seed_history(&redis, 40);
    // provisiontest too: asked for, as no guest is configured here; its
    // stored result is fresh, so it does not run.
    let cfg = config(
        dir.path(),
        &format!(
            "farm_id = 1\nnode_id = 1\n{}[tasks.provisiontest]\nenabled = true\ncron = \"0 0 0 1 1 *\"\njitter = 0\n\
             \n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            nothing_runs()
        ),
    );
    let daemon = Observed::start(&[], &cfg, &redis.url(), true);
    let url = format!("http://{}/", daemon.addr());

    let out = common::browser::chromium(&["--dump-dom", &url], &dir.path().join("profile-dom"));
    let dom = String::from_utf8_lossy(&out.stdout);
    for task in [
        "cpu-benchmark",
        "healthcheck",
        "iperf",
        "public-ip-validation",
        "provisiontest",
    ] {
        assert!(
            dom.contains(&format!("<h2>{task}</h2>")),
            "{task} missing from the DOM:\n{dom}"
        );
    }
    assert!(dom.matches("<svg").count() >= 7, "charts missing:\n{dom}");
    assert!(dom.contains("<polyline"), "no trend line:\n{dom}");
    assert!(
        dom.contains("over 40 runs"),
        "the charts do not span the history:\n{dom}"
    );
    assert!(dom.contains("public ip does not match farm ip"));

    let keep = std::env::var_os("ZOS_PERF_SCREENSHOT_DIR");
    for (name, size) in [("desktop", "1280,1100"), ("phone", "390,2400")] {
        let png = dir.path().join(format!("dashboard-{name}.png"));
        common::browser::chromium(
            &[
                &format!("--screenshot={}", png.display()),
                &format!("--window-size={size}"),
                &url,
            ],
            &dir.path().join(format!("profile-{name}")),
        );
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{name} screenshot"
        );
        if let Some(keep) = &keep {
            std::fs::copy(&png, Path::new(keep).join(png.file_name().expect("name")))
                .expect("keep screenshot");
        }
    }
}

#[test]
fn bad_http_input_is_refused_and_a_slow_client_is_cut_off() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Observed::listening_idle(dir.path(), &redis.url());
    let addr = daemon.addr();

    assert_eq!(get(addr, "/nope", "").status, 404);
    assert_eq!(get(addr, "/metrics/../etc/passwd", "").status, 404);
    let post = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow").as_deref(), Some("GET, HEAD"));
    let del = exchange(
        addr,
        b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(del.status, 405);
    let body = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(body.status, 413);
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let big = exchange(addr, big.as_bytes());
    assert_eq!(big.status, 431, "{}", big.head);
    let head = exchange(
        addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(0)
            > 100
    );

    // A client that never finishes its request: the others are served
    // meanwhile, and it is cut off after the header timeout.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(addr).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    let started = Instant::now();
    assert_eq!(get(addr, "/metrics", "").status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = Vec::new();
    let read = slow.read_to_end(&mut buf);
    assert!(read.is_ok(), "the slow connection was not closed: {read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// One source holding connections open (16 dripping, reopened when cut
/// off, from 127.0.0.2) must not keep a scraper on another source out:
/// at least 95 % of 40 scrapes from 127.0.0.1, each on a new connection,
/// get the page (before the per-source limit: 3 of 40).
#[test]
fn one_source_flooding_the_listener_does_not_keep_prometheus_out() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Observed::listening_idle(dir.path(), &redis.url());
    let addr = daemon.addr();
    let flood = common::flood::Drip::start(addr, "127.0.0.2".parse().expect("ip"), 16);
    // Every one of the flood's connections opened before the first scrape.
    wait_for(Duration::from_secs(10), "the flood's connections", || {
        (flood.opened() >= 16).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let scrapes = common::flood::scrape(addr, 40, Duration::from_millis(250));
    assert!(
        scrapes.answered >= 38,
        "{} of 40 scrapes answered while one source floods ({} flood connections opened)",
        scrapes.answered,
        flood.opened()
    );
    drop(flood);
}

#[test]
fn a_taken_port_is_a_clear_start_up_error() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let cfg = config(
        dir.path(),
        &format!("{ALL_DISABLED}\n[metrics]\nlisten = \"{addr}\"\n"),
    );
    let out = Command::new(BIN)
        .args(["--config", &cfg, "--redis", &redis.url(), "run"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("metrics.listen") && err.contains(&addr.to_string()),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn the_textfile_is_written_for_node_exporter_and_removed_at_exit() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let textdir = dir.path().join("textfile");
    std::fs::create_dir(&textdir).expect("mkdir");
    std::fs::set_permissions(&textdir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    stored(
        &redis,
        "cpu-benchmark",
        now() - 60,
        json!({"single": 1.5, "multi": 3.0, "threads": 2, "workloads": 0}),
    );
    let cfg = config(
        dir.path(),
        &format!(
            "{}\n[metrics]\ntextfile_dir = \"{}\"\ntextfile_interval = \"1s\"\n",
            nothing_runs(),
            textdir.display()
        ),
    );
    let mut daemon = Observed::start(&[], &cfg, &redis.url(), false);
    let file = textdir.join("zos_perf.prom");
    let text = wait_for(Duration::from_secs(20), "the textfile", || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("zos_perf_cpu_single_seconds"))
    });
    promtool_check(&text);
    assert_eq!(sample(&text, "zos_perf_cpu_single_seconds"), Some(1.5));
    assert!(
        !text.contains("process_"),
        "node_exporter has its own process metrics:\n{text}"
    );
    assert!(!text.contains("# EOF"));
    let only: Vec<_> = std::fs::read_dir(&textdir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(only, ["zos_perf.prom"]);
    assert!(daemon.stop().success(), "{}", daemon.log());
    assert!(!file.exists(), "stale figures left for node_exporter");
}
