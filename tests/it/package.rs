//! The Debian package as an operator gets it: built by scripts/package from
//! the binary this suite built, its file list, installed with dpkg into a
//! throwaway root and run from there, its systemd unit checked by
//! `systemd-analyze verify`; and the man page, completions and alert rules
//! it ships.
//!
//! Needs cargo-deb, dpkg, systemd-analyze (Debian's systemd package; systemd
//! need not run) and unshare: scripts/setup installs what is missing.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

/// The subcommands `zos-perf --help` lists, but `help` itself.
fn subcommands() -> Vec<String> {
    let help = stdout(Command::new(BIN).arg("--help"));
    let list = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("--help has a Commands: section");
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 8, "too few subcommands in --help: {names:?}");
    names
}

/// A root dpkg can install into: an empty dpkg database, `/dev/null`, and a
/// `/bin/sh` (the host's, with the libraries it links) for the maintainer
/// scripts, which dpkg runs chrooted there.
fn throwaway_root(root: &Path) {
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).expect("dpkg admin dir");
    }
    std::fs::write(admin.join("status"), "").expect("dpkg status");
    std::fs::write(admin.join("available"), "").expect("dpkg available");
    std::fs::create_dir_all(root.join("dev")).expect("dev");
    run(Command::new("mknod")
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"]));
    let shell = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    let libs = stdout(Command::new("ldd").arg(&shell));
    let mut files = vec![shell.clone()];
    files.extend(
        libs.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(PathBuf::from),
    );
    for file in files {
        let inside = root.join(file.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(inside.parent().expect("parent")).expect("lib dir");
        std::fs::copy(&file, &inside).expect("copy into the root");
    }
    std::fs::create_dir_all(root.join("bin")).expect("bin");
    if !root.join("bin/sh").exists() {
        std::fs::copy(&shell, root.join("bin/sh")).expect("bin/sh");
    }
}

#[test]
fn the_package_installs_into_a_throwaway_root_and_runs_from_there() {
    let tmp = tempfile::Builder::new()
        .prefix("zos-perf-package-")
        .tempdir()
        .expect("tempdir");
    let deb = common::daemon::package_into(&tmp.path().join("out"));

    // The file list: binary, unit, configuration, man page, completions.
    let list = stdout(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for wanted in [
        "./usr/bin/zos-perf",
        "./usr/lib/systemd/system/zos-perf.service",
        "./etc/zos-perf/config.toml",
        "./usr/share/man/man1/zos-perf.1.gz",
        "./usr/share/bash-completion/completions/zos-perf",
        "./usr/share/zsh/vendor-completions/_zos-perf",
        "./usr/share/fish/vendor_completions.d/zos-perf.fish",
        "./usr/lib/tmpfiles.d/zos-perf.conf",
        "./usr/share/zos-perf/prometheus/zos-perf-rules.yml",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(wanted)),
            "{wanted} not in the package:\n{list}"
        );
    }
    // The configuration is a conffile: an upgrade keeps the operator's edits.
    let conffiles = stdout(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), "/etc/zos-perf/config.toml");
    let depends = stdout(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg("Depends"),
    );
    assert!(depends.contains("iperf3"), "Depends: {depends}");
    // /bin/kill, which the unit's ExecReload= runs.
    assert!(depends.contains("procps"), "Depends: {depends}");

    // Installed with dpkg into a root of its own. The maintainer scripts run
    // chrooted there: they make the flags directory, enable and start the
    // unit only where systemd runs, so here they must merely succeed.
    let root = tmp.path().join("root");
    throwaway_root(&root);
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--install"])
        .arg(&deb)
        .stdin(Stdio::null()));
    let status = stdout(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["--show", "--showformat=${db:Status-Status}", "zos-perf"]),
    );
    assert_eq!(status, "installed");
    // The alert rules, as in the tree (tests/it/alert_rules.rs tests them).
    let rules = "dist/prometheus/zos-perf-rules.yml";
    assert_eq!(
        std::fs::read(root.join("usr/share/zos-perf/prometheus/zos-perf-rules.yml"))
            .expect("installed alert rules"),
        std::fs::read(Path::new(REPO).join(rules)).expect(rules),
        "the installed alert rules differ from {rules}"
    );

    // The installed binary, with the installed configuration, against a
    // real Redis: the commented example parses and shows every task.
    let installed = root.join("usr/bin/zos-perf");
    let version = stdout(Command::new(&installed).arg("--version"));
    assert!(version.starts_with("zos-perf "), "{version}");
    let redis = RedisServer::start();
    let tasks = stdout(
        Command::new(&installed)
            .arg("--config")
            .arg(root.join("etc/zos-perf/config.toml"))
            .args(["--redis", &redis.url(), "tasks"])
            .env_remove("ZOS_PERF_CONFIG")
            .env_remove("ZOS_PERF_REDIS"),
    );
    for task in [
        "cpu-benchmark",
        "healthcheck",
        "iperf",
        "public-ip-validation",
    ] {
        assert!(
            tasks.lines().any(|l| l.starts_with(task)),
            "{task} not shown:\n{tasks}"
        );
    }

    // systemd-analyze verify on the installed unit, with the installed
    // /usr/bin laid over the host's in a private mount namespace so that
    // ExecStart= names a real executable, and the installed man page found
    // by Documentation=man:zos-perf(1).
    let unit = root.join("usr/lib/systemd/system/zos-perf.service");
    assert!(unit.exists(), "installed unit");
    let script = format!(
        "set -e
         mount -t overlay overlay -o lowerdir={root}/usr/bin:/usr/bin /usr/bin
         if command -v man >/dev/null; then
           mount -t overlay overlay -o lowerdir={root}/usr/share/man/man1:/usr/share/man/man1 /usr/share/man/man1
           man=yes
         else
           man=no
         fi
         systemd-analyze verify --man=$man {unit}",
        root = root.display(),
        unit = unit.display()
    );
    let verify = run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !said.contains("zos-perf.service"),
        "systemd-analyze had remarks on the unit:\n{said}"
    );

    // dpkg removes what it installed, and --purge the configuration too.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--purge", "zos-perf"])
        .stdin(Stdio::null()));
    assert!(!installed.exists(), "binary left after purge");
    assert!(
        !root.join("etc/zos-perf/config.toml").exists(),
        "configuration left after purge"
    );
}

#[test]
fn the_man_page_lists_every_subcommand_and_the_files() {
    let page = stdout(Command::new(BIN).arg("man"));
    assert!(
        page.starts_with(".ie") || page.contains(".TH zos-perf 1"),
        "{page}"
    );
    for sub in subcommands() {
        assert!(
            page.contains(&format!(".SS \"zos-perf {sub}\"")),
            "man page has no section for {sub}"
        );
    }
    for path in ["/etc/zos\\-perf/config.toml", "/tmp/flags/", ".SH SIGNALS"] {
        assert!(page.contains(path), "man page lacks {path}");
    }
    // And it renders: groff (man-db's) reads it without a warning.
    if Path::new("/usr/bin/groff").exists() {
        let out = common::pipe_into(
            Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]),
            page.as_bytes(),
            "groff",
        );
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "groff: {warnings}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    let subs = subcommands();
    // fish names a long flag `-l config`; bash and zsh write `--config`.
    for (shell, flag) in [
        ("bash", "--config"),
        ("zsh", "--config"),
        ("fish", "-l config"),
    ] {
        let script = stdout(Command::new(BIN).args(["completions", shell]));
        for sub in &subs {
            assert!(
                script.contains(sub.as_str()),
                "{shell} completions lack {sub}"
            );
        }
        assert!(script.contains(flag), "{shell} completions lack {flag}");
    }
    // The bash script is valid bash, and completes `zos-perf ru` to run and run-task.
    let probe = format!(
        "source <({BIN} completions bash)
         COMP_WORDS=(zos-perf ru); COMP_CWORD=1; COMP_LINE='zos-perf ru'; COMP_POINT=11
         _zos__perf zos-perf ru zos-perf
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let words = stdout(Command::new("bash").args(["-c", &probe]));
    let mut words: Vec<&str> = words.lines().collect();
    words.sort();
    assert_eq!(words, ["run", "run-task"]);
}

#[test]
fn completions_for_an_unknown_shell_are_refused_naming_the_choices() {
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run zos-perf");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}
