//! The account keys already parsed, for checking signatures.
//!
//! Checking a signature starts by turning the sender's 32 account bytes
//! into a curve point (a point decompression, 6 to 8 µs on a 2.4 GHz EPYC,
//! a sixth of an ed25519 check). A node serving a client, or a client
//! calling a node, checks the same account's signatures over and over, so
//! the points parsed last are kept, for the process, by account bytes and
//! scheme. They are public keys: nothing here is secret, and a twin whose
//! key changes has other account bytes, so nothing kept goes stale.
//!
//! Bounded: the [`KeyCache`] the end-to-end keys use, at most [`CAPACITY`]
//! accounts (about 250 bytes each with the map's own), least recently used
//! first out. A caller who cycles through more accounts than that only pays
//! the parse it pays without a cache. Bytes that are not a key of their
//! scheme are never kept.

use std::sync::LazyLock;

use zeroize::Zeroize;

use super::identity::KeyType;
use super::keycache::KeyCache;

/// Accounts whose parsed keys are kept.
pub const CAPACITY: usize = 256;

/// One account's key, parsed for its scheme.
#[derive(Clone, Copy)]
pub(crate) enum AccountKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Sr25519(schnorrkel::PublicKey),
}

/// [`KeyCache`] wipes what it lets go, as it is made for secrets; a public
/// key has nothing to wipe.
impl Zeroize for AccountKey {
    fn zeroize(&mut self) {}
}

/// The keys kept, by account bytes followed by the scheme's type byte.
static KEPT: LazyLock<KeyCache<AccountKey>> = LazyLock::new(|| KeyCache::new(CAPACITY));

fn cache_key(account: &[u8; 32], scheme: KeyType) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[..32].copy_from_slice(account);
    key[32] = scheme.type_byte();
    key
}

/// `account` parsed as a key of `scheme`: the one kept, else parsed now
/// and kept; `None` when the bytes are not such a key.
pub(crate) fn parsed(account: &[u8; 32], scheme: KeyType) -> Option<AccountKey> {
    let key = cache_key(account, scheme);
    if let Some(parsed) = KEPT.get(&key) {
        return Some(parsed);
    }
    let parsed = parse(account, scheme)?;
    KEPT.insert(&key, parsed);
    Some(parsed)
}

/// The parse itself, without the cache.
fn parse(account: &[u8; 32], scheme: KeyType) -> Option<AccountKey> {
    match scheme {
        KeyType::Ed25519 => ed25519_dalek::VerifyingKey::from_bytes(account)
            .ok()
            .map(AccountKey::Ed25519),
        KeyType::Sr25519 => schnorrkel::PublicKey::from_bytes(account)
            .ok()
            .map(AccountKey::Sr25519),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rmb::Identity;

    fn account(i: u32) -> [u8; 32] {
        let seed = format!("0x{:064x}", u64::from(i) + 1);
        Identity::from_secret(&seed, KeyType::Ed25519)
            .unwrap()
            .account_id()
    }

    #[test]
    fn a_kept_key_is_the_parsed_one_and_junk_is_not_kept() {
        let a = account(7);
        let fresh = parse(&a, KeyType::Ed25519).unwrap();
        let (AccountKey::Ed25519(kept), AccountKey::Ed25519(fresh)) =
            (parsed(&a, KeyType::Ed25519).unwrap(), fresh)
        else {
            panic!("an ed25519 key parsed as another scheme");
        };
        assert_eq!(kept, fresh);
        // Again, now from the map: the same key.
        assert!(matches!(parsed(&a, KeyType::Ed25519), Some(AccountKey::Ed25519(k)) if k == fresh));
        // Not a point on the curve: refused each time, never kept.
        let junk = [0xff; 32];
        assert!(parse(&junk, KeyType::Sr25519).is_none());
        assert!(parsed(&junk, KeyType::Sr25519).is_none());
        assert!(KEPT.get(&cache_key(&junk, KeyType::Sr25519)).is_none());
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        for i in 0..(CAPACITY as u32 * 2 + 3) {
            assert!(parsed(&account(1000 + i), KeyType::Ed25519).is_some());
            assert!(KEPT.len() <= CAPACITY, "{} kept", KEPT.len());
        }
    }
}
