//! A WebSocket frame stream, decoded from the input (or raw), read through
//! the relay connection's frame guard + tungstenite and through tungstenite
//! alone, in the chunks the input gives; the invariants are in
//! `checks/frame_guard.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/frame_guard.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
