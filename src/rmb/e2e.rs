//! End-to-end encryption of payloads between two twins.
//!
//! Both sides compute the same key: SHA-256 of the x coordinate of the
//! ECDH point between one side's secp256k1 secret and the other side's
//! public key (the twin's `pk` on chain). The payload is sealed with
//! AES-256-GCM, a fresh random 12-byte nonce and no associated data; the
//! `cipher` field is `nonce ‖ ciphertext ‖ tag`. Each identity keeps the
//! keys it derived for its recent peers, so the ECDH runs once per peer
//! rather than once per envelope.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::identity::Identity;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a payload could not be sealed for, or opened from, a peer. The
/// texts name sizes only, never key or payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// The peer's `pk` (from its twin on chain) is not a secp256k1 point.
    #[error("pk of {0} bytes is not a secp256k1 public key")]
    NotAPublicKey(usize),
    /// AES-GCM refused to seal: only a plaintext over its 64 GiB limit does.
    #[error("encryption failed")]
    Seal,
    /// A `cipher` field too short to hold even the nonce and the tag.
    #[error("cipher of {0} bytes is shorter than nonce and tag")]
    TooShort(usize),
    /// The tag does not match: another key, or bytes changed on the way.
    #[error("payload does not decrypt with the sender's pk and our key")]
    Open,
}

/// The AES key shared between `own` and the holder of `peer_pk`
/// (33-byte compressed, or 65-byte uncompressed, secp256k1 point): the
/// one `own` keeps for that peer (rmb/keycache.rs), else derived and kept.
pub fn shared_key(own: &Identity, peer_pk: &[u8]) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    if let Some(key) = own.e2e_keys().get(peer_pk) {
        return Ok(Zeroizing::new(key));
    }
    let key = derive_key(own, peer_pk)?;
    own.e2e_keys().insert(peer_pk, *key);
    Ok(key)
}

/// The ECDH behind [`shared_key`], without the cache.
fn derive_key(own: &Identity, peer_pk: &[u8]) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    let peer = k256::PublicKey::from_sec1_bytes(peer_pk)
        .map_err(|_| E2eError::NotAPublicKey(peer_pk.len()))?;
    let shared =
        k256::ecdh::diffie_hellman(own.secp256k1_secret().to_nonzero_scalar(), peer.as_affine());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&Sha256::digest(shared.raw_secret_bytes()));
    Ok(key)
}

/// Seals `plain` for the holder of `peer_pk` with a random nonce.
pub fn encrypt(own: &Identity, peer_pk: &[u8], plain: &[u8]) -> Result<Vec<u8>, E2eError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    encrypt_with_nonce(own, peer_pk, plain, &nonce)
}

/// Seals with a given nonce (for fixed test vectors; never reuse a nonce).
pub fn encrypt_with_nonce(
    own: &Identity,
    peer_pk: &[u8],
    plain: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, E2eError> {
    let key = shared_key(own, peer_pk)?;
    // `key` is 32 bytes, the length `from_slice` wants: it cannot panic.
    let cipher = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key.as_slice()));
    let sealed = cipher
        .encrypt(Nonce::from_slice(nonce), plain)
        .map_err(|_| E2eError::Seal)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a `cipher` field sent by the holder of `peer_pk`.
pub fn decrypt(own: &Identity, peer_pk: &[u8], cipher: &[u8]) -> Result<Vec<u8>, E2eError> {
    if cipher.len() < NONCE_LEN + TAG_LEN {
        return Err(E2eError::TooShort(cipher.len()));
    }
    let key = shared_key(own, peer_pk)?;
    let aes = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key.as_slice()));
    let (nonce, sealed) = cipher.split_at(NONCE_LEN);
    aes.decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| E2eError::Open)
}
