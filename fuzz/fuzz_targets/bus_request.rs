//! Raw bytes as a request popped from `msgbus.zos.perf.get` /
//! `msgbus.zos.perf.get_all`, through triage and reply encoding; the
//! invariants are in `checks/bus_request.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/bus_request.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
