use super::*;
use rand::SeedableRng;

fn node(json: &str) -> Node {
    serde_json::from_str(json).expect("node json")
}

#[test]
fn public_addresses_parse_from_cidr_and_check_the_family() {
    let n = node(
        r#"{"nodeID": 7, "farmID": 1, "publicConfig": {"ipv4": "185.206.122.29/24", "ipv6": "2a02:1802:5e::223/64"},
            "interfaces": [{"name": "zos", "ips": "10.20.2.2"}]}"#,
    );
    assert_eq!(n.public_ipv4(), Ok("185.206.122.29".parse().expect("ip")));
    assert_eq!(
        n.public_ipv6(),
        Ok("2a02:1802:5e::223".parse().expect("ip"))
    );

    let swapped = node(
        r#"{"nodeID": 7, "farmID": 1, "publicConfig": {"ipv4": "2001:db8::1/64", "ipv6": "192.0.2.1"}}"#,
    );
    let e = swapped.public_ipv4().expect_err("an IPv6 address in ipv4");
    assert_eq!(e.to_string(), "public ipv4 2001:db8::1 is an IPv6 address");
    let e = swapped.public_ipv6().expect_err("an IPv4 address in ipv6");
    assert_eq!(e.to_string(), "public ipv6 192.0.2.1 is an IPv4 address");

    let none = node(r#"{"nodeID": 7, "farmID": 1, "publicConfig": null, "interfaces": null}"#);
    assert!(none.public_ipv4().is_err());
    assert_eq!(none.zos_ip(), None);
}

#[test]
fn address_parsing_refuses_junk_and_bad_prefixes() {
    assert_eq!(parse_address(""), Err(AddressError::Missing));
    assert_eq!(
        parse_address("not-an-ip").map_err(|e| e.to_string()),
        Err(r#""not-an-ip" is not an IP address"#.to_string())
    );
    assert_eq!(
        parse_address("192.0.2.1/33").map_err(|e| e.to_string()),
        Err(r#""192.0.2.1/33" has an invalid prefix length"#.to_string())
    );
    assert!(parse_address("192.0.2.1/x").is_err());
    assert!(parse_address("2001:db8::1/129").is_err());
    assert!(parse_address("192.0.2.1; rm -rf /").is_err());
    assert_eq!(
        parse_address(" 192.0.2.1/32 "),
        Ok("192.0.2.1".parse().expect("ip"))
    );
    assert_eq!(
        parse_address("2001:db8::1"),
        Ok("2001:db8::1".parse().expect("ip"))
    );
}

#[test]
fn zos_ip_is_the_first_address_that_parses_on_the_zos_interface() {
    let n = node(
        r#"{"nodeID": 3, "farmID": 9, "interfaces": [
            {"name": "ygg0", "ips": "300:1::1"},
            {"name": "zos", "ips": "garbage, 10.10.0.5/16,10.10.0.6"}]}"#,
    );
    assert_eq!(n.zos_ip(), Some("10.10.0.5".parse().expect("ip")));
}

#[test]
fn contract_id_reads_numbers_strings_and_null() {
    let ips: Vec<PublicIp> = serde_json::from_str(
        r#"[{"ip": "192.0.2.5/24", "gateway": "192.0.2.1", "contractId": "0"},
            {"ip": "192.0.2.6/24", "gateway": "192.0.2.1", "contractId": 42},
            {"ip": "192.0.2.7/24", "gateway": null, "contractId": null}]"#,
    )
    .expect("public ips");
    assert_eq!(
        ips.iter().map(|p| p.contract_id).collect::<Vec<_>>(),
        [0, 42, 0]
    );
    assert_eq!(ips[2].gateway, "");
}

#[test]
fn the_page_query_asks_ids_after_the_last_node_in_node_order() {
    let grid = NodeFilter {
        farm: FarmFilter::Any,
        public: false,
    };
    let q = node_ids_query(&grid, 5, None, 1000);
    assert_eq!(
        q,
        format!("query {{ nodes(where: {{updatedAt_gte: 5, {UP_POWER_FILTER}}}, orderBy: nodeID_ASC, limit: 1000) {{ nodeID farmID }} }}")
    );
    let q = node_ids_query(&NodeFilter::farm(3), 5, Some(77), 10);
    assert!(
        q.contains(", farmID_eq: 3, nodeID_gt: 77}, orderBy: nodeID_ASC, limit: 10)"),
        "{q}"
    );
}

#[test]
fn queries_carry_the_up_public_and_farm_filters() {
    let q = nodes_query(&NodeFilter::public_in_farm(1), 1000, None);
    assert!(q.contains("updatedAt_gte: 1000"), "{q}");
    assert!(q.contains(UP_POWER_FILTER), "{q}");
    assert!(q.contains(PUBLIC_CONFIG_FILTER), "{q}");
    assert!(q.contains("farmID_eq: 1"), "{q}");
    assert!(!q.contains("limit"), "{q}");
    assert!(q.contains("nodeID farmID publicConfig { ipv4 ipv6 } interfaces { name ips }"));

    let q = nodes_query(&NodeFilter::public_outside_farm(1), 5, Some((12, 30)));
    assert!(q.contains("farmID_not_eq: 1"), "{q}");
    assert!(q.contains("limit: 12, offset: 30"), "{q}");

    let q = nodes_query(&NodeFilter::farm(77), 5, None);
    assert!(!q.contains("publicConfig:"), "{q}");
    assert!(q.contains("farmID_eq: 77"), "{q}");

    let c = count_query(&NodeFilter::public_outside_farm(1), 5);
    assert!(
        c.starts_with("query { nodesConnection(where: {updatedAt_gte: 5, "),
        "{c}"
    );
    assert!(c.contains("orderBy: id_ASC) { totalCount }"), "{c}");

    assert_eq!(
        public_ips_query(12),
        "query { publicIps(where: {farm: {farmID_eq: 12}}) { ip gateway contractId } }"
    );
}

#[test]
fn random_offset_reaches_every_window_and_never_past_the_end() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (total, n) = (20, 12);
    let mut seen = [false; 9];
    for _ in 0..2000 {
        let o = random_offset(total, n, &mut rng);
        assert!(o + n <= total, "offset {o}");
        seen[o as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "{seen:?}");
    assert_eq!(random_offset(5, 12, &mut rng), 0);
    assert_eq!(random_offset(12, 12, &mut rng), 0);
}

#[test]
fn up_since_is_eighty_minutes_ago() {
    let now = crate::util::unix_time::unix_now() as i64;
    let since = up_since();
    assert!((now - since - 4800).abs() <= 2, "{}", now - since);
}
