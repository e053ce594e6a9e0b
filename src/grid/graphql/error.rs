//! What goes wrong asking the grid's GraphQL, typed so that a caller can
//! tell a missing address from an unreachable indexer (the CLI sorts the
//! latter into its exit code 1, docs/rmb.md).
//!
//! Each error's text is the whole story (question, every URL and what it
//! did): they are shown with `{:#}` in task statuses and CLI output, and a
//! flat text reads the same there as in a log line.

use std::fmt;
use std::net::IpAddr;

use reqwest::StatusCode;

use super::NodeFilter;
use crate::util::http::BodyError;

/// An address of a node that cannot be used (`publicConfig`, interfaces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no address")]
    Missing,
    #[error("{0:?} is not an IP address")]
    NotAnAddress(String),
    #[error("{0:?} has an invalid prefix length")]
    Prefix(String),
    /// The public IPv4 field holds an IPv6 address, or the reverse.
    #[error("public {} {ip} is an {} address", other_field(.ip), ip_family(.ip))]
    WrongFamily { ip: IpAddr },
    /// Unspecified, loopback, multicast or broadcast: no traffic goes there.
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
}

/// The field an address of the other family was found in.
fn other_field(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ipv6"
    } else {
        "ipv4"
    }
}

fn ip_family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// A question to the GraphQL that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum GraphQlError {
    #[error("graphql: no URL to ask")]
    NoUrl,
    #[error("graphql: building the HTTP client: {}{}", .0, crate::util::error::causes(.0))]
    Client(reqwest::Error),
    /// No URL gave a usable answer; what each did, in the order asked.
    #[error("graphql: every URL failed: {}", Joined(.0))]
    EveryUrlFailed(Vec<UrlFailure>),
    /// Which question failed, and why.
    #[error("{question}: {cause}")]
    Asking {
        question: Question,
        cause: Box<GraphQlError>,
    },
}

impl GraphQlError {
    /// This error as the answer to `question`.
    pub(crate) fn asking(self, question: Question) -> GraphQlError {
        GraphQlError::Asking {
            question,
            cause: Box::new(self),
        }
    }
}

/// The questions [`GraphQl`](super::GraphQl) asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    UpNodes(NodeFilter),
    CountUpNodes(NodeFilter),
    PublicIps { farm: u32 },
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Question::UpNodes(filter) => write!(f, "listing up nodes ({})", filter.describe()),
            Question::CountUpNodes(filter) => {
                write!(f, "counting up nodes ({})", filter.describe())
            }
            Question::PublicIps { farm } => write!(f, "listing the public IPs of farm {farm}"),
        }
    }
}

/// What one URL did instead of answering.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {problem}")]
pub struct UrlFailure {
    pub url: String,
    pub problem: Problem,
}

/// Why one URL's answer was not used. Texts from the service are clipped
/// and escaped before they are kept here.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// No answer: refused, timed out, TLS (the causes said in full).
    #[error("{}", transport_text(.0))]
    Transport(reqwest::Error),
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("HTTP {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("undecodable answer ({reason}): {body}")]
    Undecodable {
        reason: serde_json::Error,
        body: String,
    },
    /// The answer's `errors[].message`, clipped and escaped.
    #[error("graphql errors: {0}")]
    Errors(String),
    #[error("answer without data")]
    NoData,
}

fn transport_text(e: &reqwest::Error) -> String {
    // reqwest's Display is terse ("error sending request"); the source chain
    // says what happened (refused, timed out, TLS).
    let head = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    head + &crate::util::error::causes(e)
}

/// The failures of every URL, `; `-separated.
struct Joined<'a>(&'a [UrlFailure]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}
