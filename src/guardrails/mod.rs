//! Guardrails: checks that run natively on every call, on the prompt before it leaves and on the
//! answer before it reaches the caller. `pii` finds personal data and keys; `stage` applies each
//! configured guardrail's action (redact, block, flag) for the pipeline.

pub mod pii;
mod stage;

pub use stage::{
  Findings, GuardrailFinding, GuardrailHook, GuardrailSpec, Guardrails, OutputStream,
  DEFAULT_HOOK_TIMEOUT,
};
