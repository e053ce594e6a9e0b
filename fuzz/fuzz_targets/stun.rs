//! Any bytes as a datagram on the STUN client's socket, through the
//! message reader and the answer check; the invariants are in
//! `checks/stun.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/stun.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
