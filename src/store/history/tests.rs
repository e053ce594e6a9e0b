use super::*;

fn result(name: &str, ts: i64) -> String {
    format!(r#"{{"name":"{name}","description":"d","timestamp":{ts},"result":{{}}}}"#)
}

fn append(h: &History, json: &str) {
    let r: TaskResult = serde_json::from_str(json).expect("a result");
    h.append(&r, json);
}

#[test]
fn memory_keeps_depth_records_newest_first() {
    let h = History::new(&HistoryConfig { depth: 3 });
    for ts in 1..=5 {
        append(&h, &result("iperf", ts));
    }
    let got = h.recent("iperf", 10);
    assert_eq!(
        got,
        vec![result("iperf", 5), result("iperf", 4), result("iperf", 3)]
    );
    assert_eq!(h.recent("iperf", 1), vec![result("iperf", 5)]);
    let times: Vec<i64> = h.summaries("iperf").iter().map(|s| s.timestamp).collect();
    assert_eq!(times, [5, 4, 3]);
    assert!(h.recent("healthcheck", 10).is_empty());
}

#[test]
fn depth_zero_keeps_nothing_and_depth_is_bounded() {
    let h = History::new(&HistoryConfig { depth: 0 });
    append(&h, &result("iperf", 1));
    assert_eq!(h.len("iperf"), 0);
    let e = HistoryConfig {
        depth: MAX_DEPTH + 1,
    }
    .validate()
    .expect_err("too deep");
    assert!(e.to_string().contains("history.depth"), "{e}");
}

#[test]
fn a_stranger_value_is_not_a_record() {
    assert!(result_of("iperf", &result("iperf", 1)).is_some());
    assert!(result_of("iperf", &result("healthcheck", 1)).is_none());
    assert!(result_of("iperf", "not json").is_none());
}

#[test]
fn records_survive_the_deflate_round_trip() {
    let big = format!("[{}]", vec![r#"{"a":"xyz"}"#; 2000].join(","));
    let d = deflate(&big);
    assert!(d.len() < big.len() / 10, "{} of {}", d.len(), big.len());
    assert_eq!(inflate(&d), big);
}
