//! The plugin configuration (JSON, snake_case, unknown fields refused).

use filter_common::{parse_config, ConfigError};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_config(bytes)
    }
}
