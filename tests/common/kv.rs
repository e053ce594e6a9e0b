//! The few Redis writes and reads tests make by hand on a
//! [`RedisServer`](super::RedisServer), each failing the test with the
//! command's name.

use redis::ToRedisArgs;

impl super::RedisServer {
    /// `SET key value`.
    pub fn set(&self, key: &str, value: impl ToRedisArgs) {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut self.conn())
            .expect("SET");
    }

    /// `HSET key field value`.
    pub fn hset(&self, key: &str, field: &str, value: impl ToRedisArgs) {
        redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(value)
            .query::<()>(&mut self.conn())
            .expect("HSET");
    }

    /// `LLEN key`.
    pub fn llen(&self, key: &str) -> u64 {
        redis::cmd("LLEN")
            .arg(key)
            .query(&mut self.conn())
            .expect("LLEN")
    }
}
