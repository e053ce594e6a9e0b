//! The healthcheck's `per-service` network check (zos 2026): the instance
//! tables of every network, compared with a literal copy of zos's, and the
//! check against real listeners inside a namespace the test made (closed
//! ports refuse, 203.0.113.0/24 drops everything).

use crate::common;

use std::time::Duration;

use common::{dropping_ns, in_netns};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::grid::Network;
use zos_perf::tasks::healthcheck::services::{self, ServiceGroup, SERVICES};
use zos_perf::tasks::healthcheck::{Healthcheck, NetworkTargets, Settings};
use zos_perf::tasks::{RunContext, Task};

/// zos's built-in lists (pkg/environment/environment.go), written out.
fn zos_table(network: Network) -> Vec<(&'static str, Vec<&'static str>)> {
    match network {
        Network::Main => vec![
            (
                "substrate",
                vec![
                    "wss://tfchain.grid.tf/",
                    "wss://tfchain.02.grid.tf",
                    "wss://02.tfchain.grid.tf/",
                    "wss://03.tfchain.grid.tf/",
                    "wss://04.tfchain.grid.tf/",
                ],
            ),
            (
                "activation",
                vec![
                    "https://activation.grid.threefold.me/activation/activate",
                    "https://activation.grid.tf/activation/activate",
                    "https://activation.02.grid.tf/activation/activate",
                    "https://activation.grid.threefold.me/activation/activate",
                ],
            ),
            ("relay", vec!["wss://relay.grid.tf"]),
            (
                "graphql",
                vec![
                    "https://graphql.grid.threefold.me/graphql",
                    "https://graphql.grid.tf/graphql",
                    "https://graphql.02.grid.tf/graphql",
                    "https://graphql.grid.threefold.me/graphql",
                ],
            ),
            ("hub", vec!["redis://hub.threefold.me:9900"]),
            ("kyc", vec!["https://kyc.threefold.me"]),
        ],
        Network::Test => vec![
            (
                "substrate",
                vec![
                    "wss://tfchain.test.grid.tf/",
                    "wss://tfchain.02.test.grid.tf",
                ],
            ),
            (
                "activation",
                vec![
                    "https://activation.test.grid.tf/activation/activate",
                    "https://activation.02.test.grid.tf/activation/activate",
                ],
            ),
            ("relay", vec!["wss://relay.test.grid.tf"]),
            (
                "graphql",
                vec![
                    "https://graphql.test.grid.tf/graphql",
                    "https://graphql.02.test.grid.tf/graphql",
                ],
            ),
            ("hub", vec!["redis://hub.threefold.me:9900"]),
            ("kyc", vec!["https://kyc.test.grid.tf"]),
        ],
        Network::Qa => vec![
            (
                "substrate",
                vec!["wss://tfchain.qa.grid.tf/", "wss://tfchain.02.qa.grid.tf/"],
            ),
            (
                "activation",
                vec![
                    "https://activation.qa.grid.tf/activation/activate",
                    "https://activation.02.qa.grid.tf/activation/activate",
                ],
            ),
            ("relay", vec!["wss://relay.qa.grid.tf"]),
            (
                "graphql",
                vec![
                    "https://graphql.qa.grid.tf/graphql",
                    "https://graphql.02.qa.grid.tf/graphql",
                ],
            ),
            ("hub", vec!["redis://hub.threefold.me:9900"]),
            ("kyc", vec!["https://kyc.qa.grid.tf"]),
        ],
        Network::Dev => vec![
            (
                "substrate",
                vec!["wss://tfchain.dev.grid.tf/", "wss://tfchain.02.dev.grid.tf"],
            ),
            (
                "activation",
                vec![
                    "https://activation.dev.grid.tf/activation/activate",
                    "https://activation.02.dev.grid.tf/activation/activate",
                ],
            ),
            ("relay", vec!["wss://relay.dev.grid.tf"]),
            (
                "graphql",
                vec![
                    "https://graphql.dev.grid.tf/graphql",
                    "https://graphql.02.dev.grid.tf/graphql",
                ],
            ),
            ("hub", vec!["redis://hub.threefold.me:9900"]),
            ("kyc", vec!["https://kyc.dev.grid.tf"]),
        ],
    }
}

#[test]
fn every_networks_instances_are_zos_ones() {
    for network in Network::ALL {
        let config = Config::from_toml(&format!("network = \"{network}\"\n")).expect("config");
        let settings = Settings::new(&config.sections.healthcheck, &config.grid_context());
        let NetworkTargets::PerService(groups) = &settings.network else {
            panic!("{network}: per-service is the default");
        };
        let got: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.service.as_str(),
                    g.instances.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(got, zos_table(network), "{network}");
        assert_eq!(
            settings.connect_timeout,
            Duration::from_secs(10),
            "{network}"
        );
    }
    assert_eq!(
        SERVICES,
        ["substrate", "activation", "relay", "graphql", "hub", "kyc"]
    );
}

/// A port of 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn first_reachable_instance_passes_one_error_per_failing_service() {
    let ns = dropping_ns("hcs");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cache, flags) = (tmp.path().join("cache"), tmp.path().join("flags"));
    std::fs::create_dir_all(&cache).expect("cache dir");
    let (result, flag_set) = in_netns(&ns.name, move || async move {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = open.local_addr().expect("addr").port();
        let (c1, c2) = (closed_port(), closed_port());
        let text = format!(
            "[healthcheck]\ncache_dir = {cache:?}\nflags_dir = {flags:?}\n\
             connect_timeout = \"300ms\"\nbackoff_total = \"0s\"\n\
             [healthcheck.instances]\n\
             substrate = [\"ws://127.0.0.1:{c1}/\", \"wss://127.0.0.1:{open}/\"]\n\
             relay = [\"ws://127.0.0.1:{c1}\", \"ws://127.0.0.1:{c2}\"]\n\
             activation = [\"https://203.0.113.9/activation/activate\"]\n\
             graphql = [\"http://127.0.0.1:{open}/graphql\"]\n\
             hub = [\"redis://127.0.0.1:{open}\"]\n\
             kyc = []\n"
        );
        let config = Config::from_toml(&text).expect("config");
        let task = Healthcheck::new(&config.sections.healthcheck, &config.grid_context());
        let result = task
            .run(&RunContext::new(CancellationToken::new()))
            .await
            .expect("run");
        let set = flags.join("not-reachable").exists();
        (result, set)
    });
    assert_eq!(result["cache"], Value::Array(vec![]));
    let errors: Vec<&str> = result["network"]
        .as_array()
        .expect("network errors")
        .iter()
        .map(|e| e.as_str().expect("string"))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    // In service order: activation, relay, kyc.
    assert!(
        errors[0].starts_with(
            "all activation instances are unreachable: https://203.0.113.9/activation/activate \
             is not reachable: failed to connect: timed out after 300ms"
        ),
        "{}",
        errors[0]
    );
    let relay: Vec<&str> = errors[1]
        .strip_prefix("all relay instances are unreachable: ")
        .expect("relay prefix")
        .split("; ")
        .collect();
    assert_eq!(relay.len(), 2, "{}", errors[1]);
    for part in relay {
        assert!(
            part.contains(" is not reachable: failed to connect: "),
            "{part}"
        );
        assert!(part.contains("Connection refused"), "{part}");
    }
    assert_eq!(errors[2], "no instances provided for service kyc");
    assert!(flag_set, "not-reachable is set");
}

#[test]
fn unusable_instance_urls_are_reported_as_zos_words_them() {
    let errors = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(services::check(
            &[
                ServiceGroup {
                    service: "kyc".into(),
                    instances: vec!["".into()],
                },
                ServiceGroup {
                    service: "hub".into(),
                    instances: vec!["redis://hub.example:notaport".into()],
                },
            ],
            Duration::from_millis(100),
        ));
    assert_eq!(
        errors,
        [
            "all kyc instances are unreachable: invalid URL : missing hostname in URL",
            "all hub instances are unreachable: invalid URL redis://hub.example:notaport: \
             failed to parse URL: invalid port number",
        ]
    );
}

#[test]
fn overrides_are_checked_by_configuration() {
    let err = Config::from_toml("[healthcheck.instances]\nrelay = [\"relay.grid.tf\"]\n")
        .expect_err("not a URL");
    assert!(
        format!("{err:#}").starts_with("healthcheck.instances.relay[0]"),
        "{err:#}"
    );
    let err = Config::from_toml("[healthcheck.instances]\nrelays = []\n").expect_err("typo");
    assert!(format!("{err:#}").contains("relays"), "{err:#}");
    let err = Config::from_toml(
        "[healthcheck]\nnetwork_check = \"per-service\"\nservices = [\"https://x.example/\"]\n",
    )
    .expect_err("mixed");
    assert!(
        format!("{err:#}").starts_with("healthcheck.services"),
        "{err:#}"
    );
}
