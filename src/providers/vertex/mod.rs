//! Google Vertex AI: Gemini and Claude models.

use crate::error::{GatewayError, Result};
use crate::pipeline::ProviderConfig;
use crate::secret::Secret;

use super::Adapter;

/// The adapter of a `vertex` provider (`api_key` is always `None`: Vertex takes a token).
/// Every secret the adapter holds goes in `secrets` (redacted from errors).
pub fn build(
  config: &ProviderConfig,
  _api_key: Option<Secret>,
  _secrets: &mut Vec<Secret>,
) -> Result<Box<dyn Adapter>> {
  Err(GatewayError::config(format!(
    "provider '{}' has kind 'vertex', which is not built yet",
    config.name
  )))
}
