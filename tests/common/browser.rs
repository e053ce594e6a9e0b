//! Headless Chromium for the tests of the pages the daemon and the
//! collector serve: started as the machine allows (no sandbox as root, no
//! background connections), killed with the test, and given 120 s.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Runs Chromium headless with `args` and a profile of its own.
pub fn chromium(args: &[&str], profile: &Path) -> Output {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    super::die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let child = cmd
        .spawn()
        .expect("chromium must be installed (scripts/setup)");
    let pid = child.id();
    // A browser that hangs must not hang the suite.
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let out = child.wait_with_output().expect("chromium");
    let _ = tx.send(());
    out
}
