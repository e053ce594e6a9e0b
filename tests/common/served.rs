//! The shipped daemon serving zos.perf over the test relay, for the tests
//! and the bench that send it requests from a caller twin of their own
//! (bad input, memory bounds, the relay flood).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use zos_perf::rmb::twin;
use zos_perf::rmb::{Identity, KeyType};

use super::chain::ChainServer;
use super::observe::{self, Observed};
use super::rmbgrid::{RmbGrid, MNEMONIC_B};
use super::{wait_for, RedisServer};

/// `zos-perf run` serving as twin `server` (the ed25519 account of
/// `MNEMONIC_B`, read from a 0600 file in `dir`) over `g`'s relay, with
/// `redis` as its store and its metrics listener on `127.0.0.1:0`.
/// `chain_timeout` bounds its twin lookups; they go to `own_chain` when
/// given (a chain stand-in given the twins `twins` and the server's
/// account, copied from `g`'s chain, so that its lookups can be counted
/// and slowed apart from the relay's), else to `g`'s chain. Returns once
/// the relay has the daemon online.
pub fn serving_daemon(
    g: &RmbGrid,
    redis: &RedisServer,
    dir: &Path,
    server: u32,
    chain_timeout: &str,
    own_chain: Option<(&ChainServer, &[u32])>,
) -> Observed {
    let secret = dir.join("mnemonic");
    std::fs::write(&secret, MNEMONIC_B).expect("write the mnemonic");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the mnemonic");
    let mut text = g.serving_config(
        None,
        &format!(
            "chain_timeout = \"{chain_timeout}\"\nmnemonic_file = \"{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            secret.display()
        ),
    );
    if let Some((chain, twins)) = own_chain {
        let me = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).expect("MNEMONIC_B");
        let keys = twins
            .iter()
            .map(|id| twin::twin_key(*id))
            .chain([twin::twin_by_account_key(&me.account_id())]);
        for key in keys {
            chain.insert(
                key.clone(),
                g.chain.get(&key).expect("stored on the grid's chain"),
            );
        }
        text = text.replace(&g.chain.url(), &chain.url());
    }
    let cfg = observe::config(dir, &text);
    let daemon = Observed::start(&[], &cfg, &redis.url(), true);
    wait_for(Duration::from_secs(30), "the daemon on the relay", || {
        g.relay.is_online(server, None).then_some(())
    });
    daemon
}
