//! The STUN message on the wire (RFC 5389 §6 and §15), as much of it as a
//! Binding client needs: the request it sends and the answers it reads.
//! Written here rather than taken from a STUN crate because one request
//! and three attributes are all the task uses, and the crate it replaced
//! (`stun_codec`) brought a codec framework, `trackable`, `syn` 1 and a
//! second `sha1` into the shipped binary (BENCHMARKS.md, "Binary size").
//!
//! A message is a 20-byte header (two zero bits, the 14-bit message type,
//! the length of what follows, the magic cookie 0x2112A442, a 96-bit
//! transaction id) and attributes, each a 16-bit type, a 16-bit length
//! and the value padded to a multiple of 4 bytes. The datagram comes from
//! anyone who can reach the socket, so every length is checked against
//! what is there before anything is read: a datagram either decodes whole
//! or is refused with the reason ([`WireError`]); nothing is allocated
//! beyond the datagram's own size.
//!
//! Attributes other than MAPPED-ADDRESS, XOR-MAPPED-ADDRESS and ERROR-CODE
//! are kept as read ([`Attribute::Other`]), comprehension-required ones
//! too: servers of RFC 3489's era send SOURCE-ADDRESS and CHANGED-ADDRESS
//! (types in that range) next to the address, and refusing their answers
//! would fail IPs that are fine. FINGERPRINT is not checked: it tells STUN
//! apart from other protocols on a shared port, and the answer here is
//! matched by its random transaction id on a connected socket.
//!
//! The fuzz target `stun` (fuzz/checks/stun.rs) and the property tests
//! below hold [`decode`] to never panicking and to round trips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value of every RFC 5389 message's bytes 4 to 8.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// The header's size; the smallest message.
pub const HEADER_LEN: usize = 20;

/// The Binding method, the only one the task uses.
pub const BINDING: u16 = 0x001;

/// The attribute types read here (RFC 5389 §18.2).
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// XOR-MAPPED-ADDRESS: the address, XOR'd so that NATs rewriting addresses
/// inside payloads leave it alone.
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// ERROR-CODE: the class and number of an error answer, and a reason.
pub const ERROR_CODE: u16 = 0x0009;

/// The longest reason phrase of an ERROR-CODE (RFC 5389 §15.6), in bytes.
pub const MAX_REASON: usize = 763;

/// A transaction id: 96 random bits chosen by the client.
pub type TransactionId = [u8; 12];

/// A message's class, the two class bits of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    /// The class bits C1 (0x100) and C0 (0x010), in place in the type.
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x000,
            Class::Indication => 0x010,
            Class::Success => 0x100,
            Class::Error => 0x110,
        }
    }

    fn from_type(t: u16) -> Class {
        match t & 0x110 {
            0x000 => Class::Request,
            0x010 => Class::Indication,
            0x100 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// One attribute of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// The address as the server saw it, in the clear (RFC 3489's).
    MappedAddress(SocketAddr),
    /// The address as the server saw it, XOR'd with the cookie (and, for
    /// IPv6, the transaction id) on the wire.
    XorMappedAddress(SocketAddr),
    /// An error answer's code (300 to 699) and reason phrase.
    ErrorCode { code: u16, reason: String },
    /// Any other attribute, its value as read (without padding).
    Other { kind: u16, value: Vec<u8> },
}

/// A STUN message: what [`decode`] reads and [`encode`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    /// The method, 12 bits (Binding is 0x001).
    pub method: u16,
    pub transaction: TransactionId,
    pub attributes: Vec<Attribute>,
}

/// Why bytes are not a STUN message, or a message cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{len} bytes: shorter than a STUN header ({HEADER_LEN})")]
    TooShort { len: usize },
    #[error("not a STUN message: the first two bits are not zero")]
    NotStun,
    #[error("not a STUN message: no magic cookie")]
    NoCookie,
    #[error("the header gives {declared} bytes of attributes, the datagram holds {actual}")]
    Length { declared: usize, actual: usize },
    #[error("attribute 0x{kind:04x} gives a length of {declared} bytes, {left} are left")]
    Overrun {
        kind: u16,
        declared: usize,
        left: usize,
    },
    #[error("attribute 0x{kind:04x}: {why}")]
    Attribute { kind: u16, why: &'static str },
    #[error("cannot write: {0}")]
    Unwritable(&'static str),
}

/// The Binding Request of transaction `id`: a header, no attributes.
pub fn binding_request(id: TransactionId) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..2].copy_from_slice(&message_type(Class::Request, BINDING).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..].copy_from_slice(&id);
    out
}

/// The 14-bit message type: the method's 12 bits with the class bits
/// threaded in at bits 4 and 8 (RFC 5389 §6, figure 3).
fn message_type(class: Class, method: u16) -> u16 {
    (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | class.bits()
}

/// The method of a message type (the inverse of [`message_type`]).
fn method_of(t: u16) -> u16 {
    (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2)
}

/// The transaction id of bytes that start like a STUN message (header
/// checks of [`decode`] passed), even when what follows is broken.
pub fn header_transaction(datagram: &[u8]) -> Option<TransactionId> {
    let header = datagram.get(..HEADER_LEN)?;
    if header[0] & 0xc0 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    header[8..].try_into().ok()
}

/// Reads one datagram as one whole STUN message.
pub fn decode(datagram: &[u8]) -> Result<Message, WireError> {
    let Some((header, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::TooShort {
            len: datagram.len(),
        });
    };
    let t = u16::from_be_bytes([header[0], header[1]]);
    if t & 0xc000 != 0 {
        return Err(WireError::NotStun);
    }
    if header[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return Err(WireError::NoCookie);
    }
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if declared != body.len() || declared % 4 != 0 {
        return Err(WireError::Length {
            declared,
            actual: body.len(),
        });
    }
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&header[8..]);
    let mut attributes = Vec::new();
    let mut rest = body;
    // `rest` stays a multiple of 4 long: an attribute header fits.
    while let Some((head, after)) = rest.split_first_chunk::<4>() {
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let padded = len.next_multiple_of(4);
        if padded > after.len() {
            return Err(WireError::Overrun {
                kind,
                declared: len,
                left: after.len(),
            });
        }
        attributes.push(attribute(kind, &after[..len], &transaction)?);
        rest = &after[padded..];
    }
    Ok(Message {
        class: Class::from_type(t),
        method: method_of(t),
        transaction,
        attributes,
    })
}

/// One attribute's value, by its type.
fn attribute(kind: u16, value: &[u8], id: &TransactionId) -> Result<Attribute, WireError> {
    let bad = |why| WireError::Attribute { kind, why };
    Ok(match kind {
        MAPPED_ADDRESS => Attribute::MappedAddress(address(value).map_err(bad)?),
        XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(xor(address(value).map_err(bad)?, id)),
        ERROR_CODE => {
            let (head, reason) = value
                .split_first_chunk::<4>()
                .ok_or(bad("shorter than 4 bytes"))?;
            let (class, number) = (u16::from(head[2] & 0x07), u16::from(head[3]));
            if !(3..=6).contains(&class) || number > 99 {
                return Err(bad("the code is not from 300 to 699"));
            }
            if reason.len() > MAX_REASON {
                return Err(bad("the reason is over 763 bytes"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| bad("the reason is not UTF-8"))?;
            Attribute::ErrorCode {
                code: class * 100 + number,
                reason: reason.to_owned(),
            }
        }
        _ => Attribute::Other {
            kind,
            value: value.to_vec(),
        },
    })
}

/// The value of a (XOR-)MAPPED-ADDRESS: a reserved byte, the family, the
/// port and 4 or 16 bytes of address.
fn address(value: &[u8]) -> Result<SocketAddr, &'static str> {
    let (head, ip) = value
        .split_first_chunk::<4>()
        .ok_or("shorter than 4 bytes")?;
    let port = u16::from_be_bytes([head[2], head[3]]);
    let ip = match (head[1], ip.len()) {
        (1, 4) => IpAddr::from(<[u8; 4]>::try_from(ip).map_err(|_| "bad IPv4 length")?),
        (2, 16) => IpAddr::from(<[u8; 16]>::try_from(ip).map_err(|_| "bad IPv6 length")?),
        (1 | 2, _) => return Err("the address length does not match its family"),
        _ => return Err("unknown address family"),
    };
    Ok(SocketAddr::new(ip, port))
}

/// XOR-MAPPED-ADDRESS's mask, applied (it is its own inverse): the port
/// with the cookie's high half, an IPv4 address with the cookie, an IPv6
/// address with the cookie and the transaction id.
fn xor(a: SocketAddr, id: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = a.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match a.ip() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ MAGIC_COOKIE)),
        IpAddr::V6(v6) => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&cookie);
            mask[4..].copy_from_slice(id);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ u128::from_be_bytes(mask)))
        }
    };
    SocketAddr::new(ip, port)
}

/// Writes `m`: the inverse of [`decode`] (padding is written as zeros).
/// Fails when a value or the whole does not fit its 16-bit length, the
/// method its 12 bits, or an error code its range.
pub fn encode(m: &Message) -> Result<Vec<u8>, WireError> {
    if m.method > 0x0fff {
        return Err(WireError::Unwritable("the method is over 12 bits"));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 12 * m.attributes.len());
    out.extend(message_type(m.class, m.method).to_be_bytes());
    out.extend([0, 0]);
    out.extend(MAGIC_COOKIE.to_be_bytes());
    out.extend(m.transaction);
    for a in &m.attributes {
        let start = out.len();
        out.extend([0; 4]);
        let kind = match a {
            Attribute::MappedAddress(addr) => {
                put_address(&mut out, *addr);
                MAPPED_ADDRESS
            }
            Attribute::XorMappedAddress(addr) => {
                put_address(&mut out, xor(*addr, &m.transaction));
                XOR_MAPPED_ADDRESS
            }
            Attribute::ErrorCode { code, reason } => {
                if !(300..=699).contains(code) || reason.len() > MAX_REASON {
                    return Err(WireError::Unwritable("an error code out of range"));
                }
                out.extend([0, 0, (code / 100) as u8, (code % 100) as u8]);
                out.extend(reason.as_bytes());
                ERROR_CODE
            }
            Attribute::Other { kind, value } => {
                out.extend(value);
                *kind
            }
        };
        let len = u16::try_from(out.len() - start - 4)
            .map_err(|_| WireError::Unwritable("an attribute over 65,535 bytes"))?;
        out[start..start + 2].copy_from_slice(&kind.to_be_bytes());
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let len = u16::try_from(out.len() - HEADER_LEN)
        .map_err(|_| WireError::Unwritable("a message over 65,535 bytes"))?;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

fn put_address(out: &mut Vec<u8>, a: SocketAddr) {
    out.push(0);
    out.push(if a.is_ipv4() { 1 } else { 2 });
    out.extend(a.port().to_be_bytes());
    match a.ip() {
        IpAddr::V4(v4) => out.extend(v4.octets()),
        IpAddr::V6(v6) => out.extend(v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        hex::decode(s).expect("hex")
    }

    /// RFC 5769's transaction id and SOFTWARE value ("test vector", padded
    /// with a space).
    const ID: &str = "b7e7a701 bc34d686 fa87dfae";

    /// RFC 5769 §2.2, the sample IPv4 response: SOFTWARE, XOR-MAPPED-ADDRESS
    /// 192.0.2.1:32853, MESSAGE-INTEGRITY and FINGERPRINT.
    fn rfc5769_ipv4() -> Vec<u8> {
        hex(&format!(
            "0101003c 2112a442 {ID}
             8022000b 74657374 20766563 746f7220
             00200008 0001a147 e112a643
             00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             80280004 c07d4c96"
        ))
    }

    /// RFC 5769 §2.3, the sample IPv6 response: XOR-MAPPED-ADDRESS
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    fn rfc5769_ipv6() -> Vec<u8> {
        hex(&format!(
            "01010048 2112a442 {ID}
             8022000b 74657374 20766563 746f7220
             00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
             00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
             80280004 c8fb0b4c"
        ))
    }

    fn xor_address(m: &Message) -> Option<SocketAddr> {
        m.attributes.iter().find_map(|a| match a {
            Attribute::XorMappedAddress(x) => Some(*x),
            _ => None,
        })
    }

    #[test]
    fn the_rfc_5769_responses_decode_to_their_addresses() {
        let id: TransactionId = hex(ID).try_into().expect("12 bytes");
        for (bytes, want) in [
            (rfc5769_ipv4(), "192.0.2.1:32853"),
            (
                rfc5769_ipv6(),
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            ),
        ] {
            let m = decode(&bytes).expect("decodes");
            assert_eq!(m.class, Class::Success);
            assert_eq!(m.method, BINDING);
            assert_eq!(m.transaction, id);
            assert_eq!(xor_address(&m), Some(want.parse().expect("addr")));
            assert_eq!(m.attributes.len(), 4);
            // SOFTWARE keeps its 11 bytes; the space after them is padding.
            assert_eq!(
                m.attributes[0],
                Attribute::Other {
                    kind: 0x8022,
                    value: b"test vector".to_vec()
                }
            );
            // Written again, only the padding differs (zeros, not a space).
            let mut again = encode(&m).expect("encodes");
            assert_eq!(again[20 + 4 + 11], 0);
            again[20 + 4 + 11] = b' ';
            assert_eq!(again, bytes);
        }
    }

    #[test]
    fn the_binding_request_is_the_rfc_header() {
        let bytes = binding_request([7; 12]);
        let mut want = hex("0001 0000 2112a442");
        want.extend([7; 12]);
        assert_eq!(bytes.to_vec(), want);
        let m = decode(&bytes).expect("decodes");
        assert_eq!((m.class, m.method), (Class::Request, BINDING));
        assert!(m.attributes.is_empty());
    }

    #[test]
    fn every_class_and_method_bit_lands_in_its_place() {
        // RFC 5389 §6: a Binding success answer is 0x0101, an error 0x0111.
        assert_eq!(message_type(Class::Success, BINDING), 0x0101);
        assert_eq!(message_type(Class::Error, BINDING), 0x0111);
        assert_eq!(message_type(Class::Indication, BINDING), 0x0011);
        assert_eq!(message_type(Class::Request, 0x0fff), 0x3eef);
        for t in 0..0x4000u16 {
            let class = Class::from_type(t);
            assert_eq!(message_type(class, method_of(t)), t, "{t:#06x}");
        }
    }

    #[test]
    fn an_error_code_reads_as_its_number_and_reason() {
        let mut bytes = hex(&format!("0111 0010 2112a442 {ID} 0009 000b 0000 0401"));
        bytes.extend(b"Bad\x1b[0m\0");
        let m = decode(&bytes).expect("decodes");
        assert_eq!(m.class, Class::Error);
        assert_eq!(
            m.attributes,
            vec![Attribute::ErrorCode {
                code: 401,
                reason: "Bad\x1b[0m".into()
            }]
        );
    }

    #[test]
    fn broken_messages_are_refused_with_their_reason() {
        let good = rfc5769_ipv4();
        let cases: Vec<(Vec<u8>, WireError)> = vec![
            (good[..19].to_vec(), WireError::TooShort { len: 19 }),
            ([&[0x80][..], &good[1..]].concat(), WireError::NotStun),
            (
                [&good[..4], &[0, 0, 0, 0][..], &good[8..]].concat(),
                WireError::NoCookie,
            ),
            // One byte more or fewer than the header gives.
            (
                [&good[..], &[0][..]].concat(),
                WireError::Length {
                    declared: 60,
                    actual: 61,
                },
            ),
            (
                good[..good.len() - 4].to_vec(),
                WireError::Length {
                    declared: 60,
                    actual: 56,
                },
            ),
            // The last attribute claims 5 bytes where 4 are left.
            (
                [
                    &good[..good.len() - 6],
                    &[0, 5][..],
                    &good[good.len() - 4..],
                ]
                .concat(),
                WireError::Overrun {
                    kind: 0x8028,
                    declared: 5,
                    left: 4,
                },
            ),
            // An IPv4 family with an IPv6 length.
            (
                hex(&format!(
                    "0101 0018 2112a442 {ID} 0020 0014 0001 0000 {}",
                    "00".repeat(16)
                )),
                WireError::Attribute {
                    kind: XOR_MAPPED_ADDRESS,
                    why: "the address length does not match its family",
                },
            ),
            (
                hex(&format!(
                    "0101 000c 2112a442 {ID} 0001 0008 0003 0000 00000000"
                )),
                WireError::Attribute {
                    kind: MAPPED_ADDRESS,
                    why: "unknown address family",
                },
            ),
            (
                hex(&format!("0111 0004 2112a442 {ID} 0009 0000")),
                WireError::Attribute {
                    kind: ERROR_CODE,
                    why: "shorter than 4 bytes",
                },
            ),
            (
                hex(&format!("0111 0008 2112a442 {ID} 0009 0004 0000 0764")),
                WireError::Attribute {
                    kind: ERROR_CODE,
                    why: "the code is not from 300 to 699",
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(&bytes), Err(want), "{}", hex::encode(&bytes));
        }
    }

    #[test]
    fn what_cannot_be_written_is_refused() {
        let m = |attributes| Message {
            class: Class::Success,
            method: BINDING,
            transaction: [0; 12],
            attributes,
        };
        let big = Attribute::Other {
            kind: 0x8022,
            value: vec![0; 65_536],
        };
        assert!(encode(&m(vec![big])).is_err());
        let code = Attribute::ErrorCode {
            code: 700,
            reason: String::new(),
        };
        assert!(encode(&m(vec![code])).is_err());
        let mut method = m(vec![]);
        method.method = 0x1000;
        assert!(encode(&method).is_err());
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(ip.into(), p)),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(ip.into(), p)),
        ]
    }

    fn attribute() -> impl Strategy<Value = Attribute> {
        let known = [MAPPED_ADDRESS, XOR_MAPPED_ADDRESS, ERROR_CODE];
        prop_oneof![
            socket_addr().prop_map(Attribute::MappedAddress),
            socket_addr().prop_map(Attribute::XorMappedAddress),
            (300u16..700, ".{0,40}")
                .prop_map(|(code, reason)| Attribute::ErrorCode { code, reason }),
            (any::<u16>(), prop::collection::vec(any::<u8>(), 0..40))
                .prop_filter("a type read as another", move |(k, _)| !known.contains(k))
                .prop_map(|(kind, value)| Attribute::Other { kind, value }),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            prop_oneof![
                Just(Class::Request),
                Just(Class::Indication),
                Just(Class::Success),
                Just(Class::Error)
            ],
            0u16..0x1000,
            any::<TransactionId>(),
            prop::collection::vec(attribute(), 0..6),
        )
            .prop_map(|(class, method, transaction, attributes)| Message {
                class,
                method,
                transaction,
                attributes,
            })
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back_the_same(m in message()) {
            let bytes = encode(&m).expect("encodes");
            prop_assert_eq!(bytes.len() % 4, 0);
            prop_assert_eq!(header_transaction(&bytes), Some(m.transaction));
            prop_assert_eq!(decode(&bytes), Ok(m));
        }

        #[test]
        fn any_bytes_decode_or_are_refused_without_a_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..200)
        ) {
            if let Ok(m) = decode(&bytes) {
                prop_assert_eq!(decode(&encode(&m).expect("re-encodes")), Ok(m));
            }
        }

        /// Random bytes rarely get past the cookie: damage to a good
        /// message reaches the attribute parsing.
        #[test]
        fn a_damaged_message_decodes_or_is_refused_without_a_panic(
            m in message(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&m).expect("encodes");
            for (at, byte) in damage {
                let i = at.index(bytes.len());
                // Keep the cookie: the damage is meant for what follows it.
                if !(4..8).contains(&i) {
                    bytes[i] = byte;
                }
            }
            let keep = HEADER_LEN + cut.index(bytes.len() - HEADER_LEN + 1);
            for b in [&bytes[..], &bytes[..keep]] {
                if let Ok(m) = decode(b) {
                    prop_assert_eq!(decode(&encode(&m).expect("re-encodes")), Ok(m));
                }
            }
        }
    }
}
