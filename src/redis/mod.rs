//! Redis: the daemon's connection and its reconnect loop ([`link`]), the
//! private redis-server it starts when there is none ([`server`]), and the
//! one place every key is spelled ([`keys`]), and the leases every
//! process on one Redis honours ([`lease`]).

pub mod keys;
pub mod lease;
mod link;
pub mod server;

pub use link::{
    check_url, client, connect_once, redacted, RedisLink, CONNECT_TIMEOUT, RESPONSE_TIMEOUT,
};
pub use server::PrivateRedis;
