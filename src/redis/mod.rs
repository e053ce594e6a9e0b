//! Redis: the daemon's connection and its reconnect loop ([`link`]), the
//! private redis-server it starts when there is none ([`server`]), and the
//! one place every key is spelled ([`keys`]), and the leases every
//! process on one Redis honours ([`lease`]).

pub mod keys;
pub mod lease;
mod link;
pub mod server;

pub(crate) use link::{check_url, redacted, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
pub use link::{client, connect_once, RedisLink};
pub use server::PrivateRedis;
