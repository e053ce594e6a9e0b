//! The grid's GraphQL (docs/tasks/iperf.md): which nodes are up, their public
//! addresses, and a farm's public IPs.
//!
//! Every question is one HTTP POST of `{"query": ...}`. The network has more
//! than one GraphQL endpoint, so each question is asked of the URLs in turn
//! until one gives a usable answer: an HTTP error, a transport error, a
//! GraphQL `errors` answer or a body that does not decode all move on to the
//! next URL. Only when every URL failed is the question an error, and that
//! error lists what each URL did.
//!
//! Longer than most files (about 530 lines, its tests in `graphql/tests.rs`): the query
//! texts, the answer types and the failover client are one contract with
//! the indexer and change together.
//!
//! The grid's GraphQL is the tfchain indexer: filters are `where` objects
//! with `<field>_eq`-style operators, and `OR` inside a `where` object means
//! "this object's conditions, or those". Numbers are written into the query
//! text (never strings from outside), so no escaping is needed.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use rand::{Rng, RngExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::util::text::clean;

mod error;
pub use error::{AddressError, GraphQlError, Problem, Question, UrlFailure};

/// A node reports its uptime every 40 minutes; one that has not updated for
/// two such periods is taken to be down (docs/tasks/iperf.md).
pub(crate) const UP_WINDOW: Duration = Duration::from_secs(2 * 40 * 60);

/// The "up" condition: `power` is null, or its state and target are both
/// `Up`. A node that never reported power management is up by definition.
pub(crate) const UP_POWER_FILTER: &str =
    "AND: {power_isNull: true, OR: {power: {state_eq: Up, target_eq: Up}}}";

/// The "public" condition: both a non-empty IPv4 and a non-empty IPv6.
pub(crate) const PUBLIC_CONFIG_FILTER: &str =
    r#"publicConfig: {ipv4_isNull: false, ipv4_not_eq: "", ipv6_isNull: false, ipv6_not_eq: ""}"#;

/// The fields asked of every node.
const NODE_FIELDS: &str = "nodeID farmID publicConfig { ipv4 ipv6 } interfaces { name ips }";

/// Which up nodes a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFilter {
    pub farm: FarmFilter,
    /// Only nodes with a public IPv4 and IPv6 (their `publicConfig`).
    pub public: bool,
}

/// Restriction on the farm of the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarmFilter {
    Any,
    Only(u32),
    Except(u32),
}

impl NodeFilter {
    /// Up nodes with public addresses in farm `farm` (iperf's free farm).
    pub fn public_in_farm(farm: u32) -> Self {
        Self {
            farm: FarmFilter::Only(farm),
            public: true,
        }
    }

    /// Up nodes with public addresses outside farm `farm`.
    pub fn public_outside_farm(farm: u32) -> Self {
        Self {
            farm: FarmFilter::Except(farm),
            public: true,
        }
    }

    /// Every up node of farm `farm`, public or not.
    pub fn farm(farm: u32) -> Self {
        Self {
            farm: FarmFilter::Only(farm),
            public: false,
        }
    }

    /// The `where` object of the nodes queries, for nodes updated at or
    /// after `updated_since` (unix seconds).
    pub(crate) fn where_clause(&self, updated_since: i64) -> String {
        let mut w = format!("{{updatedAt_gte: {updated_since}, {UP_POWER_FILTER}");
        if self.public {
            let _ = write!(w, ", {PUBLIC_CONFIG_FILTER}");
        }
        match self.farm {
            FarmFilter::Any => {}
            FarmFilter::Only(f) => {
                let _ = write!(w, ", farmID_eq: {f}");
            }
            FarmFilter::Except(f) => {
                let _ = write!(w, ", farmID_not_eq: {f}");
            }
        }
        w.push('}');
        w
    }
}

/// A node as GraphQL describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Node {
    #[serde(rename = "nodeID")]
    pub node_id: u32,
    #[serde(rename = "farmID")]
    pub farm_id: u32,
    #[serde(rename = "publicConfig", default)]
    pub public_config: Option<PublicConfig>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub interfaces: Vec<Interface>,
}

/// A node as listed page by page for `fleet`: its ids only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct NodeIds {
    #[serde(rename = "nodeID")]
    pub node_id: u32,
    #[serde(rename = "farmID")]
    pub farm_id: u32,
}

/// A node's public addresses, in CIDR form (`185.206.122.29/24`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PublicConfig {
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
}

/// One network interface of a node; `ips` holds comma-separated addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Interface {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ips: String,
}

impl Node {
    /// The first address of the `zos` interface that parses, if any.
    pub fn zos_ip(&self) -> Option<IpAddr> {
        self.interfaces
            .iter()
            .filter(|i| i.name == "zos")
            .flat_map(|i| i.ips.split(','))
            .find_map(|s| parse_address(s).ok())
    }

    /// The public IPv4 address, or why there is none usable.
    pub fn public_ipv4(&self) -> Result<Ipv4Addr, AddressError> {
        let raw = self.public_config.as_ref().and_then(|p| p.ipv4.as_deref());
        match parse_address(raw.unwrap_or_default())? {
            IpAddr::V4(ip) => Ok(ip),
            ip => Err(AddressError::WrongFamily { ip }),
        }
    }

    /// The public IPv6 address, or why there is none usable.
    pub fn public_ipv6(&self) -> Result<Ipv6Addr, AddressError> {
        let raw = self.public_config.as_ref().and_then(|p| p.ipv6.as_deref());
        match parse_address(raw.unwrap_or_default())? {
            IpAddr::V6(ip) => Ok(ip),
            ip => Err(AddressError::WrongFamily { ip }),
        }
    }
}

/// Parses an address written alone or in CIDR form (`addr/prefix`); the
/// prefix, when present, must be valid for the address family.
pub(crate) fn parse_address(text: &str) -> Result<IpAddr, AddressError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AddressError::Missing);
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| AddressError::NotAnAddress(text.to_string()))?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(AddressError::Prefix(text.to_string())),
        }
    }
    Ok(ip)
}

/// One public IP of a farm.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublicIp {
    /// CIDR form, as written on the farm (`185.206.122.29/24`).
    #[serde(deserialize_with = "null_as_default")]
    pub ip: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub gateway: String,
    /// The contract holding the IP; 0 when it is free.
    #[serde(rename = "contractId", default, deserialize_with = "number_or_string")]
    pub contract_id: u64,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The indexer writes 64-bit integers (`BigInt`) as JSON strings.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom(format!("contractId {n} is not a count"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("contractId {s:?} is not a number"))),
        Some(other) => Err(D::Error::custom(format!(
            "contractId {other} is not a number"
        ))),
    }
}

/// A GraphQL answer: `data`, or `errors`, or both.
#[derive(Deserialize)]
struct Answer<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Option<Vec<Value>>,
}

/// A client of the grid's GraphQL, with failover across its URLs.
#[derive(Debug, Clone)]
pub struct GraphQl {
    client: reqwest::Client,
    urls: Vec<String>,
}

impl GraphQl {
    /// A client of `urls` (tried in this order), each request limited to
    /// `timeout`.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Self, GraphQlError> {
        if urls.is_empty() {
            return Err(GraphQlError::NoUrl);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("zos-perf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(GraphQlError::Client)?;
        Ok(Self { client, urls })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Asks `query` of each URL in turn and returns the first usable `data`.
    pub async fn query<T: DeserializeOwned>(&self, query: &str) -> Result<T, GraphQlError> {
        let mut failures = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            match self.ask(url, query).await {
                Ok(data) => {
                    if !failures.is_empty() {
                        tracing::info!(url = %url, "graphql: answered after earlier URLs failed");
                    }
                    return Ok(data);
                }
                Err(problem) => {
                    tracing::warn!(url = %url, error = %problem, "graphql: URL failed, trying the next");
                    failures.push(UrlFailure {
                        url: url.clone(),
                        problem,
                    });
                }
            }
        }
        Err(GraphQlError::EveryUrlFailed(failures))
    }

    async fn ask<T: DeserializeOwned>(&self, url: &str, query: &str) -> Result<T, Problem> {
        let body = serde_json::json!({ "query": query });
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(Problem::Transport)?;
        let status = response.status();
        let bytes =
            crate::util::http::read_capped(response, crate::util::http::GRAPHQL_MAX_BODY).await?;
        if !status.is_success() {
            return Err(Problem::Status {
                status,
                body: snippet(&bytes),
            });
        }
        let answer: Answer<T> =
            serde_json::from_slice(&bytes).map_err(|reason| Problem::Undecodable {
                reason,
                body: snippet(&bytes),
            })?;
        if let Some(errors) = answer.errors.filter(|e| !e.is_empty()) {
            return Err(Problem::Errors(error_messages(&errors)));
        }
        answer.data.ok_or(Problem::NoData)
    }

    /// Up nodes matching `filter`; `window` = `(limit, offset)` for a page.
    pub async fn up_nodes(
        &self,
        filter: &NodeFilter,
        window: Option<(u64, u64)>,
    ) -> Result<Vec<Node>, GraphQlError> {
        let query = nodes_query(filter, up_since(), window);
        #[derive(Deserialize)]
        struct Data {
            nodes: Vec<Node>,
        }
        let data: Data = self
            .query(&query)
            .await
            .map_err(|e| e.asking(Question::UpNodes(*filter)))?;
        Ok(data.nodes)
    }

    /// One page of up nodes matching `filter`, their ids only: the first
    /// `limit` by node id after node `after` (keyset paging: a node coming
    /// or going between two pages moves no other across the page edge).
    pub async fn up_node_ids(
        &self,
        filter: &NodeFilter,
        after: Option<u32>,
        limit: u64,
    ) -> Result<Vec<NodeIds>, GraphQlError> {
        #[derive(Deserialize)]
        struct Data {
            nodes: Vec<NodeIds>,
        }
        let query = node_ids_query(filter, up_since(), after, limit);
        let data: Data = self
            .query(&query)
            .await
            .map_err(|e| e.asking(Question::UpNodes(*filter)))?;
        Ok(data.nodes)
    }

    /// How many up nodes match `filter`.
    pub async fn count_up_nodes(&self, filter: &NodeFilter) -> Result<u64, GraphQlError> {
        let query = count_query(filter, up_since());
        #[derive(Deserialize)]
        struct Connection {
            #[serde(rename = "totalCount")]
            total_count: u64,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "nodesConnection")]
            nodes_connection: Connection,
        }
        let data: Data = self
            .query(&query)
            .await
            .map_err(|e| e.asking(Question::CountUpNodes(*filter)))?;
        Ok(data.nodes_connection.total_count)
    }

    /// `n` up nodes matching `filter`, a random window of consecutive ones:
    /// the offset is drawn from `[0, total - n]`, so every window of `n`
    /// nodes can be chosen. All of them when there are no more than `n`.
    pub async fn random_up_nodes(
        &self,
        filter: &NodeFilter,
        n: u64,
    ) -> Result<Vec<Node>, GraphQlError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let total = self.count_up_nodes(filter).await?;
        if total <= n {
            return self.up_nodes(filter, None).await;
        }
        let offset = random_offset(total, n, &mut rand::rng());
        self.up_nodes(filter, Some((n, offset))).await
    }

    /// Every up node of `farm`, with its `zos` interface (public or not).
    pub async fn farm_up_nodes(&self, farm: u32) -> Result<Vec<Node>, GraphQlError> {
        self.up_nodes(&NodeFilter::farm(farm), None).await
    }

    /// The public IPs of `farm`.
    pub async fn farm_public_ips(&self, farm: u32) -> Result<Vec<PublicIp>, GraphQlError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "publicIps")]
            public_ips: Vec<PublicIp>,
        }
        let data: Data = self
            .query(&public_ips_query(farm))
            .await
            .map_err(|e| e.asking(Question::PublicIps { farm }))?;
        Ok(data.public_ips)
    }
}

impl NodeFilter {
    fn describe(&self) -> String {
        let farm = match self.farm {
            FarmFilter::Any => "any farm".to_string(),
            FarmFilter::Only(f) => format!("farm {f}"),
            FarmFilter::Except(f) => format!("farms other than {f}"),
        };
        if self.public {
            format!("public, {farm}")
        } else {
            farm
        }
    }
}

/// Unix seconds from which a node's last update makes it up.
fn up_since() -> i64 {
    crate::util::unix_time::unix_now() as i64 - UP_WINDOW.as_secs() as i64
}

/// A uniformly random offset in `[0, total - n]` (0 when `total <= n`).
pub(crate) fn random_offset(total: u64, n: u64, rng: &mut impl Rng) -> u64 {
    if total <= n {
        0
    } else {
        rng.random_range(0..=total - n)
    }
}

/// The nodes query. Ordered by id, so that a window (limit, offset) and the
/// count agree on which nodes are where.
pub(crate) fn nodes_query(
    filter: &NodeFilter,
    updated_since: i64,
    window: Option<(u64, u64)>,
) -> String {
    let mut args = format!(
        "where: {}, orderBy: id_ASC",
        filter.where_clause(updated_since)
    );
    if let Some((limit, offset)) = window {
        let _ = write!(args, ", limit: {limit}, offset: {offset}");
    }
    format!("query {{ nodes({args}) {{ {NODE_FIELDS} }} }}")
}

/// The page query of [`GraphQl::up_node_ids`]: ordered by node id, after
/// node `after`.
pub(crate) fn node_ids_query(
    filter: &NodeFilter,
    updated_since: i64,
    after: Option<u32>,
    limit: u64,
) -> String {
    let mut filter_text = filter.where_clause(updated_since);
    if let Some(a) = after {
        filter_text.pop(); // the closing brace
        let _ = write!(filter_text, ", nodeID_gt: {a}}}");
    }
    format!("query {{ nodes(where: {filter_text}, orderBy: nodeID_ASC, limit: {limit}) {{ nodeID farmID }} }}")
}

/// The count query for the same filter.
pub(crate) fn count_query(filter: &NodeFilter, updated_since: i64) -> String {
    format!(
        "query {{ nodesConnection(where: {}, orderBy: id_ASC) {{ totalCount }} }}",
        filter.where_clause(updated_since)
    )
}

/// The public IPs of a farm.
pub(crate) fn public_ips_query(farm: u32) -> String {
    format!(
        "query {{ publicIps(where: {{farm: {{farmID_eq: {farm}}}}}) {{ ip gateway contractId }} }}"
    )
}

/// The start of a body, for error messages: clipped and escaped (the
/// service's text goes into log lines and the final error).
fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    clean(text, MAX)
}

/// The `errors[].message` of an answer for an error message: the first
/// [`MAX_ERRORS`], each clipped and escaped, and how many more there were.
fn error_messages(errors: &[Value]) -> String {
    const MAX_ERRORS: usize = 3;
    const MAX_CHARS: usize = 200;
    let mut shown: Vec<String> = errors
        .iter()
        .take(MAX_ERRORS)
        .map(|e| match e.get("message").and_then(Value::as_str) {
            Some(m) => clean(m, MAX_CHARS),
            None => clean(&e.to_string(), MAX_CHARS),
        })
        .collect();
    if errors.len() > MAX_ERRORS {
        shown.push(format!("{} more", errors.len() - MAX_ERRORS));
    }
    shown.join(" | ")
}

#[cfg(test)]
mod tests;
