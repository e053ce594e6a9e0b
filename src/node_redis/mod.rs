//! Redis: the daemon's connection and its reconnect loop ([`link`]), which
//! Redis to use ([`server`]), the private redis-server the daemon starts
//! when there is none ([`private`]), the runtime directory and the one daemon
//! that may own it ([`instance`]), the one place every key is spelled
//! ([`keys`]), and the leases every process on one Redis honours
//! ([`lease`]).

pub mod instance;
pub mod keys;
pub mod lease;
mod link;
pub mod private;
pub mod server;

pub(crate) use link::{check_url, redacted, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
pub use link::{client, connect_once, RedisLink};
pub use private::PrivateRedis;
