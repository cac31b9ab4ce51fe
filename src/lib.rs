#![deny(clippy::all)]
//! ferrogate: an in-process AI gateway for Node.js. The core (everything but `binding`)
//! is plain Rust, tested with `cargo test`; `binding` is the thin napi layer.

pub mod assembler;
pub mod backend;
pub mod cache;
pub mod costs;
pub mod error;
pub mod eventstream;
/// Checks the fuzz targets in `fuzz/` run; the corpus replay test runs them too.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod guardrails;
pub mod ingress;
pub mod keyvault;
pub mod limiter;
pub mod metrics;
pub mod pipeline;
pub mod providers;
pub mod retry;
pub mod secret;
pub mod semantic;
pub mod serve;
pub mod sse;
pub mod tokens;
pub mod types;

pub mod binding;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod tls_upstream;
