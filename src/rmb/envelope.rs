//! The RMB envelope: one protobuf message per WebSocket frame, and its
//! signature.
//!
//! The structs are declared by hand with prost's derive (no `protoc` at
//! build time) and match the grid's `types.proto` field for field: same
//! numbers, same types, same `optional`ness, so the bytes on the wire are
//! the same as the Rust relay's, the Go peer's and the TypeScript client's.
//!
//! The signature covers an MD5 digest of a "challenge": the envelope's
//! fields written one after the other as text or raw bytes, with no
//! separators, in a fixed order (see [`challenge`]). The sender signs the
//! 16-byte digest with its account key and puts the scheme's type byte in
//! front, giving the 65 bytes of `signature`.

use std::io::Write as _;

use md5::{Digest, Md5};
use prost::Message as _;

use super::identity::{self, Identity};

/// The `schema` every JSON payload carries.
pub const SCHEMA_JSON: &str = "application/json";

#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, tag = "1")]
    pub command: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Error {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Address {
    #[prost(uint32, tag = "1")]
    pub twin: u32,
    #[prost(string, optional, tag = "2")]
    pub connection: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    #[prost(string, tag = "1")]
    pub uid: String,
    #[prost(string, optional, tag = "2")]
    pub tags: Option<String>,
    #[prost(uint64, tag = "3")]
    pub timestamp: u64,
    #[prost(uint64, tag = "4")]
    pub expiration: u64,
    #[prost(message, optional, tag = "5")]
    pub source: Option<Address>,
    #[prost(message, optional, tag = "6")]
    pub destination: Option<Address>,
    #[prost(oneof = "Body", tags = "7, 8, 12, 15, 16")]
    pub message: Option<Body>,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub signature: Option<Vec<u8>>,
    #[prost(string, optional, tag = "10")]
    pub schema: Option<String>,
    /// Deprecated and ignored by relays, but signed when present.
    #[prost(string, optional, tag = "11")]
    pub federation: Option<String>,
    #[prost(oneof = "Payload", tags = "13, 14")]
    pub payload: Option<Payload>,
    /// Deprecated and ignored by relays, but signed.
    #[prost(string, repeated, tag = "17")]
    pub relays: Vec<String>,
}

/// The `message` oneof.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "7")]
    Request(Request),
    #[prost(message, tag = "8")]
    Response(Response),
    #[prost(message, tag = "12")]
    Error(Error),
    #[prost(message, tag = "15")]
    Ping(Ping),
    #[prost(message, tag = "16")]
    Pong(Pong),
}

/// The `payload` oneof.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Payload {
    #[prost(bytes, tag = "13")]
    Plain(Vec<u8>),
    #[prost(bytes, tag = "14")]
    Cipher(Vec<u8>),
}

impl Address {
    pub fn twin(twin: u32) -> Address {
        Address {
            twin,
            connection: None,
        }
    }

    pub fn session(twin: u32, connection: Option<String>) -> Address {
        Address { twin, connection }
    }
}

impl Envelope {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Parses one frame; the error says what protobuf found wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, Undecodable> {
        Ok(Envelope::decode(bytes)?)
    }

    /// The source twin, 0 when absent (how relay errors arrive).
    pub fn source_twin(&self) -> u32 {
        self.source.as_ref().map_or(0, |a| a.twin)
    }

    /// `timestamp + expiration` (saturating): when the envelope expires.
    pub fn deadline(&self) -> u64 {
        self.timestamp.saturating_add(self.expiration)
    }

    /// The payload bytes, plain or cipher, as carried.
    pub(crate) fn payload_bytes(&self) -> &[u8] {
        match &self.payload {
            Some(Payload::Plain(b)) | Some(Payload::Cipher(b)) => b,
            None => &[],
        }
    }

    /// The MD5 digest of the challenge: what is signed.
    pub fn digest(&self) -> [u8; 16] {
        Md5::digest(challenge(self)).into()
    }

    /// Signs the envelope in place with `identity`.
    pub fn sign(&mut self, identity: &Identity) {
        let digest = self.digest();
        self.signature = Some(identity.sign(&digest).to_vec());
    }

    /// Checks the signature against the sender's 32-byte account.
    pub fn verify(&self, account: &[u8; 32]) -> Result<(), Unverified> {
        let signature = self.signature.as_deref().ok_or(Unverified::Unsigned)?;
        Ok(identity::verify(account, &self.digest(), signature)?)
    }
}

/// A frame that does not parse as an [`Envelope`] ([`Envelope::from_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RMB envelope: {0}")]
pub struct Undecodable(#[from] prost::DecodeError);

/// Why an envelope's signature is not accepted ([`Envelope::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("the envelope is not signed")]
    Unsigned,
    #[error(transparent)]
    Signature(#[from] identity::SignatureError),
}

/// The bytes that are hashed and signed, in this order, with no
/// separators: uid; tags (if present); timestamp and expiration in decimal;
/// source twin in decimal, then its connection (if present); the same for
/// destination; for a request its command, for an error its code in decimal
/// then its message (nothing for the other kinds); schema (if present);
/// federation (if present); the payload bytes as carried; each relay.
///
/// An absent address counts as twin 0 (as the Rust peer does); an empty
/// optional string adds nothing, though it still appears on the wire.
pub fn challenge(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + env.payload_bytes().len());
    out.extend_from_slice(env.uid.as_bytes());
    if let Some(tags) = &env.tags {
        out.extend_from_slice(tags.as_bytes());
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}{}", env.timestamp, env.expiration);
    for address in [&env.source, &env.destination] {
        let twin = address.as_ref().map_or(0, |a| a.twin);
        let _ = write!(out, "{twin}");
        if let Some(c) = address.as_ref().and_then(|a| a.connection.as_ref()) {
            out.extend_from_slice(c.as_bytes());
        }
    }
    match &env.message {
        Some(Body::Request(r)) => out.extend_from_slice(r.command.as_bytes()),
        Some(Body::Error(e)) => {
            let _ = write!(out, "{}", e.code);
            out.extend_from_slice(e.message.as_bytes());
        }
        _ => {}
    }
    for s in [&env.schema, &env.federation].into_iter().flatten() {
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(env.payload_bytes());
    for relay in &env.relays {
        out.extend_from_slice(relay.as_bytes());
    }
    out
}
