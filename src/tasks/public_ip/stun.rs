//! The node's public address by STUN (RFC 5389): a Binding Request over
//! UDP, sent from the address under test, answered with the address the
//! server saw in XOR-MAPPED-ADDRESS. zos does this since 2025.
//!
//! Runs on the namespace thread (see `netns`), so name resolution and the
//! socket live inside the test namespace, where the only way out is the
//! farm IP and its gateway being tested.
//!
//! Servers are asked in order; the first usable answer wins. Each server
//! gets `stun_timeout` (10 s by default, about what zos's library allows):
//! the request is sent, then sent again after 500 ms, 1 s, 2 s, ... (RFC
//! 5389's retransmission, doubling) until an answer or the time is up.
//! Datagrams that are not a STUN answer to our request (another transaction
//! id, not STUN at all) are ignored and counted; an answer without
//! XOR-MAPPED-ADDRESS, or an error answer, moves on to the next server.
//!
//! The messages are read and written by [`wire`]; each way a server can
//! fail is a [`StunError`].
//!
//! Every failure is [`Lookup::Unreachable`]: as in zos, a lookup that fails
//! through the IP under test counts against the IP's data (`invalid`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::lookup::Lookup;
use crate::util::text::Escaped;

pub mod wire;

use wire::{Attribute, Class, TransactionId, WireError, BINDING};

/// RFC 5389's initial retransmission timeout.
pub(crate) const INITIAL_RTO: Duration = Duration::from_millis(500);

/// The largest datagram read; a Binding answer is under 100 bytes.
const MAX_DATAGRAM: usize = 1500;

/// Why a `stun_servers` entry is not `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServerNameError {
    #[error("expected host:port, e.g. stun.example.net:3478")]
    NoPort,
    #[error("an IPv6 address must be in brackets, e.g. [2001:db8::1]:3478")]
    UnbracketedIpv6,
    #[error("no host")]
    NoHost,
    #[error("port must be a number from 1 to 65535")]
    BadPort,
}

/// Why one server gave no address.
#[derive(Debug, thiserror::Error)]
pub enum StunError {
    #[error(transparent)]
    ServerName(#[from] ServerNameError),
    #[error("resolving {host} took longer than {timeout:?}")]
    ResolveTimeout { host: String, timeout: Duration },
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: std::io::Error },
    #[error("{host} has no IPv{family} address")]
    NoAddress { host: String, family: u8 },
    #[error("cannot bind a UDP socket to {from}: {error}")]
    Bind { from: IpAddr, error: std::io::Error },
    #[error("cannot reach {target}: {error}")]
    Connect {
        target: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot send to {target}: {error}")]
    Send {
        target: SocketAddr,
        error: std::io::Error,
    },
    /// ICMP errors surface here on a connected socket.
    #[error("{target}: {error}")]
    Receive {
        target: SocketAddr,
        error: std::io::Error,
    },
    #[error("{target}: {failure}")]
    Answer {
        target: SocketAddr,
        failure: Failure,
    },
    #[error("no answer from {target} after {sent} requests{}", ignored_note(*.ignored))]
    NoAnswer {
        target: SocketAddr,
        sent: u32,
        ignored: u32,
    },
}

fn ignored_note(ignored: u32) -> String {
    if ignored == 0 {
        return String::new();
    }
    format!(" ({ignored} datagrams ignored: not an answer to our request)")
}

/// An answer to our request that gives no address. The reason phrase of an
/// error answer is the server's text: written escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("error answer {code} {}", Escaped(reason))]
    ErrorAnswer { code: u16, reason: String },
    #[error("error answer without a code")]
    ErrorWithoutCode,
    #[error("unreadable attributes in the answer: {0}")]
    Unreadable(WireError),
    #[error("the answer has no XOR-MAPPED-ADDRESS")]
    NoXorMappedAddress,
}

/// Why a datagram is not an answer to our request (it is ignored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("not a STUN message: {0}")]
    NotStun(WireError),
    #[error("a broken message of another transaction")]
    BrokenOther,
    #[error("an answer with another transaction id")]
    OtherTransaction,
    #[error("a message of method 0x{0:03x}, not Binding")]
    NotBinding(u16),
    #[error("a {0:?} message, not an answer")]
    NotAnAnswer(Class),
}

/// `host:port` or `[v6]:port` into its parts.
pub(crate) fn split_host_port(s: &str) -> Result<(String, u16), ServerNameError> {
    let (host, port) = s.rsplit_once(':').ok_or(ServerNameError::NoPort)?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or(ServerNameError::UnbracketedIpv6)?,
        None if host.contains(':') => return Err(ServerNameError::UnbracketedIpv6),
        None => host,
    };
    if host.is_empty() {
        return Err(ServerNameError::NoHost);
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or(ServerNameError::BadPort)?;
    Ok((host.to_string(), port))
}

/// Asks `servers` in order, from `source`, for the address they see.
pub async fn public_ip(servers: &[String], source: IpAddr, timeout: Duration) -> Lookup {
    let mut failures = Vec::new();
    for server in servers {
        match ask(server, source, timeout).await {
            Ok(ip) => return Lookup::Answer(ip),
            Err(why) => {
                tracing::info!(%source, server, %why, "STUN server gave no address");
                failures.push(format!("{server}: {why}"));
            }
        }
    }
    Lookup::Unreachable(format!(
        "failed to reach public ip service: {}",
        failures.join("; ")
    ))
}

/// One server: resolve, then the Binding transaction, within `timeout`.
pub async fn ask(server: &str, source: IpAddr, timeout: Duration) -> Result<IpAddr, StunError> {
    let deadline = Instant::now() + timeout;
    let (host, port) = split_host_port(server)?;
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| StunError::ResolveTimeout {
                host: host.clone(),
                timeout,
            })?
            .map_err(|error| StunError::Resolve {
                host: host.clone(),
                error,
            })?
            .collect(),
    };
    let target = resolved
        .into_iter()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| StunError::NoAddress {
            host: host.clone(),
            family: if source.is_ipv4() { 4 } else { 6 },
        })?;
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .map_err(|error| StunError::Bind {
            from: source,
            error,
        })?;
    // Connected: the kernel drops datagrams from anyone but the server.
    socket
        .connect(target)
        .await
        .map_err(|error| StunError::Connect { target, error })?;
    transaction(&socket, target, deadline).await
}

/// Sends the request and retransmits it until a usable answer or `deadline`.
pub async fn transaction(
    socket: &UdpSocket,
    target: SocketAddr,
    deadline: Instant,
) -> Result<IpAddr, StunError> {
    let id: TransactionId = rand::random();
    let request = wire::binding_request(id);
    let mut rto = INITIAL_RTO;
    let mut ignored = 0u32;
    let mut sent = 0u32;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        socket
            .send(&request)
            .await
            .map_err(|error| StunError::Send { target, error })?;
        sent += 1;
        let resend_at = (Instant::now() + rto).min(deadline);
        rto *= 2;
        loop {
            let n = match tokio::time::timeout_at(resend_at, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(n)) => n,
                Ok(Err(error)) => return Err(StunError::Receive { target, error }),
            };
            match read_answer(&buf[..n], id) {
                Answer::Address(ip) => return Ok(ip),
                Answer::Failed(failure) => return Err(StunError::Answer { target, failure }),
                Answer::NotOurs(why) => {
                    ignored += 1;
                    tracing::debug!(%target, %why, "ignoring a datagram");
                }
            }
        }
    }
    Err(StunError::NoAnswer {
        target,
        sent,
        ignored,
    })
}

/// What a received datagram is to our transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A success answer with XOR-MAPPED-ADDRESS.
    Address(IpAddr),
    /// An answer to our request that gives no address.
    Failed(Failure),
    /// Not an answer to our request: ignored.
    NotOurs(Ignored),
}

/// Reads a datagram as an answer to transaction `id`. Only
/// XOR-MAPPED-ADDRESS counts (as in zos): MAPPED-ADDRESS alone is an
/// address a NAT may have rewritten on the way.
pub fn read_answer(datagram: &[u8], id: TransactionId) -> Answer {
    let message = match wire::decode(datagram) {
        Ok(m) => m,
        Err(e) => {
            return match wire::header_transaction(datagram) {
                Some(t) if t == id => Answer::Failed(Failure::Unreadable(e)),
                Some(_) => Answer::NotOurs(Ignored::BrokenOther),
                None => Answer::NotOurs(Ignored::NotStun(e)),
            }
        }
    };
    if message.transaction != id {
        return Answer::NotOurs(Ignored::OtherTransaction);
    }
    if message.method != BINDING {
        return Answer::NotOurs(Ignored::NotBinding(message.method));
    }
    match message.class {
        Class::Success => {}
        Class::Error => {
            let failure = message
                .attributes
                .into_iter()
                .find_map(|a| match a {
                    Attribute::ErrorCode { code, reason } => {
                        Some(Failure::ErrorAnswer { code, reason })
                    }
                    _ => None,
                })
                .unwrap_or(Failure::ErrorWithoutCode);
            return Answer::Failed(failure);
        }
        other => return Answer::NotOurs(Ignored::NotAnAnswer(other)),
    }
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            Attribute::XorMappedAddress(a) => Some(Answer::Address(a.ip().to_canonical())),
            _ => None,
        })
        .unwrap_or(Answer::Failed(Failure::NoXorMappedAddress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{encode, Message};

    fn answer(id: TransactionId, attributes: Vec<Attribute>) -> Vec<u8> {
        let m = Message {
            class: Class::Success,
            method: BINDING,
            transaction: id,
            attributes,
        };
        encode(&m).expect("encode")
    }

    #[test]
    fn the_xor_mapped_address_is_read() {
        let id = [1; 12];
        for addr in ["203.0.113.7:4000", "[2001:db8::7]:4000"] {
            let a: SocketAddr = addr.parse().expect("addr");
            let bytes = answer(id, vec![Attribute::XorMappedAddress(a)]);
            assert_eq!(read_answer(&bytes, id), Answer::Address(a.ip()));
        }
    }

    #[test]
    fn an_answer_without_the_attribute_fails_and_another_id_is_ignored() {
        let id = [1; 12];
        let a: SocketAddr = "203.0.113.7:4000".parse().expect("addr");
        let plain = answer(
            id,
            vec![
                Attribute::MappedAddress(a),
                Attribute::Other {
                    kind: 0x8022,
                    value: b"x".to_vec(),
                },
            ],
        );
        assert_eq!(
            read_answer(&plain, id),
            Answer::Failed(Failure::NoXorMappedAddress)
        );
        let other = answer([2; 12], vec![Attribute::XorMappedAddress(a)]);
        assert_eq!(
            read_answer(&other, id),
            Answer::NotOurs(Ignored::OtherTransaction)
        );
        for junk in [&b""[..], b"hello", &[0u8; 19], &[0xff; 64]] {
            assert!(
                matches!(read_answer(junk, id), Answer::NotOurs(Ignored::NotStun(_))),
                "{junk:?}"
            );
        }
        // A request (ours echoed back) is no answer.
        let echo = wire::binding_request(id);
        assert_eq!(
            read_answer(&echo, id),
            Answer::NotOurs(Ignored::NotAnAnswer(Class::Request))
        );
    }

    #[test]
    fn a_broken_answer_of_ours_fails_and_one_of_another_transaction_is_ignored() {
        let id = [3; 12];
        let address = Attribute::XorMappedAddress(([192, 0, 2, 1], 9).into());
        let mut broken = answer(id, vec![address]);
        broken[20 + 5] = 9; // an address family that does not exist
        assert!(matches!(
            read_answer(&broken, id),
            Answer::Failed(Failure::Unreadable(WireError::Attribute { .. }))
        ));
        assert_eq!(
            read_answer(&broken, [4; 12]),
            Answer::NotOurs(Ignored::BrokenOther)
        );
    }

    #[test]
    fn an_error_answer_fails_with_its_code_and_escaped_reason() {
        let id = [5; 12];
        let m = Message {
            class: Class::Error,
            method: BINDING,
            transaction: id,
            attributes: vec![Attribute::ErrorCode {
                code: 420,
                reason: "Unknown\x1b]0;owned\x07".into(),
            }],
        };
        let Answer::Failed(failure) = read_answer(&encode(&m).expect("encode"), id) else {
            panic!("an error answer is a failure");
        };
        assert_eq!(
            failure.to_string(),
            "error answer 420 Unknown\\u{1b}]0;owned\\u{7}"
        );
        let bare = Message {
            attributes: vec![],
            ..m
        };
        assert_eq!(
            read_answer(&encode(&bare).expect("encode"), id),
            Answer::Failed(Failure::ErrorWithoutCode)
        );
    }

    #[test]
    fn server_names_are_checked() {
        assert_eq!(
            split_host_port("stun.l.google.com:19302"),
            Ok(("stun.l.google.com".into(), 19302))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:3478"),
            Ok(("2001:db8::1".into(), 3478))
        );
        for bad in [
            "stun.l.google.com",
            "2001:db8::1:3478",
            ":3478",
            "x:0",
            "x:99999",
            "[::1:3478",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }
}
