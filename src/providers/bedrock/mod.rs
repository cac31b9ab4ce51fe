//! AWS Bedrock Runtime: Converse and ConverseStream.

use crate::error::{GatewayError, Result};
use crate::pipeline::ProviderConfig;
use crate::secret::Secret;

use super::Adapter;

/// The adapter of a `bedrock` provider. `api_key` is `apiKey` / `AWS_BEARER_TOKEN_BEDROCK`
/// when set; every secret the adapter holds goes in `secrets` (redacted from errors).
pub fn build(
  config: &ProviderConfig,
  _api_key: Option<Secret>,
  _secrets: &mut Vec<Secret>,
) -> Result<Box<dyn Adapter>> {
  Err(GatewayError::config(format!(
    "provider '{}' has kind 'bedrock', which is not built yet",
    config.name
  )))
}
