use super::*;

/// A loop short enough for tests, with the end the reference crate gives.
fn short() -> Workload {
    let reference = ::crc::Crc::<u64>::new(&::crc::CRC_64_XZ);
    let steps = 3 * workload::CHECK_EVERY;
    let expected = (0..steps).fold(workload::SEED, |s, _| reference.checksum(&s.to_le_bytes()));
    Workload { steps, expected }
}

fn task(workload: Workload, command: Option<&[&str]>) -> CpuBenchmark {
    let config = CpuBenchmarkConfig {
        workloads_command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
    };
    CpuBenchmark {
        workload,
        ..CpuBenchmark::new(
            &config,
            &GridContext::new(crate::grid::Network::Main, &Default::default()),
        )
    }
}

fn getconf_online_cpus() -> usize {
    let out = std::process::Command::new("getconf")
        .arg("_NPROCESSORS_ONLN")
        .output()
        .expect("getconf runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("getconf prints a number")
}

#[test]
fn name_description_and_defaults_are_the_specs() {
    let grid = GridContext::new(crate::grid::Network::Main, &Default::default());
    let t = CpuBenchmark::new(&CpuBenchmarkConfig::default(), &grid);
    assert_eq!(t.name(), "cpu-benchmark");
    assert_eq!(
        t.description(),
        "Measures the performance of the node CPU by reporting the timespent of computing a task in seconds."
    );
    let d = t.defaults();
    assert_eq!(d.cron, "0 0 */6 * * *");
    assert_eq!(d.jitter, Duration::ZERO);
    assert_eq!(d.timeout, Duration::from_secs(15 * 60));
    assert!(d.exclusive);
    assert_eq!(t.workload, SPEC_WORKLOAD);
    assert_eq!(SPEC_WORKLOAD.steps, 67_108_864);
}

#[tokio::test]
async fn the_result_has_exactly_the_four_fields_with_their_types() {
    let value = task(short(), None)
        .run(&RunContext::default())
        .await
        .expect("benchmark runs");
    let obj = value.as_object().expect("an object");
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["multi", "single", "threads", "workloads"]);
    for field in ["single", "multi"] {
        let secs = obj[field].as_f64().filter(|_| obj[field].is_f64());
        let secs = secs.unwrap_or_else(|| panic!("{field} is not a float: {value}"));
        assert!(secs > 0.0, "{field} measured nothing: {value}");
        assert!(
            ((secs * 1000.0).round() - secs * 1000.0).abs() < 1e-6,
            "{value}"
        );
    }
    // That `multi` is the sum of the threads' times is checked without a
    // clock in `multi_is_the_sum_of_the_threads_times` (comparing it with
    // `single` here failed on a loaded machine: a short run is all noise).
    assert_eq!(
        obj["threads"].as_u64(),
        Some(getconf_online_cpus() as u64),
        "{value}"
    );
    assert_eq!(obj["workloads"].as_u64(), Some(0), "{value}");
}

#[tokio::test]
async fn workloads_come_from_the_configured_command() {
    let value = task(short(), Some(&["echo", " 17 "]))
        .run(&RunContext::default())
        .await
        .expect("benchmark runs");
    assert_eq!(value["workloads"].as_u64(), Some(17), "{value}");
}

#[tokio::test]
async fn a_broken_workloads_source_reports_0_and_keeps_the_score() {
    for command in [
        &["sh", "-c", "echo 5; exit 3"][..],
        &["/nonexistent/zos-workloads"][..],
        &["echo", "many"][..],
    ] {
        let value = task(short(), Some(command))
            .run(&RunContext::default())
            .await
            .expect("benchmark runs");
        assert_eq!(value["workloads"].as_u64(), Some(0), "{command:?}: {value}");
        assert!(value["single"].is_f64(), "{command:?}: {value}");
    }
}

#[tokio::test]
async fn workloads_errors_say_what_went_wrong() {
    let cmd = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        count_workloads(&cmd(&["echo", "42"])).await.expect("42"),
        42
    );
    let err = count_workloads(&cmd(&["sh", "-c", "echo oops >&2; exit 3"]))
        .await
        .expect_err("exit 3");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("\"sh\"") && msg.contains('3') && msg.contains("oops"),
        "{msg}"
    );
    let err = count_workloads(&cmd(&["/nonexistent/zos-workloads"]))
        .await
        .expect_err("missing program");
    assert!(
        format!("{err:#}").contains("/nonexistent/zos-workloads"),
        "{err:#}"
    );
    let err = count_workloads(&cmd(&["echo", "-1"]))
        .await
        .expect_err("negative");
    assert!(format!("{err:#}").contains("\"-1\""), "{err:#}");
}

#[tokio::test]
async fn a_loop_that_ends_on_another_value_fails_the_run_saying_so() {
    let wrong = Workload {
        steps: short().steps,
        expected: workload::FINAL,
    };
    let err = task(wrong, None)
        .run(&RunContext::default())
        .await
        .expect_err("a wrong end is no result");
    let msg = format!("{err:#}");
    assert!(msg.contains("0x409242b8972cb0b1"), "{msg}");
    assert!(
        msg.contains(&format!("{:#018x}", short().expected)),
        "{msg}"
    );
}

// That a cancelled run stops within 100 ms is checked in
// tests/it/cpu_benchmark.rs, against the library as the suite builds it:
// this harness is compiled at opt-level 0 (scripts/suite-rustc), where a
// block of steps between two looks at the stop flag is about 30 times
// longer than in the daemon.

#[test]
fn cpu_lists_are_counted_as_the_kernel_writes_them() {
    assert_eq!(count_cpu_list("0-1\n"), Some(2));
    assert_eq!(count_cpu_list("0"), Some(1));
    assert_eq!(count_cpu_list("0,2-3"), Some(3));
    assert_eq!(count_cpu_list("0-3,5,7-8\n"), Some(7));
    assert_eq!(count_cpu_list("3-1"), None);
    assert_eq!(count_cpu_list("zero"), None);
    assert_eq!(online_cpus(), getconf_online_cpus());
}

#[test]
fn seconds_are_rounded_to_3_decimals() {
    assert_eq!(seconds(Duration::from_micros(1_151_499)), 1.151);
    assert_eq!(seconds(Duration::from_micros(1_151_500)), 1.152);
    assert_eq!(seconds(Duration::ZERO), 0.0);
}

#[test]
fn multi_is_the_sum_of_the_threads_times() {
    let w = short();
    let ms = Duration::from_millis;
    let runs = vec![(Ok(w.expected), ms(1000)), (Ok(w.expected), ms(3000))];
    // The sum (4 s), not the maximum (3 s) or the mean (2 s).
    assert_eq!(
        super::sum_of_runs(runs, w, 2).expect("both ended right"),
        ms(4000)
    );
    let wrong = vec![(Ok(w.expected), ms(1000)), (Ok(w.expected ^ 1), ms(1000))];
    let e = super::sum_of_runs(wrong, w, 2).expect_err("a wrong end gives no score");
    assert!(e.to_string().contains("thread 1 of 2"), "{e}");
    let stopped = vec![(Err(workload::Stopped), ms(1))];
    let e = super::sum_of_runs(stopped, w, 1).expect_err("a stopped chain gives no score");
    assert!(e.to_string().contains("cancelled"), "{e}");
}
