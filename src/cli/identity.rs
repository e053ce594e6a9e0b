//! `zos-perf identity`: what an operator needs to set up a twin on chain
//! for the configured secret.

use serde_json::{json, Value};
use zos_perf::rmb::identity::ss58;
use zos_perf::rmb::twin::TwinDb;
use zos_perf::rmb::{Identity, KeyType, RmbError};
use zos_perf::text::Escaped;

use super::rmb::{RmbArgs, Settings};
use zos_perf::config::Config;

/// Prints both accounts (hex and SS58), the `pk` to put on the twin, and
/// what the chain knows of them. Keys are printed even when the chain
/// cannot be asked; the chain error is returned after them.
pub async fn identity(config: &Config, args: &RmbArgs, as_json: bool) -> Result<(), RmbError> {
    let settings = Settings::resolve(config, args);
    let me = settings.identity()?;
    let twins = settings.twins()?;
    let mut chain_error = None;
    let mut twin_of = |r: Result<Option<u32>, RmbError>| match r {
        Ok(t) => t,
        Err(e) => {
            chain_error.get_or_insert(e);
            None
        }
    };
    let ed_twin = twin_of(twins.twin_of_account(&me.ed25519_public()).await);
    let sr_twin = twin_of(twins.twin_of_account(&me.sr25519_public()).await);
    let signing_twin = match me.key_type() {
        KeyType::Ed25519 => ed_twin,
        KeyType::Sr25519 => sr_twin,
    };
    let twin = match signing_twin {
        Some(id) => twin_json(&twins, &me, id).await.unwrap_or_else(|e| {
            chain_error.get_or_insert(e);
            Value::Null
        }),
        None => Value::Null,
    };
    let report = json!({
        "key_type": me.key_type().as_str(),
        "ed25519": {"account": hex::encode(me.ed25519_public()), "ss58": ss58(&me.ed25519_public()), "twin": ed_twin},
        "sr25519": {"account": hex::encode(me.sr25519_public()), "ss58": ss58(&me.sr25519_public()), "twin": sr_twin},
        "pk": hex::encode(me.secp256k1_public()),
        "twin": twin,
    });
    if as_json {
        outln!("{}", super::json(&report).unwrap_or_default());
    } else {
        print_text(&report, chain_error.is_some());
    }
    match chain_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn twin_json(twins: &TwinDb, me: &Identity, id: u32) -> Result<Value, RmbError> {
    let twin = twins.twin(id).await?;
    Ok(json!({
        "id": id,
        "relay": twin.relays(),
        "pk": twin.public_key().map(hex::encode),
        "pk_matches": twin.public_key() == Some(&me.secp256k1_public()[..]),
    }))
}

fn print_text(r: &Value, chain_failed: bool) {
    let twin_text = |v: &Value| match v.as_u64() {
        Some(id) => format!("twin {id}"),
        None => "no twin".to_string(),
    };
    outln!(
        "signing key type  {}",
        r["key_type"].as_str().unwrap_or_default()
    );
    for kt in ["ed25519", "sr25519"] {
        let a = &r[kt];
        outln!(
            "{kt} account   {}  {}  ({})",
            a["account"].as_str().unwrap_or_default(),
            a["ss58"].as_str().unwrap_or_default(),
            twin_text(&a["twin"])
        );
    }
    outln!(
        "pk (secp256k1)    {}   <- the twin's pk, for encrypted messages",
        r["pk"].as_str().unwrap_or_default()
    );
    let t = &r["twin"];
    if t.is_null() && chain_failed {
        outln!("twin              unknown: the chain could not be asked");
        return;
    }
    if t.is_null() {
        outln!("twin              none for the signing account: create one on this chain, with a relay and this pk");
        return;
    }
    // The relay names come from the chain: anyone's text.
    let relays: Vec<String> = t["relay"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|r| Escaped(r).to_string())
                .collect()
        })
        .unwrap_or_default();
    outln!(
        "twin              {}: relay {}, pk {}",
        t["id"],
        if relays.is_empty() {
            "NOT SET (nobody can reach it)".to_string()
        } else {
            relays.join(", ")
        },
        match (t["pk"].is_null(), t["pk_matches"].as_bool()) {
            (true, _) => "not set (messages to it go unencrypted)",
            (false, Some(true)) => "matches this secret",
            _ => "DIFFERS from this secret (encrypted replies cannot be read)",
        }
    );
}
