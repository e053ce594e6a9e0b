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
//! Bounded: at most [`CAPACITY`] keys (about 250 bytes each with the map's
//! own); when full, the map is emptied and starts again. A caller who
//! cycles through more accounts than that only pays the parse it pays
//! without a cache. Bytes that are not a key of their scheme are never
//! kept.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::identity::KeyType;

/// Accounts whose parsed keys are kept.
pub const CAPACITY: usize = 256;

/// One account's key, parsed for its scheme.
#[derive(Clone, Copy)]
pub(crate) enum AccountKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Sr25519(schnorrkel::PublicKey),
}

/// The keys kept, by account bytes and scheme (`None` until the first).
type Kept = Option<HashMap<([u8; 32], KeyType), AccountKey>>;

static KEPT: Mutex<Kept> = Mutex::new(None);

/// `account` parsed as a key of `scheme`: the one kept, else parsed now
/// and kept; `None` when the bytes are not such a key.
pub(crate) fn parsed(account: &[u8; 32], scheme: KeyType) -> Option<AccountKey> {
    // The map holds plain values: a panic elsewhere cannot leave it half
    // written, so a poisoned lock is still good to use.
    if let Some(key) = KEPT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|kept| kept.get(&(*account, scheme)))
    {
        return Some(*key);
    }
    let key = parse(account, scheme)?;
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = kept.get_or_insert_with(HashMap::new);
    if kept.len() >= CAPACITY {
        kept.clear();
    }
    kept.insert((*account, scheme), key);
    Some(key)
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

/// Accounts kept now (for the tests of the bound).
#[cfg(test)]
fn kept() -> usize {
    KEPT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, HashMap::len)
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
        assert!(!KEPT
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|k| k.contains_key(&(junk, KeyType::Sr25519))));
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        for i in 0..(CAPACITY as u32 * 2 + 3) {
            assert!(parsed(&account(1000 + i), KeyType::Ed25519).is_some());
            assert!(kept() <= CAPACITY, "{} kept", kept());
        }
    }
}
