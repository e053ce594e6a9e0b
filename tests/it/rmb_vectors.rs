//! Fixed regression vectors: values computed by the grid's TypeScript RMB
//! client (and cross-checked with independent code) for two well-known
//! mnemonics. Our keys, tokens, challenges, signatures, ciphers and
//! protobuf bytes must equal them bit for bit; randomised sr25519
//! signatures must verify.

use zos_perf::grid::chain::key;
use zos_perf::rmb::e2e::E2eError;
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Payload, Request};
use zos_perf::rmb::identity::{self, mini_secret, Identity, KeyType};
use zos_perf::rmb::twin;
use zos_perf::rmb::{e2e, jwt};

const A: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
const B: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

fn id(secret: &str, kt: KeyType) -> Identity {
    Identity::from_secret(secret, kt).expect("valid secret")
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

#[test]
fn v1_identities() {
    assert_eq!(
        hex::encode(*mini_secret(A).unwrap()),
        "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e"
    );
    assert_eq!(
        hex::encode(*mini_secret(B).unwrap()),
        "6fa2796b0071cac425d8a7851038318c2c37dcebfe4bae73197ce93e75909bd2"
    );
    let a = id(A, KeyType::Ed25519);
    assert_eq!(
        hex::encode(a.ed25519_public()),
        "345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef"
    );
    assert_eq!(
        identity::ss58(&a.ed25519_public()),
        "5DFJF7tY4bpbpcKPJcBTQaKuCDEPCpiz8TRjpmLeTtweqmXL"
    );
    assert_eq!(
        hex::encode(a.sr25519_public()),
        "46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a"
    );
    assert_eq!(
        identity::ss58(&a.sr25519_public()),
        "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
    );
    assert_eq!(
        hex::encode(a.secp256k1_public()),
        "035b26108e8b97479c547da4860d862dc08ab2c29ada449c74d5a9a58a6c46a8c4"
    );
    let b = id(B, KeyType::Sr25519);
    assert_eq!(
        hex::encode(b.ed25519_public()),
        "7b4344ead732d6beeeded95d39e330ef0c16ae806046b296737dababb8a0b80d"
    );
    assert_eq!(
        hex::encode(b.sr25519_public()),
        "625e25364c7b68e0a83065ccb40afed43f8fe933e669b24f3d69a57eddb3b715"
    );
    assert_eq!(b.account_id(), b.sr25519_public());
    assert_eq!(
        hex::encode(b.secp256k1_public()),
        "029880b9309f4eb50e731d563c26a5b8faf3e787d48b33648c544b512267b18069"
    );
    // The hex seed form gives the same keys, with or without 0x.
    for seed in [
        "0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e",
        "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e",
    ] {
        let h = id(seed, KeyType::Ed25519);
        assert_eq!(h.ed25519_public(), a.ed25519_public());
        assert_eq!(h.sr25519_public(), a.sr25519_public());
        assert_eq!(h.secp256k1_public(), a.secp256k1_public());
    }
}

#[test]
fn bad_secrets_are_refused_without_echoing_them() {
    for bad in [
        "bottom drive obey lake curtain smoke basket hold race lonely fit fit",
        "0x1234",
        "not a mnemonic at all",
    ] {
        let e = Identity::from_secret(bad, KeyType::Ed25519)
            .unwrap_err()
            .to_string();
        assert!(!e.contains(bad), "{e}");
        assert!(e.starts_with("secret: "), "{e}");
    }
    let zero = format!("0x{}", "00".repeat(32));
    assert!(Identity::from_secret(&zero, KeyType::Ed25519).is_err());
}

#[test]
fn v2_jwt() {
    let a = id(A, KeyType::Ed25519);
    let token = jwt::token(&a, 42, None, 1_700_000_000, 1000);
    assert_eq!(
        token,
        "eyJhbGciOiJSUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjQyLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMTAwMH0.ZcE_Sh_hFhvhksBkAV3II0f26jyU97MXhs5W0gQmXqor5jArTju1-l266BNlHJTsWdJxlhDu8SWEjLIYuuBadA8"
    );
    let claims = jwt::verify(&token, &a.ed25519_public(), 1_700_000_500).unwrap();
    assert_eq!((claims.sub, claims.sid), (42, None));
    assert!(jwt::verify(&token, &a.ed25519_public(), 1_700_001_001)
        .unwrap_err()
        .to_string()
        .contains("expired"));
    assert!(jwt::verify(&token, &a.sr25519_public(), 1_700_000_500).is_err());

    // TS, sr25519 with a session: randomised, verifies with A's sr25519 key.
    let ts_sr = "eyJhbGciOiJSUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjQyLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMTAwMCwic2lkIjoic2VzczEifQ.c1qGRocZeY_ZImUgB12RIpiPfkUxHVdHcC9hmE-2iJk1otCvdsiZ3_2DzZwDz3dyXcMd5Uc5moWdG6ajo0YIf4M";
    let claims = jwt::verify(ts_sr, &a.sr25519_public(), 1_700_000_000).unwrap();
    assert_eq!(claims.sid.as_deref(), Some("sess1"));
    // Ours, sr25519 with a session: same header and claims bytes.
    let ours = jwt::token(
        &id(A, KeyType::Sr25519),
        42,
        Some("sess1"),
        1_700_000_000,
        1000,
    );
    assert_eq!(
        ours.rsplit_once('.').unwrap().0,
        ts_sr.rsplit_once('.').unwrap().0
    );
    jwt::verify(&ours, &a.sr25519_public(), 1_700_000_000).unwrap();

    // rmb-rs shape: {"alg":"RS512"} and "sid":null are accepted too.
    let rs = "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOjQyLCJzaWQiOm51bGwsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAwMzAwfQ.ZRUReIaEJCQkLw9LLDDNCirs4ryQQDqKACLU8w5ncR5Q9dlVA0mUBMLapkaQEAKxwmGyejkX9yKc0P9bRr-ulgU";
    assert_eq!(
        jwt::verify(rs, &a.ed25519_public(), 1_700_000_300)
            .unwrap()
            .exp,
        1_700_000_300
    );
}

fn v3_envelope() -> Envelope {
    Envelope {
        uid: "00000000-0000-4000-8000-000000000001".into(),
        tags: Some(String::new()),
        timestamp: 1_700_000_000,
        expiration: 300,
        source: Some(Address::twin(42)),
        destination: Some(Address::twin(7)),
        message: Some(Body::Request(Request {
            command: "zos.perf.get".into(),
        })),
        schema: Some(envelope::SCHEMA_JSON.into()),
        payload: Some(Payload::Plain(br#"{"Name":"cpu-benchmark"}"#.to_vec())),
        ..Envelope::default()
    }
}

#[test]
fn v3_plain_request() {
    let a = id(A, KeyType::Ed25519);
    let mut env = v3_envelope();
    assert_eq!(
        String::from_utf8(envelope::challenge(&env)).unwrap(),
        r#"00000000-0000-4000-8000-0000000000011700000000300427zos.perf.getapplication/json{"Name":"cpu-benchmark"}"#
    );
    assert_eq!(
        hex::encode(env.digest()),
        "5e3c34b6894393ae02f69a5c63b75be2"
    );
    env.sign(&a);
    assert_eq!(
        hex::encode(env.signature.as_ref().unwrap()),
        "652507bbd6472345e2e82694f049f248b8b2b0269461f7286ee95894c49435b0abe66839f8d487bae22264ff69639f2bb762966ef78744a665e2490b382af7fd00"
    );
    let wire = "0a2430303030303030302d303030302d343030302d383030302d30303030303030303030303112001880e2cfaa0620ac022a02082a320208073a0e0a0c7a6f732e706572662e6765744a41652507bbd6472345e2e82694f049f248b8b2b0269461f7286ee95894c49435b0abe66839f8d487bae22264ff69639f2bb762966ef78744a665e2490b382af7fd0052106170706c69636174696f6e2f6a736f6e6a187b224e616d65223a226370752d62656e63686d61726b227d";
    assert_eq!(hex::encode(env.to_bytes()), wire);
    let parsed = Envelope::from_bytes(&unhex(wire)).unwrap();
    assert_eq!(parsed, env);
    // Cut short, the same bytes are no envelope, and the error says so.
    let cut = Envelope::from_bytes(&unhex(wire)[..20]).unwrap_err();
    assert!(
        cut.to_string().starts_with("not an RMB envelope: "),
        "{cut}"
    );
    parsed.verify(&a.ed25519_public()).unwrap();
    // Without the empty tags the bytes change, the digest does not.
    let mut untagged = v3_envelope();
    untagged.tags = None;
    assert_eq!(untagged.digest(), env.digest());
    assert_ne!(untagged.to_bytes(), env.to_bytes());
}

#[test]
fn v4_encrypted_request_and_shared_key() {
    let a = id(A, KeyType::Ed25519);
    let b = id(B, KeyType::Ed25519);
    let shared = e2e::shared_key(&a, &b.secp256k1_public()).unwrap();
    assert_eq!(
        hex::encode(*shared),
        "9b06b7ecbe5ff3715b94e2fc2be8a236c876a0feae3e164808d8213c3a8e9839"
    );
    assert_eq!(
        *e2e::shared_key(&b, &a.secp256k1_public()).unwrap(),
        *shared
    );
    let nonce: [u8; 12] = core::array::from_fn(|i| i as u8);
    let payload = br#"{"Name":"cpu-benchmark"}"#;
    let cipher = e2e::encrypt_with_nonce(&a, &b.secp256k1_public(), payload, &nonce).unwrap();
    assert_eq!(
        hex::encode(&cipher),
        "000102030405060708090a0bb812bbb6eabb577ba745173a223c200875199b0847ec16a7699f89c32fa82a0ab4a7a3e56cbf1d1c"
    );
    let mut env = Envelope {
        uid: "00000000-0000-4000-8000-000000000002".into(),
        tags: Some(String::new()),
        timestamp: 1_700_000_000,
        expiration: 60,
        source: Some(Address::session(42, Some("sess1".into()))),
        destination: Some(Address::twin(7)),
        message: Some(Body::Request(Request {
            command: "zos.perf.get".into(),
        })),
        schema: Some(envelope::SCHEMA_JSON.into()),
        payload: Some(Payload::Cipher(cipher.clone())),
        relays: vec!["relay.grid.tf".into()],
        ..Envelope::default()
    };
    assert_eq!(
        hex::encode(env.digest()),
        "5cfea56dcfe00a3d261dcc0c19a916e9"
    );
    env.sign(&a);
    assert_eq!(hex::encode(env.to_bytes()), "0a2430303030303030302d303030302d343030302d383030302d30303030303030303030303212001880e2cfaa06203c2a09082a12057365737331320208073a0e0a0c7a6f732e706572662e6765744a41651c9c2a595fcdf60c0bb0f91f8a107ebea6405c48fb8d68720b23cf0bd50b85cbd57bf30851dec134334509501c38f66e1772a7968487cc4bc17c19c57a59230f52106170706c69636174696f6e2f6a736f6e7234000102030405060708090a0bb812bbb6eabb577ba745173a223c200875199b0847ec16a7699f89c32fa82a0ab4a7a3e56cbf1d1c8a010d72656c61792e677269642e7466");
    // B opens it.
    assert_eq!(
        e2e::decrypt(&b, &a.secp256k1_public(), &cipher).unwrap(),
        payload
    );
    // A flipped byte, a wrong key, a truncated cipher, a pk that is no
    // key: each refused as what it is, no panic.
    let mut flipped = cipher.clone();
    flipped[20] ^= 1;
    let open = |own: &Identity, pk: &[u8], c: &[u8]| e2e::decrypt(own, pk, c).unwrap_err();
    assert_eq!(open(&b, &a.secp256k1_public(), &flipped), E2eError::Open);
    assert_eq!(open(&a, &a.secp256k1_public(), &cipher), E2eError::Open);
    assert_eq!(
        open(&b, &a.secp256k1_public(), &cipher[..20]),
        E2eError::TooShort(20)
    );
    assert_eq!(open(&b, &[2; 10], &cipher), E2eError::NotAPublicKey(10));
    // The texts callers show (RmbError::BadReply's reason) are unchanged.
    assert_eq!(
        E2eError::Open.to_string(),
        "payload does not decrypt with the sender's pk and our key"
    );
    assert_eq!(
        E2eError::NotAPublicKey(10).to_string(),
        "pk of 10 bytes is not a secp256k1 public key"
    );
}

/// The key cache (rmb/keycache.rs) changes nothing on the wire: the v4
/// cipher, sealed and opened through a cold cache, a warm one and none.
#[test]
fn v4_the_same_bytes_with_the_key_cache_warm_cold_and_off() {
    let nonce: [u8; 12] = core::array::from_fn(|i| i as u8);
    let payload = br#"{"Name":"cpu-benchmark"}"#;
    let vector = "000102030405060708090a0bb812bbb6eabb577ba745173a223c200875199b0847ec16a7699f89c32fa82a0ab4a7a3e56cbf1d1c";
    for peers in [0, 1, zos_perf::rmb::keycache::PEERS] {
        let a = id(A, KeyType::Ed25519).with_key_cache(peers);
        let b = id(B, KeyType::Ed25519).with_key_cache(peers);
        for round in ["cold", "warm"] {
            let cipher =
                e2e::encrypt_with_nonce(&a, &b.secp256k1_public(), payload, &nonce).unwrap();
            assert_eq!(hex::encode(&cipher), vector, "{peers} peers, {round}");
            assert_eq!(
                e2e::decrypt(&b, &a.secp256k1_public(), &cipher).unwrap(),
                payload,
                "{peers} peers, {round}"
            );
            // A key kept for one peer is never used for another.
            assert!(e2e::decrypt(&a, &a.secp256k1_public(), &cipher).is_err());
        }
    }
}

#[test]
fn v5_error_reply() {
    let b = id(B, KeyType::Ed25519);
    let mut env = Envelope {
        uid: "00000000-0000-4000-8000-000000000002".into(),
        timestamp: 1_700_000_005,
        expiration: 300,
        source: Some(Address::twin(7)),
        destination: Some(Address::session(42, Some("sess1".into()))),
        message: Some(Body::Error(envelope::Error {
            code: 102,
            message: "envelope validation error: message has expired".into(),
        })),
        schema: Some(envelope::SCHEMA_JSON.into()),
        ..Envelope::default()
    };
    assert_eq!(
        hex::encode(env.digest()),
        "1208224f9c9a88fd1bbbfdd1f8186247"
    );
    env.sign(&b);
    assert_eq!(
        hex::encode(env.signature.as_ref().unwrap()),
        "6567a2277d55e1902e6cdb940eacb84c515a496d434e6d6f039d1faa8e7bbbb0c27e2b8421ea269d7b0d14615f525115a1e529ccb8d9985c3d9a576ceada6bbf0d"
    );
}

#[test]
fn v6_sr25519_signature_verifies_and_ours_does_too() {
    let a = id(A, KeyType::Sr25519);
    let mut env = v3_envelope();
    env.signature = Some(unhex("732ae84625617cfd339d5dd0ee433c88b8a1ce1976c3aa43c64fbdde8b697d476a35e6785a2c17f2a7f0750755da14e9d57ad15d93d47fa4f3510af8a8db6eed83"));
    env.verify(&a.sr25519_public()).unwrap();
    assert!(env.verify(&a.ed25519_public()).is_err());
    env.sign(&a);
    assert_eq!(env.signature.as_ref().unwrap()[0], b's');
    env.verify(&a.sr25519_public()).unwrap();
    // A changed field breaks it.
    env.expiration += 1;
    assert!(env.verify(&a.sr25519_public()).is_err());
}

#[test]
fn v7_storage_keys_and_twin_scale() {
    assert_eq!(
        hex::encode(twin::twin_key(42)),
        "19a2526838feefd7695a3b5715b415b1311378229266fc86f673a3f4cf398e699017d1c733ec2aeaa6fd0230614e397e2a000000"
    );
    assert_eq!(
        hex::encode(twin::node_key(1)),
        "19a2526838feefd7695a3b5715b415b1519dfc7fdad21b84f64a5310fa178ef2d82c12285b5d4551f88e8f6e7eb52b8101000000"
    );
    let a = id(A, KeyType::Ed25519);
    assert_eq!(
        hex::encode(twin::twin_by_account_key(&a.ed25519_public())),
        "19a2526838feefd7695a3b5715b415b1aca6514962aa3f0d58aff3524045f9e00b34e3f0891bee9b1562e34046ef3f6a345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef"
    );
    assert_eq!(key::twox128(b"TfgridModule").len(), 16);
}
