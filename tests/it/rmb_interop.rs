//! Live interop with the grid's TypeScript RMB client
//! (`@threefold/rmb_direct_client`, installed in tests/interop by
//! scripts/interop-setup): the same mnemonics give the same keys, and a
//! token, a signed request and an encrypted payload made by either side
//! verify and decrypt on the other.

use crate::common;

use serde_json::{json, Value};
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Payload, Response};
use zos_perf::rmb::identity::{Identity, KeyType};
use zos_perf::rmb::{e2e, jwt};

use common::interop::rmb_js_batch as ts;

const A: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
const B: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

fn twin_json(id: u32, who: &Identity, kt: KeyType) -> Value {
    let account = match kt {
        KeyType::Ed25519 => who.ed25519_public(),
        KeyType::Sr25519 => who.sr25519_public(),
    };
    json!({"id": id, "account": hex::encode(account), "keyType": kt.as_str(),
           "relay": "relay.example", "pk": hex::encode(who.secp256k1_public())})
}

#[test]
fn keys_from_the_same_mnemonic_are_equal() {
    let theirs = ts(&[
        ("keys", json!({"mnemonic": A})),
        ("keys", json!({"mnemonic": B})),
    ]);
    for (m, theirs) in [A, B].into_iter().zip(theirs) {
        let ours = Identity::from_secret(m, KeyType::Ed25519).unwrap();
        assert_eq!(theirs["ed25519"], hex::encode(ours.ed25519_public()));
        assert_eq!(theirs["sr25519"], hex::encode(ours.sr25519_public()));
        assert_eq!(theirs["secp256k1"], hex::encode(ours.secp256k1_public()));
        assert_eq!(
            theirs["sr25519Ss58"],
            zos_perf::rmb::identity::ss58(&ours.sr25519_public())
        );
    }
}

#[test]
fn tokens_verify_both_ways() {
    let ids: Vec<(KeyType, Identity)> = [KeyType::Ed25519, KeyType::Sr25519]
        .into_iter()
        .map(|kt| (kt, Identity::from_secret(A, kt).unwrap()))
        .collect();
    // Per key type: their token, then our token checked against our
    // account and against the account of the other key type, which must
    // not accept it.
    let mut ops = Vec::new();
    for (kt, ours) in &ids {
        let kt = *kt;
        let mine = jwt::token(ours, 9, Some("s1"), 1_800_000_000, 60);
        let other = match kt {
            KeyType::Ed25519 => ours.sr25519_public(),
            KeyType::Sr25519 => ours.ed25519_public(),
        };
        ops.extend([
            (
                "jwt",
                json!({"mnemonic": A, "keyType": kt.as_str(), "twin": 9, "sid": "s1", "nowMs": 1_800_000_000_000u64}),
            ),
            (
                "verify-jwt",
                json!({"token": mine, "account": hex::encode(ours.account_id()), "keyType": kt.as_str()}),
            ),
            (
                "verify-jwt",
                json!({"token": mine, "account": hex::encode(other), "keyType": kt.as_str()}),
            ),
        ]);
    }
    let out = ts(&ops);
    for ((kt, ours), out) in ids.iter().zip(out.chunks(3)) {
        let token = out[0]["token"].as_str().unwrap();
        let claims = jwt::verify(token, &ours.account_id(), 1_800_000_000).unwrap();
        assert_eq!((claims.sub, claims.sid.as_deref()), (9, Some("s1")));
        assert_eq!(out[1]["valid"], true, "{kt}");
        assert_eq!(out[2]["valid"], false, "{kt}");
    }
}

#[test]
fn their_signed_encrypted_request_verifies_and_decrypts_in_ours() {
    let cases: Vec<(KeyType, bool, Identity)> = [
        (KeyType::Ed25519, true),
        (KeyType::Sr25519, true),
        (KeyType::Sr25519, false),
    ]
    .into_iter()
    .map(|(kt, encrypt)| (kt, encrypt, Identity::from_secret(A, kt).unwrap()))
    .collect();
    let b = Identity::from_secret(B, KeyType::Ed25519).unwrap();
    let ops: Vec<_> = cases
        .iter()
        .map(|(kt, encrypt, a)| {
            (
                "request",
                json!({"mnemonic": A, "keyType": kt.as_str(), "source": 42, "sid": "sess9", "dest": 7,
                       "command": "zos.perf.get", "payload": "{\"Name\":\"iperf\"}", "encrypt": encrypt,
                       "uid": "11111111-0000-4000-8000-000000000001", "timestamp": 1_800_000_000u64, "expiration": 120,
                       "twins": [twin_json(42, a, *kt), twin_json(7, &b, KeyType::Ed25519)]}),
            )
        })
        .collect();
    for ((_, encrypt, a), out) in cases.iter().zip(ts(&ops)) {
        let encrypt = *encrypt;
        let env =
            Envelope::from_bytes(&hex::decode(out["envelope"].as_str().unwrap()).unwrap()).unwrap();
        env.verify(&a.account_id()).unwrap();
        assert_eq!(env.source, Some(Address::session(42, Some("sess9".into()))));
        assert_eq!(env.relays, vec!["relay.example"]);
        let payload = match env.payload.as_ref().unwrap() {
            Payload::Cipher(c) => {
                assert!(encrypt);
                e2e::decrypt(&b, &a.secp256k1_public(), c).unwrap()
            }
            Payload::Plain(p) => {
                assert!(!encrypt);
                p.clone()
            }
        };
        assert_eq!(payload, br#"{"Name":"iperf"}"#);
        // Tampering is caught.
        let mut forged = env.clone();
        forged.timestamp += 1;
        assert!(forged.verify(&a.account_id()).is_err());
    }
}

#[test]
fn our_signed_encrypted_reply_verifies_and_decrypts_in_theirs() {
    let kts = [KeyType::Ed25519, KeyType::Sr25519];
    let caller = Identity::from_secret(A, KeyType::Sr25519).unwrap();
    let body = br#"{"name":"cpu-benchmark","result":{"single":1.5}}"#;
    // Per key type: our reply, then the same reply signed by another key,
    // which the TS client must reject.
    let mut ops = Vec::new();
    for kt in kts {
        let node = Identity::from_secret(B, kt).unwrap();
        let mut env = Envelope {
            uid: uuid::Uuid::new_v4().to_string(),
            timestamp: 1_800_000_000,
            expiration: 300,
            source: Some(Address::twin(7)),
            destination: Some(Address::session(42, Some("sess9".into()))),
            message: Some(Body::Response(Response {})),
            schema: Some(envelope::SCHEMA_JSON.into()),
            payload: Some(Payload::Cipher(
                e2e::encrypt(&node, &caller.secp256k1_public(), body).unwrap(),
            )),
            relays: vec!["relay.example".into()],
            ..Envelope::default()
        };
        env.sign(&node);
        let twins = json!([
            twin_json(7, &node, kt),
            twin_json(42, &caller, KeyType::Sr25519)
        ]);
        let mut forged = env.clone();
        forged.sign(&caller);
        ops.extend([
            (
                "open",
                json!({"mnemonic": A, "envelope": hex::encode(env.to_bytes()), "twins": twins}),
            ),
            (
                "open",
                json!({"mnemonic": A, "envelope": hex::encode(forged.to_bytes()), "twins": twins}),
            ),
        ]);
    }
    let out = ts(&ops);
    for (kt, out) in kts.into_iter().zip(out.chunks(2)) {
        assert_eq!(out[0]["verified"], true, "{kt}: {}", out[0]);
        assert_eq!(out[0]["kind"], "response");
        assert_eq!(out[0]["payload"], String::from_utf8_lossy(body).as_ref());
        assert_eq!(out[1]["verified"], false, "{kt}: {}", out[1]);
    }
}
