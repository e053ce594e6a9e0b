//! `[grid]`: how the grid's GraphQL is reached.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `[grid]`: how the grid's GraphQL is reached.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridConfig {
    /// Replaces the network's GraphQL URLs (tried in order).
    pub graphql_urls: Option<Vec<String>>,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub graphql_timeout: Duration,
}

impl Default for GridConfig {
    fn default() -> Self {
        Self {
            graphql_urls: None,
            graphql_timeout: Duration::from_secs(30),
        }
    }
}

impl GridConfig {
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(urls) = &self.graphql_urls {
            if urls.is_empty() {
                bail!("grid.graphql_urls: must name at least one URL");
            }
        }
        if self.graphql_timeout.is_zero() {
            bail!("grid.graphql_timeout: must be more than zero");
        }
        Ok(())
    }
}
