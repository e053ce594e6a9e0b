//! Storage keys of a Substrate chain.
//!
//! A value's key is `twox128(pallet) ‖ twox128(item)`, followed for a map by
//! the map key passed through the map's hasher:
//!
//! - `Twox64Concat`: `XXH64(k, seed 0)` (8 bytes, little-endian) then `k`;
//! - `Blake2_128Concat`: BLAKE2b with a 16-byte digest of `k`, then `k`;
//!
//! where `twox128(s)` is `XXH64(s, seed 0) ‖ XXH64(s, seed 1)`, each as 8
//! little-endian bytes. The map key `k` is itself SCALE-encoded (a `u32` is
//! 4 little-endian bytes, an account id its 32 bytes).

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use twox_hash::XxHash64;

/// `twox128(data)`: two 64-bit xxHash digests (seeds 0 and 1), little-endian.
pub fn twox128(data: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&XxHash64::oneshot(0, data).to_le_bytes());
    out[8..].copy_from_slice(&XxHash64::oneshot(1, data).to_le_bytes());
    out
}

/// BLAKE2b with a 16-byte digest.
pub(crate) fn blake2_128(data: &[u8]) -> [u8; 16] {
    Blake2b::<U16>::digest(data).into()
}

/// The `Blake2_128Concat` hasher: `blake2_128(k) ‖ k`.
pub fn blake2_128_concat(k: &[u8]) -> Vec<u8> {
    let mut out = blake2_128(k).to_vec();
    out.extend_from_slice(k);
    out
}

/// The key of a plain storage value, e.g. `plain("Timestamp", "Now")`.
pub fn plain(pallet: &str, item: &str) -> Vec<u8> {
    let mut out = twox128(pallet.as_bytes()).to_vec();
    out.extend_from_slice(&twox128(item.as_bytes()));
    out
}

/// The key of one entry of a storage map, given the map key already
/// hashed (e.g. `blake2_128_concat(&k)`).
pub fn map(pallet: &str, item: &str, hashed_key: &[u8]) -> Vec<u8> {
    let mut out = plain(pallet, item);
    out.extend_from_slice(hashed_key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        hex::encode(b)
    }

    #[test]
    fn pallet_and_item_prefixes_match_tfchain() {
        assert_eq!(
            hex(&twox128(b"TfgridModule")),
            "19a2526838feefd7695a3b5715b415b1"
        );
        assert_eq!(hex(&twox128(b"Twins")), "311378229266fc86f673a3f4cf398e69");
        assert_eq!(hex(&twox128(b"Nodes")), "519dfc7fdad21b84f64a5310fa178ef2");
        assert_eq!(
            hex(&twox128(b"TwinIdByAccountID")),
            "aca6514962aa3f0d58aff3524045f9e0"
        );
        // Substrate's well-known key of the Timestamp pallet's Now value.
        assert_eq!(
            hex(&plain("Timestamp", "Now")),
            "f0c365c3cf59d671eb72da0e7a4113c49f1f0515f462cdcf84e0f1d6045dfcbb"
        );
    }

    #[test]
    fn map_keys_match_the_grid_client_vectors() {
        assert_eq!(
            hex(&map(
                "TfgridModule",
                "Twins",
                &blake2_128_concat(&42u32.to_le_bytes())
            )),
            "19a2526838feefd7695a3b5715b415b1311378229266fc86f673a3f4cf398e69\
             9017d1c733ec2aeaa6fd0230614e397e2a000000"
        );
        assert_eq!(
            hex(&map(
                "TfgridModule",
                "Nodes",
                &blake2_128_concat(&1u32.to_le_bytes())
            )),
            "19a2526838feefd7695a3b5715b415b1519dfc7fdad21b84f64a5310fa178ef2\
             d82c12285b5d4551f88e8f6e7eb52b8101000000"
        );
    }
}
