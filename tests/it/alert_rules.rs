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
    ["node", "collect"]
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

/// The cases catch a wrong rule: the same files against rules whose
/// thresholds moved must fail.
#[test]
fn the_cases_fail_against_rules_with_a_threshold_moved() {
    let text = read(&rules());
    for (from, to) in [
        ("1.2 * quantile_over_time", "1.4 * quantile_over_time"),
        ("> 45 * 60", "> 55 * 60"),
        ("< 0.5", "< 1.5"),
        ("for: 30m", "for: 40m"),
    ] {
        assert!(text.contains(from), "the rules no longer hold {from:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let broken = dir.path().join("rules.yml");
        std::fs::write(&broken, text.replace(from, to)).expect("write rules");
        let mut files = Vec::new();
        for case in cases() {
            let moved = dir.path().join(case.file_name().expect("file name"));
            let body = read(&case).replace("../../dist/prometheus/zos-perf-rules.yml", "rules.yml");
            std::fs::write(&moved, body).expect("write cases");
            files.push(moved);
        }
        let mut args: Vec<&std::ffi::OsStr> = vec!["test".as_ref(), "rules".as_ref()];
        args.extend(files.iter().map(|p| p.as_os_str()));
        let out = promtool(&args);
        assert!(
            !out.status.success() && report(&out).contains("FAILED"),
            "{from} -> {to}: promtool test rules still passes:\n{}",
            report(&out)
        );
    }
}
