use super::*;

#[test]
fn empty_file_gives_spec_defaults() {
    let c = Config::from_toml("").expect("empty config");
    assert_eq!(c.network, Network::Main);
    assert_eq!(c.redis, None);
    let s = &c.sections;
    assert_eq!(s.healthcheck.cache_dir, PathBuf::from("/var/cache"));
    assert_eq!(s.healthcheck.flags_dir, PathBuf::from("/tmp/flags"));
    assert_eq!(s.iperf.port, 300);
    assert_eq!(s.public_ip.namespace, "pubtestns");
    assert_eq!(s.public_ip.link, "pub");
}

#[test]
fn unknown_field_is_named() {
    let err = Config::from_toml("[healthcheck]\ncache_dri = \"/x\"\n").unwrap_err();
    assert!(format!("{err:#}").contains("cache_dri"), "{err:#}");
}

#[test]
fn bad_cron_names_the_task_field() {
    let err = Config::from_toml("[tasks.iperf]\ncron = \"every day\"\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("tasks.iperf.cron"), "{msg}");
    assert!(msg.contains("every day"), "{msg}");
}

#[test]
fn unknown_task_is_named() {
    let err = Config::from_toml("[tasks.gpu-benchmark]\nenabled = false\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("tasks.gpu-benchmark"),
        "{err:#}"
    );
}

#[test]
fn wrong_type_is_named() {
    let err = Config::from_toml("[iperf]\nport = \"three hundred\"\n").unwrap_err();
    assert!(format!("{err:#}").contains("port"), "{err:#}");
    let err = Config::from_toml("[healthcheck]\nbackoff_initial = \"soon\"\n").unwrap_err();
    assert!(format!("{err:#}").contains("backoff_initial"), "{err:#}");
}

#[test]
fn bad_redis_url_and_network_are_named() {
    let err = Config::from_toml("redis = \"http://x\"\n").unwrap_err();
    assert!(format!("{err:#}").starts_with("redis:"), "{err:#}");
    let err = Config::from_toml("network = \"moon\"\n").unwrap_err();
    assert!(format!("{err:#}").starts_with("network:"), "{err:#}");
}

#[test]
fn flags_win_over_file_and_kernel_fills_the_rest() {
    let file = Config::parse_file("network = \"test\"\nfarm_id = 5\nnode_id = 9\n").expect("parse");
    let o = Overrides {
        network: Some(Network::Dev),
        node_id: Some(11),
        ..Default::default()
    };
    let c = Config::resolve(file, &o, "runmode=qa farmer_id=7").expect("resolve");
    assert_eq!(c.network, Network::Dev);
    assert_eq!(c.farm_id, Some(5));
    assert_eq!(c.node_id, Some(11));

    let c = Config::resolve(
        FileConfig::default(),
        &Overrides::default(),
        "runmode=prod farmer_id=7",
    )
    .expect("resolve");
    assert_eq!(c.network, Network::Main);
    assert_eq!(c.farm_id, Some(7));
    let c = Config::resolve(FileConfig::default(), &Overrides::default(), "runmode=qa")
        .expect("resolve");
    assert_eq!(c.network, Network::Qa);
}

#[test]
fn task_override_merges_with_defaults() {
    let c =
        Config::from_toml("[tasks.healthcheck]\njitter = 7\ntimeout = \"90s\"\nenabled = false\n")
            .expect("parse");
    let d = TaskDefaults {
        cron: "0 */15 * * * *",
        jitter: Duration::ZERO,
        timeout: Duration::from_secs(900),
        exclusive: false,
    };
    let s = c.task_settings("healthcheck", &d).expect("settings");
    assert!(!s.enabled);
    assert_eq!(s.jitter, Duration::from_secs(7));
    assert_eq!(s.timeout, Duration::from_secs(90));
    let s = c.task_settings("iperf", &d).expect("settings");
    assert!(s.enabled);
    assert_eq!(s.timeout, Duration::from_secs(900));
}

#[test]
fn every_duration_is_bounded_at_parse_time_naming_field_and_limit() {
    let huge = "\"18446744073709551615s\"";
    for (section, field) in [
        ("healthcheck", "connect_timeout"),
        ("healthcheck", "backoff_initial"),
        ("healthcheck", "backoff_total"),
        ("iperf", "run_timeout"),
        ("iperf", "busy_backoff_initial"),
        ("iperf", "busy_backoff_max"),
        ("public_ip", "lookup_timeout"),
        ("grid", "graphql_timeout"),
        ("bus", "clock_skew"),
        ("tasks.iperf", "timeout"),
    ] {
        let text = format!("[{section}]\n{field} = {huge}\n");
        let err = Config::from_toml(&text).expect_err(&text);
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("{section}.{field}")), "{msg}");
        assert!(msg.contains("the limit is"), "{msg}");
    }
    let err = Config::from_toml("[tasks.iperf]\njitter = 9223372036854775807\n")
        .expect_err("huge jitter");
    assert!(format!("{err:#}").contains("tasks.iperf.jitter"), "{err:#}");
}

#[test]
fn a_config_file_must_be_a_regular_file_of_bounded_size() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = read_config_file(Path::new("/dev/zero")).expect_err("/dev/zero");
    assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let err = read_config_file(&fifo).expect_err("fifo");
    assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    let big = tmp.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).expect("write");
    let err = read_config_file(&big).expect_err("big");
    assert!(format!("{err:#}").contains("limit"), "{err:#}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = include_str!("../../zos-perf.example.toml");
    Config::from_toml(text).expect("example config parses");
}
