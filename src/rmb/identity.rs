//! Who we are on the grid: the keys derived from one secret.
//!
//! The secret is a BIP-39 English mnemonic or a 32-byte hex seed. Both give
//! a 32-byte "mini secret" the way Substrate does it (not the standard
//! BIP-39 seed: the PBKDF2 password is the mnemonic's *entropy*, see
//! `substrate-bip39`), and from that mini secret come:
//!
//! - the ed25519 key (RFC 8032 seed = mini secret),
//! - the sr25519 key (schnorrkel, mini secret expanded in ed25519 mode),
//! - the secp256k1 key used for end-to-end encryption (scalar = mini secret),
//!   whose compressed public point is the twin's `pk` on chain.
//!
//! The account (twin) signs with one of the first two: the one its account
//! was created with. A signature carries a type byte (`e` or `s`) so that a
//! verifier knows which algorithm to apply to the same 32 account bytes.
//!
//! Secret material lives in zeroizing buffers and is never printed: the
//! `Debug` of an [`Identity`] shows only public keys.

use std::fmt;
use std::str::FromStr;

use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, Verifier};
use zeroize::Zeroizing;

use super::account_keys::{self, AccountKey};
use super::error::RmbError;
use super::keycache::{self, KeyCache};

/// The signing context of Substrate's sr25519 signatures.
const SR25519_CONTEXT: &[u8] = b"substrate";

/// The SS58 address prefix of a generic Substrate chain (tfchain uses it).
pub(crate) const SS58_PREFIX: u8 = 42;

/// The account's signature scheme.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// zos nodes' scheme and the grid clients' usual one.
    #[default]
    Ed25519,
    Sr25519,
}

impl KeyType {
    /// The byte put before a 64-byte signature to name its scheme.
    pub(crate) fn type_byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => b'e',
            KeyType::Sr25519 => b's',
        }
    }

    pub(crate) fn from_type_byte(b: u8) -> Option<KeyType> {
        match b {
            b'e' => Some(KeyType::Ed25519),
            b's' => Some(KeyType::Sr25519),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Sr25519 => "sr25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ed25519" => Ok(KeyType::Ed25519),
            "sr25519" => Ok(KeyType::Sr25519),
            other => Err(format!(
                "unknown key type {other:?}: expected ed25519 or sr25519"
            )),
        }
    }
}

/// All keys of one secret; signs with `key_type`.
pub struct Identity {
    key_type: KeyType,
    ed25519: ed25519_dalek::SigningKey,
    sr25519: schnorrkel::Keypair,
    secp256k1: k256::SecretKey,
    /// The e2e keys derived with `secp256k1`, per peer `pk` (rmb/e2e.rs).
    e2e_keys: KeyCache<[u8; 32]>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("key_type", &self.key_type)
            .field("account", &hex::encode(self.account_id()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// From a mnemonic (words) or a hex seed (`0x` + 64 hex digits, the
    /// `0x` optional). The error never repeats the secret.
    pub fn from_secret(secret: &str, key_type: KeyType) -> Result<Identity, RmbError> {
        let mini = mini_secret(secret)?;
        Self::from_mini_secret(&mini, key_type)
    }

    /// From the 32-byte mini secret itself.
    pub(crate) fn from_mini_secret(
        mini: &[u8; 32],
        key_type: KeyType,
    ) -> Result<Identity, RmbError> {
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(mini);
        let sr25519 = schnorrkel::MiniSecretKey::from_bytes(mini)
            .map_err(|e| RmbError::Secret(format!("sr25519 key: {e}")))?
            .expand_to_keypair(schnorrkel::ExpansionMode::Ed25519);
        let secp256k1 = k256::SecretKey::from_slice(mini).map_err(|_| {
            RmbError::Secret(
                "the seed is not a valid secp256k1 secret (zero or above the curve order)".into(),
            )
        })?;
        Ok(Identity {
            key_type,
            ed25519,
            sr25519,
            secp256k1,
            e2e_keys: KeyCache::new(keycache::default_capacity()),
        })
    }

    /// The same identity keeping the e2e keys of at most `peers` peers
    /// (0: derives every key afresh; default [`keycache::PEERS`]).
    pub fn with_key_cache(mut self, peers: usize) -> Identity {
        self.e2e_keys = KeyCache::new(peers);
        self
    }

    pub(crate) fn e2e_keys(&self) -> &KeyCache<[u8; 32]> {
        &self.e2e_keys
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The 32-byte account id of the signing key (the twin's `account_id`).
    pub fn account_id(&self) -> [u8; 32] {
        match self.key_type {
            KeyType::Ed25519 => self.ed25519_public(),
            KeyType::Sr25519 => self.sr25519_public(),
        }
    }

    pub fn ed25519_public(&self) -> [u8; 32] {
        self.ed25519.verifying_key().to_bytes()
    }

    pub fn sr25519_public(&self) -> [u8; 32] {
        self.sr25519.public.to_bytes()
    }

    /// The 33-byte compressed secp256k1 public key: the twin's `pk`.
    pub fn secp256k1_public(&self) -> [u8; 33] {
        let point = self.secp256k1.public_key().to_sec1_bytes();
        let mut out = [0u8; 33];
        // `to_sec1_bytes` of a k256 public key is the compressed form.
        out.copy_from_slice(&point[..33.min(point.len())]);
        out
    }

    pub(crate) fn secp256k1_secret(&self) -> &k256::SecretKey {
        &self.secp256k1
    }

    /// Signs `message` with the account key: type byte ‖ 64-byte signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[0] = self.key_type.type_byte();
        let sig = match self.key_type {
            KeyType::Ed25519 => self.ed25519.sign(message).to_bytes(),
            KeyType::Sr25519 => self
                .sr25519
                .sign_simple(SR25519_CONTEXT, message)
                .to_bytes(),
        };
        out[1..].copy_from_slice(&sig);
        out
    }
}

/// Why a typed signature does not verify ([`verify`]): envelopes and
/// relay tokens report it, so a caller can tell a malformed signature from
/// one by another key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is {0} bytes, expected 65")]
    Length(usize),
    #[error("unknown signature type byte 0x{0:02x}")]
    UnknownType(u8),
    /// The 32 account bytes are not a public key of the signature's scheme.
    #[error("the account is not an {} public key", .0.as_str())]
    NotAKey(KeyType),
    #[error("malformed {} signature", .0.as_str())]
    Malformed(KeyType),
    /// Well formed, but made by another key or over other bytes.
    #[error("{} signature does not match the account", .0.as_str())]
    Mismatch(KeyType),
}

/// Checks a 65-byte typed signature of `message` by `account` (32 bytes).
/// The account's key is parsed once and kept (rmb/account_keys.rs).
pub fn verify(account: &[u8; 32], message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    if signature.len() != 65 {
        return Err(SignatureError::Length(signature.len()));
    }
    let sig = &signature[1..];
    let kt =
        KeyType::from_type_byte(signature[0]).ok_or(SignatureError::UnknownType(signature[0]))?;
    match account_keys::parsed(account, kt).ok_or(SignatureError::NotAKey(kt))? {
        AccountKey::Ed25519(key) => {
            let sig = ed25519_dalek::Signature::from_slice(sig)
                .map_err(|_| SignatureError::Malformed(kt))?;
            key.verify(message, &sig)
                .map_err(|_| SignatureError::Mismatch(kt))
        }
        AccountKey::Sr25519(key) => {
            let sig = schnorrkel::Signature::from_bytes(sig)
                .map_err(|_| SignatureError::Malformed(kt))?;
            key.verify_simple(SR25519_CONTEXT, message, &sig)
                .map_err(|_| SignatureError::Mismatch(kt))
        }
    }
}

/// The mini secret of a mnemonic or hex seed.
pub fn mini_secret(secret: &str) -> Result<Zeroizing<[u8; 32]>, RmbError> {
    let secret = secret.trim();
    let digits = secret.strip_prefix("0x").unwrap_or(secret);
    if digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, out.as_mut_slice())
            .map_err(|_| RmbError::Secret("the hex seed does not decode".into()))?;
        return Ok(out);
    }
    if secret.starts_with("0x") {
        return Err(RmbError::Secret(
            "a hex seed must be 0x followed by 64 hex digits".into(),
        ));
    }
    let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, secret)
        .map_err(|e| RmbError::Secret(format!("not a valid BIP-39 English mnemonic: {e}")))?;
    let entropy = Zeroizing::new(mnemonic.to_entropy());
    let seed = Zeroizing::new(
        substrate_bip39::seed_from_entropy(&entropy, "")
            .map_err(|e| RmbError::Secret(format!("mnemonic: {e:?}")))?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&seed[..32]);
    Ok(out)
}

/// The SS58 address of a 32-byte account with prefix 42.
pub fn ss58(account: &[u8; 32]) -> String {
    let mut data = Vec::with_capacity(35);
    data.push(SS58_PREFIX);
    data.extend_from_slice(account);
    let mut hasher = Blake2b512::new();
    hasher.update(b"SS58PRE");
    hasher.update(&data);
    let checksum = hasher.finalize();
    data.extend_from_slice(&checksum[..2]);
    bs58::encode(data).into_string()
}
