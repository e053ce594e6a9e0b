//! Small helpers every other module shares, each written once: capped HTTP
//! bodies, clipping outside text, the wall clock in Unix seconds, retry backoff and keeping
//! the idle daemon's memory small.

pub mod backoff;
pub mod error;
pub mod http;
pub mod memory;
pub mod text;
pub mod unix_time;
