//! The body caps on answers from services we do not control, applied by the
//! real clients (the GraphQL client, the IP lookup) over real sockets on
//! loopback: exactly at the cap is read, one byte more is refused.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use common::graphql::{GraphQlServer, Grid, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zos_perf::grid::graphql::{GraphQl, NodeFilter};
use zos_perf::tasks::public_ip::lookup::{public_ip, Lookup};

const MIB: usize = 1024 * 1024;

/// `{}` padded with spaces to `len` bytes: valid JSON of any size.
fn padded(len: usize) -> String {
    format!("{{}}{}", " ".repeat(len - 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_answers_are_read_up_to_32_mib_and_refused_past_it() {
    let server = GraphQlServer::grid(Grid::default());
    let gql = GraphQl::new(vec![server.url()], Duration::from_secs(30)).expect("client");
    let ask = || async {
        format!(
            "{:#}",
            gql.up_nodes(&NodeFilter::public_in_farm(1), None)
                .await
                .expect_err("`{}` is no answer to a nodes query")
        )
    };
    // 32 MiB: read whole; it fails later, as an answer without data.
    server.fail_with(Some(Reply::Raw(padded(32 * MIB))));
    let err = ask().await;
    assert!(!err.contains("over the limit"), "{err}");
    // One byte more: refused by the cap.
    server.fail_with(Some(Reply::Raw(padded(32 * MIB + 1))));
    let err = ask().await;
    assert!(
        err.contains(&format!("over the limit of {}", 32 * MIB)),
        "{err}"
    );
}

/// Serves `body` once per connection on loopback, with or without a
/// Content-Length (without one the client only finds the size by reading).
async fn lookup_service(body: String, with_length: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let head = if with_length {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_are_read_up_to_4_kib_and_refused_past_it() {
    let source: IpAddr = "127.0.0.1".parse().expect("ip");
    let answer = |len: usize| format!("192.0.2.7{}", " ".repeat(len - "192.0.2.7".len()));
    for with_length in [true, false] {
        let url = lookup_service(answer(4096), with_length).await;
        let got = public_ip(&url, source, Duration::from_secs(5))
            .await
            .expect("lookup");
        assert_eq!(
            got,
            Lookup::Answer("192.0.2.7".parse().expect("ip")),
            "4096 bytes, length given: {with_length}"
        );
        let url = lookup_service(answer(4097), with_length).await;
        match public_ip(&url, source, Duration::from_secs(5))
            .await
            .expect("lookup")
        {
            Lookup::Failed(why) => assert!(why.contains("limit of 4096"), "{why}"),
            other => panic!("4097 bytes (length given: {with_length}) gave {other:?}"),
        }
    }
}
