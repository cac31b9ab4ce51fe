//! The tokio runtime every call runs on. napi's default is a multi-thread runtime with a
//! worker per CPU; a call's work is a few short bursts (write the request, parse what
//! arrives), and spreading those over several workers mostly adds wake-ups and hand-offs
//! between threads. One worker does the I/O and the parsing of many calls in a row.
//! `FERROGATE_WORKER_THREADS` sets another count.

const DEFAULT_WORKER_THREADS: usize = 1;

#[napi_derive::module_init]
fn init_runtime() {
  let workers = std::env::var("FERROGATE_WORKER_THREADS")
    .ok()
    .and_then(|value| value.trim().parse::<usize>().ok())
    .filter(|count| *count > 0)
    .unwrap_or(DEFAULT_WORKER_THREADS);
  let built = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(workers)
    .thread_name("ferrogate-io")
    .enable_all()
    .build();
  // Without it napi builds its default runtime, which works too.
  if let Ok(runtime) = built {
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
  }
}
