//! Guardrails: checks that run natively on every call, on the prompt before it leaves and on the
//! answer before it reaches the caller. `pii` finds personal data and keys; the pipeline stage that
//! applies a guardrail's action (redact, block, flag) is built on it.

pub mod pii;
