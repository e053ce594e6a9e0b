use super::*;

#[test]
fn effective_caps_are_read_from_the_status_text() {
    let status = "Name:\tzos-perf\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
    let caps = effective_caps(status).expect("CapEff");
    assert_ne!(caps & (1 << CAP_NET_ADMIN), 0);
    let status = "CapEff:\t0000000000000000\n";
    assert_eq!(effective_caps(status), Some(0));
    assert_eq!(effective_caps("Name:\tx\n"), None);
}

/// `ip` for the test's own set-up and inspection (the code under test
/// uses netlink).
fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct DelNs(String);
impl Drop for DelNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn a_panic_on_the_namespace_thread_still_leaves_the_link_clean() {
    // Unique even against a namespace left by a killed earlier run
    // that had the same pid.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let ns = format!("pgp{}_{nanos}", std::process::id());
    ip(&["netns", "add", &ns]);
    let _del = DelNs(ns.clone());
    ip(&[
        "-n", &ns, "link", "add", "t0", "type", "veth", "peer", "name", "t1",
    ]);
    ip(&["-n", &ns, "link", "set", "t1", "up"]);
    ip(&["-n", &ns, "addr", "add", "203.0.113.10/24", "dev", "t0"]);
    ip(&["-n", &ns, "link", "set", "t0", "up"]);
    ip(&["-n", &ns, "route", "add", "default", "via", "203.0.113.1"]);

    let path = Path::new(NETNS_DIR).join(&ns);
    let name = ns.clone();
    let outcome = std::thread::spawn(move || {
        let file = File::open(&path).expect("open namespace");
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let index = rt
            .block_on(async {
                let h = link::connect()?;
                link::find(&h, "t0").await
            })
            .expect("find t0")
            .expect("t0 exists");
        let _guard = LinkGuard {
            index,
            link: "t0".into(),
            namespace: name,
            armed: true,
        };
        panic!("something went wrong half-way");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");

    let addrs = ip(&["-n", &ns, "-o", "addr", "show", "dev", "t0"]);
    assert!(addrs.trim().is_empty(), "addresses left: {addrs}");
    let routes = ip(&["-n", &ns, "route", "show", "table", "all", "dev", "t0"]);
    assert!(routes.trim().is_empty(), "routes left: {routes}");
    let link = ip(&["-n", &ns, "-o", "link", "show", "dev", "t0"]);
    assert!(!link.contains(",UP"), "link left up: {link}");
}
