//! Provider kinds and OpenAI-compatible presets. Every decision that depends on a provider's
//! kind is one exhaustive `match` here, so a new kind does not compile until each is made.

use crate::ingress::Protocol;
use crate::providers::{anthropic, gemini, openai};

/// `ProviderConfig.kind` once parsed: the vendor protocol a provider speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
  /// OpenAI, or any server that speaks its API (every preset is this kind).
  OpenAi,
  Anthropic,
  Gemini,
  /// Azure OpenAI: OpenAI's wire format at Azure's URLs, with Azure's credentials.
  Azure,
  /// AWS Bedrock Runtime (Converse / ConverseStream).
  Bedrock,
  /// Google Vertex AI (Gemini and Claude models).
  Vertex,
  /// The offline provider.
  Mock,
}

/// The wire API a provider of kind `openai` or `azure` uses upstream (`ProviderConfig.api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireApi {
  #[default]
  Chat,
  Responses,
}

/// Where a provider's key comes from when `apiKey` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
  /// The first of these environment variables that is set and not empty.
  Env(&'static [&'static str]),
  /// The kind has no key (mock, a local server).
  None,
}

/// What a provider needs before it can make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRequirement {
  /// A key, unless `baseUrl` points at a self-hosted server that may not need one.
  UnlessBaseUrl,
  /// The kind's own builder checks its credentials (Azure, Bedrock, Vertex).
  CheckedByBuilder,
  /// Never (mock, a local server).
  Never,
}

impl Kind {
  pub const ALL: [Kind; 7] = [
    Kind::OpenAi,
    Kind::Anthropic,
    Kind::Gemini,
    Kind::Azure,
    Kind::Bedrock,
    Kind::Vertex,
    Kind::Mock,
  ];

  /// The name in `ProviderConfig.kind`.
  pub fn as_str(self) -> &'static str {
    match self {
      Kind::OpenAi => "openai",
      Kind::Anthropic => "anthropic",
      Kind::Gemini => "gemini",
      Kind::Azure => "azure",
      Kind::Bedrock => "bedrock",
      Kind::Vertex => "vertex",
      Kind::Mock => "mock",
    }
  }

  /// The environment variables that hold the key when `apiKey` is not given.
  pub fn key_source(self) -> KeySource {
    match self {
      Kind::OpenAi => KeySource::Env(&["OPENAI_API_KEY"]),
      Kind::Anthropic => KeySource::Env(&["ANTHROPIC_API_KEY"]),
      Kind::Gemini => KeySource::Env(&["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
      Kind::Azure => KeySource::Env(&["AZURE_OPENAI_API_KEY"]),
      // A Bedrock API key, sent as Bearer instead of a SigV4 signature.
      Kind::Bedrock => KeySource::Env(&["AWS_BEARER_TOKEN_BEDROCK"]),
      // Vertex authenticates with a service account's token, never a key.
      Kind::Vertex => KeySource::None,
      Kind::Mock => KeySource::None,
    }
  }

  pub fn key_requirement(self) -> KeyRequirement {
    match self {
      Kind::OpenAi | Kind::Anthropic | Kind::Gemini => KeyRequirement::UnlessBaseUrl,
      Kind::Azure | Kind::Bedrock | Kind::Vertex => KeyRequirement::CheckedByBuilder,
      Kind::Mock => KeyRequirement::Never,
    }
  }

  /// The vendor's endpoint when `baseUrl` is not given; `None` where it depends on other
  /// options (Azure's resource, Bedrock's region, Vertex's location) or there is none.
  pub fn default_base_url(self) -> Option<&'static str> {
    match self {
      Kind::OpenAi => Some(openai::DEFAULT_BASE_URL),
      Kind::Anthropic => Some(anthropic::DEFAULT_BASE_URL),
      Kind::Gemini => Some(gemini::DEFAULT_BASE_URL),
      Kind::Azure | Kind::Bedrock | Kind::Vertex | Kind::Mock => None,
    }
  }

  /// Whether `ProviderConfig.api` may choose the upstream wire API.
  pub fn takes_wire_api(self, api: WireApi) -> bool {
    match self {
      Kind::OpenAi | Kind::Azure => true,
      Kind::Anthropic | Kind::Gemini | Kind::Bedrock | Kind::Vertex | Kind::Mock => {
        api == WireApi::Chat
      }
    }
  }

  /// Whether a provider of this kind, using `api` upstream, speaks the client protocol
  /// `protocol` itself, so the front door relays the client's body and the vendor's answer
  /// unchanged (same-protocol fidelity).
  pub fn speaks_natively(self, protocol: Protocol, api: WireApi) -> bool {
    match self {
      Kind::OpenAi | Kind::Azure => matches!(
        (protocol, api),
        (Protocol::ChatCompletions, WireApi::Chat) | (Protocol::Responses, WireApi::Responses)
      ),
      Kind::Anthropic => protocol == Protocol::Messages,
      // Vertex's Claude takes Messages bodies, but without `model` and with its own
      // `anthropic_version`; Bedrock and Gemini speak protocols of their own.
      Kind::Gemini | Kind::Bedrock | Kind::Vertex | Kind::Mock => false,
    }
  }

  /// Whether the kind can answer `gateway.embed()` (each through its adapter's endpoint).
  pub fn has_embeddings(self) -> bool {
    match self {
      Kind::OpenAi | Kind::Gemini | Kind::Azure | Kind::Bedrock | Kind::Vertex | Kind::Mock => true,
      Kind::Anthropic => false,
    }
  }
}

/// OpenAI-compatible vendors known by name: `kind: 'groq'` is kind `openai` with the
/// vendor's base URL and key variable filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
  Groq,
  Mistral,
  DeepSeek,
  Xai,
  Together,
  Fireworks,
  OpenRouter,
  Cerebras,
  Ollama,
}

impl Preset {
  pub const ALL: [Preset; 9] = [
    Preset::Groq,
    Preset::Mistral,
    Preset::DeepSeek,
    Preset::Xai,
    Preset::Together,
    Preset::Fireworks,
    Preset::OpenRouter,
    Preset::Cerebras,
    Preset::Ollama,
  ];

  pub fn as_str(self) -> &'static str {
    match self {
      Preset::Groq => "groq",
      Preset::Mistral => "mistral",
      Preset::DeepSeek => "deepseek",
      Preset::Xai => "xai",
      Preset::Together => "together",
      Preset::Fireworks => "fireworks",
      Preset::OpenRouter => "openrouter",
      Preset::Cerebras => "cerebras",
      Preset::Ollama => "ollama",
    }
  }

  /// The vendor's OpenAI-compatible base URL, as the `openai` SDK's `baseURL` takes it.
  pub fn base_url(self) -> &'static str {
    match self {
      Preset::Groq => "https://api.groq.com/openai/v1",
      Preset::Mistral => "https://api.mistral.ai/v1",
      Preset::DeepSeek => "https://api.deepseek.com",
      Preset::Xai => "https://api.x.ai/v1",
      Preset::Together => "https://api.together.xyz/v1",
      Preset::Fireworks => "https://api.fireworks.ai/inference/v1",
      Preset::OpenRouter => "https://openrouter.ai/api/v1",
      Preset::Cerebras => "https://api.cerebras.ai/v1",
      Preset::Ollama => "http://localhost:11434/v1",
    }
  }

  /// The environment variable the vendor's own docs name for its key.
  pub fn key_source(self) -> KeySource {
    match self {
      Preset::Groq => KeySource::Env(&["GROQ_API_KEY"]),
      Preset::Mistral => KeySource::Env(&["MISTRAL_API_KEY"]),
      Preset::DeepSeek => KeySource::Env(&["DEEPSEEK_API_KEY"]),
      Preset::Xai => KeySource::Env(&["XAI_API_KEY"]),
      Preset::Together => KeySource::Env(&["TOGETHER_API_KEY"]),
      Preset::Fireworks => KeySource::Env(&["FIREWORKS_API_KEY"]),
      Preset::OpenRouter => KeySource::Env(&["OPENROUTER_API_KEY"]),
      Preset::Cerebras => KeySource::Env(&["CEREBRAS_API_KEY"]),
      // A local server: no key.
      Preset::Ollama => KeySource::None,
    }
  }

  pub fn key_requirement(self) -> KeyRequirement {
    match self {
      Preset::Groq
      | Preset::Mistral
      | Preset::DeepSeek
      | Preset::Xai
      | Preset::Together
      | Preset::Fireworks
      | Preset::OpenRouter
      | Preset::Cerebras => KeyRequirement::UnlessBaseUrl,
      Preset::Ollama => KeyRequirement::Never,
    }
  }
}

/// A `kind` as configured: a kind, or a preset of the `openai` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSpec {
  pub kind: Kind,
  pub preset: Option<Preset>,
}

impl KindSpec {
  /// `None` when the name is neither a kind nor a preset.
  pub fn parse(name: &str) -> Option<KindSpec> {
    if let Some(kind) = Kind::ALL.into_iter().find(|kind| kind.as_str() == name) {
      return Some(KindSpec { kind, preset: None });
    }
    Preset::ALL
      .into_iter()
      .find(|preset| preset.as_str() == name)
      .map(|preset| KindSpec {
        kind: Kind::OpenAi,
        preset: Some(preset),
      })
  }

  /// Every name `parse` accepts, for the error that lists them.
  pub fn names() -> Vec<&'static str> {
    Kind::ALL
      .iter()
      .map(|kind| kind.as_str())
      .chain(Preset::ALL.iter().map(|preset| preset.as_str()))
      .collect()
  }

  pub fn key_source(self) -> KeySource {
    match self.preset {
      Some(preset) => preset.key_source(),
      None => self.kind.key_source(),
    }
  }

  pub fn key_requirement(self) -> KeyRequirement {
    match self.preset {
      Some(preset) => preset.key_requirement(),
      None => self.kind.key_requirement(),
    }
  }

  pub fn default_base_url(self) -> Option<&'static str> {
    match self.preset {
      Some(preset) => Some(preset.base_url()),
      None => self.kind.default_base_url(),
    }
  }
}

impl WireApi {
  pub fn parse(name: &str) -> Option<WireApi> {
    match name {
      "chat" => Some(WireApi::Chat),
      "responses" => Some(WireApi::Responses),
      _ => None,
    }
  }

  pub fn as_str(self) -> &'static str {
    match self {
      WireApi::Chat => "chat",
      WireApi::Responses => "responses",
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn every_kind_and_preset_parses_back_from_its_name() {
    for kind in Kind::ALL {
      assert_eq!(
        KindSpec::parse(kind.as_str()),
        Some(KindSpec { kind, preset: None })
      );
    }
    for preset in Preset::ALL {
      let spec = KindSpec::parse(preset.as_str()).expect("preset");
      assert_eq!(spec.kind, Kind::OpenAi);
      assert_eq!(spec.default_base_url(), Some(preset.base_url()));
    }
    assert_eq!(KindSpec::parse("groqq"), None);
    assert_eq!(KindSpec::parse("OpenAI"), None);
  }

  #[test]
  fn presets_are_https_except_the_local_one() {
    for preset in Preset::ALL {
      let url = reqwest::Url::parse(preset.base_url()).expect("url");
      match preset {
        Preset::Ollama => assert_eq!(url.host_str(), Some("localhost")),
        _ => assert_eq!(url.scheme(), "https", "{preset:?}"),
      }
    }
  }

  #[test]
  fn only_the_kinds_that_speak_a_protocol_relay_it_natively() {
    assert!(Kind::OpenAi.speaks_natively(Protocol::ChatCompletions, WireApi::Chat));
    assert!(!Kind::OpenAi.speaks_natively(Protocol::ChatCompletions, WireApi::Responses));
    assert!(Kind::OpenAi.speaks_natively(Protocol::Responses, WireApi::Responses));
    assert!(!Kind::OpenAi.speaks_natively(Protocol::Responses, WireApi::Chat));
    assert!(Kind::Anthropic.speaks_natively(Protocol::Messages, WireApi::Chat));
    for kind in [Kind::Gemini, Kind::Bedrock, Kind::Vertex, Kind::Mock] {
      for protocol in [
        Protocol::ChatCompletions,
        Protocol::Responses,
        Protocol::Messages,
      ] {
        assert!(!kind.speaks_natively(protocol, WireApi::Chat), "{kind:?}");
      }
    }
  }
}
