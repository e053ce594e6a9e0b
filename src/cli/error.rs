//! The exit codes of `zos-perf` and the error that carries one.
//!
//! Scripts branch on the code, so the codes are stable (README, `--help`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (a run failed, a reply was an error, anything else) |
//! | 2 | usage: bad arguments, bad configuration, bad `--log` filter |
//! | 3 | not found: unknown task, no stored result |
//! | 4 | the store (Redis) is unreachable |
//! | 5 | timed out: `call` got no reply, `run-task` ran past its timeout |
//! | 6–11 | over the relay (see the table after `--help`) |
//! | 12 | `run`: another daemon already runs with this runtime directory |
//!
//! A command marks its own errors ([`CliError::new`]); errors coming up
//! from the library are classified by their type, never by their text: a
//! Redis connection error is 4, a run that timed out is 5.

use std::fmt;
use std::process::ExitCode;

use zos_perf::bus::error::ErrorCode;
use zos_perf::bus::local::client::NoReply;
use zos_perf::bus::message::ReplyProblem;
use zos_perf::monitor::RunFailed;
use zos_perf::store::Outcome;

/// The exit codes, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Failure = 1,
    Usage = 2,
    NotFound = 3,
    StoreUnreachable = 4,
    TimedOut = 5,
    /// The relay could not be reached or refused us (`call --node/--twin`, `fleet`).
    Relay = 6,
    /// The relay refused our token, or our identity is not usable.
    Auth = 7,
    /// The chain could not be asked or answered nonsense.
    Chain = 8,
    /// The node's reply did not verify or decode.
    BadReply = 9,
    /// The secret (mnemonic or seed) is missing or unreadable.
    Secret = 10,
    /// `fleet`: some nodes did not answer.
    FleetPartial = 11,
    /// `run`: another daemon already runs with this runtime directory.
    AlreadyRunning = 12,
}

impl Exit {
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

impl Exit {
    /// The exit code an RMB error names (docs/rmb.md), as one of ours.
    pub fn from_rmb(code: u8) -> Exit {
        match code {
            3 => Exit::NotFound,
            5 => Exit::TimedOut,
            6 => Exit::Relay,
            7 => Exit::Auth,
            8 => Exit::Chain,
            9 => Exit::BadReply,
            10 => Exit::Secret,
            11 => Exit::FleetPartial,
            _ => Exit::Failure,
        }
    }
}

/// The table shown after `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure (a run failed, the bus replied with an error, anything else)
  2  usage: bad arguments, configuration or --log filter
  3  not found: unknown task, no stored result
  4  the store (Redis) is unreachable
  5  timed out: call got no reply, run-task ran past its timeout
  6-11  over the relay (call --node/--twin, identity, fleet): 6 relay,
        7 auth, 8 chain, 9 bad reply, 10 secret, 11 fleet partly answered
  12 run: another daemon already runs with this runtime directory";

/// An error of a command and the code the process exits with.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            exit,
            error: error.into(),
        }
    }

    pub fn msg(exit: Exit, message: impl fmt::Display) -> CliError {
        CliError::new(exit, anyhow::anyhow!("{message}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for CliError {}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> CliError {
        CliError {
            exit: classify(&error),
            error,
        }
    }
}

/// The code of an error from the library, by the types in its chain.
pub fn classify(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.exit;
        }
        if let Some(e) = cause.downcast_ref::<RunFailed>() {
            return match e.outcome {
                Outcome::Timeout => Exit::TimedOut,
                _ => Exit::Failure,
            };
        }
        if let Some(e) = cause.downcast_ref::<zos_perf::rmb::RmbError>() {
            return Exit::from_rmb(e.exit_code());
        }
        if let Some(exit) = library_exit(cause) {
            return exit;
        }
        if cause
            .downcast_ref::<zos_perf::node_redis::instance::AlreadyRunning>()
            .is_some()
        {
            return Exit::AlreadyRunning;
        }
        if cause.downcast_ref::<NoReply>().is_some() {
            return Exit::TimedOut;
        }
        if let Some(ReplyProblem::Error(e)) = cause.downcast_ref::<ReplyProblem>() {
            return match ErrorCode::from_code(e.code) {
                Some(ErrorCode::UnknownTask | ErrorCode::ResultNotFound) => Exit::NotFound,
                _ => Exit::Failure,
            };
        }
        if let Some(e) = cause.downcast_ref::<redis::RedisError>() {
            if e.is_connection_refusal()
                || e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
            {
                return Exit::StoreUnreachable;
            }
        }
    }
    Exit::Failure
}

/// The code of a library error that is not an [`RmbError`]: the tables of
/// README.md and docs/rmb.md by type, so that a changed text never moves
/// an error to another code.
///
/// The errors of sealing and opening payloads (`rmb::e2e::E2eError`), of
/// frames that are no envelope (`rmb::envelope::Undecodable`) and of the
/// TLS set-up (`grid::chain::TlsSetup`) reach a command only inside an
/// [`RmbError`] (a pk that is no key: 8, a reply that does not open or
/// parse: 9, a relay that cannot be reached: 6) or a [`ChainError`] (8):
/// those two sort them.
///
/// [`RmbError`]: zos_perf::rmb::RmbError
/// [`ChainError`]: zos_perf::grid::chain::ChainError
fn library_exit(cause: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    use zos_perf::grid::chain::ChainError;
    use zos_perf::grid::graphql::GraphQlError;
    use zos_perf::rmb::envelope::Unverified;
    use zos_perf::rmb::identity::SignatureError;
    use zos_perf::rmb::RmbConfigError;
    if cause.is::<RmbConfigError>() {
        return Some(Exit::Usage);
    }
    if cause.is::<ChainError>() {
        return Some(Exit::Chain);
    }
    if cause.is::<Unverified>() || cause.is::<SignatureError>() {
        return Some(Exit::BadReply);
    }
    if cause.is::<GraphQlError>() {
        // docs/rmb.md: GraphQL failures are plain failures (1).
        return Some(Exit::Failure);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use zos_perf::grid::chain::ChainError;
    use zos_perf::grid::graphql::GraphQlError;
    use zos_perf::rmb::e2e::{self, E2eError};
    use zos_perf::rmb::envelope::Unverified;
    use zos_perf::rmb::identity::{KeyType, SignatureError};
    use zos_perf::rmb::{Identity, RmbConfig, RmbError};

    /// An error of the library, as a command returns it (with context on top).
    fn from_command(e: impl std::error::Error + Send + Sync + 'static) -> Exit {
        CliError::from(anyhow::Error::new(e).context("the command")).exit
    }

    #[test]
    fn identity_and_secret_errors_map_to_their_documented_codes() {
        // A secret that is neither a mnemonic nor a seed: 10.
        let e =
            Identity::from_secret("not a mnemonic", KeyType::Sr25519).expect_err("not a secret");
        assert!(matches!(e, RmbError::Secret(_)), "{e:?}");
        assert_eq!(from_command(e), Exit::Secret);
        assert_eq!(
            from_command(RmbError::Identity("no twin".into())),
            Exit::Auth
        );
        assert_eq!(Exit::Secret as u8, 10);
        assert_eq!(Exit::Auth as u8, 7);
    }

    #[test]
    fn a_signature_that_does_not_verify_is_a_bad_reply() {
        let me = Identity::from_secret(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            KeyType::Ed25519,
        )
        .expect("mnemonic");
        let sig = me.sign(b"one");
        let e = zos_perf::rmb::identity::verify(&me.account_id(), b"another", &sig)
            .expect_err("signed other bytes");
        assert_eq!(e, SignatureError::Mismatch(KeyType::Ed25519));
        assert_eq!(from_command(e), Exit::BadReply);
        assert_eq!(from_command(Unverified::Unsigned), Exit::BadReply);
        assert_eq!(Exit::BadReply as u8, 9);
    }

    #[test]
    fn a_twin_whose_pk_is_no_key_is_a_chain_error_and_a_payload_that_does_not_open_a_bad_reply() {
        let me = Identity::from_secret(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            KeyType::Ed25519,
        )
        .expect("mnemonic");
        let e = e2e::encrypt(&me, &[2; 10], b"{}").expect_err("10 bytes are no key");
        assert_eq!(e, E2eError::NotAPublicKey(10));
        let sealing = RmbError::sealing(42, e);
        assert!(
            sealing.to_string().contains("twin 42's pk"),
            "names the twin: {sealing}"
        );
        assert_eq!(from_command(sealing), Exit::Chain);
        assert_eq!(
            from_command(RmbError::sealing(42, E2eError::Seal)),
            Exit::Failure
        );
        let e = e2e::decrypt(&me, &me.secp256k1_public(), &[0; 40]).expect_err("no tag matches");
        assert_eq!(e, E2eError::Open);
        let opening = RmbError::BadReply {
            twin: 42,
            reason: e.to_string(),
        };
        assert_eq!(from_command(opening), Exit::BadReply);
    }

    #[test]
    fn graphql_chain_and_configuration_errors_map_by_type() {
        let graphql = zos_perf::grid::GraphQl::new(Vec::new(), std::time::Duration::from_secs(1))
            .expect_err("no URL");
        assert!(matches!(graphql, GraphQlError::NoUrl), "{graphql:?}");
        assert_eq!(from_command(graphql), Exit::Failure);
        assert_eq!(from_command(ChainError::NoUrl), Exit::Chain);
        let config: RmbConfig = toml::from_str("relays = []").expect("parses");
        let e = config.validate().expect_err("an empty list");
        assert_eq!(from_command(e), Exit::Usage);
        // The same texts, carried as strings, classify as plain failures:
        // the type decides, not the words.
        let text = anyhow::anyhow!("{}", ChainError::NoUrl);
        assert_eq!(CliError::from(text).exit, Exit::Failure);
    }
}
