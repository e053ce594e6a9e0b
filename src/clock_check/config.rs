//! `[clock]`: the clock check's settings.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// zos's HTTP time services, in zos's order.
pub(crate) const DEFAULT_TIME_SERVICES: [&str; 3] = [
    "https://worldtimeapi.org/api/timezone/UTC",
    "http://worldclockapi.com/api/json/utc/now",
    "https://timeapi.io/api/Time/current/zone?timeZone=UTC",
];

/// `[clock]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// Run the clock check at all. Unset: only on a zos node, recognised by
    /// zinit's socket ([`ZINIT_SOCKET`]), where zos itself runs the check;
    /// elsewhere the node's time is not ours to watch unless asked.
    pub enabled: Option<bool>,
    /// Time between two checks (zos: 1 min).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A skew larger than this either way calls for a correction (zos:
    /// 10 min).
    #[serde(with = "humantime_serde")]
    pub threshold: Duration,
    /// The corrective command (program and arguments, no shell), run when
    /// the skew passes `threshold`, at most once per 10 minutes. None: the
    /// skew is only reported. zos's own: `["zinit", "kill", "ntp", "SIGTERM"]`.
    pub command: Option<Vec<String>>,
    /// tfchain's WebSocket JSON-RPC endpoints, tried in order. Unset: the
    /// network's substrate instances.
    pub substrate_urls: Option<Vec<String>>,
    /// HTTP time services answering JSON with a `datetime`,
    /// `currentDateTime` or `dateTime` field.
    pub time_services: Vec<String>,
    /// HTTPS services whose `Date` header is the last resort. Unset: the
    /// grid's GraphQL URLs in use.
    pub date_urls: Option<Vec<String>>,
    /// Bounds each question to one source.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            interval: Duration::from_secs(60),
            threshold: Duration::from_secs(10 * 60),
            command: None,
            substrate_urls: None,
            time_services: DEFAULT_TIME_SERVICES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            date_urls: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// zinit's control socket: present on a zos node.
pub(crate) const ZINIT_SOCKET: &str = "/var/run/zinit.sock";

impl ClockConfig {
    /// Whether the check runs: `enabled`, else whether this is a zos node.
    pub fn is_enabled(&self) -> bool {
        self.enabled
            .unwrap_or_else(|| std::path::Path::new(ZINIT_SOCKET).exists())
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, d) in [
            ("interval", self.interval),
            ("threshold", self.threshold),
            ("timeout", self.timeout),
        ] {
            if d.is_zero() {
                bail!("clock.{key}: must be more than zero");
            }
        }
        if let Some(cmd) = &self.command {
            if cmd.is_empty() || cmd[0].is_empty() {
                bail!("clock.command: must name a program, e.g. [\"zinit\", \"kill\", \"ntp\", \"SIGTERM\"]");
            }
        }
        let lists = [
            (
                "substrate_urls",
                self.substrate_urls.as_deref(),
                &["ws", "wss"][..],
            ),
            (
                "time_services",
                Some(&self.time_services[..]),
                &["http", "https"][..],
            ),
            (
                "date_urls",
                self.date_urls.as_deref(),
                &["http", "https"][..],
            ),
        ];
        for (key, list, schemes) in lists {
            for (i, u) in list.unwrap_or_default().iter().enumerate() {
                let url = url::Url::parse(u)
                    .map_err(|e| anyhow::anyhow!("clock.{key}[{i}]: {u:?}: {e}"))?;
                if !schemes.contains(&url.scheme()) || url.host_str().is_none() {
                    bail!(
                        "clock.{key}[{i}]: {u:?}: must be a {} URL with a host",
                        schemes.join(" or ")
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_are_zos_ones_and_bad_values_name_the_field() {
        let c = Config::from_toml("").expect("config").clock;
        assert_eq!(c.threshold, Duration::from_secs(600));
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.command, None);
        // Not on a zos node unless zinit is there; asked for, it is on.
        assert_eq!(c.enabled, None);
        let on = Config::from_toml("[clock]\nenabled = true\n")
            .expect("config")
            .clock;
        assert!(on.is_enabled());
        for (text, field) in [
            ("[clock]\nthreshold = \"0s\"\n", "clock.threshold"),
            ("[clock]\ncommand = []\n", "clock.command"),
            (
                "[clock]\nsubstrate_urls = [\"https://x/\"]\n",
                "clock.substrate_urls[0]",
            ),
            (
                "[clock]\ntime_services = [\"nope\"]\n",
                "clock.time_services[0]",
            ),
            ("[clock]\nthreshhold = \"1m\"\n", "threshhold"),
        ] {
            let err = Config::from_toml(text).expect_err(text);
            assert!(format!("{err:#}").contains(field), "{err:#}");
        }
    }
}
