//! public-ip-validation with the STUN lookup (zos 2026), against a real STUN
//! server (coturn's `turnserver`) in the "internet" namespace of the test
//! network (see `pubnet`), with and without NAT at the gateway. Bad answers
//! come from a UDP stand-in on loopback.

use crate::common;
use crate::pubnet;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{wait_for, KillOnDrop, NetNs};
use pubnet::*;
use serde_json::json;
use zos_perf::config::Config;
use zos_perf::tasks::public_ip::stun::wire::{self, Attribute, Class, Message, TransactionId};
use zos_perf::tasks::public_ip::stun::{self, Failure, StunError};
use zos_perf::tasks::public_ip::{IPS_NOT_MATCHING, PUBLIC_IP_DATA_INVALID};

/// Where coturn listens, in the internet namespace.
const STUN: &str = "198.51.100.80:3478";

/// A real STUN server (coturn, STUN only) in `ns`, listening on `STUN`;
/// stopped, and its pid file removed, when dropped.
struct Coturn {
    _server: KillOnDrop,
    _dir: tempfile::TempDir,
}

fn coturn(ns: &NetNs) -> Coturn {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ns.spawn(&[
        "turnserver",
        "-n",
        "--stun-only",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-rfc5780",
        "--listening-ip",
        "198.51.100.80",
        "--listening-port",
        "3478",
        "--pidfile",
        &dir.path().join("pid").display().to_string(),
        "--log-file",
        "stdout",
        "--no-stdout-log",
    ]);
    wait_for(Duration::from_secs(10), "coturn listening", || {
        let out = ns.exec(&["ss", "-Hlun", "sport = :3478"]);
        (!out.trim().is_empty()).then_some(())
    });
    Coturn {
        _server: server,
        _dir: dir,
    }
}

fn stun_config(net: &Net, servers: &[&str]) -> Config {
    let list: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    let text = net
        .config_text("/")
        .replace("lookup = \"http\"", "lookup = \"stun\"")
        + &format!(
            "stun_servers = [{}]\nstun_timeout = \"3s\"\n",
            list.join(", ")
        );
    Config::from_toml(&text).expect("stun config")
}

/// A UDP port of the internet namespace where nothing listens.
const SILENT: &str = "198.51.100.80:3479";

#[test]
fn stun_through_the_ip_is_valid_and_the_first_dead_server_is_passed_over() {
    let net = Net::new();
    let _coturn = coturn(&net.internet);
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let started = Instant::now();
    let result = run_task(&net, stun_config(&net, &[SILENT, STUN]), source).expect("run");
    eprintln!(
        "one STUN validation (first server refused): {:?}",
        started.elapsed()
    );
    assert_eq!(result, json!({"203.0.113.10/24": entry("valid", "")}));
    net.assert_link_clean();
}

#[test]
fn behind_nat_the_server_sees_another_address_a_mismatch() {
    let net = Net::new();
    let _coturn = coturn(&net.internet);
    for rule in [
        "add table ip zosperf",
        "add chain ip zosperf post { type nat hook postrouting priority 100 ; }",
        "add rule ip zosperf post oifname \"out0\" masquerade",
    ] {
        net.gateway.exec(&["nft", rule]);
    }
    let source = farm(vec![], vec![ip("203.0.113.10/24", GATEWAY, 0)]);
    let result = run_task(&net, stun_config(&net, &[STUN]), source).expect("run");
    assert_eq!(
        result,
        json!({"203.0.113.10/24": entry("invalid", IPS_NOT_MATCHING)})
    );
    net.assert_link_clean();
}

#[test]
fn an_unreachable_stun_server_makes_the_ip_invalid() {
    let net = Net::new();
    let _coturn = coturn(&net.internet);
    let source = farm(
        vec![],
        vec![
            // A gateway that does not exist: nothing goes out.
            ip("203.0.113.11/24", "203.0.113.99", 0),
            // The road is fine but no STUN server answers there.
            ip("203.0.113.12/24", GATEWAY, 0),
        ],
    );
    let config = stun_config(&net, &[SILENT]);
    let result = run_task(&net, config, source).expect("run");
    assert_eq!(
        result,
        json!({
            "203.0.113.11/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
            "203.0.113.12/24": entry("invalid", PUBLIC_IP_DATA_INVALID),
        })
    );
    net.assert_link_clean();
}

/// A UDP stand-in on loopback that answers each request with what
/// `reply` makes of its transaction id.
fn stand_in(
    reply: impl Fn(TransactionId) -> Vec<Vec<u8>> + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let addr = socket.local_addr().expect("addr");
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        // Every request (retransmissions too) is answered, until the
        // client has been quiet longer than its whole timeout.
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let request = wire::decode(&buf[..n]).expect("a STUN message");
            assert_eq!(request.class, Class::Request);
            for d in reply(request.transaction) {
                socket.send_to(&d, peer).expect("send");
            }
        }
    });
    (addr, thread)
}

fn success(id: TransactionId, attributes: Vec<Attribute>) -> Vec<u8> {
    let m = Message {
        class: Class::Success,
        method: wire::BINDING,
        transaction: id,
        attributes,
    };
    wire::encode(&m).expect("encode")
}

fn seen() -> SocketAddr {
    "203.0.113.77:5000".parse().expect("addr")
}

fn ask(addr: SocketAddr) -> Result<IpAddr, StunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(stun::ask(
            &addr.to_string(),
            "127.0.0.1".parse().expect("ip"),
            Duration::from_secs(2),
        ))
}

#[test]
fn a_stray_answer_with_another_transaction_id_is_ignored() {
    let (addr, t) = stand_in(|id| {
        let mut other = id;
        other[0] ^= 0xff;
        vec![
            success(
                other,
                vec![Attribute::XorMappedAddress(
                    "198.51.100.66:1".parse().expect("addr"),
                )],
            ),
            b"not stun at all".to_vec(),
            success(id, vec![Attribute::XorMappedAddress(seen())]),
        ]
    });
    assert_eq!(ask(addr).expect("the answer of ours"), seen().ip());
    t.join().expect("stand-in");
}

#[test]
fn only_wrong_transaction_ids_is_no_answer() {
    let (addr, t) = stand_in(|id| {
        let mut other = id;
        other[11] ^= 1;
        vec![success(other, vec![Attribute::XorMappedAddress(seen())])]
    });
    let err = ask(addr).expect_err("no answer of ours");
    // One stray answer per request sent: all ignored.
    assert!(
        matches!(err, StunError::NoAnswer { sent, ignored, .. } if sent > 0 && ignored > 0),
        "{err}"
    );
    assert!(err.to_string().contains("datagrams ignored"), "{err}");
    t.join().expect("stand-in");
}

#[test]
fn an_answer_without_xor_mapped_address_fails_that_server() {
    let (addr, t) = stand_in(|id| vec![success(id, vec![Attribute::MappedAddress(seen())])]);
    let err = ask(addr).expect_err("no XOR-MAPPED-ADDRESS");
    assert!(
        matches!(
            err,
            StunError::Answer {
                failure: Failure::NoXorMappedAddress,
                ..
            }
        ),
        "{err}"
    );
    t.join().expect("stand-in");
}
