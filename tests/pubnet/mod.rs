//! The namespaces of a public-ip-validation test or benchmark.
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

#![allow(dead_code)]

use std::fs::File;
use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::grid::graphql::{Interface, Node, PublicIp};
use zos_perf::tasks::public_ip::{FarmSource, PublicIpValidation};
use zos_perf::tasks::{RunContext, Task};

use crate::common::{unique_name, NetNs};

pub const GATEWAY: &str = "203.0.113.1";
pub const LOOKUP: &str = "http://198.51.100.80";
pub const ELDER_UP: &str = "192.0.2.2";
pub const ELDER_SILENT: &str = "192.0.2.3";
pub const ME: u32 = 20;
pub const FARM: u32 = 7;

/// The namespaces of one test, all removed when it is dropped.
pub struct Net {
    pub node: NetNs,
    pub test: NetNs,
    pub gateway: NetNs,
    pub internet: NetNs,
    _elder: NetNs,
    pub link: String,
    _lookup: LookupService,
}

impl Net {
    pub fn new() -> Net {
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
            gateway,
            internet,
            _elder: elder,
            link,
            _lookup: lookup,
        }
    }

    /// A config pointing at this network: its test namespace and link.
    pub fn config(&self, lookup_path: &str) -> Config {
        Config::from_toml(&self.config_text(lookup_path)).expect("test config")
    }

    pub fn config_text(&self, lookup_path: &str) -> String {
        format!(
            "farm_id = {FARM}\nnode_id = {ME}\n[public_ip]\nnamespace = \"{}\"\nlink = \"{}\"\n\
             lookup = \"http\"\nlookup_url = \"{LOOKUP}{lookup_path}\"\nlookup_timeout = \"10s\"\nping_count = 3\n",
            self.test.name, self.link
        )
    }

    /// Addresses, routes and the UP flag of the test link, as `ip` sees them.
    pub fn link_state(&self) -> (Vec<String>, String, bool) {
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

    pub fn assert_link_clean(&self) {
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
pub struct StaticFarm {
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

pub fn ip(ip: &str, gateway: &str, contract_id: u64) -> PublicIp {
    PublicIp {
        ip: ip.into(),
        gateway: gateway.into(),
        contract_id,
    }
}

pub fn node(node_id: u32, zos_ips: &str) -> Node {
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

pub fn farm(nodes: Vec<Node>, ips: Vec<PublicIp>) -> Arc<dyn FarmSource> {
    Arc::new(StaticFarm { nodes, ips })
}

pub use super::common::in_netns;

/// One run of the task, as the daemon in `net`'s node namespace would do it.
pub fn run_task(net: &Net, config: Config, source: Arc<dyn FarmSource>) -> anyhow::Result<Value> {
    run_task_remarked(net, config, source).0
}

/// [`run_task`], with the remark the run made for perf:status.
pub fn run_task_remarked(
    net: &Net,
    config: Config,
    source: Arc<dyn FarmSource>,
) -> (anyhow::Result<Value>, Option<String>) {
    in_netns(&net.node.name, move || {
        Box::pin(async move {
            let task = PublicIpValidation::with_source(
                &config.sections.public_ip,
                &config.grid_context(),
                source,
            );
            let ctx = RunContext::new(CancellationToken::new());
            let result = task.run(&ctx).await;
            (result, ctx.remarked())
        })
    })
}

pub fn entry(state: &str, reason: &str) -> Value {
    json!({"state": state, "reason": reason})
}

/// The "what is my IP" service: plain HTTP on 198.51.100.80:80 in the
/// internet namespace. `/` answers the caller's address; `/lie` another one;
/// `/garbage` no address; `/error` HTTP 500; `/hang` never answers.
pub struct LookupService {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LookupService {
    pub fn start(ns: &str) -> LookupService {
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

pub async fn answer(mut conn: tokio::net::TcpStream, peer: IpAddr) {
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
