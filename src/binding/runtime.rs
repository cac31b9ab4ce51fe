//! The tokio runtime every call runs on. napi's default is a multi-thread runtime with a
//! worker per CPU; a call's work is a few short bursts (write the request, parse what
//! arrives), and dozens of workers on a large machine mostly add idle threads and hand-offs
//! between them. Two workers keep I/O moving while one is busy with a long piece of CPU work
//! (counting the tokens of a large prompt). `FERROGATE_WORKER_THREADS` sets another count.

const MAX_DEFAULT_WORKER_THREADS: usize = 2;

#[napi_derive::module_init]
fn init_runtime() {
  let workers = std::env::var("FERROGATE_WORKER_THREADS")
    .ok()
    .and_then(|value| value.trim().parse::<usize>().ok())
    .filter(|count| *count > 0)
    .unwrap_or_else(|| {
      std::thread::available_parallelism()
        .map_or(1, |cpus| cpus.get())
        .min(MAX_DEFAULT_WORKER_THREADS)
    });
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
