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
//!   limit is popped and dropped there: only its length comes back, and its
//!   envelope without the `dat` value when that is short ([`envelope`]),
//!   so that its sender can be told (error 3).
//!
//! The reading of result keys, which every transport shares, is
//! [`crate::store::fetch`].

use redis::aio::ConnectionLike;
use redis::Value;

/// One popped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Raw(Vec<u8>),
    /// Over the limit: dropped in Redis, `len` bytes long; its envelope
    /// without `dat`, if at most [`MAX_ENVELOPE`] long.
    Oversized {
        len: usize,
        envelope: Option<Vec<u8>>,
    },
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

/// The longest envelope of an oversized message taken back from Redis.
pub const MAX_ENVELOPE: usize = 4096;

const POP: &str = r#"
local max = tonumber(ARGV[#KEYS + 1])
local envmax = tonumber(ARGV[#KEYS + 2])
local function envelope(v)
  local s, e = string.find(v, '"dat"%s*:%s*"')
  if not s then return false end
  local close = string.find(v, '"', e + 1, true)
  if not close or e + string.len(v) - close + 1 > envmax then return false end
  return string.sub(v, 1, e) .. string.sub(v, close)
end
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
      if string.len(v) > max then items[#items + 1] = {string.len(v), envelope(v)} else items[#items + 1] = v end
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
    cmd.arg(counts).arg(max_bytes).arg(MAX_ENVELOPE);
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
                Value::Array(mut pair) if pair.len() == 2 => {
                    let envelope = match pair.pop() {
                        Some(Value::BulkString(b)) => Some(b),
                        _ => None,
                    };
                    let len = match pair.pop() {
                        Some(Value::Int(n)) => usize::try_from(n).unwrap_or(0),
                        _ => 0,
                    };
                    Ok(Message::Oversized { len, envelope })
                }
                other => Ok(Message::Raw(redis::from_redis_value(other)?)),
            })
            .collect::<redis::RedisResult<_>>()
            .map(Popped::Messages),
        // An empty Lua table may come back as an empty array or as nil.
        ("ok", Some(Value::Nil) | None) => Ok(Popped::Messages(Vec::new())),
        _ => Err(bad(&tag)),
    }
}

/// What the script's `envelope` gives, for a message already read whole
/// (the blocking pop hands one over): the message without its `dat` value,
/// if what is left is at most `max` bytes long. The first `"dat"` key
/// followed by `:` and a string is the one cut, as in the script.
pub fn envelope(v: &[u8], max: usize) -> Option<Vec<u8>> {
    // Lua's %s: space, \t, \n, \v, \f, \r.
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut from = 0;
    let open = loop {
        let at = from + v.get(from..)?.windows(5).position(|w| w == b"\"dat\"")?;
        let mut i = at + 5;
        while v.get(i).copied().is_some_and(space) {
            i += 1;
        }
        if v.get(i) == Some(&b':') {
            i += 1;
            while v.get(i).copied().is_some_and(space) {
                i += 1;
            }
            if v.get(i) == Some(&b'"') {
                break i;
            }
        }
        from = at + 1;
    };
    let close = open + 1 + v.get(open + 1..)?.iter().position(|b| *b == b'"')?;
    let kept = open + 1 + (v.len() - close);
    (kept <= max).then(|| [&v[..=open], &v[close..]].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_the_message_without_its_dat() {
        let m = br#"{"ver":1,"dat":"QUJD","ret":"msgbus.x"}"#;
        assert_eq!(
            envelope(m, 100).as_deref(),
            Some(&br#"{"ver":1,"dat":"","ret":"msgbus.x"}"#[..])
        );
        let spaced = br#"{"dat" : "QUJD", "ret": "r"}"#;
        assert_eq!(
            envelope(spaced, 100).as_deref(),
            Some(&br#"{"dat" : "", "ret": "r"}"#[..])
        );
        assert_eq!(envelope(br#"{"ret":"r"}"#, 100), None);
        assert_eq!(envelope(br#"{"dat":"QUJD"#, 100), None);
        assert_eq!(envelope(m, 10), None);
    }
}
