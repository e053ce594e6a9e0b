use super::*;
use serde_json::json;

#[test]
fn a_get_all_answer_becomes_one_row() {
    let answer = json!([
        {"name": "cpu-benchmark", "timestamp": 900, "result": {"single": 1.25, "multi": 9.5, "threads": 8, "workloads": 0}},
        {"name": "iperf", "timestamp": 950, "result": [
            {"download_speed": 5e8, "upload_speed": 1e8, "error": "", "test_type": "tcp", "node_ip": "198.51.100.2"},
            {"download_speed": 9e8, "upload_speed": 3e8, "error": "unable to connect", "test_type": "tcp", "node_ip": "203.0.113.7"},
            {"download_speed": 7e8, "upload_speed": 2e8, "error": "", "test_type": "tcp", "node_ip": "2001:db8:1::2"}]},
        {"name": "healthcheck", "timestamp": 990, "result": {"cache": [], "network": ["a", "b"]}},
        {"name": "public-ip-validation", "timestamp": 980, "result": {
            "203.0.113.1/24": {"state": "valid", "reason": ""},
            "203.0.113.2/24": {"state": "skipped", "reason": "ip is already assigned to a contract"}}}
    ]);
    let r = row(
        5,
        Some(50),
        Ok(answer.to_string().into_bytes()),
        false,
        1000,
    );
    assert_eq!((r.cpu_single, r.cpu_multi), (Some(1.25), Some(9.5)));
    assert_eq!((r.download, r.upload), (Some(7e8), Some(2e8)));
    assert_eq!(r.health_problems, Some(vec![("network".to_string(), 2)]));
    assert_eq!(
        (r.ips_valid, r.ips_invalid, r.ips_skipped),
        (Some(1), Some(0), Some(1))
    );
    assert_eq!(r.age, Some(100));
    let t = table(&[r], false);
    assert!(t.lines().nth(1).unwrap().contains("network(2)"), "{t}");
    assert!(t.contains("700.0") && t.contains("1/0/1"), "{t}");
}

#[test]
fn errors_fill_the_row_and_csv_quotes_them() {
    let r = row(
        6,
        None,
        Err(RmbError::Timeout {
            twin: 60,
            after: Duration::from_secs(2),
        }),
        false,
        0,
    );
    assert_eq!(r.exit_code, exit::TIMEOUT);
    let bad = row(7, Some(70), Ok(b"not json".to_vec()), false, 0);
    assert!(bad.error.as_deref().unwrap().contains("not JSON"));
    let quoted = Row {
        node: 8,
        error: Some("a, \"b\"".into()),
        ..Row::default()
    };
    let c = csv(&[r, quoted]);
    assert!(c.lines().nth(1).unwrap().starts_with("6,,"), "{c}");
    assert!(c.contains("\"a, \"\"b\"\"\""), "{c}");
}
