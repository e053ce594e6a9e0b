//! The views: what every registered task provides for the samples of its
//! page in docs/tasks/, and that no reader outside `src/tasks/` picks a
//! task by its name.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::tasks::{self, shape, NAMES, VIEWS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```json blocks of a Markdown text.
fn json_blocks(text: &str) -> Vec<Value> {
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in text.lines() {
        match (&mut open, line.trim_start().starts_with("```")) {
            (None, true) if line.trim() == "```json" => open = Some(String::new()),
            (Some(body), true) => {
                blocks.extend(serde_json::from_str(body).ok());
                open = None;
            }
            (Some(body), false) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// The results of `name` documented in docs/tasks/<name>.md: those of its
/// sample records, and its bare sample results.
fn documented_results(name: &str) -> Vec<Value> {
    let path = root().join("docs/tasks").join(format!("{name}.md"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    json_blocks(&text)
        .into_iter()
        .filter_map(|b| {
            if b.get("name").and_then(Value::as_str) == Some(name) {
                return Some(b["result"].clone());
            }
            shape::check_result(name, None, &b).is_ok().then_some(b)
        })
        .collect()
}

/// One line per task: what its view gives for its documented results.
fn provides(view: &dyn TaskView) -> String {
    let results = documented_results(view.name());
    let mut figures: Vec<&str> = Vec::new();
    let mut families: Vec<&str> = Vec::new();
    let (mut problems, mut lines, mut human) = (0, 0, 0);
    for r in &results {
        for f in view.key_figures(r) {
            if !figures.contains(&f.label) {
                figures.push(f.label);
            }
        }
        for f in view.metrics(r) {
            if !f.samples.is_empty() && !families.contains(&f.name) {
                families.push(f.name);
            }
        }
        problems = problems.max(view.problem_count(r));
        let l = view.problem_lines(r);
        if !l.is_empty() {
            assert_eq!(l.len() as u64, view.problem_count(r), "{}", view.name());
        }
        lines = lines.max(l.len());
        let text = view.human(r).unwrap_or_default();
        assert!(!text.is_empty(), "{}: no human lines for {r}", view.name());
        human = human.max(text.lines().count());
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "{}: {} samples; figures {}; problems up to {problems}; dashboard lines up to {lines}; \
         human lines up to {human}; metrics {}",
        view.name(),
        results.len(),
        figures.join(", "),
        families.join(", ")
    );
    out
}

/// The recipe of docs/architecture.md ("A new task"), checked: every task
/// the registry builds has a view under its name, every view is a task's,
/// and what each view gives for the samples of its page is listed here. A
/// new task fails this test until its view gives figures, human lines and
/// metrics for its documented samples and its line is added below.
#[test]
fn every_registered_task_has_a_view_that_reads_its_documented_results() {
    let config = crate::Config::from_toml("").expect("the defaults");
    let registered: Vec<&str> = tasks::registry(&config.sections, &config.grid_context())
        .iter()
        .map(|t| t.name())
        .collect();
    assert_eq!(registered, NAMES);
    let mut viewed: Vec<&str> = VIEWS.iter().map(|v| v.name()).collect();
    viewed.sort_unstable();
    let mut names = NAMES.to_vec();
    names.sort_unstable();
    assert_eq!(viewed, names, "one view per task, no other");
    let listing: Vec<String> = registered
        .iter()
        .map(|name| provides(view(name).unwrap_or_else(|| panic!("{name} has no view"))))
        .collect();
    let expected = [
        "public-ip-validation: 1 samples; figures valid, invalid; problems up to 6; \
         dashboard lines up to 6; human lines up to 9; metrics zos_perf_public_ips",
        "cpu-benchmark: 1 samples; figures single, multi; problems up to 0; \
         dashboard lines up to 0; human lines up to 3; metrics zos_perf_cpu_single_seconds, \
         zos_perf_cpu_multi_seconds, zos_perf_cpu_threads, zos_perf_cpu_workloads",
        "healthcheck: 2 samples; figures failing checks; problems up to 2; \
         dashboard lines up to 2; human lines up to 5; metrics zos_perf_healthcheck_failing_items",
        "iperf: 2 samples; figures best download, best upload; problems up to 4; \
         dashboard lines up to 0; human lines up to 9; metrics \
         zos_perf_iperf_best_download_bytes_per_second, zos_perf_iperf_best_upload_bytes_per_second, \
         zos_perf_iperf_median_download_bytes_per_second, \
         zos_perf_iperf_median_upload_bytes_per_second, zos_perf_iperf_targets, \
         zos_perf_iperf_failed_targets",
        "provisiontest: 3 samples; figures pass; problems up to 1; dashboard lines up to 1; \
         human lines up to 2; metrics zos_perf_provisiontest_pass",
    ];
    assert_eq!(listing, expected, "what each task's view provides");
}

#[test]
fn each_shape_counts_its_problems_and_an_unknown_task_its_error_list() {
    assert_eq!(
        problem_count(tasks::CPU_BENCHMARK, &json!({"single": 1.0})),
        0
    );
    assert_eq!(
        problem_count(
            tasks::HEALTHCHECK,
            &json!({"cache": ["a"], "network": ["b", "c"]})
        ),
        3
    );
    assert_eq!(
        problem_count(tasks::HEALTHCHECK, &json!({"cache": [], "network": []})),
        0
    );
    assert_eq!(
        problem_count(
            tasks::IPERF,
            &json!([{"error": ""}, {"error": "unreachable"}])
        ),
        1
    );
    assert_eq!(
        problem_count(
            tasks::PUBLIC_IP_VALIDATION,
            &json!({"a": {"state": "valid"}, "b": {"state": "invalid"}, "c": {"state": "skipped"}})
        ),
        1
    );
    assert_eq!(
        problem_count(tasks::PROVISIONTEST, &json!(["boot failed", "no ssh"])),
        2
    );
    assert_eq!(problem_count(tasks::PROVISIONTEST, &json!([])), 0);
    assert_eq!(problem_count("a-newer-task", &json!(["x", 1, "y"])), 2);
    assert_eq!(problem_count("a-newer-task", &json!({"x": ["y"]})), 0);
}

#[test]
fn the_key_figures_of_each_task() {
    let cpu = key_figures(tasks::CPU_BENCHMARK, &json!({"single": 1.5, "multi": 0.4}));
    assert_eq!(cpu.iter().map(|f| f.value).collect::<Vec<_>>(), [1.5, 0.4]);
    let hc = key_figures(
        tasks::HEALTHCHECK,
        &json!({"cache": [], "network": ["x", "y"]}),
    );
    assert_eq!(hc[0].value, 1.0);
    let ips = json!({"a": {"state": "valid"}, "b": {"state": "invalid"},
                     "c": {"state": "valid"}, "d": {"state": "skipped"}});
    assert_eq!(
        crate::tasks::public_ip::view::public_ip_counts(&ips),
        [2, 1, 1]
    );
    assert_eq!(key_figures(tasks::PUBLIC_IP_VALIDATION, &ips)[0].value, 2.0);
    assert_eq!(key_figures(tasks::PROVISIONTEST, &json!([]))[0].value, 1.0);
    assert_eq!(
        key_figures(tasks::PROVISIONTEST, &json!(["boot"]))[0].value,
        0.0
    );
    assert!(key_figures(tasks::CPU_BENCHMARK, &json!("junk")).is_empty());
    assert!(key_figures("a-newer-task", &json!({"single": 1.0})).is_empty());
}

/// Where a task name (as a string or as its constant in `tasks`) picks a
/// match arm: `"iperf" =>`, `Some("iperf") =>`, `"a" | "b" =>`,
/// `IPERF =>`. Test code (a `tests.rs`, or what follows `#[cfg(test)]`)
/// is not read.
fn name_matches(dir: &Path, skip: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path == skip {
            continue;
        }
        if path.is_dir() {
            name_matches(&path, skip, found);
            continue;
        }
        let is_test = path.file_name().is_some_and(|f| f == "tests.rs");
        if path.extension().is_none_or(|e| e != "rs") || is_test {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let consts = [
            "CPU_BENCHMARK",
            "HEALTHCHECK",
            "IPERF",
            "PROVISIONTEST",
            "PUBLIC_IP_VALIDATION",
        ];
        let patterns = NAMES
            .iter()
            .map(|n| format!("\"{n}\""))
            .chain(consts.iter().map(|c| c.to_string()));
        for pattern in patterns {
            for (at, _) in code.match_indices(&pattern) {
                let rest = code[at + pattern.len()..]
                    .trim_start_matches(')')
                    .trim_start();
                let before = code[..at].chars().next_back();
                let whole = !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_');
                if whole && (rest.starts_with("=>") || rest.starts_with('|')) {
                    let line = code[..at].lines().count();
                    found.push(format!("{}:{line}: {pattern}", path.display()));
                }
            }
        }
    }
}

#[test]
fn no_reader_outside_the_tasks_picks_a_task_by_name() {
    let src = root().join("src");
    let mut found = Vec::new();
    name_matches(&src, &src.join("tasks"), &mut found);
    assert!(
        found.is_empty(),
        "task names picking match arms: {found:#?}"
    );
}

#[test]
fn the_name_match_check_finds_each_spelling() {
    let dir = std::env::temp_dir().join(format!("zos-perf-view-check-{}", std::process::id()));
    let inner = dir.join("outputs");
    std::fs::create_dir_all(&inner).expect("temp dir");
    let code = "fn a(n: &str) { match n { \"iperf\" => 1, _ => 0 }; }\n\
                fn b(n: Option<&str>) { match n { Some(\"healthcheck\") => 1, _ => 0 }; }\n\
                fn c(n: &str) { match n { \"provisiontest\" | \"x\" => 1, _ => 0 }; }\n\
                fn d(n: &str) { match n { CPU_BENCHMARK => 1, _ => 0 }; }\n\
                fn e() { let _ = (\"iperf\", NOT_CPU_BENCHMARK_X); }\n\
                #[cfg(test)]\nfn f(n: &str) { match n { \"iperf\" => 1, _ => 0 }; }\n";
    std::fs::write(inner.join("reader.rs"), code).expect("write");
    std::fs::write(inner.join("tests.rs"), code).expect("write");
    let mut found = Vec::new();
    name_matches(&dir, &dir.join("tasks"), &mut found);
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = found
        .iter()
        .filter_map(|f| f.rsplit_once("reader.rs:").map(|x| x.1))
        .collect();
    assert_eq!(
        lines,
        [
            "2: \"healthcheck\"",
            "1: \"iperf\"",
            "3: \"provisiontest\"",
            "4: CPU_BENCHMARK"
        ],
        "{found:?}"
    );
}
