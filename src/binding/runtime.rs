//! The tokio runtime every call runs on. napi's default is a multi-thread runtime with a
//! worker per CPU; a call's work is a few short bursts (write the request, parse what
//! arrives), so what a call costs is mostly thread wake-ups, and every extra worker adds
//! some: a task scheduled on one worker wakes an idle one to steal it. Measured on 2 CPUs
//! (`bench/cpu-per-call.mjs`, one call at a time), a chat call took 6.4 thread switches with
//! two workers and 3.7 with one, a 20-chunk stream through `ferrogate serve` 10.5 and 3.0.
//! One worker also serves the JS thread's share of a machine: JS runs beside it. Long CPU
//! work (counting the tokens of a large prompt) hands the worker over to another thread
//! while it runs (see `tokens`), so it does not hold up the other calls' I/O.
//! `FERROGATE_WORKER_THREADS` sets another count; `ferrogate serve` sets it to the number of
//! available cores before it loads the addon (bin/ferrogate.js), since a proxy must use the
//! machine.

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
