//! The chain client against the stand-in chain: real WebSocket JSON-RPC on
//! loopback, with every way an endpoint can fail.

use crate::common;

use std::time::Duration;

use common::chain::{ChainServer, Mode};
use zos_perf::grid::chain::{key, ChainClient, ChainError, ChainOptions, Failure};

fn options(timeout_ms: u64) -> ChainOptions {
    ChainOptions {
        call_timeout: Duration::from_millis(timeout_ms),
        ..ChainOptions::default()
    }
}

fn twin_key(id: u32) -> Vec<u8> {
    key::map(
        "TfgridModule",
        "Twins",
        &key::blake2_128_concat(&id.to_le_bytes()),
    )
}

/// Every test bounds itself: a client that hangs fails instead of blocking
/// the suite.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the chain client hung")
}

#[tokio::test]
async fn reads_stored_values_and_none_for_absent_keys() {
    let chain = ChainServer::start();
    chain.insert(twin_key(42), vec![1, 2, 3]);
    let client = ChainClient::new(vec![chain.url()], options(5_000)).unwrap();
    bounded(async {
        assert_eq!(
            client.get_storage(&twin_key(42)).await.unwrap(),
            Some(vec![1, 2, 3])
        );
        assert_eq!(client.get_storage(&twin_key(43)).await.unwrap(), None);
        let now = key::plain("Timestamp", "Now");
        chain.insert(now.clone(), 1_700_000_000_000u64.to_le_bytes().to_vec());
        assert_eq!(
            client.get_storage(&now).await.unwrap(),
            Some(1_700_000_000_000u64.to_le_bytes().to_vec())
        );
    })
    .await;
    assert_eq!(chain.calls(), vec!["state_getStorage"; 3]);
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_and_each_gets_its_answer() {
    let chain = ChainServer::start();
    for id in 0..64u32 {
        chain.insert(twin_key(id), id.to_le_bytes().to_vec());
    }
    let client = ChainClient::new(vec![chain.url()], options(5_000)).unwrap();
    let answers = bounded(futures::future::join_all((0..64u32).map(|id| {
        let client = &client;
        async move { (id, client.get_storage(&twin_key(id)).await) }
    })))
    .await;
    for (id, answer) in answers {
        assert_eq!(
            answer.unwrap(),
            Some(id.to_le_bytes().to_vec()),
            "twin {id}"
        );
    }
}

#[tokio::test]
async fn fails_over_from_a_refusing_and_a_silent_endpoint() {
    let refusing = ChainServer::with_mode(Mode::Refuse);
    let silent = ChainServer::with_mode(Mode::Silent);
    let good = ChainServer::start();
    good.insert(twin_key(1), vec![9]);
    let client =
        ChainClient::new(vec![refusing.url(), silent.url(), good.url()], options(300)).unwrap();
    assert_eq!(
        bounded(client.get_storage(&twin_key(1))).await.unwrap(),
        Some(vec![9])
    );
    assert_eq!(silent.calls(), vec!["state_getStorage"]);
    // The endpoint that worked is asked first from now on.
    assert_eq!(
        bounded(client.get_storage(&twin_key(1))).await.unwrap(),
        Some(vec![9])
    );
    assert_eq!(silent.calls().len(), 1);
    assert_eq!(good.calls().len(), 2);
}

#[tokio::test]
async fn garbage_from_every_endpoint_is_an_error_naming_each() {
    let garbage = ChainServer::with_mode(Mode::Garbage);
    let wrong = ChainServer::with_mode(Mode::WrongResult);
    let client = ChainClient::new(vec![garbage.url(), wrong.url()], options(2_000)).unwrap();
    let err = bounded(client.get_storage(&twin_key(1))).await.unwrap_err();
    assert!(err.answered_garbage(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&garbage.url()) && text.contains(&wrong.url()),
        "{text}"
    );
    assert!(
        text.contains("not JSON") && text.contains("neither null nor a hex string"),
        "{text}"
    );
}

#[tokio::test]
async fn silent_and_closed_endpoints_time_out_as_unreachable() {
    let silent = ChainServer::with_mode(Mode::Silent);
    let refusing = ChainServer::with_mode(Mode::Refuse);
    let client = ChainClient::new(vec![silent.url(), refusing.url()], options(300)).unwrap();
    let err = bounded(client.get_storage(&twin_key(1))).await.unwrap_err();
    assert!(!err.answered_garbage());
    match &err {
        ChainError::Unavailable { attempts, method } => {
            assert_eq!(method, "state_getStorage");
            assert_eq!(attempts.len(), 2);
            assert_eq!(
                attempts[0].failure,
                Failure::Timeout(Duration::from_millis(300))
            );
            assert!(matches!(attempts[1].failure, Failure::Connect(_)), "{err}");
        }
        other => panic!("expected Unavailable, got {other}"),
    }
    assert!(err.to_string().starts_with("chain unreachable: "), "{err}");
}

#[tokio::test]
async fn a_json_rpc_error_is_reported_with_its_code() {
    let chain = ChainServer::with_mode(Mode::RpcError);
    let client = ChainClient::new(vec![chain.url()], options(2_000)).unwrap();
    match bounded(client.get_storage(&twin_key(1))).await {
        Err(ChainError::Rpc { code, message, .. }) => {
            assert_eq!(code, -32000);
            assert_eq!(message, "stand-in failure");
        }
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_answer_closes_the_connection_instead_of_buffering_it() {
    let chain = ChainServer::start();
    chain.insert(twin_key(5), vec![0xab; 64 * 1024]);
    chain.insert(twin_key(6), vec![1]);
    let small = ChainOptions {
        max_message: 16 * 1024,
        call_timeout: Duration::from_secs(5),
    };
    let client = ChainClient::new(vec![chain.url()], small).unwrap();
    let err = bounded(client.get_storage(&twin_key(5))).await.unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
    // The client recovers on a fresh connection for a value that fits.
    assert_eq!(
        bounded(client.get_storage(&twin_key(6))).await.unwrap(),
        Some(vec![1])
    );
}

#[tokio::test]
async fn recovers_when_the_endpoint_comes_back_to_normal() {
    let chain = ChainServer::with_mode(Mode::Garbage);
    chain.insert(twin_key(1), vec![7]);
    let client = ChainClient::new(vec![chain.url()], options(2_000)).unwrap();
    assert!(bounded(client.get_storage(&twin_key(1))).await.is_err());
    chain.set_mode(Mode::Normal);
    assert_eq!(
        bounded(client.get_storage(&twin_key(1))).await.unwrap(),
        Some(vec![7])
    );
}
