//! Twins and nodes as tfchain stores them, and a cached lookup of both.
//!
//! A twin is a grid identity: its `account_id` is the public key its
//! envelopes are signed with, `relay` names the relay(s) it is reachable
//! on (hostnames joined by `_`), and `pk` is the secp256k1 key payloads to
//! it are encrypted with. A node is served by its own twin; `Nodes(id)`
//! gives the twin id.
//!
//! All of it lives in the `TfgridModule` pallet in `Blake2_128Concat`
//! maps, SCALE-encoded. The lookups are cached for a TTL (twins change
//! rarely: a peer updates its relay or pk at start-up) and the cache is
//! bounded. Twin lookups are coalesced: while one twin is being read from
//! the chain, everyone else asking for it waits for that answer, so a
//! storm of envelopes from one twin (or claiming to be) is one lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use parity_scale_codec::{Decode, Encode};
use tokio::sync::Mutex;

use super::error::RmbError;
use crate::grid::chain::{key, ChainClient};

const PALLET: &str = "TfgridModule";

/// An entity signature attached to a twin (read past, never used).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EntityProof {
    pub entity_id: u32,
    pub signature: Vec<u8>,
}

/// `TfgridModule.Twins` value, fields in chain order.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Twin {
    pub id: u32,
    pub account_id: [u8; 32],
    pub relay: Option<Vec<u8>>,
    pub entities: Vec<EntityProof>,
    pub pk: Option<Vec<u8>>,
}

impl Twin {
    /// The relay hostnames, in chain order; empty when none is set.
    pub fn relays(&self) -> Vec<String> {
        self.relay
            .as_deref()
            .map(|r| {
                String::from_utf8_lossy(r)
                    .split('_')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The encryption key, when one is set (an empty `pk` counts as none).
    pub fn public_key(&self) -> Option<&[u8]> {
        self.pk.as_deref().filter(|pk| !pk.is_empty())
    }
}

/// The leading fields of a `TfgridModule.Nodes` value (the rest is not
/// needed and not decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct NodeHead {
    pub version: u32,
    pub id: u32,
    pub farm_id: u32,
    pub twin_id: u32,
}

pub fn twin_key(id: u32) -> Vec<u8> {
    key::map(PALLET, "Twins", &key::blake2_128_concat(&id.to_le_bytes()))
}

pub fn node_key(id: u32) -> Vec<u8> {
    key::map(PALLET, "Nodes", &key::blake2_128_concat(&id.to_le_bytes()))
}

pub fn twin_by_account_key(account: &[u8; 32]) -> Vec<u8> {
    key::map(
        PALLET,
        "TwinIdByAccountID",
        &key::blake2_128_concat(account),
    )
}

/// Entries kept per map; the oldest go first when it is full.
const CACHE_MAX: usize = 1024;
/// A twin read from the chain less than this long ago is not read again
/// after a signature that does not verify against it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

/// A twin lookup on its way, shared by everyone waiting for it.
type Lookup = Shared<BoxFuture<'static, Result<Arc<Twin>, RmbError>>>;

struct Cached<T> {
    at: Instant,
    value: T,
}

/// Twin and node lookups on one chain, cached for `ttl`.
pub struct TwinDb {
    chain: Arc<ChainClient>,
    ttl: Duration,
    twins: Mutex<HashMap<u32, Cached<Arc<Twin>>>>,
    nodes: Mutex<HashMap<u32, Cached<u32>>>,
    /// Twin lookups on their way: at most one per twin.
    asking: std::sync::Mutex<HashMap<u32, Lookup>>,
}

impl TwinDb {
    pub fn new(chain: Arc<ChainClient>, ttl: Duration) -> TwinDb {
        TwinDb {
            chain,
            ttl,
            twins: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            asking: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn chain(&self) -> &Arc<ChainClient> {
        &self.chain
    }

    /// Twin `id`, from the cache while fresh.
    pub async fn twin(&self, id: u32) -> Result<Arc<Twin>, RmbError> {
        if let Some(t) = fresh(&self.twins, id, self.ttl).await {
            return Ok(t);
        }
        self.look_up_twin(id).await
    }

    /// Twin `id` read afresh, after a signature that does not verify
    /// against the cached one (the twin may have changed keys), unless that
    /// one was read less than [`REFRESH_AFTER`] ago: bad envelopes from
    /// one twin, however many, make at most one lookup a minute.
    pub async fn twin_afresh(&self, id: u32) -> Result<Arc<Twin>, RmbError> {
        if let Some(t) = fresh(&self.twins, id, self.ttl.min(REFRESH_AFTER)).await {
            return Ok(t);
        }
        self.look_up_twin(id).await
    }

    /// Reads twin `id` from the chain, or waits for the lookup of it
    /// already on its way, and caches what it finds.
    async fn look_up_twin(&self, id: u32) -> Result<Arc<Twin>, RmbError> {
        let lookup = {
            let mut asking = self.asking.lock().unwrap_or_else(|p| p.into_inner());
            asking
                .entry(id)
                .or_insert_with(|| {
                    let chain = self.chain.clone();
                    async move { read_twin(&chain, id).await }.boxed().shared()
                })
                .clone()
        };
        let found = lookup.clone().await;
        {
            let mut asking = self.asking.lock().unwrap_or_else(|p| p.into_inner());
            if asking.get(&id).is_some_and(|l| l.ptr_eq(&lookup)) {
                asking.remove(&id);
            }
        }
        if let Ok(twin) = &found {
            remember(&self.twins, id, twin.clone()).await;
        }
        found
    }

    /// Forgets twin `id`, so the next lookup reads the chain (after a
    /// signature that does not verify: the twin may have changed keys).
    pub(crate) async fn forget_twin(&self, id: u32) {
        self.twins.lock().await.remove(&id);
    }

    /// The twin id serving node `id`.
    pub async fn node_twin(&self, id: u32) -> Result<u32, RmbError> {
        if let Some(t) = fresh(&self.nodes, id, self.ttl).await {
            return Ok(t);
        }
        let raw = self
            .chain
            .get_storage(&node_key(id))
            .await?
            .ok_or(RmbError::UnknownNode(id))?;
        let head: NodeHead = decode(&raw, &format!("node {id}"))?;
        remember(&self.nodes, id, head.twin_id).await;
        Ok(head.twin_id)
    }

    /// The twin id of `account`, or `None` when it has no twin.
    pub async fn twin_of_account(&self, account: &[u8; 32]) -> Result<Option<u32>, RmbError> {
        match self
            .chain
            .get_storage(&twin_by_account_key(account))
            .await?
        {
            None => Ok(None),
            Some(raw) => decode::<u32>(&raw, "the twin id of our account").map(Some),
        }
    }
}

async fn read_twin(chain: &ChainClient, id: u32) -> Result<Arc<Twin>, RmbError> {
    let raw = chain
        .get_storage(&twin_key(id))
        .await?
        .ok_or(RmbError::UnknownTwin(id))?;
    let twin: Twin = decode(&raw, &format!("twin {id}"))?;
    if twin.id != id {
        return Err(RmbError::ChainValue {
            what: format!("twin {id}"),
            reason: format!("the stored twin says it is {}", twin.id),
        });
    }
    Ok(Arc::new(twin))
}

fn decode<T: Decode>(raw: &[u8], what: &str) -> Result<T, RmbError> {
    T::decode(&mut &raw[..]).map_err(|e| RmbError::ChainValue {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

async fn fresh<T: Clone>(
    map: &Mutex<HashMap<u32, Cached<T>>>,
    id: u32,
    ttl: Duration,
) -> Option<T> {
    let map = map.lock().await;
    map.get(&id)
        .filter(|c| c.at.elapsed() < ttl)
        .map(|c| c.value.clone())
}

async fn remember<T>(map: &Mutex<HashMap<u32, Cached<T>>>, id: u32, value: T) {
    let mut map = map.lock().await;
    if map.len() >= CACHE_MAX && !map.contains_key(&id) {
        if let Some(oldest) = map.iter().min_by_key(|(_, c)| c.at).map(|(k, _)| *k) {
            map.remove(&oldest);
        }
    }
    map.insert(
        id,
        Cached {
            at: Instant::now(),
            value,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_scale_layout_matches_the_chain() {
        let twin = Twin {
            id: 42,
            account_id: [0x11; 32],
            relay: Some(b"relay.grid.tf".to_vec()),
            entities: vec![],
            pk: Some([vec![2], vec![0x22; 32]].concat()),
        };
        let expected = format!(
            "2a000000{}0134{}000184{}{}",
            "11".repeat(32),
            hex::encode("relay.grid.tf"),
            "02",
            "22".repeat(32)
        );
        assert_eq!(hex::encode(twin.encode()), expected);
        assert_eq!(Twin::decode(&mut &twin.encode()[..]).unwrap(), twin);
        assert_eq!(twin.relays(), vec!["relay.grid.tf"]);
    }

    #[test]
    fn relay_lists_split_on_underscores_and_empty_pk_is_none() {
        let twin = Twin {
            id: 1,
            account_id: [0; 32],
            relay: Some(b"relay.grid.tf_relay.02.grid.tf".to_vec()),
            entities: vec![EntityProof {
                entity_id: 3,
                signature: vec![1, 2],
            }],
            pk: Some(vec![]),
        };
        assert_eq!(twin.relays(), vec!["relay.grid.tf", "relay.02.grid.tf"]);
        assert_eq!(twin.public_key(), None);
        assert!(Twin::decode(&mut &twin.encode()[..5]).is_err());
    }

    #[test]
    fn node_twin_id_is_the_fourth_u32() {
        let mut raw = NodeHead {
            version: 4,
            id: 1,
            farm_id: 7,
            twin_id: 99,
        }
        .encode();
        raw.extend_from_slice(&[0xff; 40]); // the fields not decoded
        assert_eq!(NodeHead::decode(&mut &raw[..]).unwrap().twin_id, 99);
    }
}
