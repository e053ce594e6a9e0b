//! public-ip-validation against a real network made of namespaces.
//!
//! ```text
//!  "node" ns (plays the daemon's own network)        "gateway" ns               "internet" ns
//!   up0 (veth) ──────────────────────────────────── up1 203.0.113.1/24
//!    └─ macvlan <link>, moved into the test ns       out0 198.51.100.1/24 ───── in0 198.51.100.80/24
//!   el0 192.0.2.1/24 ── "elder" ns el1 192.0.2.2/24   (forwarding)               lookup service :80
//! ```
//!
//! The task runs on a thread that entered the "node" namespace, so its
//! election pings and the namespace it creates stay inside the test's
//! namespaces. Only documentation address ranges are used.

mod common;

use std::fs::File;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{sh, unique_name, wait_for, NetNs};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::grid::graphql::{Interface, Node, PublicIp};
use zos_perf::task::{RunContext, Task};
use zos_perf::tasks::public_ip::{
    FarmSource, PublicIpValidation, FETCH_REAL_IP_FAILED, IPS_NOT_MATCHING, IP_IS_USED,
    PUBLIC_IP_DATA_INVALID, SKIPPED_FOR_LOWER_NODE,
};

const GATEWAY: &str = "203.0.113.1";
const LOOKUP: &str = "http://198.51.100.80";
const ELDER_UP: &str = "192.0.2.2";
const ELDER_SILENT: &str = "192.0.2.3";
const ME: u32 = 20;
const FARM: u32 = 7;

/// The namespaces of one test, all removed when it is dropped.
struct Net {
    node: NetNs,
    test: NetNs,
    _gateway: NetNs,
    _internet: NetNs,
    _elder: NetNs,
    link: String,
    _lookup: LookupService,
}

impl Net {
    fn new() -> Net {
        let node = NetNs::new("pn");
        let test = NetNs::new("pt");
        let gateway = NetNs::new("pg");
        let internet = NetNs::new("pi");
        let elder = NetNs::new("pe");
        let link = unique_name("pl");

        node.exec(&[
            "ip",
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "up1",
            "netns",
            &gateway.name,
        ]);
        node.exec(&["ip", "link", "set", "up0", "up"]);
        node.exec(&[
            "ip", "link", "add", &link, "link", "up0", "type", "macvlan", "mode", "bridge",
        ]);
        node.exec(&["ip", "link", "set", &link, "netns", &test.name]);

        gateway.exec(&["ip", "addr", "add", "203.0.113.1/24", "dev", "up1"]);
        gateway.exec(&["ip", "link", "set", "up1", "up"]);
        gateway.exec(&[
            "ip",
            "link",
            "add",
            "out0",
            "type",
            "veth",
            "peer",
            "name",
            "in0",
            "netns",
            &internet.name,
        ]);
        gateway.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "out0"]);
        gateway.exec(&["ip", "link", "set", "out0", "up"]);
        gateway.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);

        internet.exec(&["ip", "addr", "add", "198.51.100.80/24", "dev", "in0"]);
        internet.exec(&["ip", "link", "set", "in0", "up"]);
        internet.exec(&["ip", "route", "add", "default", "via", "198.51.100.1"]);

        node.exec(&[
            "ip",
            "link",
            "add",
            "el0",
            "type",
            "veth",
            "peer",
            "name",
            "el1",
            "netns",
            &elder.name,
        ]);
        node.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "el0"]);
        node.exec(&["ip", "link", "set", "el0", "up"]);
        elder.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", "el1"]);
        elder.exec(&["ip", "link", "set", "el1", "up"]);

        let lookup = LookupService::start(&internet.name);
        Net {
            node,
            test,
            _gateway: gateway,
            _internet: internet,
            _elder: elder,
            link,
            _lookup: lookup,
        }
    }

    /// A config pointing at this network: its test namespace and link.
    fn config(&self, lookup_path: &str) -> Config {
        Config::from_toml(&self.config_text(lookup_path)).expect("test config")
    }

    fn config_text(&self, lookup_path: &str) -> String {
        format!(
            "farm_id = {FARM}\nnode_id = {ME}\n[public_ip]\nnamespace = \"{}\"\nlink = \"{}\"\n\
             lookup_url = \"{LOOKUP}{lookup_path}\"\nlookup_timeout = \"10s\"\nping_count = 3\n",
            self.test.name, self.link
        )
    }

    /// Addresses, routes and the UP flag of the test link, as `ip` sees them.
    fn link_state(&self) -> (Vec<String>, String, bool) {
        let addrs: Value = serde_json::from_str(
            &self
                .test
                .exec(&["ip", "-j", "addr", "show", "dev", &self.link]),
        )
        .expect("ip -j addr");
        let addrs = addrs[0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| format!("{}/{}", i["local"], i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default();
        let routes = self
            .test
            .exec(&["ip", "route", "show", "table", "all", "dev", &self.link])
            + &self.test.exec(&[
                "ip", "-6", "route", "show", "table", "all", "dev", &self.link,
            ]);
        let link: Value = serde_json::from_str(
            &self
                .test
                .exec(&["ip", "-j", "link", "show", "dev", &self.link]),
        )
        .expect("ip -j link");
        let up = link[0]["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f == "UP");
        (addrs, routes, up)
    }

    fn assert_link_clean(&self) {
        let (addrs, routes, up) = self.link_state();
        assert!(addrs.is_empty(), "addresses left on the link: {addrs:?}");
        assert!(
            routes.trim().is_empty(),
            "routes left on the link: {routes}"
        );
        assert!(!up, "the link was left up");
    }
}

/// The farm as the grid would list it.
struct StaticFarm {
    nodes: Vec<Node>,
    ips: Vec<PublicIp>,
}

impl FarmSource for StaticFarm {
    fn up_nodes(&self, _farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<Node>>> {
        Box::pin(async move { Ok(self.nodes.clone()) })
    }
    fn public_ips(&self, _farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<PublicIp>>> {
        Box::pin(async move { Ok(self.ips.clone()) })
    }
}

fn ip(ip: &str, gateway: &str, contract_id: u64) -> PublicIp {
    PublicIp {
        ip: ip.into(),
        gateway: gateway.into(),
        contract_id,
    }
}

fn node(node_id: u32, zos_ips: &str) -> Node {
    Node {
        node_id,
        farm_id: FARM,
        public_config: None,
        interfaces: vec![Interface {
            name: "zos".into(),
            ips: zos_ips.into(),
        }],
    }
}

fn farm(nodes: Vec<Node>, ips: Vec<PublicIp>) -> Arc<dyn FarmSource> {
    Arc::new(StaticFarm { nodes, ips })
}

/// Runs `f` on a fresh thread that entered namespace `ns`, with a
/// current-thread runtime: that thread plays the daemon.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open namespace");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("daemon thread")
}

/// One run of the task, as the daemon in `net`'s node namespace would do it.
fn run_task(net: &Net, config: Config, source: Arc<dyn FarmSource>) -> anyhow::Result<Value> {
    in_netns(&net.node.name, move || {
        Box::pin(async move {
            let task = PublicIpValidation::new(&config, source);
            task.run(&RunContext::new(CancellationToken::new())).await
        })
    })
}

fn entry(state: &str, reason: &str) -> Value {
    json!({"state": state, "reason": reason})
}

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
            let task = zos_perf::tasks::registry(&config)
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
    let result = run_task(&net, net.config("/"), source).expect("run");
    assert_eq!(
        result,
        json!({
            "203.0.113.10/24": entry("skipped", SKIPPED_FOR_LOWER_NODE),
            "203.0.113.12/24": entry("skipped", SKIPPED_FOR_LOWER_NODE),
        })
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
/// link, then ends it with `end`; returns the run's outcome (None if dropped).
fn interrupted_run(net: &Net, drop_it: bool) -> Option<anyhow::Result<Value>> {
    let mut config = net.config("/hang");
    config.public_ip.lookup_timeout = Duration::from_secs(60);
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let cancel = CancellationToken::new();
    let (on_link_tx, on_link_rx) = tokio::sync::oneshot::channel::<()>();
    let run_cancel = cancel.clone();
    let outcome = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let node = net.node.name.clone();
            in_netns(&node, move || {
                Box::pin(async move {
                    let task = PublicIpValidation::new(&config, source);
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
    config.public_ip.namespace = unique_name("pnone");
    let missing = config.public_ip.namespace.clone();
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
    config.public_ip.link = "nosuchlink".into();
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
    config.public_ip.namespace = created.0.clone();
    config.public_ip.link = "pub".into();
    config.public_ip.parent_interface = Some("up0".into());
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
                let task = PublicIpValidation::new(&config, source);
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
    let task = PublicIpValidation::new(&config, farm(vec![], vec![]));
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

/// The "what is my IP" service: plain HTTP on 198.51.100.80:80 in the
/// internet namespace. `/` answers the caller's address; `/lie` another one;
/// `/garbage` no address; `/error` HTTP 500; `/hang` never answers.
struct LookupService {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LookupService {
    fn start(ns: &str) -> LookupService {
        let path = format!("/var/run/netns/{ns}");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).expect("open internet namespace");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns internet");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("198.51.100.80:80")
                    .await
                    .expect("bind lookup service");
                ready_tx.send(()).expect("ready");
                let serve = async {
                    loop {
                        let Ok((conn, peer)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(answer(conn, peer.ip()));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        ready_rx.recv().expect("lookup service ready");
        LookupService {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for LookupService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer(mut conn: tokio::net::TcpStream, peer: IpAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = match path.as_str() {
        "/" => ("200 OK", peer.to_string()),
        "/lie" => ("200 OK", "203.0.113.250".to_string()),
        "/garbage" => (
            "200 OK",
            "<html>your address is a secret</html>".to_string(),
        ),
        "/error" => ("500 Internal Server Error", "oops".to_string()),
        "/hang" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => ("404 Not Found", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}
