//! The GraphQL client against the stand-in grid: query shapes, decoding,
//! the random window, and failover across URLs.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::graphql::{closed_url, node, public_ip, GraphQlServer, Grid, Reply};
use zos_perf::grid::graphql::{GraphQl, NodeFilter};

fn grid() -> Grid {
    let mut g = Grid::default();
    // Free farm 1: two public nodes and one without a public IPv6.
    g.nodes.push(node(
        1,
        1,
        Some("198.51.100.1/24"),
        Some("2001:db8::1/64"),
        "10.0.0.1",
    ));
    g.nodes.push(node(
        2,
        1,
        Some("198.51.100.2/24"),
        Some("2001:db8::2/64"),
        "10.0.0.2",
    ));
    g.nodes
        .push(node(3, 1, Some("198.51.100.3/24"), None, "10.0.0.3"));
    // Other farms: 20 public nodes, plus one private node in farm 5.
    for id in 100..120 {
        g.nodes.push(node(
            id,
            5 + id % 3,
            Some("203.0.113.9/24"),
            Some("2001:db8:9::9/64"),
            "",
        ));
    }
    g.nodes
        .push(node(200, 5, Some(""), Some(""), "10.5.0.7,10.5.0.8"));
    g.public_ips.insert(
        5,
        vec![
            public_ip("192.0.2.10/24", "192.0.2.1", 0),
            public_ip("192.0.2.11/24", "192.0.2.1", 77),
        ],
    );
    g
}

fn client(urls: Vec<String>) -> GraphQl {
    GraphQl::new(urls, Duration::from_secs(5)).expect("client")
}

#[tokio::test]
async fn free_farm_public_nodes_come_with_parsed_addresses() {
    let server = GraphQlServer::grid(grid());
    let gql = client(vec![server.url()]);
    let nodes = gql
        .up_nodes(&NodeFilter::public_in_farm(1), None)
        .await
        .expect("free farm nodes");
    let ids: Vec<u32> = nodes.iter().map(|n| n.node_id).collect();
    assert_eq!(ids, [1, 2], "node 3 has no public IPv6");
    assert_eq!(
        nodes[1].public_ipv4(),
        Ok("198.51.100.2".parse().expect("ip"))
    );
    assert_eq!(
        nodes[1].public_ipv6(),
        Ok("2001:db8::2".parse().expect("ip"))
    );
    assert_eq!(nodes[1].farm_id, 1);
    let q = &server.queries()[0];
    assert!(q.contains("farmID_eq: 1"), "{q}");
}

#[tokio::test]
async fn farm_up_nodes_include_private_ones_with_their_zos_address() {
    let server = GraphQlServer::grid(grid());
    let gql = client(vec![server.url()]);
    let nodes = gql.farm_up_nodes(5).await.expect("farm nodes");
    let private = nodes
        .iter()
        .find(|n| n.node_id == 200)
        .expect("node 200 listed");
    assert_eq!(private.zos_ip(), Some("10.5.0.7".parse().expect("ip")));
    assert!(private.public_ipv4().is_err());
    assert!(nodes.iter().all(|n| n.farm_id == 5));
    let q = &server.queries()[0];
    assert!(!q.contains("publicConfig: {"), "{q}");
}

#[tokio::test]
async fn farm_public_ips_decode_with_contract_ids() {
    let server = GraphQlServer::grid(grid());
    let gql = client(vec![server.url()]);
    let ips = gql.farm_public_ips(5).await.expect("public ips");
    assert_eq!(ips.len(), 2);
    assert_eq!(ips[0].ip, "192.0.2.10/24");
    assert_eq!(ips[0].gateway, "192.0.2.1");
    assert_eq!(ips[0].contract_id, 0);
    assert_eq!(ips[1].contract_id, 77);
    assert!(gql.farm_public_ips(6).await.expect("no ips").is_empty());
}

#[tokio::test]
async fn random_nodes_are_a_window_of_n_and_every_window_shows_up() {
    let server = GraphQlServer::grid(grid());
    let gql = client(vec![server.url()]);
    let filter = NodeFilter::public_outside_farm(1);
    assert_eq!(gql.count_up_nodes(&filter).await.expect("count"), 20);
    let mut firsts = BTreeSet::new();
    for _ in 0..200 {
        let nodes = gql
            .random_up_nodes(&filter, 12)
            .await
            .expect("random nodes");
        assert_eq!(nodes.len(), 12);
        assert!(nodes.iter().all(|n| n.farm_id != 1));
        let ids: Vec<u32> = nodes.iter().map(|n| n.node_id).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        firsts.insert(ids[0]);
        if firsts.len() == 9 {
            break;
        }
    }
    // Offsets 0..=8 of 20 nodes: the first node ranges over 100..=108.
    assert_eq!(
        firsts,
        (100..=108).collect(),
        "every window of 12 can be chosen"
    );
    // Fewer nodes than asked: all of them, without a window.
    let all = gql
        .random_up_nodes(&NodeFilter::public_in_farm(1), 12)
        .await
        .expect("few nodes");
    assert_eq!(all.len(), 2);
    assert!(server
        .queries()
        .iter()
        .any(|q| q.contains("nodesConnection(")));
}

#[tokio::test]
async fn each_kind_of_failure_moves_on_to_the_next_url() {
    let failures = [
        Reply::Status(500, "internal".into()),
        Reply::Close,
        Reply::error("query too complex"),
        Reply::Raw("<html>gateway</html>".into()),
    ];
    let good = GraphQlServer::grid(grid());
    for failure in failures {
        let bad = GraphQlServer::grid(grid());
        bad.fail_with(Some(failure.clone()));
        let before = good.queries().len();
        let gql = client(vec![closed_url(), bad.url(), good.url()]);
        let nodes = gql
            .up_nodes(&NodeFilter::public_in_farm(1), None)
            .await
            .unwrap_or_else(|e| panic!("{failure:?}: {e:#}"));
        assert_eq!(nodes.len(), 2, "{failure:?}");
        assert_eq!(
            bad.queries().len(),
            1,
            "{failure:?}: the failing URL was asked"
        );
        assert_eq!(good.queries().len(), before + 1);
    }
}

#[tokio::test]
async fn all_urls_failing_is_an_error_naming_each_url_and_its_failure() {
    let down = closed_url();
    let broken = GraphQlServer::grid(grid());
    broken.fail_with(Some(Reply::Status(503, "maintenance".into())));
    let gql = client(vec![down.clone(), broken.url()]);
    let err = gql
        .up_nodes(&NodeFilter::public_in_farm(1), None)
        .await
        .expect_err("every URL failed");
    let msg = format!("{err:#}");
    assert!(msg.contains("every URL failed"), "{msg}");
    assert!(msg.contains(&down), "{msg}");
    assert!(msg.contains(&broken.url()), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    assert!(msg.contains("maintenance"), "{msg}");
}

#[tokio::test]
async fn a_url_that_does_not_answer_in_time_is_left_for_the_next() {
    let slow = GraphQlServer::start(|_| {
        std::thread::sleep(Duration::from_secs(3));
        Reply::data(serde_json::json!({ "nodes": [] }))
    });
    let good = GraphQlServer::grid(grid());
    let gql =
        GraphQl::new(vec![slow.url(), good.url()], Duration::from_millis(300)).expect("client");
    let started = Instant::now();
    let nodes = gql
        .up_nodes(&NodeFilter::public_in_farm(1), None)
        .await
        .expect("second URL answers");
    assert_eq!(nodes.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_nodes_query_without_the_up_filter_is_refused_by_the_stand_in() {
    // Guards the stand-in itself: the tests above would prove nothing if it
    // answered any query.
    let server = GraphQlServer::grid(grid());
    let gql = client(vec![server.url()]);
    let err = gql
        .query::<serde_json::Value>("query { nodes(where: {farmID_eq: 1}) { nodeID } }")
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("updatedAt_gte"), "{err:#}");
}
