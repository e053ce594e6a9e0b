//! RMB over the relay: talking to any twin of the grid from anywhere.
//!
//! ```text
//! secret ─> identity (ed25519 | sr25519 account key, secp256k1 e2e key)
//!                │
//! chain ─> twin  │ (account, relay, pk of each twin; node -> twin)
//!                ▼
//!   envelope (protobuf, signed over an MD5 challenge, payload sealed with e2e)
//!                │
//!   relay (WebSocket, JWT at the upgrade) <──> the destination twin
//! ```
//!
//! [`client`] calls (the `call` and `fleet` commands); the same pieces serve
//! requests coming in over a relay. See docs/rmb.md for what must be on
//! chain for a twin to be reachable.

mod account_keys;
mod client;
mod config;
pub mod e2e;
pub mod envelope;
pub mod error;
pub mod frames;
pub mod identity;
pub mod jwt;
pub mod keycache;
pub mod relay_link;
pub mod secret;
pub mod twin;

pub use client::RmbClient;
pub use config::{RmbConfig, RmbConfigError};
pub use error::RmbError;
pub use identity::{Identity, KeyType};
