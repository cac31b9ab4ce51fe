//! Azure OpenAI: OpenAI's wire format at Azure's URLs, with Azure's credentials.

use crate::error::{GatewayError, Result};
use crate::pipeline::ProviderConfig;
use crate::secret::Secret;

use super::Adapter;

/// The adapter of an `azure` provider; `api_key` is `apiKey` / `AZURE_OPENAI_API_KEY`.
pub fn build(
  config: &ProviderConfig,
  _api_key: Option<Secret>,
  _secrets: &mut Vec<Secret>,
) -> Result<Box<dyn Adapter>> {
  Err(GatewayError::config(format!(
    "provider '{}' has kind 'azure', which is not built yet",
    config.name
  )))
}
