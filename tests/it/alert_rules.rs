//! The shipped alert rules (dist/prometheus/zos-perf-rules.yml) through
//! promtool: `check rules`, then the `test rules` cases of
//! tests/alert_rules/, where every alert has a case that fires and one that
//! does not; and a rule file with one threshold changed must fail them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules() -> PathBuf {
    root().join("dist/prometheus/zos-perf-rules.yml")
}

fn cases() -> Vec<PathBuf> {
    ["node", "node-hours", "node-cpu", "collect", "collect-cpu"]
        .iter()
        .map(|n| root().join(format!("tests/alert_rules/{n}.test.yml")))
        .collect()
}

fn promtool(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool must be installed (scripts/setup)")
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_rules_pass_promtool_check_rules() {
    let out = promtool(&["check".as_ref(), "rules".as_ref(), rules().as_os_str()]);
    let text = report(&out);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert!(
        text.contains("SUCCESS") && !text.contains("FAILED"),
        "{text}"
    );
}

#[test]
fn the_promtool_unit_tests_of_the_rules_pass() {
    let mut args: Vec<&std::ffi::OsStr> = vec!["test".as_ref(), "rules".as_ref()];
    let files = cases();
    args.extend(files.iter().map(|p| p.as_os_str()));
    let out = promtool(&args);
    let text = report(&out);
    assert!(out.status.success(), "promtool test rules:\n{text}");
    assert!(!text.contains("FAILED"), "{text}");
    assert_eq!(text.matches("SUCCESS").count(), files.len(), "{text}");
}

/// The alert names of the rules file (`- alert: Name` lines).
fn alerts(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// (alert, fires) for each `alertname:` case of a promtool test file:
/// `exp_alerts: []` is a case where it stays quiet.
fn test_cases(text: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let name = l.strip_prefix("alertname:")?.trim().to_string();
            let next = lines[i + 1..].iter().find(|l| !l.is_empty())?;
            Some((name, *next != "exp_alerts: []"))
        })
        .collect()
}

#[test]
fn every_alert_has_a_case_that_fires_and_one_that_does_not() {
    let names = alerts(&read(&rules()));
    assert!(names.len() >= 13, "alerts found: {names:?}");
    let cases: Vec<(String, bool)> = cases().iter().flat_map(|p| test_cases(&read(p))).collect();
    for name in &names {
        for fires in [true, false] {
            assert!(
                cases.iter().any(|(n, f)| n == name && *f == fires),
                "{name}: no promtool case where it {}",
                if fires { "fires" } else { "stays quiet" }
            );
        }
    }
    for (n, _) in &cases {
        assert!(
            names.contains(n),
            "a case for an alert that does not exist: {n}"
        );
    }
}

/// A threshold, window or `for:` of one alert moved, from -> to: every
/// alert has at least one, most have one each way (a firing case and a
/// quiet case to break).
const MOVES: &[(&str, &str, &str)] = &[
    ("ZosPerfTaskFailing", ">= 2", ">= 3"),
    ("ZosPerfTaskFailing", "< 0.5", "< 1.5"),
    ("ZosPerfTaskFailing", "[30m]", "[20m]"),
    ("ZosPerfTaskFailing", "[12h]", "[7h]"),
    ("ZosPerfTaskFailing", "[2d]", "[1d]"),
    ("ZosPerfResultStale", "> 45 * 60", "> 55 * 60"),
    ("ZosPerfResultStale", "> 45 * 60", "> 30 * 60"),
    ("ZosPerfResultStale", "> 16 * 3600", "> 18 * 3600"),
    ("ZosPerfResultStale", "> 50 * 3600", "> 52 * 3600"),
    ("ZosPerfResultStale", "> 50 * 3600", "> 48 * 3600"),
    ("ZosPerfDaemonDown", "for: 5m", "for: 15m"),
    ("ZosPerfDaemonDown", "for: 5m", "for: 2m"),
    ("ZosPerfRelayDisconnected", "for: 10m", "for: 15m"),
    ("ZosPerfRelayDisconnected", "for: 10m", "for: 5m"),
    ("ZosPerfCpuRegressed", "1.2 * quantile", "1.4 * quantile"),
    ("ZosPerfCpuRegressed", "1.2 * quantile", "1.1 * quantile"),
    ("ZosPerfHealthcheckProblems", "for: 30m", "for: 40m"),
    ("ZosPerfHealthcheckProblems", "for: 30m", "for: 15m"),
    ("ZosPerfHealthcheckProblems", "> 0", "> 2"),
    ("ZosPerfProvisiontestFailing", "== 0", "== 1"),
    ("ZosPerfCollectorDown", "for: 5m", "for: 15m"),
    ("ZosPerfCollectorDown", "for: 5m", "for: 2m"),
    ("ZosPerfNodeNotAnswering", "for: 15m", "for: 25m"),
    ("ZosPerfNodeNotAnswering", "for: 15m", "for: 3m"),
    ("ZosPerfNodeResultStale", "> 45 * 60", "> 55 * 60"),
    ("ZosPerfNodeResultStale", "> 45 * 60", "> 35 * 60"),
    ("ZosPerfNodeResultStale", "> 16 * 3600", "> 17 * 3600"),
    (
        "ZosPerfNodeCpuRegressed",
        "1.2 * quantile",
        "1.6 * quantile",
    ),
    (
        "ZosPerfNodeCpuRegressed",
        "1.2 * quantile",
        "1.05 * quantile",
    ),
    ("ZosPerfNodeHealthcheckProblems", "for: 30m", "for: 40m"),
    ("ZosPerfNodeHealthcheckProblems", "for: 30m", "for: 15m"),
    ("ZosPerfNodeHealthcheckProblems", "> 0", "> 3"),
    ("ZosPerfNodeProvisiontestFailing", "== 0", "== 1"),
];

/// The rules text with `from` replaced by `to` in the rule of `alert` only
/// (from its `- alert:` line to the next rule or group).
fn moved(text: &str, alert: &str, from: &str, to: &str) -> String {
    let start = text
        .find(&format!("- alert: {alert}\n"))
        .unwrap_or_else(|| panic!("no rule {alert}"));
    let rest = &text[start + 1..];
    let end = start
        + 1
        + ["- alert:", "- name:"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
    let rule = &text[start..end];
    assert!(rule.contains(from), "{alert} no longer holds {from:?}");
    format!(
        "{}{}{}",
        &text[..start],
        rule.replace(from, to),
        &text[end..]
    )
}

/// For each file of promtool's `test rules` output (stdout: a
/// `Unit Testing:  <file>` line, then `  SUCCESS` unless it failed), the
/// file and whether it passed.
fn outcomes(stdout: &str) -> Vec<(String, bool)> {
    stdout
        .split("Unit Testing:")
        .skip(1)
        .map(|part| {
            let mut lines = part.lines();
            let file = lines.next().unwrap_or("").trim().to_string();
            (file, lines.any(|l| l.trim() == "SUCCESS"))
        })
        .collect()
}

/// The cases catch a wrong rule: with one threshold of one alert moved,
/// the case files holding that alert's cases must fail. All the moves run
/// in one promtool process (each file's rules are evaluated at every step
/// up to its last eval_time, so the files are cheap but not free: only the
/// files with a case for the alert run).
#[test]
fn the_cases_fail_against_rules_with_a_threshold_moved() {
    let text = read(&rules());
    let names = alerts(&text);
    for name in &names {
        assert!(
            MOVES.iter().any(|(a, _, _)| a == name),
            "{name}: no moved threshold checks its cases"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rule_files = Vec::new();
    let mut runs: Vec<(usize, PathBuf)> = Vec::new();
    for (i, (alert, from, to)) in MOVES.iter().enumerate() {
        let sub = dir.path().join(format!("move-{i}"));
        std::fs::create_dir(&sub).expect("mkdir");
        let broken = sub.join("rules.yml");
        let body = moved(&text, alert, from, to);
        assert_ne!(body, text, "{alert}: {from} -> {to} changed nothing");
        std::fs::write(&broken, body).expect("write rules");
        rule_files.push(broken);
        for case in cases() {
            if !test_cases(&read(&case)).iter().any(|(n, _)| n == alert) {
                continue;
            }
            let to_run = sub.join(case.file_name().expect("file name"));
            let body = read(&case).replace("../../dist/prometheus/zos-perf-rules.yml", "rules.yml");
            std::fs::write(&to_run, body).expect("write cases");
            runs.push((i, to_run));
        }
    }
    // The moved rules are valid rules: a failure below is the cases'.
    let mut args: Vec<&std::ffi::OsStr> = vec!["check".as_ref(), "rules".as_ref()];
    args.extend(rule_files.iter().map(|p| p.as_os_str()));
    let out = promtool(&args);
    assert!(out.status.success(), "moved rules:\n{}", report(&out));

    let mut args: Vec<&std::ffi::OsStr> = vec!["test".as_ref(), "rules".as_ref()];
    args.extend(runs.iter().map(|(_, p)| p.as_os_str()));
    let out = promtool(&args);
    let results = outcomes(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(results.len(), runs.len(), "{}", report(&out));
    let passed = |path: &Path| {
        results
            .iter()
            .find(|(file, _)| Path::new(file) == path)
            .unwrap_or_else(|| panic!("promtool did not test {}", path.display()))
            .1
    };
    for (i, (alert, from, to)) in MOVES.iter().enumerate() {
        let caught = runs
            .iter()
            .filter(|(m, _)| *m == i)
            .any(|(_, path)| !passed(path));
        assert!(
            caught,
            "{alert}: {from} -> {to}: promtool test rules still passes"
        );
    }
    assert!(!out.status.success(), "{}", report(&out));
}
