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
//! Every failure is [`Lookup::Unreachable`]: as in zos, a lookup that fails
//! through the IP under test counts against the IP's data (`invalid`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::{attributes::XorMappedAddress, methods::BINDING, Attribute};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::lookup::Lookup;

/// RFC 5389's initial retransmission timeout.
pub(crate) const INITIAL_RTO: Duration = Duration::from_millis(500);

/// The largest datagram read; a Binding answer is under 100 bytes.
const MAX_DATAGRAM: usize = 1500;

/// `host:port` or `[v6]:port` into its parts.
pub(crate) fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or("expected host:port, e.g. stun.example.net:3478")?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or("an IPv6 address must be in brackets, e.g. [2001:db8::1]:3478")?,
        None if host.contains(':') => {
            return Err("an IPv6 address must be in brackets, e.g. [2001:db8::1]:3478".into())
        }
        None => host,
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("port must be a number from 1 to 65535")?;
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
pub async fn ask(server: &str, source: IpAddr, timeout: Duration) -> Result<IpAddr, String> {
    let deadline = Instant::now() + timeout;
    let (host, port) = split_host_port(server)?;
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("resolving {host} took longer than {timeout:?}"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let target = resolved
        .into_iter()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| {
            format!(
                "{host} has no IPv{} address",
                if source.is_ipv4() { 4 } else { 6 }
            )
        })?;
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .map_err(|e| format!("cannot bind a UDP socket to {source}: {e}"))?;
    // Connected: the kernel drops datagrams from anyone but the server.
    socket
        .connect(target)
        .await
        .map_err(|e| format!("cannot reach {target}: {e}"))?;
    transaction(&socket, target, deadline).await
}

/// Sends the request and retransmits it until a usable answer or `deadline`.
pub async fn transaction(
    socket: &UdpSocket,
    target: SocketAddr,
    deadline: Instant,
) -> Result<IpAddr, String> {
    let id = TransactionId::new(rand::random());
    let request = encode_request(id)?;
    let mut rto = INITIAL_RTO;
    let mut ignored = 0u32;
    let mut sent = 0u32;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while Instant::now() < deadline {
        socket
            .send(&request)
            .await
            .map_err(|e| format!("cannot send to {target}: {e}"))?;
        sent += 1;
        let resend_at = (Instant::now() + rto).min(deadline);
        rto *= 2;
        loop {
            let n = match tokio::time::timeout_at(resend_at, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(n)) => n,
                // ICMP errors surface here on a connected socket.
                Ok(Err(e)) => return Err(format!("{target}: {e}")),
            };
            match read_answer(&buf[..n], id) {
                Answer::Address(ip) => return Ok(ip),
                Answer::Failed(why) => return Err(format!("{target}: {why}")),
                Answer::NotOurs(why) => {
                    ignored += 1;
                    tracing::debug!(%target, %why, "ignoring a datagram");
                }
            }
        }
    }
    let mut msg = format!("no answer from {target} after {sent} requests");
    if ignored > 0 {
        msg.push_str(&format!(
            " ({ignored} datagrams ignored: not an answer to our request)"
        ));
    }
    Err(msg)
}

/// A Binding Request with transaction id `id`, no attributes.
pub(crate) fn encode_request(id: TransactionId) -> Result<Vec<u8>, String> {
    let message = Message::<Attribute>::new(MessageClass::Request, BINDING, id);
    MessageEncoder::new()
        .encode_into_bytes(message)
        .map_err(|e| format!("encoding the STUN request: {e}"))
}

/// What a received datagram is to our transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A success answer with XOR-MAPPED-ADDRESS.
    Address(IpAddr),
    /// An answer to our request that gives no address.
    Failed(String),
    /// Not an answer to our request: ignored.
    NotOurs(String),
}

/// Reads a datagram as an answer to transaction `id`.
pub(crate) fn read_answer(datagram: &[u8], id: TransactionId) -> Answer {
    let message = match MessageDecoder::<Attribute>::new().decode_from_bytes(datagram) {
        Ok(Ok(m)) => m,
        Ok(Err(broken)) => {
            if broken.transaction_id() != id {
                return Answer::NotOurs("a broken message of another transaction".into());
            }
            return Answer::Failed(format!("unreadable attributes in the answer: {broken:?}"));
        }
        Err(e) => return Answer::NotOurs(format!("not a STUN message: {e}")),
    };
    if message.transaction_id() != id {
        return Answer::NotOurs("an answer with another transaction id".into());
    }
    if message.method() != BINDING {
        return Answer::NotOurs(format!("a {:?} message", message.method()));
    }
    match message.class() {
        MessageClass::SuccessResponse => {}
        MessageClass::ErrorResponse => {
            let code = message
                .get_attribute::<stun_codec::rfc5389::attributes::ErrorCode>()
                .map(|e| format!("{} {}", e.code(), e.reason_phrase()))
                .unwrap_or_else(|| "without a code".into());
            return Answer::Failed(format!("error answer {code}"));
        }
        other => return Answer::NotOurs(format!("a {other:?} message")),
    }
    match message.get_attribute::<XorMappedAddress>() {
        Some(a) => Answer::Address(a.address().ip().to_canonical()),
        None => Answer::Failed("the answer has no XOR-MAPPED-ADDRESS".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_codec::rfc5389::attributes::{MappedAddress, Software};

    fn answer(id: TransactionId, attrs: Vec<Attribute>) -> Vec<u8> {
        let mut m = Message::<Attribute>::new(MessageClass::SuccessResponse, BINDING, id);
        for a in attrs {
            m.add_attribute(a);
        }
        MessageEncoder::new().encode_into_bytes(m).expect("encode")
    }

    #[test]
    fn the_request_is_a_bare_binding_request() {
        let id = TransactionId::new([7; 12]);
        let bytes = encode_request(id).expect("encode");
        let mut want = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        want.extend([7; 12]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn the_xor_mapped_address_is_read() {
        let id = TransactionId::new([1; 12]);
        for addr in ["203.0.113.7:4000", "[2001:db8::7]:4000"] {
            let a: SocketAddr = addr.parse().expect("addr");
            let bytes = answer(
                id,
                vec![Attribute::XorMappedAddress(XorMappedAddress::new(a))],
            );
            // XOR'd on the wire: the plain address bytes are not there.
            assert_eq!(read_answer(&bytes, id), Answer::Address(a.ip()));
        }
    }

    #[test]
    fn an_answer_without_the_attribute_fails_and_another_id_is_ignored() {
        let id = TransactionId::new([1; 12]);
        let a: SocketAddr = "203.0.113.7:4000".parse().expect("addr");
        let plain = answer(
            id,
            vec![
                Attribute::MappedAddress(MappedAddress::new(a)),
                Attribute::Software(Software::new("x".into()).expect("software")),
            ],
        );
        assert!(
            matches!(read_answer(&plain, id), Answer::Failed(w) if w.contains("XOR-MAPPED-ADDRESS"))
        );
        let other = answer(
            TransactionId::new([2; 12]),
            vec![Attribute::XorMappedAddress(XorMappedAddress::new(a))],
        );
        assert!(matches!(read_answer(&other, id), Answer::NotOurs(_)));
        for junk in [&b""[..], b"hello", &[0u8; 19], &[0xff; 64]] {
            assert!(
                matches!(read_answer(junk, id), Answer::NotOurs(_)),
                "{junk:?}"
            );
        }
        // A request (ours echoed back) is no answer.
        let echo = encode_request(id).expect("encode");
        assert!(matches!(read_answer(&echo, id), Answer::NotOurs(_)));
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
