//! What the handler takes from Redis, bounded before it leaves Redis.
//!
//! A small Lua script does the popping inside Redis, where a value's size
//! and type are known before it is sent:
//!
//! - [`pop`] pops up to `n` messages from each request list. A list that is
//!   not a list (a string where requests should be) is reported with its
//!   type and touched no further, while the other lists are popped as
//!   usual: one broken list never costs another command its requests, and
//!   nothing is popped that is not handed over. A message over the size
//!   limit is popped and dropped there: only its length comes back.
//!
//! The reading of result keys, which every transport shares, is
//! [`crate::store::fetch`].

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

pub use crate::store::fetch::Fetched as Stored;
use crate::store::fetch::{bad, tagged};

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
