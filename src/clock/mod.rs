//! The clock check (placeholder while the loop is written).

pub mod config;
