//! The end-to-end keys already derived, per peer `pk`.
//!
//! Deriving a key is a secp256k1 ECDH (a point decompression and a scalar
//! multiplication), by far the dearest step of sealing or opening a small
//! payload; a node serving a client, or a client calling a node, derives the
//! same key for every envelope. So each [`Identity`](super::Identity) keeps
//! the keys it derived for its last [`PEERS`] peers, least recently used
//! first out.
//!
//! Bounded: at most `capacity` entries of one public key (33 or 65 bytes,
//! only keys that parsed as curve points get in) and one 32-byte key each,
//! about 160 bytes with the map's own, so 1,024 peers stay under 200 KiB.
//! A key leaving the cache (evicted, or the cache dropped) is zeroized.
//!
//! The same cache keeps the account keys parsed for checking signatures
//! (account_keys.rs): public keys, which have nothing to wipe.
//!
//! Eviction looks for the least recently used entry by a scan: it only
//! happens after a miss, whose ECDH costs a thousand times more than
//! scanning 1,024 counters, and it keeps the structure one map.

use std::collections::HashMap;
use std::sync::Mutex;

use zeroize::Zeroize;

/// Peers whose keys an identity keeps by default.
pub const PEERS: usize = 1024;

/// Set to `off` in a process's environment, its identities keep no keys
/// (every envelope derives its key afresh): the switch the serving bench
/// uses to measure both in one run.
pub const ENV_SWITCH: &str = "ZOS_PERF_E2E_KEY_CACHE";

/// The capacity a new identity's cache gets: [`PEERS`], or none when
/// [`ENV_SWITCH`] says `off`.
pub fn default_capacity() -> usize {
    match std::env::var_os(ENV_SWITCH) {
        Some(v) if v == "off" => 0,
        _ => PEERS,
    }
}

/// At most `capacity` values by peer public key; values are zeroized when
/// evicted and when the cache is dropped.
pub struct KeyCache<V: Zeroize> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    /// Bumped on every hit and insert: an entry's `used` says how recent.
    clock: u64,
    map: HashMap<Box<[u8]>, Entry<V>>,
}

struct Entry<V> {
    value: V,
    used: u64,
}

impl<V: Zeroize + Clone> KeyCache<V> {
    /// A cache of at most `capacity` peers (0: keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                clock: 0,
                map: HashMap::new(),
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The value kept for `peer` (a copy: the caller zeroizes its own).
    pub fn get(&self, peer: &[u8]) -> Option<V> {
        if self.capacity == 0 {
            return None;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.map.get_mut(peer)?;
        entry.used = now;
        Some(entry.value.clone())
    }

    /// Keeps `value` for `peer`, evicting (and zeroizing) the least
    /// recently used entry when full.
    pub fn insert(&self, peer: &[u8], mut value: V) {
        if self.capacity == 0 {
            value.zeroize();
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(entry) = inner.map.get_mut(peer) {
            // Two callers derived the same key at once: keep one.
            value.zeroize();
            entry.used = now;
            return;
        }
        if inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(mut gone) = oldest.and_then(|k| inner.map.remove(&k)) {
                gone.value.zeroize();
            }
        }
        inner.map.insert(peer.into(), Entry { value, used: now });
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map, even if a thread panicked holding it: every change above
    /// leaves it whole, so what it holds is still right.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<V: Zeroize> Drop for KeyCache<V> {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        for entry in inner.map.values_mut() {
            entry.value.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A value that writes its name to a shared log when zeroized.
    /// What was zeroized: a value's name and its bytes after.
    type Wiped = Arc<Mutex<Vec<(u8, [u8; 4])>>>;

    #[derive(Clone)]
    struct Marked {
        name: u8,
        bytes: [u8; 4],
        log: Wiped,
    }

    impl Zeroize for Marked {
        fn zeroize(&mut self) {
            self.bytes.zeroize();
            self.log.lock().unwrap().push((self.name, self.bytes));
        }
    }

    fn marked(name: u8, log: &Wiped) -> Marked {
        Marked {
            name,
            bytes: [name; 4],
            log: log.clone(),
        }
    }

    fn peer(i: u8) -> [u8; 33] {
        [i; 33]
    }

    #[test]
    fn one_peer_over_capacity_evicts_the_least_recently_used_and_zeroizes_it() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let cache = KeyCache::new(3);
        for i in 1..=3 {
            cache.insert(&peer(i), marked(i, &log));
        }
        // Peer 1 is used again: peer 2 is now the oldest.
        assert_eq!(cache.get(&peer(1)).map(|m| m.bytes), Some([1; 4]));
        assert!(log.lock().unwrap().is_empty());
        cache.insert(&peer(4), marked(4, &log));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&peer(2)).is_none(), "peer 2 evicted");
        for i in [1, 3, 4] {
            assert_eq!(cache.get(&peer(i)).map(|m| m.bytes), Some([i; 4]));
        }
        assert_eq!(*log.lock().unwrap(), vec![(2, [0; 4])]);
        // Capacity + 1 in insertion order: the first in is the first out.
        cache.insert(&peer(5), marked(5, &log));
        assert!(cache.get(&peer(1)).is_none(), "peer 1 evicted next");
        assert_eq!(log.lock().unwrap().len(), 2);
        drop(cache);
        let mut zeroized = log.lock().unwrap().clone();
        zeroized.sort();
        assert_eq!(
            zeroized,
            vec![
                (1, [0; 4]),
                (2, [0; 4]),
                (3, [0; 4]),
                (4, [0; 4]),
                (5, [0; 4])
            ],
            "every key zeroized once: evicted ones at eviction, the rest at drop"
        );
    }

    #[test]
    fn a_second_insert_for_a_peer_keeps_one_and_zeroizes_the_other() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let cache = KeyCache::new(2);
        cache.insert(&peer(1), marked(1, &log));
        cache.insert(&peer(1), marked(9, &log));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&peer(1)).map(|m| m.name), Some(1));
        assert_eq!(*log.lock().unwrap(), vec![(9, [0; 4])]);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let cache = KeyCache::new(0);
        cache.insert(&peer(1), marked(1, &log));
        assert!(cache.is_empty());
        assert!(cache.get(&peer(1)).is_none());
        assert_eq!(*log.lock().unwrap(), vec![(1, [0; 4])]);
    }

    #[test]
    fn a_thousand_peers_and_one_stay_within_capacity() {
        let cache = KeyCache::new(PEERS);
        for i in 0..=PEERS as u32 {
            let mut pk = [0u8; 33];
            pk[..4].copy_from_slice(&i.to_le_bytes());
            cache.insert(&pk, [7u8; 32]);
        }
        assert_eq!(cache.len(), PEERS);
        assert!(cache.get(&[0u8; 33]).is_none(), "the first peer went");
    }
}
