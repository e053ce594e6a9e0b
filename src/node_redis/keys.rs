//! Every Redis key and list name this daemon reads or writes, spelled once
//! (docs/redis.md, docs/bus.md).

/// Where each task's latest result lives.
pub(crate) const RESULT_PREFIX: &str = "perf.";

/// The hash of every task's status, one JSON field per task. Outside the
/// `perf.` key space on purpose: no reader of results mistakes it for one.
pub const STATUS: &str = "perf:status";

/// Where each task's history lives: `zos-perf:history:<name>`, a list,
/// newest first. Outside the `perf.` key space on purpose: no reader that
/// scans `perf.*` for results ever sees it.
pub(crate) const HISTORY_PREFIX: &str = "zos-perf:history:";

/// The prefix of every RMB list: requests arrive on `msgbus.<command>`,
/// replies go to the list a request names, which must start with it.
pub(crate) const MSGBUS_PREFIX: &str = "msgbus.";

/// The key of a task's result: `perf.<name>`.
pub fn result(name: &str) -> String {
    format!("{RESULT_PREFIX}{name}")
}

/// The task a result key belongs to.
pub fn task_of(key: &str) -> Option<&str> {
    key.strip_prefix(RESULT_PREFIX)
}

/// The key of a task's history list: `zos-perf:history:<name>`.
pub fn history(name: &str) -> String {
    format!("{HISTORY_PREFIX}{name}")
}

/// The list the RMB peer pushes requests of `command` onto:
/// `msgbus.<command>`.
pub(crate) fn request_list(command: &str) -> String {
    format!("{MSGBUS_PREFIX}{command}")
}

/// The list `zos-perf call` waits on for its reply: unique per call.
pub(crate) fn call_reply_list(nonce: u64) -> String {
    format!("{MSGBUS_PREFIX}zos-perf-call.{nonce:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_as_documented() {
        assert_eq!(result("iperf"), "perf.iperf");
        assert_eq!(task_of("perf.iperf"), Some("iperf"));
        assert_eq!(task_of("perf:status"), None);
        assert_eq!(STATUS, "perf:status");
        assert_eq!(history("iperf"), "zos-perf:history:iperf");
        assert_eq!(task_of(&history("iperf")), None);
        assert_eq!(request_list("zos.perf.get"), "msgbus.zos.perf.get");
        assert_eq!(call_reply_list(1), "msgbus.zos-perf-call.0000000000000001");
    }
}
