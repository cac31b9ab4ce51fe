//! Token counting by the vendor: `POST /v1/messages/count_tokens` for a target that speaks
//! the client's protocol and has a counting endpoint (an `anthropic` provider). The request is
//! the client's own body, built and sent like a same-protocol call's (`native_http_call`,
//! `send_call`), under the provider's timeout; any other target is counted by the caller.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::attempt::{read_body, send_call, MAX_RESPONSE_BYTES};
use super::native::{native_http_call, NativeCall};
use super::providers::{Backend, Provider};
use super::Gateway;
use crate::error::{GatewayError, Result};
use crate::guardrails::Findings;
use crate::types::ChatRequest;

impl Gateway {
  /// The vendor's answer (its JSON body) to counting the input tokens of `native`, the
  /// client's body and headers, for `model`: a route alias (its first usable target) or
  /// "provider/model". `Ok(None)` when that target does not speak the client's protocol or
  /// has no counting endpoint: the caller then counts itself. `req` is the same request
  /// translated; the adapter's request for it gives the provider's headers (its key). A
  /// vendor's error is the gateway's error for its status, with every key removed.
  pub async fn count_tokens_upstream(
    &self,
    model: &str,
    req: &ChatRequest,
    native: &NativeCall,
    cancel: CancellationToken,
  ) -> Result<Option<Vec<u8>>> {
    let (provider, vendor_model) = self.first_target(model)?;
    let Backend::Http { adapter, http } = &provider.backend else {
      return Ok(None);
    };
    let mut req = req.clone();
    // The counting endpoint receives the prompt too: the input guardrails redact (or block) it
    // here as for a call. Their findings are not a call's, so they are not recorded.
    if let Some(guardrails) = &self.guardrails {
      let mut findings = Findings::default();
      super::guardrails::input(guardrails, model, &mut req, Some(native), &mut findings).await?;
    }
    let url = match adapter.count_tokens_url() {
      Some(url) if native.speaks(provider.kind, provider.api) => url,
      _ => return Ok(None),
    };
    req.model = vendor_model;
    let asked = async {
      let mut call = native_http_call(adapter.as_ref(), native, &req, false)?;
      call.url = url;
      let http = http.lease();
      let response = send_call(&provider.name, &http, adapter.as_ref(), &call, false).await?;
      read_body(adapter.vendor(), response, MAX_RESPONSE_BYTES, true).await
    };
    let timeout = provider.timeout.unwrap_or(self.timeout);
    let answer = tokio::select! {
      biased;
      () = cancel.cancelled() => Err(GatewayError::aborted()),
      answer = tokio::time::timeout(timeout, asked) => {
        answer.unwrap_or_else(|_| Err(GatewayError::timeout(timeout)))
      }
    };
    answer
      .map(Some)
      .map_err(|error| self.redact_error(error.with_provider(&provider.name)))
  }

  /// Where a call for `model` goes first: a route's first usable target, or the provider
  /// "provider/model" names.
  fn first_target(&self, model: &str) -> Result<(Arc<Provider>, String)> {
    match self.router.first_usable_target(model) {
      Some(target) => target,
      None => self.resolve(model),
    }
  }
}
