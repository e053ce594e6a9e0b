//! Raw bytes as a stored result value, through the checks the bus and the
//! CLI apply; the invariants are in `checks/stored_value.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/stored_value.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
