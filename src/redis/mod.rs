//! Redis: the daemon's connection and its reconnect loop ([`link`]), the
//! private redis-server it starts when there is none ([`server`]), and the
//! one place every key is spelled ([`keys`]).

pub mod keys;
mod link;
pub mod server;

pub use link::{check_url, client, connect_once, RedisLink, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
pub use server::PrivateRedis;
