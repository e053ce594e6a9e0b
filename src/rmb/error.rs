//! What can go wrong when talking over RMB, each kind with its own exit
//! code so that scripts can tell "the node said no" from "the relay is
//! down" from "my set-up is wrong".

use crate::grid::chain::ChainError;
use crate::rmb::e2e::E2eError;

/// Exit codes of `zos-perf call --node/--twin`, `fleet` and `identity`.
/// They extend the CLI's own table (1 failure, 2 usage, 3 not found, 4 the
/// store unreachable, 5 timed out) with the ways a call over the relay fails.
pub mod exit {
    /// The node answered with an error: a failure, as for a local call.
    pub const REMOTE_ERROR: u8 = 1;
    /// Unknown node or twin, or a twin nobody can route to.
    pub const UNKNOWN_DESTINATION: u8 = 3;
    pub const TIMEOUT: u8 = 5;
    pub const RELAY: u8 = 6;
    pub const AUTH: u8 = 7;
    pub const CHAIN: u8 = 8;
    pub const BAD_REPLY: u8 = 9;
    pub const SECRET: u8 = 10;
    /// `fleet`: the table was printed, but some nodes could not be asked.
    pub const PARTIAL: u8 = 11;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RmbError {
    /// The secret is missing, unreadable or not a mnemonic/seed. The text
    /// never contains the secret.
    #[error("secret: {0}")]
    Secret(String),
    /// Our own account is not usable on the grid (no twin, no relay...).
    #[error("identity: {0}")]
    Identity(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A storage value that does not decode as the type it should be.
    #[error("chain: {what} does not decode: {reason}")]
    ChainValue { what: String, reason: String },
    #[error("twin {0} does not exist on chain")]
    UnknownTwin(u32),
    #[error("node {0} does not exist on chain")]
    UnknownNode(u32),
    #[error("twin {0} has no relay set on chain, so nobody can route to it")]
    NoRelay(u32),
    /// The relay refused the connection's JWT (HTTP 401/400 at upgrade).
    #[error("relay {url} refused our token ({status}): is twin {twin} on this chain, with this account and key type?")]
    JwtRefused { url: String, status: u16, twin: u32 },
    #[error("relay {url}: {reason}")]
    Relay { url: String, reason: String },
    /// The relay answered our request with an error envelope of its own.
    #[error("relay refused the message: {0}")]
    RelayError(String),
    #[error("no reply from twin {twin} within {}", humantime::format_duration(*.after))]
    Timeout {
        twin: u32,
        after: std::time::Duration,
    },
    /// A reply that must not be trusted or cannot be read.
    #[error("bad reply from twin {twin}: {reason}")]
    BadReply { twin: u32, reason: String },
    /// The destination answered with an error envelope.
    #[error("twin {twin} answered error {code}: {message}")]
    Remote {
        twin: u32,
        code: u32,
        message: String,
    },
    #[error("{failed} of {total} nodes could not be asked")]
    Partial { failed: usize, total: usize },
    #[error("{0}")]
    Other(String),
}

impl RmbError {
    /// A payload that could not be sealed for twin `twin`. A `pk` that is
    /// not a key is the chain's data being wrong (exit 8, as any storage
    /// value that does not decode); anything else is a plain failure.
    pub fn sealing(twin: u32, e: E2eError) -> RmbError {
        match e {
            E2eError::NotAPublicKey(_) => RmbError::ChainValue {
                what: format!("twin {twin}'s pk"),
                reason: e.to_string(),
            },
            E2eError::Seal | E2eError::TooShort(_) | E2eError::Open => {
                RmbError::Other(format!("encrypting to twin {twin}: {e}"))
            }
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RmbError::Secret(_) => exit::SECRET,
            RmbError::Identity(_) | RmbError::JwtRefused { .. } => exit::AUTH,
            RmbError::Chain(_) | RmbError::ChainValue { .. } => exit::CHAIN,
            RmbError::UnknownTwin(_) | RmbError::UnknownNode(_) | RmbError::NoRelay(_) => {
                exit::UNKNOWN_DESTINATION
            }
            RmbError::Relay { .. } | RmbError::RelayError(_) => exit::RELAY,
            RmbError::Timeout { .. } => exit::TIMEOUT,
            RmbError::BadReply { .. } => exit::BAD_REPLY,
            RmbError::Remote { .. } => exit::REMOTE_ERROR,
            RmbError::Partial { .. } => exit::PARTIAL,
            RmbError::Other(_) => 1,
        }
    }
}
