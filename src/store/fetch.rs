//! Reading stored results, bounded before they leave Redis (what the bus
//! answers from and the CLI reads).
//!
//! Every transport reads the store the same way: a small Lua script looks
//! at each result key a request asks for inside Redis, where a value's
//! size and type are known before it is sent, and returns it absent, a
//! string within the limit (as bytes, whatever they hold), a string too
//! large (its length only), or another type. A huge value written by
//! anyone on the node thus costs one `STRLEN`, never a transfer.

use redis::aio::ConnectionLike;
use redis::Value;

/// One stored value as read from Redis, before any check: its length and
/// type are looked at inside Redis, so a huge or wrong-typed value never
/// travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Absent,
    Bytes(Vec<u8>),
    TooLarge(usize),
    WrongType(String),
}

const FETCH: &str = r#"
local max = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local t = redis.call('TYPE', key).ok
  if t == 'none' then
    out[i] = {'absent'}
  elseif t ~= 'string' then
    out[i] = {'wrongtype', t}
  else
    local n = redis.call('STRLEN', key)
    if n > max then out[i] = {'toolarge', n} else out[i] = {'ok', redis.call('GET', key)} end
  end
end
return out
"#;

/// Reads `keys`, each at most `max_bytes` long, in one round trip.
pub async fn fetch(
    conn: &mut impl ConnectionLike,
    keys: &[String],
    max_bytes: usize,
) -> redis::RedisResult<Vec<Fetched>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(FETCH).arg(keys.len()).arg(keys).arg(max_bytes);
    let reply: Vec<Value> = cmd.query_async(conn).await?;
    reply.into_iter().map(parse_stored).collect()
}

pub(crate) fn bad(what: &str) -> redis::RedisError {
    (
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected script reply",
        what.to_string(),
    )
        .into()
}

/// `[tag, rest...]` of one entry of a script's reply.
pub(crate) fn tagged(v: Value) -> redis::RedisResult<(String, Vec<Value>)> {
    let Value::Array(mut items) = v else {
        return Err(bad("not an array"));
    };
    if items.is_empty() {
        return Err(bad("empty entry"));
    }
    let tag: String = redis::from_redis_value(items.remove(0))?;
    Ok((tag, items))
}

fn parse_stored(v: Value) -> redis::RedisResult<Fetched> {
    let (tag, mut rest) = tagged(v)?;
    match (tag.as_str(), rest.pop()) {
        ("absent", None) => Ok(Fetched::Absent),
        ("wrongtype", Some(t)) => Ok(Fetched::WrongType(redis::from_redis_value(t)?)),
        ("toolarge", Some(n)) => Ok(Fetched::TooLarge(redis::from_redis_value(n)?)),
        ("ok", Some(bytes)) => Ok(Fetched::Bytes(redis::from_redis_value(bytes)?)),
        _ => Err(bad(&tag)),
    }
}
