//! What the handler takes from Redis, bounded before it leaves Redis.
//!
//! Two small Lua scripts do the reading inside Redis, where a value's size
//! and type are known before it is sent:
//!
//! - [`pop`] pops up to `n` messages from each request list. A list that is
//!   not a list (a string where requests should be) is reported with its
//!   type and touched no further, while the other lists are popped as
//!   usual: one broken list never costs another command its requests, and
//!   nothing is popped that is not handed over. A message over the size
//!   limit is popped and dropped there: only its length comes back.
//! - [`fetch`] reads only the result keys a batch asks for, each checked
//!   first: absent, a string within the limit (as bytes, whatever they
//!   hold), a string too large (its length only), or another type.

use redis::aio::ConnectionLike;
use redis::Value;

/// One popped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Raw(Vec<u8>),
    /// Over the limit: dropped in Redis, `len` bytes long.
    Oversized(usize),
}

/// What one list gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popped {
    Messages(Vec<Message>),
    /// The key holds another type (`"string"`, `"hash"`, ...): untouched.
    WrongType(String),
}

pub use crate::bus::snapshot::Fetched as Stored;

const POP: &str = r#"
local max = tonumber(ARGV[#KEYS + 1])
local out = {}
for i, key in ipairs(KEYS) do
  local t = redis.call('TYPE', key).ok
  if t ~= 'list' and t ~= 'none' then
    out[i] = {'wrongtype', t}
  else
    local items = {}
    for _ = 1, tonumber(ARGV[i]) do
      local v = redis.call('RPOP', key)
      if not v then break end
      if string.len(v) > max then items[#items + 1] = string.len(v) else items[#items + 1] = v end
    end
    out[i] = {'ok', items}
  end
end
return out
"#;

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

/// Pops up to `counts[i]` messages from `lists[i]`, each at most
/// `max_bytes` long, in one round trip.
pub async fn pop(
    conn: &mut impl ConnectionLike,
    lists: &[&str],
    counts: &[usize],
    max_bytes: usize,
) -> redis::RedisResult<Vec<Popped>> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(POP).arg(lists.len()).arg(lists);
    cmd.arg(counts).arg(max_bytes);
    let reply: Vec<Value> = cmd.query_async(conn).await?;
    reply.into_iter().map(parse_popped).collect()
}

/// Reads `keys`, each at most `max_bytes` long, in one round trip.
pub async fn fetch(
    conn: &mut impl ConnectionLike,
    keys: &[String],
    max_bytes: usize,
) -> redis::RedisResult<Vec<Stored>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(FETCH).arg(keys.len()).arg(keys).arg(max_bytes);
    let reply: Vec<Value> = cmd.query_async(conn).await?;
    reply.into_iter().map(parse_stored).collect()
}

fn bad(what: &str) -> redis::RedisError {
    (
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected script reply",
        what.to_string(),
    )
        .into()
}

/// `[tag, rest...]` of one entry of a script's reply.
fn tagged(v: Value) -> redis::RedisResult<(String, Vec<Value>)> {
    let Value::Array(mut items) = v else {
        return Err(bad("not an array"));
    };
    if items.is_empty() {
        return Err(bad("empty entry"));
    }
    let tag: String = redis::from_redis_value(items.remove(0))?;
    Ok((tag, items))
}

fn parse_popped(v: Value) -> redis::RedisResult<Popped> {
    let (tag, mut rest) = tagged(v)?;
    match (tag.as_str(), rest.pop()) {
        ("wrongtype", Some(t)) => Ok(Popped::WrongType(redis::from_redis_value(t)?)),
        ("ok", Some(Value::Array(items))) => items
            .into_iter()
            .map(|item| match item {
                Value::Int(n) => Ok(Message::Oversized(usize::try_from(n).unwrap_or(0))),
                other => Ok(Message::Raw(redis::from_redis_value(other)?)),
            })
            .collect::<redis::RedisResult<_>>()
            .map(Popped::Messages),
        // An empty Lua table may come back as an empty array or as nil.
        ("ok", Some(Value::Nil) | None) => Ok(Popped::Messages(Vec::new())),
        _ => Err(bad(&tag)),
    }
}

fn parse_stored(v: Value) -> redis::RedisResult<Stored> {
    let (tag, mut rest) = tagged(v)?;
    match (tag.as_str(), rest.pop()) {
        ("absent", None) => Ok(Stored::Absent),
        ("wrongtype", Some(t)) => Ok(Stored::WrongType(redis::from_redis_value(t)?)),
        ("toolarge", Some(n)) => Ok(Stored::TooLarge(redis::from_redis_value(n)?)),
        ("ok", Some(bytes)) => Ok(Stored::Bytes(redis::from_redis_value(bytes)?)),
        _ => Err(bad(&tag)),
    }
}
