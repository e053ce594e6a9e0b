//! The healthcheck task against real sockets, a real filesystem, real
//! network and mount namespaces and a real redis-server.
//!
//! Network checks that need a closed port or an address that drops packets
//! run inside a namespace the test made, on a dedicated thread that joined
//! it with setns() and drives its own current-thread runtime: nothing else
//! listens there, and no packet leaves it.

use crate::common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{dropping_ns, in_netns, sh, wait_for, NetNs, RedisServer};
use nix::sched::CloneFlags;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use zos_perf::config::Config;
use zos_perf::node_redis as redis_link;
use zos_perf::store;
use zos_perf::tasks::healthcheck::{Check, Flag, Flags, Healthcheck, NetworkTargets, Settings};
use zos_perf::tasks::retry::{self, RetryPolicy};
use zos_perf::tasks::{RunContext, Task};

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Test settings: short timeout, no retries unless a test says so.
fn settings(cache_dir: &Path, flags_dir: &Path, services: Vec<String>) -> Settings {
    Settings {
        cache_dir: cache_dir.to_path_buf(),
        flags: Flags::new(flags_dir),
        connect_timeout: Duration::from_millis(500),
        backoff: RetryPolicy {
            initial: Duration::ZERO,
            max_interval: Duration::ZERO,
            total: Duration::ZERO,
        },
        network: NetworkTargets::PerUrl(services),
    }
}

/// The names present in the flags directory, sorted.
fn flag_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn a_writable_cache_dir_passes_and_clears_a_flag_set_before() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    let flags_dir = tmp.path().join("flags");
    std::fs::create_dir(&flags_dir).expect("mkdir");
    std::fs::write(flags_dir.join("readonly-cache"), b"").expect("pre-set flag");
    let s = settings(&cache, &flags_dir, vec![]);

    let errors = Check::Cache.attempt(&s).await;

    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        flag_files(&flags_dir).is_empty(),
        "{:?}",
        flag_files(&flags_dir)
    );
    assert_eq!(
        std::fs::read_dir(&cache).expect("read cache").count(),
        0,
        "probe file left behind"
    );
}

#[tokio::test]
async fn a_cache_path_under_a_regular_file_fails_with_the_spec_error_and_sets_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    // The flags directory does not exist yet: setting the flag creates it.
    let flags_dir = tmp.path().join("run/flags");
    let s = settings(&file.join("cache"), &flags_dir, vec![]);

    let errors = Check::Cache.attempt(&s).await;

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("failed to write to cache: "),
        "{errors:?}"
    );
    assert!(
        errors[0].contains("not-a-dir/cache/healthcheck"),
        "{errors:?}"
    );
    assert_eq!(flag_files(&flags_dir), ["readonly-cache"]);
    assert_eq!(
        std::fs::metadata(flags_dir.join("readonly-cache"))
            .expect("flag")
            .len(),
        0
    );
}

/// A real read-only filesystem (EROFS, what a failing cache disk gives):
/// a tmpfs mounted read-only in a private mount namespace that only this
/// test's thread (and the threads and children it starts) lives in.
#[test]
fn a_read_only_mounted_cache_fails_with_the_spec_error_and_sets_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    let flags_dir = tmp.path().join("flags");
    let s = settings(&cache, &flags_dir, vec![]);
    let mount_point = cache.clone();

    let errors = std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).expect("unshare the mount namespace");
        sh(&["mount", "--make-rprivate", "/"]);
        let target = mount_point.to_str().expect("utf-8 path");
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "ro,size=1m",
            "zos-perf-test",
            target,
        ]);
        current_thread_runtime().block_on(Check::Cache.attempt(&s))
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("failed to write to cache: "),
        "{errors:?}"
    );
    assert!(errors[0].contains("Read-only file system"), "{errors:?}");
    assert_eq!(flag_files(&flags_dir), ["readonly-cache"]);
    // The mount lived in the thread's namespace only: here the dir is plain.
    assert!(std::fs::write(cache.join("x"), b"x").is_ok());
}

// -------------------------------------------------------------- network

#[test]
fn loopback_listeners_pass_by_address_and_by_name_and_clear_the_flag() {
    let ns = NetNs::new("hcok");
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags_dir = tmp.path().join("flags");
    std::fs::create_dir(&flags_dir).expect("mkdir");
    std::fs::write(flags_dir.join("not-reachable"), b"").expect("pre-set flag");
    let cache = tmp.path().to_path_buf();

    let errors = in_netns(&ns.name, move || async move {
        let (_l4, p4) = listener();
        let l6 = TcpListener::bind("[::1]:0").expect("bind ::1");
        let p6 = l6.local_addr().expect("addr").port();
        let s = settings(
            &cache,
            &flags_dir,
            vec![
                format!("http://127.0.0.1:{p4}/graphql"),
                format!("redis://127.0.0.1:{p4}"),
                format!("wss://localhost:{p4}/"),
                format!("http://[::1]:{p6}/"),
            ],
        );
        let errors = Check::Network.attempt(&s).await;
        assert!(flag_files(&flags_dir).is_empty(), "flag not cleared");
        errors
    });
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_closed_port_fails_fast_with_the_url_in_the_error_and_sets_the_flag() {
    let ns = NetNs::new("hcclosed");
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags_dir = tmp.path().join("flags");
    let cache = tmp.path().to_path_buf();
    let fd = flags_dir.clone();

    let (errors, took) = in_netns(&ns.name, move || async move {
        let mut s = settings(&cache, &fd, vec!["redis://127.0.0.1:9900".into()]);
        s.connect_timeout = Duration::from_secs(5);
        let t = Instant::now();
        let errors = Check::Network.attempt(&s).await;
        (errors, t.elapsed())
    });

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("redis://127.0.0.1:9900 is not reachable: "),
        "{errors:?}"
    );
    assert!(errors[0].contains("Connection refused"), "{errors:?}");
    assert!(
        took < Duration::from_secs(2),
        "a refused connection took {took:?}"
    );
    assert_eq!(flag_files(&flags_dir), ["not-reachable"]);
}

#[test]
fn an_address_that_drops_packets_fails_at_the_timeout() {
    let ns = dropping_ns("hcdrop");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cache, fd) = (tmp.path().to_path_buf(), tmp.path().join("flags"));

    let (errors, took) = in_netns(&ns.name, move || async move {
        let s = settings(&cache, &fd, vec!["https://203.0.113.7/graphql".into()]);
        let t = Instant::now();
        let errors = Check::Network.attempt(&s).await;
        (errors, t.elapsed())
    });

    assert_eq!(
        errors,
        ["https://203.0.113.7/graphql is not reachable: timed out after 500ms connecting to 203.0.113.7:443"]
    );
    assert!(
        took >= Duration::from_millis(500),
        "gave up before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn several_of_each_take_about_one_timeout_not_the_sum() {
    let ns = dropping_ns("hcdrop");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cache, fd) = (tmp.path().to_path_buf(), tmp.path().join("flags"));
    let timeout = Duration::from_millis(700);

    let (errors, took, services) = in_netns(&ns.name, move || async move {
        let listeners: Vec<_> = (0..3).map(|_| listener()).collect();
        let mut services: Vec<String> = listeners
            .iter()
            .map(|(_, p)| format!("http://127.0.0.1:{p}/"))
            .collect();
        // Nothing listens on these in a fresh namespace.
        services.extend((1..=3).map(|i| format!("http://127.0.0.1:{}/", 1000 + i)));
        services.extend((10..14).map(|i| format!("wss://203.0.113.{i}/")));
        let mut s = settings(&cache, &fd, services.clone());
        s.connect_timeout = timeout;
        let t = Instant::now();
        let errors = Check::Network.attempt(&s).await;
        (errors, t.elapsed(), services)
    });

    // One error per failing service, in list order, each naming its URL.
    assert_eq!(errors.len(), 7, "{errors:#?}");
    for (e, url) in errors.iter().zip(&services[3..]) {
        assert!(e.starts_with(&format!("{url} is not reachable: ")), "{e}");
    }
    assert!(
        errors[..3].iter().all(|e| e.contains("Connection refused")),
        "{errors:#?}"
    );
    assert!(
        errors[3..]
            .iter()
            .all(|e| e.contains("timed out after 700ms")),
        "{errors:#?}"
    );
    // Four timeouts in a row would be 2.8 s.
    assert!(took >= timeout, "{took:?}");
    assert!(
        took < Duration::from_millis(2000),
        "took {took:?}: not in parallel?"
    );
}

#[test]
fn default_ports_are_443_for_https_and_wss_and_80_otherwise() {
    let ns = NetNs::new("hcport");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cache, fd) = (tmp.path().to_path_buf(), tmp.path().join("flags"));

    let (all_up, without_443) = in_netns(&ns.name, move || async move {
        let l443 = TcpListener::bind("127.0.0.1:443").expect("bind 443 in the test namespace");
        let _l80 = TcpListener::bind("127.0.0.1:80").expect("bind 80");
        let _l9900 = TcpListener::bind("127.0.0.1:9900").expect("bind 9900");
        let s = settings(
            &cache,
            &fd,
            vec![
                "https://127.0.0.1/graphql".into(),
                "wss://127.0.0.1".into(),
                "http://127.0.0.1/".into(),
                "redis://127.0.0.1:9900".into(),
            ],
        );
        let all_up = Check::Network.attempt(&s).await;
        drop(l443);
        let without_443 = Check::Network.attempt(&s).await;
        (all_up, without_443)
    });

    assert!(all_up.is_empty(), "{all_up:?}");
    assert_eq!(without_443.len(), 2, "{without_443:?}");
    assert!(without_443[0]
        .starts_with("https://127.0.0.1/graphql is not reachable: connect to 127.0.0.1:443: "));
    assert!(
        without_443[1].starts_with("wss://127.0.0.1 is not reachable: connect to 127.0.0.1:443: ")
    );
}

// -------------------------------------------------------------- backoff

#[tokio::test]
async fn a_cache_check_failing_twice_then_passing_yields_a_pass_and_clears_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    std::fs::write(&cache, b"a file where the directory should be").expect("write");
    let flags_dir = tmp.path().join("flags");
    let mut s = settings(&cache, &flags_dir, vec![]);
    s.backoff = RetryPolicy {
        initial: Duration::from_millis(10),
        max_interval: Duration::from_millis(10),
        total: Duration::from_secs(30),
    };
    let seen_flag = Mutex::new(Vec::new());

    let r = retry::retry(s.backoff, &CancellationToken::new(), "cache", |n| {
        // Before attempt n: the flag says how attempt n-1 went.
        seen_flag
            .lock()
            .expect("lock")
            .push(s.flags.is_set(Flag::ReadonlyCache));
        if n == 3 {
            std::fs::remove_file(&cache).expect("rm");
            std::fs::create_dir(&cache).expect("mkdir");
        }
        Check::Cache.attempt(&s)
    })
    .await
    .expect("not cancelled");

    assert_eq!(r.attempts, 3);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(*seen_flag.lock().expect("lock"), [false, true, true]);
    assert!(flag_files(&flags_dir).is_empty());
}

#[test]
fn a_network_check_failing_twice_then_passing_yields_a_pass_and_clears_the_flag() {
    let ns = NetNs::new("hcretry");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cache, flags_dir) = (tmp.path().to_path_buf(), tmp.path().join("flags"));
    let fd = flags_dir.clone();

    let r = in_netns(&ns.name, move || async move {
        let mut s = settings(&cache, &fd, vec!["http://127.0.0.1:8080/".into()]);
        s.backoff = RetryPolicy {
            initial: Duration::from_millis(10),
            max_interval: Duration::from_millis(10),
            total: Duration::from_secs(30),
        };
        let started: Mutex<Option<TcpListener>> = Mutex::new(None);
        retry::retry(s.backoff, &CancellationToken::new(), "network", |n| {
            if n == 3 {
                assert!(s.flags.is_set(Flag::NotReachable), "failures set the flag");
                let l = TcpListener::bind("127.0.0.1:8080").expect("bind 8080");
                *started.lock().expect("lock") = Some(l);
            }
            Check::Network.attempt(&s)
        })
        .await
        .expect("not cancelled")
    });

    assert_eq!(r.attempts, 3);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(flag_files(&flags_dir).is_empty());
}

#[test]
fn a_run_that_keeps_failing_stops_at_the_total_and_stores_its_errors_in_the_spec_shape() {
    let redis = RedisServer::start();
    let ns = dropping_ns("hcdrop");
    let tmp = tempfile::tempdir().expect("tempdir");
    let not_a_dir = tmp.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let flags_dir = tmp.path().join("flags");
    let config_text = format!(
        r#"
        redis = "{redis}"
        [healthcheck]
        cache_dir = "{cache}"
        flags_dir = "{flags}"
        connect_timeout = "200ms"
        backoff_initial = "50ms"
        backoff_total = "400ms"
        services = ["https://203.0.113.9/graphql", "redis://127.0.0.1:9900"]
        "#,
        redis = redis.url(),
        cache = not_a_dir.join("cache").display(),
        flags = flags_dir.display(),
    );
    let url = redis.url();

    let (took, stored) = in_netns(&ns.name, move || async move {
        let config = Config::from_toml(&config_text).expect("config");
        let tasks = zos_perf::tasks::registry(&config.sections, &config.grid_context());
        assert!(
            tasks.iter().any(|t| t.name() == "healthcheck"),
            "registered"
        );
        let shutdown = CancellationToken::new();
        let t = Instant::now();
        zos_perf::daemon::run_once(&config, &url, "healthcheck", shutdown.clone())
            .await
            .expect("run");
        let took = t.elapsed();
        let mut conn = redis_link::connect_once(&url).await.expect("connect");
        let raw = store::read_raw(&mut conn, "healthcheck")
            .await
            .expect("read")
            .expect("stored");
        shutdown.cancel();
        (took, raw)
    });

    // Attempts every 25 ms or more (50 ms ± 50 %, growing), until one fails
    // after 400 ms have passed.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let v: Value = serde_json::from_str(&stored).expect("stored JSON");
    let obj = v.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["description", "name", "result", "timestamp"]);
    assert_eq!(v["name"], "healthcheck");
    assert_eq!(v["description"], "health check task runs multiple checks to ensure the node is in a usable state and set flags for the power daemon to stop reporting uptime if it is not usable");
    assert!(v["timestamp"].is_i64());
    let result = v["result"].as_object().expect("result object");
    let mut keys: Vec<&str> = result.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["cache", "network"]);
    let strings = |k: &str| -> Vec<String> {
        result[k]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e.as_str().expect("a string").to_string())
            .collect()
    };
    let cache = strings("cache");
    assert_eq!(cache.len(), 1);
    assert!(
        cache[0].starts_with("failed to write to cache: "),
        "{cache:?}"
    );
    let network = strings("network");
    assert_eq!(network.len(), 2, "{network:?}");
    assert_eq!(
        network[0],
        "https://203.0.113.9/graphql is not reachable: timed out after 200ms connecting to 203.0.113.9:443"
    );
    assert!(network[1]
        .starts_with("redis://127.0.0.1:9900 is not reachable: connect to 127.0.0.1:9900: "));
    assert_eq!(flag_files(&flags_dir), ["not-reachable", "readonly-cache"]);
}

#[tokio::test]
async fn a_passing_run_is_two_empty_lists_and_clears_both_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags_dir = tmp.path().join("flags");
    std::fs::create_dir(&flags_dir).expect("mkdir");
    for f in Flag::ALL {
        std::fs::write(flags_dir.join(f.name()), b"").expect("pre-set");
    }
    let (_l, port) = listener();
    let mut s = settings(
        tmp.path(),
        &flags_dir,
        vec![format!("http://127.0.0.1:{port}/")],
    );
    s.backoff = RetryPolicy {
        initial: Duration::from_secs(3600),
        max_interval: Duration::from_secs(3600),
        total: Duration::from_secs(7200),
    };
    let task = Healthcheck::with_settings(s);

    let v = task.run(&RunContext::default()).await.expect("run");

    assert_eq!(v, json!({"cache": [], "network": []}));
    assert!(flag_files(&flags_dir).is_empty());
}

#[tokio::test]
async fn cancel_interrupts_the_backoff_wait_and_fails_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags_dir = tmp.path().join("flags");
    let mut s = settings(&tmp.path().join("missing"), &flags_dir, vec![]);
    s.backoff = RetryPolicy {
        initial: Duration::from_secs(3600),
        max_interval: Duration::from_secs(3600),
        total: Duration::from_secs(7200),
    };
    let task = std::sync::Arc::new(Healthcheck::with_settings(s));
    let ctx = RunContext::default();
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn({
        let task = task.clone();
        async move { task.run(&ctx).await }
    });
    let flag: PathBuf = flags_dir.join("readonly-cache");
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(10), "the first failed attempt", || {
            flag.exists().then_some(())
        })
    })
    .await
    .expect("waiter");
    let t = Instant::now();
    cancel.cancel();

    let err = run.await.expect("join").expect_err("a cancelled run fails");

    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
}
