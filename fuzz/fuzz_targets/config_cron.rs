//! Arbitrary text as a configuration file and as a cron expression; the
//! invariants are in `checks/config_cron.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/config_cron.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
