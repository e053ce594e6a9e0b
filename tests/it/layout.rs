//! docs/architecture.md names the tree as it stands, and this test notices
//! when a module is renamed, moved or added without the page:
//!
//! - every module of its module table exists (`name` is a module of
//!   `src/lib.rs`, `a/b/` a folder under `src/`, `src/cli/` one under the
//!   root, `<task>` every folder of `src/tasks/`), and every file a row
//!   names in backticks (`link.rs`) is in that module's folder;
//! - every module `src/lib.rs` declares, and the binary's `src/cli/`, has a
//!   row;
//! - anywhere on the page, a path into the crate (`node_redis::private`,
//!   `util::unix_time::unix_now`) leads through modules that exist to an
//!   item defined or re-exported where it says, and a file path
//!   (`node_redis/instance.rs`, `src/cli/run.rs`) exists.
//!
//! Words the crate does not own (`tracing::Span`, `Task::new`) are left
//! alone: a path is checked when its first segment is a module of ours.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The modules `src/lib.rs` declares (`pub mod x;`, `mod x;`).
fn declared(root: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.trim().to_string())
        })
        .collect()
}

/// The words of `text` between backticks.
fn ticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The rows of the table under `## The modules`: the first column's name
/// (backticks removed) and the rest of the row.
fn table_rows(text: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            inside = line.trim() == "## The modules";
            continue;
        }
        let Some(row) = line.strip_prefix('|').filter(|_| inside) else {
            continue;
        };
        let Some((first, rest)) = row.split_once('|') else {
            continue;
        };
        let first = first.trim();
        if first == "module" || first.starts_with("---") {
            continue;
        }
        let name = ticked(first).first().copied().unwrap_or(first);
        rows.push((name.to_string(), rest.to_string()));
    }
    rows
}

/// The folders a row's name stands for (none for a one-file module), or
/// why it stands for nothing.
fn folders_of(
    name: &str,
    root: &Path,
    declared: &BTreeSet<String>,
) -> Result<Vec<PathBuf>, String> {
    let src = root.join("src");
    if !name.contains('/') {
        if !declared.contains(name) {
            return Err(format!("`{name}` is not a module of src/lib.rs"));
        }
        let folder = src.join(name);
        if folder.join("mod.rs").is_file() {
            return Ok(vec![folder]);
        }
        if src.join(format!("{name}.rs")).is_file() {
            // A file module may have a folder of children (src/config/).
            return Ok(if folder.is_dir() {
                vec![folder]
            } else {
                vec![]
            });
        }
        return Err(format!(
            "`{name}`: neither src/{name}.rs nor src/{name}/mod.rs"
        ));
    }
    let path = name.trim_end_matches('/');
    let base = if path.starts_with("src/") {
        root.to_path_buf()
    } else {
        src
    };
    let mut folders = vec![base];
    for part in path.split('/') {
        let mut next = Vec::new();
        for f in &folders {
            if part.starts_with('<') {
                let entries = std::fs::read_dir(f).map_err(|e| format!("`{name}`: {e}"))?;
                // `tasks/view/` is the trait every task implements, not a task.
                next.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir() && !p.ends_with("tasks/view")),
                );
            } else {
                next.push(f.join(part));
            }
        }
        folders = next;
    }
    if folders.is_empty() || folders.iter().any(|f| !f.is_dir()) {
        return Err(format!("`{name}` is not a folder"));
    }
    Ok(folders)
}

/// Whether `file` defines or re-exports `item`.
fn defines(file: &str, item: &str) -> bool {
    let word = |l: &str, w: &str| {
        l.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|t| t == w)
    };
    file.lines().any(|l| {
        let l = l.trim_start();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub(super) "))
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        let l = l.strip_prefix("async ").unwrap_or(l);
        [
            "fn ", "struct ", "enum ", "trait ", "const ", "static ", "type ", "mod ",
        ]
        .iter()
        .any(|k| {
            l.strip_prefix(k).is_some_and(|r| {
                word(
                    r.split(['(', '<', ':', ' ', ';', '{']).next().unwrap_or(""),
                    item,
                )
            })
        }) || (l.starts_with("use ") && word(l, item))
    })
}

/// What is wrong with a crate path `a::b::c` whose first segment is ours.
fn path_drift(path: &str, root: &Path) -> Option<String> {
    let mut dir = root.join("src");
    let mut file = None;
    for seg in path.split("::") {
        let seg = seg.split(['(', '<', ' ']).next().unwrap_or("");
        if seg.is_empty() || seg.contains('*') {
            return None;
        }
        let as_file = dir.join(format!("{seg}.rs"));
        let as_dir = dir.join(seg).join("mod.rs");
        if as_file.is_file() || as_dir.is_file() {
            file = Some(if as_dir.is_file() { as_dir } else { as_file });
            dir = dir.join(seg);
            continue;
        }
        let Some(f) = &file else {
            return Some(format!("`{path}`: no module {seg}"));
        };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        return (!defines(&text, seg)).then(|| {
            let shown = f.strip_prefix(root).unwrap_or(f).display();
            format!("`{path}`: {shown} neither defines nor re-exports {seg}")
        });
    }
    None
}

/// Everything docs/architecture.md (`text`) says about the tree under
/// `root` that is not so, one line each.
fn layout_drift(text: &str, root: &Path) -> Vec<String> {
    let declared = declared(root);
    let mut wrong = Vec::new();
    let rows = table_rows(text);
    for (name, rest) in &rows {
        match folders_of(name, root, &declared) {
            Err(why) => wrong.push(format!("module table: {why}")),
            Ok(folders) => {
                for file in ticked(rest)
                    .into_iter()
                    .filter(|w| w.ends_with(".rs") && !w.contains('/') && !w.contains(' '))
                {
                    if folders.is_empty() {
                        wrong.push(format!(
                            "module table: `{name}` is one file, yet names {file}"
                        ));
                    }
                    for f in &folders {
                        if !f.join(file).is_file() {
                            let shown = f.strip_prefix(root).unwrap_or(f).display();
                            wrong.push(format!(
                                "module table: `{name}` names {file}, not in {shown}"
                            ));
                        }
                    }
                }
            }
        }
    }
    let named: BTreeSet<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    for module in &declared {
        if !named.contains(module.as_str()) {
            wrong.push(format!(
                "module table: src/lib.rs declares `{module}`, which has no row"
            ));
        }
    }
    if root.join("src/cli").is_dir() && !named.contains("src/cli/") {
        wrong.push("module table: the binary's `src/cli/` has no row".into());
    }
    for word in ticked(text) {
        if word.contains(' ') || word.contains('<') {
            continue;
        }
        let first = word.split("::").next().unwrap_or("");
        if word.contains("::") && declared.contains(first) {
            wrong.extend(path_drift(word, root));
        } else if word.contains('/')
            && (word.ends_with(".rs") || word.ends_with('/'))
            && !root.join(word).exists()
            && !root.join("src").join(word).exists()
        {
            wrong.push(format!("`{word}`: no such file or folder"));
        }
    }
    wrong
}

#[test]
fn the_module_table_and_the_paths_of_the_architecture_page_match_the_tree() {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).expect("page");
    let wrong = layout_drift(&text, &root());
    assert!(
        wrong.is_empty(),
        "docs/architecture.md and the tree differ:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layout_check_catches_an_old_name_a_missing_row_and_a_moved_file() {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).expect("page");
    let text = text
        // A module under the name it had before.
        .replacen("| `node_redis` |", "| `redis` |", 1)
        // A file that moved away.
        .replacen("(`relay_link.rs`", "(`relay.rs`", 1)
        // A path to a module that is gone.
        .replacen("`util::unix_time::unix_now`", "`util::clock::unix_now`", 1)
        // An item that is not where it is said to be.
        .replacen(
            "`node_redis::RedisLink`",
            "`node_redis::private::RedisLink`",
            1,
        );
    // A row dropped.
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("| `clock_check` |"))
        .map(|l| format!("{l}\n"))
        .collect();
    let wrong = layout_drift(&text, &root());
    for want in [
        "`redis` is not a module of src/lib.rs",
        "declares `node_redis`, which has no row",
        "declares `clock_check`, which has no row",
        "names relay.rs, not in src/rmb",
        "`util::clock::unix_now`: src/util/mod.rs neither defines nor re-exports clock",
        "`node_redis::private::RedisLink`: src/node_redis/private.rs neither defines",
    ] {
        assert!(
            wrong.iter().any(|w| w.contains(want)),
            "{want:?} not reported in {wrong:#?}"
        );
    }
}
