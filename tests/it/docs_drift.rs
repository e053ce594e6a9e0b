//! The docs say what the code does, and these tests notice when one moves
//! without the other:
//!
//! - every JSON sample in docs/tasks/*.md decodes into the task's current
//!   result types with no field they lack, and a stored record carries the
//!   description the code stores (`zos_perf::tasks::shape`), and each page
//!   gives every description its task can store, word for word (iperf: one
//!   per mode);
//! - every setting in docs/configuration.md exists in the configuration,
//!   and every setting the configuration accepts is in that page.
//!
//! The configuration's own list of settings comes from the configuration
//! itself: every section refuses unknown fields, and the refusal names the
//! fields it knows (`unknown field `x`, expected one of `a`, `b``).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use zos_perf::config::Config;
use zos_perf::tasks::shape;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```json blocks of `text`, with the line each starts on.
fn json_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) if line.trim() == "```json" => open = Some((i + 1, String::new())),
            (None, true) => open = Some((0, String::new())),
            (Some(_), true) => {
                if let Some((at, body)) = open.take() {
                    if at > 0 {
                        blocks.push((at, body));
                    }
                }
            }
            (Some((_, body)), false) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, false) => {}
        }
    }
    blocks
}

/// Every task page's samples, checked; what is wrong, one line each.
fn task_page_drift(dir: &Path) -> Vec<String> {
    let mut wrong = Vec::new();
    for name in zos_perf::tasks::NAMES {
        let path = dir.join(format!("{name}.md"));
        let shown = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(text) = std::fs::read_to_string(&path) else {
            wrong.push(format!("{shown}: missing"));
            continue;
        };
        for (line, body) in json_blocks(&text) {
            let value: Value = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => {
                    wrong.push(format!("{shown}:{line}: not JSON: {e}"));
                    continue;
                }
            };
            let is_record = value.get("name").is_some() && value.get("result").is_some();
            let checked = if is_record {
                shape::check_record(name, &value)
            } else {
                shape::check_result(name, None, &value)
            };
            if let Err(e) = checked {
                wrong.push(format!("{shown}:{line}: {e}"));
            }
        }
        for d in shape::descriptions(name) {
            if !text.contains(&format!("`{d}`")) {
                wrong.push(format!("{shown}: the description {d:?} is not given"));
            }
        }
    }
    wrong
}

#[test]
fn every_json_sample_of_the_task_pages_has_the_current_shape_and_description() {
    let wrong = task_page_drift(&root().join("docs/tasks"));
    assert!(
        wrong.is_empty(),
        "docs/tasks drifted:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_task_page_check_catches_an_old_field_and_an_old_description() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in zos_perf::tasks::NAMES {
        let text =
            std::fs::read_to_string(root().join(format!("docs/tasks/{name}.md"))).expect("page");
        let text = match name {
            // A seed-era field in a 2026 entry.
            "iperf" => text.replacen("\"server_port\"", "\"node_id\": 1, \"server_port\"", 1),
            // The description of another task.
            "healthcheck" => text.replacen("health check task runs", "health checks run", 1),
            _ => text,
        };
        std::fs::write(dir.path().join(format!("{name}.md")), text).expect("write");
    }
    let wrong = task_page_drift(dir.path());
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("iperf.md") && w.contains("node_id")),
        "{wrong:?}"
    );
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("healthcheck.md") && w.contains("description")),
        "{wrong:?}"
    );
}

/// The settings docs/configuration.md documents, as dotted paths: the
/// `| field |` tables under each `## \`[section]\`` heading (`## Top level`
/// for the top level; `[tasks.<name>]` stands for every task).
fn documented_settings(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut section: Option<String> = None;
    let mut in_fields = false;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            section = if h.starts_with("Top level") {
                Some(String::new())
            } else {
                h.strip_prefix("`[")
                    .and_then(|r| r.split_once("]`"))
                    .map(|(s, _)| s.to_string())
            };
            in_fields = false;
            continue;
        }
        if !line.starts_with('|') {
            in_fields = false;
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or_default().trim();
        if lines.peek().is_some_and(|n| n.starts_with("|---")) {
            in_fields = first == "field";
            lines.next();
            continue;
        }
        let (Some(section), true) = (&section, in_fields) else {
            continue;
        };
        if let Some(field) = first.strip_prefix('`').and_then(|f| f.strip_suffix('`')) {
            out.insert(if section.is_empty() {
                field.to_string()
            } else {
                format!("{section}.{field}")
            });
        }
    }
    out
}

/// The fields a TOML table accepts, from its refusal of an unknown one;
/// `None` when `prefix` is not a table of fields.
fn fields_of(prefix: &str) -> Option<Vec<String>> {
    let text = if prefix.is_empty() {
        "zz_probe = 1\n".to_string()
    } else {
        format!("[{prefix}]\nzz_probe = 1\n")
    };
    let err = format!("{:#}", Config::from_toml(&text).err()?);
    if !err.contains("unknown field `zz_probe`") {
        return None;
    }
    let expected = err
        .split_once("expected")
        .map(|(_, e)| e)
        .unwrap_or_default();
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every setting the configuration accepts: leaves as dotted paths, and
/// the tables themselves (`healthcheck.instances`) in `tables`.
fn code_settings(prefix: &str, leaves: &mut BTreeSet<String>, tables: &mut BTreeSet<String>) {
    let Some(fields) = fields_of(prefix) else {
        return;
    };
    for f in fields {
        let path = if prefix.is_empty() {
            f.clone()
        } else {
            format!("{prefix}.{f}")
        };
        // `[tasks.<name>]`: one table per task, all alike.
        let probe = if path == "tasks" {
            "tasks.healthcheck".to_string()
        } else {
            path.clone()
        };
        if fields_of(&probe).is_some() {
            tables.insert(path.clone());
            let mut inner = BTreeSet::new();
            code_settings(&probe, &mut inner, tables);
            let shown = if path == "tasks" {
                "tasks.<name>"
            } else {
                &path
            };
            leaves.extend(inner.into_iter().map(|l| l.replacen(&probe, shown, 1)));
        } else {
            leaves.insert(path);
        }
    }
}

#[test]
fn every_setting_of_the_configuration_is_documented_and_every_documented_one_exists() {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).expect("page");
    let documented = documented_settings(&text);
    let (mut leaves, mut tables) = (BTreeSet::new(), BTreeSet::new());
    code_settings("", &mut leaves, &mut tables);
    // The probe reaches every level: top, sections, tables in sections,
    // and the one table per task.
    for known in [
        "redis",
        "healthcheck.backoff_max",
        "healthcheck.instances.relay",
        "bus.relay.enabled",
        "tasks.<name>.jitter",
    ] {
        assert!(
            leaves.contains(known),
            "the probe missed {known}: {leaves:?}"
        );
    }

    // A table may be documented as one row of its parent.
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|l| {
            !documented.contains(*l)
                && !tables
                    .iter()
                    .any(|t| l.starts_with(&format!("{t}.")) && documented.contains(t))
        })
        .collect();
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| !leaves.contains(*d) && !tables.contains(*d))
        .collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md drifted from the configuration.\n\
         Accepted but not documented: {undocumented:?}\n\
         Documented but not accepted: {unknown:?}"
    );
}

#[test]
fn the_settings_reader_sees_sections_rows_and_only_field_tables() {
    let text = "## Top level\n\n| field | type |\n|---|---|\n| `redis` | string |\n\n\
                ## `[tasks.<name>]`: one task\n\n| field | type |\n|---|---|\n| `cron` | string |\n\n\
                | task | `cron` |\n|---|---|\n| `iperf` | x |\n\n\
                ## `[bus.relay]`\n\n| field | type |\n|---|---|\n| `enabled` | bool |\n";
    let got: Vec<String> = documented_settings(text).into_iter().collect();
    assert_eq!(got, ["bus.relay.enabled", "redis", "tasks.<name>.cron"]);
}
