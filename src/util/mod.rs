//! Small helpers every other module shares, each written once: capped HTTP
//! bodies, clipping outside text, the wall clock and retry backoff.

pub mod backoff;
pub mod clock;
pub mod error;
pub mod http;
pub mod text;
