//! The repository documents itself: every relative link in its Markdown
//! files must lead to a file or directory inside the repository, and an
//! anchor (`file.md#section`) must name a heading of that file. A link that
//! leaves the repository (`../elsewhere/...`) is an error even when the target
//! happens to exist on this machine: it is dead for anyone who clones.
//!
//! External links (`https:`, `mailto:`, ...) are not followed: the suite
//! must not depend on the internet. Links inside code (fenced blocks and
//! inline code spans) are text, not links, and are not checked.
//!
//! The files checked are those git tracks or would track (`git ls-files
//! --cached --others --exclude-standard`), so a new page is checked before
//! its first commit; without git the tree is walked instead.
//!
//! The checker is std-only and understands the Markdown this repository
//! writes: inline links and images `[text](dest "title")`, reference
//! definitions `[label]: dest`, `href="..."`/`src="..."` in HTML, ATX and
//! setext headings, and GitHub's way of turning a heading into an anchor.
//!
//! The file is longer than the usual ~400 lines because it holds one
//! concept whole: the checker, and the tests that show it catches each kind
//! of broken link (missing file, a way out of the repository, a wrong
//! anchor) and leaves code and external links alone.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// One link that does not resolve, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broken {
    file: String,
    line: usize,
    link: String,
    why: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: ({}) {}",
            self.file, self.line, self.link, self.why
        )
    }
}

/// Directories never searched when walking the tree without git.
const SKIPPED_DIRS: [&str; 5] = [".git", "target", "node_modules", "corpus", "artifacts"];

/// The Markdown files of the repository at `root`, relative to it, sorted.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    let mut files: Vec<PathBuf> = match listed {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| is_markdown(p) && root.join(p).is_file())
            .collect(),
        _ => {
            let mut found = Vec::new();
            walk(root, root, &mut found);
            found
        }
    };
    files.sort();
    files
}

fn is_markdown(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"))
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            let name = entry.file_name();
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                walk(root, &path, found);
            }
        } else if kind.is_file() && is_markdown(&path) {
            if let Ok(rel) = path.strip_prefix(root) {
                found.push(rel.to_path_buf());
            }
        }
    }
}

/// A link destination found in a file, with its line number (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    line: usize,
    dest: String,
}

/// The lines of `text` that are not inside fenced code blocks, with their
/// numbers, and with inline code spans blanked out.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let opener = trimmed
            .chars()
            .next()
            .filter(|c| *c == '`' || *c == '~')
            .map(|c| (c, trimmed.chars().take_while(|&x| x == c).count()));
        match (fence, opener) {
            (None, Some((c, n))) if n >= 3 && indent <= 3 => {
                fence = Some((c, n));
                continue;
            }
            (Some((c, n)), Some((c2, n2)))
                if c == c2 && n2 >= n && trimmed.trim_end().chars().all(|x| x == c) =>
            {
                fence = None;
                continue;
            }
            (Some(_), _) => continue,
            _ => {}
        }
        out.push((i + 1, strip_code_spans(line)));
    }
    out
}

/// `line` with the content of inline code spans (`` `...` ``) replaced by
/// spaces, so that a link written as code is not taken for one.
fn strip_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // Find the closing run of the same length.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                out.extend(std::iter::repeat_n(' ', j + run - i));
                i = j + run;
            }
            None => {
                // An unmatched run is literal text.
                out.extend(std::iter::repeat_n('`', run));
                i += run;
            }
        }
    }
    out
}

/// Every link destination of a Markdown text.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for (line, prose) in prose_lines(text) {
        // Reference definitions: `[label]: dest`.
        let t = prose.trim_start();
        if prose.len() - t.len() <= 3 && t.starts_with('[') && !t.starts_with("[^") {
            if let Some(end) = t.find(']').filter(|&e| t[e + 1..].starts_with(':')) {
                if let Some(dest) = t[end + 2..].split_whitespace().next() {
                    found.push(Link {
                        line,
                        dest: dest.trim_matches(|c| c == '<' || c == '>').to_string(),
                    });
                }
                continue;
            }
        }
        // Inline links and images: `](dest)` or `](dest "title")`.
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let dest = inline_destination(after);
            if let Some(dest) = &dest {
                found.push(Link {
                    line,
                    dest: dest.clone(),
                });
            }
            rest = after;
        }
        // HTML attributes.
        for attr in ["href=\"", "src=\""] {
            let mut rest = prose.as_str();
            while let Some(at) = rest.find(attr) {
                let after = &rest[at + attr.len()..];
                if let Some(end) = after.find('"') {
                    found.push(Link {
                        line,
                        dest: after[..end].to_string(),
                    });
                }
                rest = after;
            }
        }
    }
    found
}

/// The destination at the start of `s` (just after `](`), up to the `)`
/// that balances, without an optional title.
fn inline_destination(s: &str) -> Option<String> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('<') {
        return inner.find('>').map(|end| inner[..end].to_string());
    }
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(s[..i].trim().to_string()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(s[..i].to_string()),
            _ => {}
        }
    }
    None
}

/// Whether a destination names a scheme (`https:`, `mailto:`, ...): an
/// external link, not checked.
fn is_external(dest: &str) -> bool {
    let Some(colon) = dest.find(':') else {
        return false;
    };
    let scheme = &dest[..colon];
    !scheme.is_empty()
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
}

/// `%XX` escapes decoded (a link to `my%20file.md` names `my file.md`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The anchors GitHub gives the headings of a Markdown text, plus explicit
/// `id="..."` / `name="..."` anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut previous: Option<String> = None;
    for (_, line) in prose_lines(text) {
        let t = line.trim();
        let heading = if line.len() - line.trim_start().len() <= 3 && t.starts_with('#') {
            let level = t.chars().take_while(|&c| c == '#').count();
            let rest = &t[level..];
            (level <= 6 && (rest.is_empty() || rest.starts_with(' ')))
                .then(|| rest.trim().trim_end_matches('#').trim().to_string())
        } else if !t.is_empty() && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-')) {
            // Setext: the paragraph line above, underlined.
            previous
                .take()
                .filter(|p| !p.starts_with(['-', '*', '|', '>']))
        } else {
            None
        };
        previous = (!t.is_empty()).then(|| t.to_string());
        if let Some(h) = heading {
            let slug = slug(&h);
            let n = seen.entry(slug.clone()).or_insert(0);
            out.insert(if *n == 0 {
                slug.clone()
            } else {
                format!("{slug}-{n}")
            });
            *n += 1;
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(attr) {
                let after = &rest[at + attr.len()..];
                if let Some(end) = after.find('"') {
                    out.insert(after[..end].to_string());
                }
                rest = after;
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: its text (link targets, code ticks and
/// emphasis stars dropped), lower-cased, with every character that is not a
/// letter, digit, `_`, `-` or space removed, and spaces made `-`.
fn slug(heading: &str) -> String {
    // `[text](dest)` -> `text`.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = after;
                break;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '_' || c == '-' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Checks every link of every Markdown file under `root`.
fn check(root: &Path) -> Vec<Broken> {
    let root = match root.canonicalize() {
        Ok(r) => r,
        Err(e) => {
            return vec![Broken {
                file: root.display().to_string(),
                line: 0,
                link: String::new(),
                why: format!("cannot resolve the repository root: {e}"),
            }]
        }
    };
    let mut anchor_cache: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    for rel in markdown_files(&root) {
        let file = root.join(&rel);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                broken.push(Broken {
                    file: rel.display().to_string(),
                    line: 0,
                    link: String::new(),
                    why: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        for link in links(&text) {
            let problem = check_link(&root, &rel, &link.dest, &mut anchor_cache);
            if let Some(why) = problem {
                broken.push(Broken {
                    file: rel.display().to_string(),
                    line: link.line,
                    link: link.dest,
                    why,
                });
            }
        }
    }
    broken
}

/// `text` with the code ticks of its headings removed: a heading's anchor
/// is made from the text of its code spans too, which `prose_lines` would
/// otherwise blank out.
fn text_for_anchors(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with('#') {
                l.replace('`', "")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why `dest`, found in `from` (relative to `root`), does not resolve.
fn check_link(
    root: &Path,
    from: &Path,
    dest: &str,
    anchor_cache: &mut HashMap<PathBuf, BTreeSet<String>>,
) -> Option<String> {
    if dest.is_empty() {
        return Some("empty link".into());
    }
    if is_external(dest) {
        return None;
    }
    let (path, anchor) = match dest.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (dest, None),
    };
    let path = path.split('?').next().unwrap_or_default();
    let target = if path.is_empty() {
        root.join(from)
    } else {
        if path.starts_with('/') {
            return Some("absolute path: write it relative to this file".into());
        }
        let dir = from.parent().unwrap_or(Path::new(""));
        let mut resolved = PathBuf::new();
        for part in dir.join(percent_decode(path)).components() {
            match part {
                Component::Normal(p) => resolved.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !resolved.pop() {
                        return Some("leaves the repository".into());
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Some("absolute path: write it relative to this file".into())
                }
            }
        }
        root.join(resolved)
    };
    let real = match target.canonicalize() {
        Ok(r) => r,
        Err(_) => return Some("no such file or directory in the repository".into()),
    };
    if !real.starts_with(root) {
        return Some("leads outside the repository (through a symbolic link)".into());
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if !is_markdown(&real) {
        return None;
    }
    let known = anchor_cache.entry(real.clone()).or_insert_with(|| {
        std::fs::read_to_string(&real)
            .map(|t| anchors(&text_for_anchors(&t)))
            .unwrap_or_default()
    });
    let wanted = percent_decode(anchor).to_lowercase();
    (!known.contains(&wanted)).then(|| format!("no heading with anchor #{wanted} in the target"))
}

#[test]
fn every_relative_link_in_the_markdown_files_resolves_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files(root);
    // The check must have something to look at: the README at least.
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "README.md not among the Markdown files found: {files:?}"
    );
    let broken = check(root);
    let list: Vec<String> = broken.iter().map(|b| b.to_string()).collect();
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        list.join("\n")
    );
}

/// A throwaway repository (no git: the tree is walked) with these files.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("zos-perf-docs-links-")
        .tempdir()
        .expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn problems(files: &[(&str, &str)]) -> Vec<(String, usize, String)> {
    let dir = repo(files);
    check(dir.path())
        .into_iter()
        .map(|b| (b.file, b.line, b.link))
        .collect()
}

#[test]
fn a_link_to_a_missing_file_is_reported_with_file_and_line() {
    let found = problems(&[
        (
            "README.md",
            "# R\n\nSee [docs](docs/a.md) and [gone](docs/gone.md).\n",
        ),
        ("docs/a.md", "# A\n"),
    ]);
    assert_eq!(found, [("README.md".into(), 3, "docs/gone.md".into())]);
}

#[test]
fn a_link_that_leaves_the_repository_is_reported_even_if_the_target_exists() {
    let outer = repo(&[("elsewhere/notes.md", "# Notes\n")]);
    std::fs::create_dir(outer.path().join("repo")).expect("mkdir");
    std::fs::write(
        outer.path().join("repo/README.md"),
        "The contract is [there](../elsewhere/notes.md).\n",
    )
    .expect("write");
    let broken = check(&outer.path().join("repo"));
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].link, "../elsewhere/notes.md");
    assert!(
        broken[0].why.contains("leaves the repository"),
        "{broken:?}"
    );
}

#[test]
fn anchors_must_name_a_heading_of_the_target() {
    let found = problems(&[
        (
            "README.md",
            "[ok](docs/c.md#tasksname-schedule-and-limits)\n\
             [ok too](docs/c.md#bus)\n\
             [here](#local-part)\n\
             [bad](docs/c.md#nowhere)\n",
        ),
        (
            "docs/c.md",
            "# C\n\n## `[tasks.<name>]`: schedule and limits\n\n## `[bus]`\n",
        ),
        (
            "other.md",
            "# Other\n\n## Local part\n\n[x](#local-part) [y](#missing)\n",
        ),
    ]);
    assert_eq!(
        found,
        [
            ("README.md".into(), 3, "#local-part".into()),
            ("README.md".into(), 4, "docs/c.md#nowhere".into()),
            ("other.md".into(), 5, "#missing".into()),
        ]
    );
}

#[test]
fn code_external_links_directories_and_reference_definitions() {
    let found = problems(&[
        (
            "README.md",
            "Run `[not](a/link.md)` or:\n\n```sh\necho [x](nope.md)\n```\n\n\
             [web](https://example.org/x.md) [mail](mailto:a@example.org)\n\
             [dir](docs/) [img](docs/p.png \"a title\")\n\
             [ref]: docs/missing.md\n",
        ),
        ("docs/p.png", "png"),
    ]);
    assert_eq!(found, [("README.md".into(), 9, "docs/missing.md".into())]);
}
