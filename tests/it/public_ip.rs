//! public-ip-validation against a real network made of namespaces (see
//! `pubnet` for the picture).

use crate::common;
use crate::pubnet;

use std::time::Duration;

use common::{sh, unique_name, wait_for};
use pubnet::*;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::tasks::public_ip::{
    PublicIpValidation, FETCH_REAL_IP_FAILED, IPS_NOT_MATCHING, IP_IS_USED, PUBLIC_IP_DATA_INVALID,
    SKIPPED_FOR_LOWER_NODE,
};
use zos_perf::tasks::{RunContext, Task};

#[test]
fn a_working_ip_is_valid_and_broken_data_is_invalid() {
    let net = Net::new();
    // The wrong gateway comes first: the valid one after it shows its
    // address and route were removed in between.
    let source = farm(
        vec![node(ME, "192.0.2.1")],
        vec![
            ip("203.0.113.11/24", "203.0.113.99", 0),
            ip("203.0.113.10/24", GATEWAY, 0),
            ip("203.0.113.12/24", GATEWAY, 42),
            ip("203.0.113.300/24", GATEWAY, 0),
            ip("203.0.113.13/24", "not-a-gateway", 0),
            ip("203.0.113.14", GATEWAY, 0),
            ip("203.0.113.15/24", "2001:db8::1", 0),
            ip("203.0.113.16/24", "198.51.100.1", 0),
        ],
    );
    let result = run_task(&net, net.config("/"), source).expect("run");
    assert_eq!(
        result,
        json!({
            "203.0.113.10/24": entry("valid", ""),
            "203.0.113.11/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
            "203.0.113.12/24": entry("skipped", IP_IS_USED),
            "203.0.113.300/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
            "203.0.113.13/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
            "203.0.113.14": entry("invalid", PUBLIC_IP_DATA_INVALID),
            "203.0.113.15/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
            // A gateway outside the IP's network: the route is refused.
            "203.0.113.16/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
        })
    );
    net.assert_link_clean();
}

#[test]
fn the_registered_task_takes_the_farm_from_graphql() {
    use common::graphql::{node as gql_node, public_ip as gql_ip, GraphQlServer, Grid};
    let net = Net::new();
    let text = net.config_text("/");
    let result = in_netns(&net.node.name, move || {
        Box::pin(async move {
            // Started (and dropped) in the node namespace, where the daemon
            // thread asks it.
            let grid = Grid {
                nodes: vec![
                    gql_node(3, FARM, None, None, ELDER_SILENT),
                    gql_node(ME, FARM, None, None, "192.0.2.1"),
                    gql_node(1, FARM + 1, None, None, ELDER_UP),
                ],
                public_ips: [
                    (
                        FARM,
                        vec![
                            gql_ip("203.0.113.10/24", GATEWAY, 0),
                            gql_ip("203.0.113.12/24", GATEWAY, 9),
                        ],
                    ),
                    (FARM + 1, vec![gql_ip("203.0.113.20/24", GATEWAY, 0)]),
                ]
                .into(),
            };
            let server = GraphQlServer::grid(grid);
            let config = Config::from_toml(&format!(
                "{text}[grid]\ngraphql_urls = [\"{}\"]\n",
                server.url()
            ))
            .expect("config");
            let task = zos_perf::tasks::registry(&config.sections, &config.grid_context())
                .into_iter()
                .find(|t| t.name() == "public-ip-validation")
                .expect("registered");
            let result = task.run(&RunContext::new(CancellationToken::new())).await;
            drop(server);
            result
        })
    })
    .expect("run");
    // Node 1 answers ping but is of another farm: this node validates.
    assert_eq!(
        result,
        json!({
            "203.0.113.10/24": entry("valid", ""),
            "203.0.113.12/24": entry("skipped", IP_IS_USED),
        })
    );
    net.assert_link_clean();
}

#[test]
fn a_lookup_that_sees_another_address_is_a_mismatch() {
    let net = Net::new();
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let result = run_task(&net, net.config("/lie"), source).expect("run");
    assert_eq!(
        result,
        json!({"203.0.113.10/24": entry("invalid", IPS_NOT_MATCHING)})
    );
    net.assert_link_clean();
}

#[test]
fn a_lookup_that_answers_no_address_skips_the_ip() {
    let net = Net::new();
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let result = run_task(&net, net.config("/garbage"), source).expect("run");
    assert_eq!(
        result,
        json!({"203.0.113.10/24": entry("skipped", FETCH_REAL_IP_FAILED)})
    );
    let result = run_task(
        &net,
        net.config("/error"),
        farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]),
    )
    .expect("run");
    assert_eq!(
        result,
        json!({"203.0.113.10/24": entry("skipped", FETCH_REAL_IP_FAILED)})
    );
    net.assert_link_clean();
}

#[test]
fn a_lower_node_that_answers_ping_makes_this_node_stand_down() {
    let net = Net::new();
    // Something on the link that a validating run would have removed.
    net.test
        .exec(&["ip", "addr", "add", "203.0.113.50/24", "dev", &net.link]);
    let source = farm(
        vec![
            node(3, ELDER_SILENT),
            // The first address that parses is the one pinged.
            node(5, &format!("zos?,{ELDER_UP},{ELDER_SILENT}")),
            node(ME, "192.0.2.1"),
            node(30, "192.0.2.30"),
        ],
        vec![
            ip("203.0.113.10/24", GATEWAY, 0),
            ip("203.0.113.12/24", GATEWAY, 42),
        ],
    );
    let (result, remark) = run_task_remarked(&net, net.config("/"), source);
    // zos stores an empty object (its skip error marshals to `{}`); the
    // reason is for perf:status and the log.
    assert_eq!(result.expect("run"), json!({}));
    assert_eq!(
        remark,
        Some(format!(
            "{SKIPPED_FOR_LOWER_NODE}: node 5 answered on {ELDER_UP}"
        ))
    );
    let (addrs, _, _) = net.link_state();
    assert_eq!(
        addrs,
        ["\"203.0.113.50\"/24"],
        "a node that stands down does not touch the link"
    );
}

#[test]
fn lower_nodes_that_do_not_answer_leave_the_validation_to_this_node() {
    let net = Net::new();
    let source = farm(
        vec![
            node(3, ELDER_SILENT),
            // No address that parses: cannot be asked.
            node(4, "not-an-address"),
            node(ME, "192.0.2.1"),
            // Higher ids are not asked, even when they answer.
            node(30, ELDER_UP),
        ],
        vec![ip("203.0.113.10/24", GATEWAY, 0)],
    );
    let result = run_task(&net, net.config("/"), source).expect("run");
    assert_eq!(result, json!({"203.0.113.10/24": entry("valid", "")}));
    net.assert_link_clean();
}

#[test]
fn leftovers_on_the_link_are_removed_first() {
    let net = Net::new();
    net.test
        .exec(&["ip", "addr", "add", "203.0.113.50/24", "dev", &net.link]);
    net.test.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8::50/64",
        "dev",
        &net.link,
        "nodad",
    ]);
    net.test.exec(&["ip", "link", "set", &net.link, "up"]);
    net.test
        .exec(&["ip", "route", "add", "default", "via", GATEWAY]);
    net.test.exec(&[
        "ip",
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        GATEWAY,
        "table",
        "100",
    ]);
    // Left over, the default route would make adding the tested one fail.
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let result = run_task(&net, net.config("/"), source).expect("run");
    assert_eq!(result, json!({"203.0.113.10/24": entry("valid", "")}));
    net.assert_link_clean();
}

#[test]
fn a_farm_without_ips_still_leaves_a_clean_link() {
    let net = Net::new();
    net.test
        .exec(&["ip", "addr", "add", "203.0.113.50/24", "dev", &net.link]);
    let result = run_task(&net, net.config("/"), farm(vec![], vec![])).expect("run");
    assert_eq!(result, json!({}));
    net.assert_link_clean();
}

/// Starts a run whose lookup never answers, waits until the IP is on the
/// link, then drops the run's future (`drop_it`) or cancels its context;
/// returns the run's outcome (None if dropped).
fn interrupted_run(net: &Net, drop_it: bool) -> Option<anyhow::Result<Value>> {
    let mut config = net.config("/hang");
    config.sections.public_ip.lookup_timeout = Duration::from_secs(60);
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let cancel = CancellationToken::new();
    let (on_link_tx, on_link_rx) = tokio::sync::oneshot::channel::<()>();
    let run_cancel = cancel.clone();
    let outcome = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let node = net.node.name.clone();
            in_netns(&node, move || {
                Box::pin(async move {
                    let task = PublicIpValidation::with_source(
                        &config.sections.public_ip,
                        &config.grid_context(),
                        source,
                    );
                    let ctx = RunContext::new(run_cancel);
                    let run = task.run(&ctx);
                    if drop_it {
                        tokio::select! {
                            _ = run => panic!("the run ended by itself"),
                            _ = on_link_rx => None,
                        }
                    } else {
                        Some(run.await)
                    }
                })
            })
        });
        wait_for(Duration::from_secs(30), "the farm IP on the link", || {
            let (addrs, _, _) = net.link_state();
            addrs
                .iter()
                .any(|a| a.contains("203.0.113.10"))
                .then_some(())
        });
        if drop_it {
            let _ = on_link_tx.send(());
        } else {
            cancel.cancel();
        }
        runner.join().expect("runner")
    });
    outcome
}

#[test]
fn a_run_dropped_midway_leaves_the_link_clean() {
    let net = Net::new();
    assert!(interrupted_run(&net, true).is_none());
    // Dropping the run waited for the cleanup: nothing to wait for here.
    net.assert_link_clean();
}

#[test]
fn a_run_cancelled_midway_fails_and_leaves_the_link_clean() {
    let net = Net::new();
    let outcome = interrupted_run(&net, false).expect("run outcome");
    let err = outcome.expect_err("a cancelled run fails");
    assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
    net.assert_link_clean();
}

#[test]
fn a_missing_namespace_is_named() {
    let net = Net::new();
    let mut config = net.config("/");
    config.sections.public_ip.namespace = unique_name("pnone");
    let missing = config.sections.public_ip.namespace.clone();
    let err = run_task(
        &net,
        config,
        farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]),
    )
    .expect_err("no namespace");
    let msg = format!("{err:#}");
    assert!(msg.contains(&missing) && msg.contains("not found"), "{msg}");
}

#[test]
fn a_missing_macvlan_is_named() {
    let net = Net::new();
    let mut config = net.config("/");
    config.sections.public_ip.link = "nosuchlink".into();
    let err = run_task(
        &net,
        config,
        farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]),
    )
    .expect_err("no macvlan");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("nosuchlink") && msg.contains(&net.test.name),
        "{msg}"
    );
}

/// Removes a namespace the task created, when the test ends.
struct Created(String);
impl Drop for Created {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn with_a_parent_interface_the_namespace_and_macvlan_are_created() {
    let net = Net::new();
    let mut config = net.config("/");
    let created = Created(unique_name("pc"));
    config.sections.public_ip.namespace = created.0.clone();
    config.sections.public_ip.link = "pub".into();
    config.sections.public_ip.parent_interface = Some("up0".into());
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let result = run_task(&net, config.clone(), source).expect("run");
    assert_eq!(result, json!({"203.0.113.10/24": entry("valid", "")}));
    let links = sh(&["ip", "-n", &created.0, "-o", "link", "show", "pub"]);
    assert!(
        links.contains("macvlan") || links.contains("pub@"),
        "{links}"
    );
    // The second run finds them in place.
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let result = run_task(&net, config, source).expect("second run");
    assert_eq!(result, json!({"203.0.113.10/24": entry("valid", "")}));
}

#[test]
fn without_cap_net_admin_the_run_fails_saying_so() {
    let net = Net::new();
    let config = net.config("/");
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let err = std::thread::spawn(move || {
        drop_effective_capability(12);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let task = PublicIpValidation::with_source(
                    &config.sections.public_ip,
                    &config.grid_context(),
                    source,
                );
                task.run(&RunContext::new(CancellationToken::new())).await
            })
    })
    .join()
    .expect("thread")
    .expect_err("no CAP_NET_ADMIN");
    let msg = format!("{err:#}");
    assert!(msg.contains("CAP_NET_ADMIN"), "{msg}");
    net.assert_link_clean();
}

/// Removes one capability from the calling thread's effective set.
fn drop_effective_capability(bit: u32) {
    use nix::libc;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data slots, as the
    // kernel ABI requires; pid 0 is the calling thread.
    unsafe {
        assert_eq!(
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr()
            ),
            0
        );
        data[(bit / 32) as usize].effective &= !(1 << (bit % 32));
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
            0
        );
    }
}

#[test]
fn the_task_has_the_spec_name_description_and_defaults() {
    let config = Config::from_toml("").expect("config");
    let task = PublicIpValidation::with_source(
        &config.sections.public_ip,
        &config.grid_context(),
        farm(vec![], vec![]),
    );
    assert_eq!(task.name(), "public-ip-validation");
    assert_eq!(
        task.description(),
        "Runs on the least NodeID node in a farm to validate all its IPs."
    );
    let d = task.defaults();
    assert_eq!(d.cron, "0 0 */6 * * *");
    assert_eq!(d.jitter, Duration::from_secs(600));
    assert_eq!(d.timeout, Duration::from_secs(3600));
    assert!(d.exclusive);
}

/// zos validates the IPs of its own farm: where no farm (or node) is known
/// the task is off with its reason, as provisiontest is without a guest,
/// rather than a failed run every six hours. Configuration can still force
/// it on, and the run then says what is missing.
#[tokio::test]
async fn without_a_farm_or_node_the_task_is_off_with_its_reason() {
    let public_ip = |text: &str| {
        let config = Config::from_toml(text).expect("config");
        let registered = zos_perf::monitor::register(
            &config,
            zos_perf::tasks::registry(&config.sections, &config.grid_context()),
        )
        .expect("register");
        registered
            .into_iter()
            .find(|r| r.task.name() == "public-ip-validation")
            .expect("registered")
    };
    let r = public_ip("node_id = 3\n");
    assert!(!r.settings.enabled);
    assert_eq!(
        r.unavailable.as_deref(),
        Some("no farm is known: farm_id is not configured (farm_id in the config, or farmer_id= on the kernel command line)")
    );
    let r = public_ip("farm_id = 7\n");
    assert!(!r.settings.enabled);
    assert!(
        r.unavailable
            .as_deref()
            .is_some_and(|w| w.starts_with("no node id is known")),
        "{:?}",
        r.unavailable
    );
    let r = public_ip("farm_id = 7\nnode_id = 3\n");
    assert!(r.settings.enabled);
    assert_eq!(r.unavailable, None);

    let r = public_ip("[tasks.public-ip-validation]\nenabled = true\n");
    assert!(r.settings.enabled, "configuration forces it on");
    assert_eq!(r.unavailable, None);
    let err = r
        .task
        .run(&RunContext::new(CancellationToken::new()))
        .await
        .expect_err("no farm");
    let msg = format!("{err:#}");
    assert!(msg.contains("no farm is known"), "{msg}");
}
