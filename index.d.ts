/* ferrogate — types of the public API. The part below the generated marker comes from
   the Rust doc comments (napi-rs); this header declares the JS layer over it. */

export type ErrorCode =
  | 'RATE_LIMITED' | 'BUDGET_EXCEEDED' | 'AUTHENTICATION' | 'INVALID_REQUEST' | 'NOT_FOUND'
  | 'PROVIDER_ERROR' | 'UPSTREAM_UNAVAILABLE' | 'TIMEOUT' | 'ABORTED' | 'CONFIG' | 'CALLBACK_ERROR'
  | 'GUARDRAIL_BLOCKED'

/** Every rejection from ferrogate. */
export declare class FerrogateError extends Error {
  name: 'FerrogateError'
  code: ErrorCode
  /** The HTTP status a server should answer with. */
  status: number
  /** ferrogate's id for the call. */
  requestId: string
  /** The configured provider name, when a provider was involved. */
  provider?: string
  /** How long the vendor (or our limiter) asked to wait. */
  retryAfterMs?: number
  /** The vendor's own request id. */
  upstreamRequestId?: string
  /** GUARDRAIL_BLOCKED: the guardrail that blocked the call. */
  guardrail?: string
  /** GUARDRAIL_BLOCKED: what it found ('credit_card', 'regex', 'tokens', 'custom', 'timeout', …), never the text. */
  entity?: string
  cause?: unknown
}

/** What a `custom` guardrail's `check` receives: the messages (input) or the answer's text (output). */
export interface GuardrailCheckInput {
  phase: 'input' | 'output'
  messages?: Message[]
  text?: string
}

/** What a `custom` guardrail's `check` answers. `allow: false` blocks the call (GUARDRAIL_BLOCKED, with
 *  `reason` in the message); `replace` takes the checked messages' (input: Message[]) or text's (output: string) place. */
export interface GuardrailVerdict {
  allow: boolean
  reason?: string
  replace?: Message[] | string
}

export interface GuardrailOptions {
  /** type 'custom': called with the messages (input) or the answer's text (output); it may be async. A throw,
   *  a rejection or an answer later than `timeoutMs` follows `onError`, and never crashes the process. */
  check?: (input: GuardrailCheckInput) => GuardrailVerdict | Promise<GuardrailVerdict>
}

export interface ChatRequest {
  /** Aborts the call, the upstream request included; the call rejects with ABORTED. */
  signal?: AbortSignal
}

export interface EmbedRequest {
  /** Aborts the call, the upstream request included; the call rejects with ABORTED. */
  signal?: AbortSignal
}

export interface GatewayOptions {
  /** Answers identical requests from here; `cache: false` on a request skips it. */
  cache?: ResponseCache | SharedResponseCache | false
  /** Keyed by `request.user` (or "anonymous"); a refusal is RATE_LIMITED (429) with retryAfterMs. */
  rateLimiter?: RateLimiter
  /** Called once after every call, whatever its outcome, off the call's path. A throw (or a
   *  rejected promise) is counted in `stats().hookErrors`, never rethrown. */
  onCall?: (record: CallRecord) => void | Promise<void>
}

/** Answers kept by a hash of everything that changes them (see `keyFor`), in this process. */
export interface ResponseCache {
  readonly synchronous: true
  get(key: string): ChatResponse | undefined
  /** `value`: a ChatResponse, or any object with at least `content`. */
  set(key: string, value: CachedAnswer, ttlSeconds?: number): void
  delete(key: string): boolean
  clear(): void
  stats(): ResponseCacheStats
  /** Resolves at once without `redisUrl`. */
  open(): Promise<this>
  /** Resolves at once without `redisUrl`. */
  close(): Promise<void>
}

/** A ResponseCache with Redis as a shared second tier (`redisUrl`): the same methods, as Promises. */
export interface SharedResponseCache {
  readonly synchronous: false
  /** This process's tier, then Redis (a Redis hit fills this process's tier). Redis down: a miss. */
  get(key: string): Promise<ChatResponse | undefined>
  /** Both tiers; Redis down: this process's tier only (counted in `stats().sharedErrors`). */
  set(key: string, value: CachedAnswer, ttlSeconds?: number): Promise<void>
  /** Both tiers; rejects with UPSTREAM_UNAVAILABLE when Redis cannot answer. */
  delete(key: string): Promise<boolean>
  /** Both tiers (this cache's namespace); rejects with UPSTREAM_UNAVAILABLE when Redis cannot answer. */
  clear(): Promise<void>
  stats(): ResponseCacheStats
  /** Resolves once Redis answers; rejects with UPSTREAM_UNAVAILABLE (the URL without its password) when it cannot
   *  be reached within the connect timeout. Optional: calls made before it wait for the connection. */
  open(): Promise<this>
  /** Finishes the writes to Redis still under way (the gateway stores answers in Redis off the call's path) and
   *  releases the connection; the cache then works from this process only. */
  close(): Promise<void>
}

export interface ResponseCacheConstructor {
  /** Returns at once and connects to Redis in the background (`await cache.open()` waits for it); CONFIG for a bad
   *  URL or option. */
  new (options: ResponseCacheOptions & { redisUrl: string }): SharedResponseCache
  /** Throws a FerrogateError with code CONFIG when the options are wrong. */
  new (options?: ResponseCacheOptions & { redisUrl?: undefined | null }): ResponseCache
  new (options?: ResponseCacheOptions): ResponseCache | SharedResponseCache
  /** The key the gateway uses for this request. */
  keyFor(request: ChatRequest): string
  readonly prototype: ResponseCache | SharedResponseCache
}
export declare const ResponseCache: ResponseCacheConstructor

export interface GatewayOptions {
  /** Answers paraphrases after `cache` misses: the last user message is embedded with `embeddingModel` (through
   *  this gateway's own `embed()`) and the closest earlier question of the same scope answers at cosine >=
   *  `threshold`. `cache: false` on a request skips it. */
  semanticCache?: SemanticCache | false
}

/** The semantic cache (docs/API.md "Semantic cache"); in this process, or followed by every process on Redis. */
export declare class SemanticCache {
  /** Throws a FerrogateError with code CONFIG when the options are wrong; with `redisUrl` it returns at once and
   *  connects in the background (`await cache.open()` waits for it and for the entries already in Redis). */
  constructor(options: SemanticCacheOptions)
  /** Resolves once Redis answers and this process's index holds the live entries (at once without `redisUrl`);
   *  rejects with UPSTREAM_UNAVAILABLE when Redis cannot be reached. */
  open(): Promise<this>
  stats(): SemanticCacheStats
  /** Stops following Redis and releases its connections (resolves at once without `redisUrl`). */
  close(): Promise<void>
}

/** Requests and tokens per minute per key (GCRA). */
export declare class RateLimiter {
  /** Throws a FerrogateError with code CONFIG when the options are wrong; with `redisUrl` it returns at once and
   *  connects in the background (`await limiter.open()` waits for it). */
  constructor(options: RateLimiterOptions)
  /** Resolves once Redis answers (at once without `redisUrl`); rejects with UPSTREAM_UNAVAILABLE (the URL without
   *  its password) when it cannot be reached within the connect timeout. Optional: calls made before it wait for
   *  the connection, then follow `failOpen`. */
  open(): Promise<this>
  readonly options: RateLimiterOptions
  /** False with `redisUrl`: `check()` then throws CONFIG; use `acquire()`. */
  readonly synchronous: boolean
  /** Admits one request costing `tokens` for `key` now, or refuses it (consuming nothing). In-process limiter only. */
  check(key: string, tokens?: number): RateLimitDecision
  /** Works for every backend. With `redisUrl` and Redis down: admitted (`failOpen: true`) or rejected with
   *  UPSTREAM_UNAVAILABLE (503). */
  acquire(key: string, tokens?: number): Promise<RateLimitDecision>
  stats(): RateLimiterStats
  /** Releases the Redis connection (a no-op without `redisUrl`); later calls fail with CONFIG. */
  close(): void
}

export type StreamEvent =
  | { type: 'text'; text: string }
  | { type: 'tool_call'; index: number; id?: string; name?: string; argumentsDelta: string }
  | { type: 'done'; response: ChatResponse }

export interface GatewayOptions {
  /** Prices, records and budgets every call (`costUsd` uses the built-in prices without it). */
  costs?: CostTracker | SharedCostTracker
}

/** What every CostTracker offers, wherever its ledger lives. */
interface CostTrackerCommon {
  /** The date of the built-in price table, "YYYY-MM-DD". */
  readonly pricingDate: string
  /** By "provider/model" first, then the bare model name; null for an unknown model. */
  priceOf(model: string): ModelPriceInfo | null
  /** Records a call and returns its cost in USD (0 for an unknown model, counted as unpriced). */
  record(usage: UsageRecord): number
  /** A hard budget reserves each call's maximum cost before it runs (BUDGET_EXCEEDED, 402). `null` removes it. */
  setBudget(user: string, budget: BudgetOptions | null): void
  budget(user: string): BudgetInfo | null
  alerts(user: string): CostAlert[]
  /** Runs on the event loop after the call that raised the alert; a throw is counted, never fatal. */
  onAlert(callback: (alert: CostAlert) => unknown): void
  stats(): CostTrackerStats & { alertCallbackErrors: number }
}

/** Prices calls, keeps the SQLite ledger, enforces budgets and raises spending alerts. */
export interface CostTracker extends CostTrackerCommon {
  /** Spend over the last `days` UTC days (default 30), today included; everyone's when `user` is null. */
  summary(user?: string | null, options?: SummaryOptions): CostSummary
  /** Returns once every recorded call is durable in the ledger. */
  flush(): void
  /** Flushes and closes the ledger; record() then throws CONFIG. */
  close(): void
}

/**
 * A CostTracker with `postgresUrl` or `redisUrl`: shared by every process using the same
 * servers. `summary()`, `flush()` and `close()` return Promises (`await` works on both kinds).
 */
export interface SharedCostTracker extends CostTrackerCommon {
  /** Every process's spend (from PostgreSQL with `postgresUrl`). Rejects with UPSTREAM_UNAVAILABLE while it is unreachable. */
  summary(user?: string | null, options?: SummaryOptions): Promise<CostSummary>
  /** Resolves once every recorded call is written and every budget settlement applied; rejects with UPSTREAM_UNAVAILABLE when a server stays away (what is queued stays queued). */
  flush(): Promise<void>
  /** Flushes (up to 5 s per server, then counts what is left as dropped) and closes. Never rejects. */
  close(): Promise<void>
}

export interface CostTrackerConstructor {
  /**
   * Connects to the servers now (blocking at most 3 s each): an unreachable one throws a
   * FerrogateError UPSTREAM_UNAVAILABLE naming it (never its password); wrong options CONFIG.
   */
  new (options: CostTrackerOptions & ({ postgresUrl: string } | { redisUrl: string })): SharedCostTracker
  /** Throws a FerrogateError with code CONFIG when the options, the pricing file or the ledger are wrong. */
  new (options?: CostTrackerOptions): CostTracker
  /**
   * The same tracker, its connections made off the event loop (nothing blocks while PostgreSQL and
   * Redis are reached): rejects like the constructor throws.
   */
  open(options: CostTrackerOptions & ({ postgresUrl: string } | { redisUrl: string })): Promise<SharedCostTracker>
  open(options?: CostTrackerOptions): Promise<CostTracker>
  readonly prototype: CostTracker | SharedCostTracker
}

export declare const CostTracker: CostTrackerConstructor

export type BatchItem = { ok: true; response: ChatResponse } | { ok: false; error: FerrogateError }

export declare class Gateway {
  /** Throws a FerrogateError with code CONFIG when the options are wrong. */
  constructor(options: GatewayOptions)
  chat(request: ChatRequest): Promise<ChatResponse>
  /** Calls onChunk with each piece of text as it arrives; resolves with the whole response. */
  stream(request: ChatRequest, onChunk: (text: string) => void): Promise<ChatResponse>
  /** Breaking out of the loop aborts the upstream request. */
  streamEvents(request: ChatRequest): AsyncIterable<StreamEvent>
  /** One Float32Array per input, in order: openai (`/embeddings`), gemini (`batchEmbedContents`) and mock providers; batches over the vendor's limit are split and joined. */
  embed(request: EmbedRequest): Promise<EmbedResponse>
  /** Runs the requests through chat() with at most `concurrency` (default 8) in flight; one item per request, in input order. */
  batch(requests: ChatRequest[], options?: { concurrency?: number }): Promise<BatchItem[]>
  /** Route aliases, then "provider/model" for every model named in a route or advertised by a provider. */
  models(): string[]
  /** Prometheus text exposition: requests, latency/TTFT histograms, tokens, cost, cache, refusals, circuit state. */
  metrics(): string
  /** One entry per route target. */
  health(): DeploymentHealth[]
  /** Counters since the gateway was created. */
  stats(): GatewayStats
  /** Refuses new calls and ends calls in flight with ABORTED; resolves once they have settled. */
  close(): Promise<void>
}

export interface GatewayOptions {
  /** Called with each latency anomaly (EWMA z-score per provider/model) as the call that showed it ends. */
  onAnomaly?: (anomaly: LatencyAnomaly) => void
}

/** Symbol.for('ferrogate.frontDoor'): the Gateway method ferrogate/express's gatewayRouter answers through (internal). */
export declare const FRONT_DOOR: unique symbol

export interface KeyVaultQuota {
  allowed: boolean
  /** Absent when the id has no quota. */
  remainingTokens?: number
  usedTokens: number
  /** Next UTC midnight (Unix ms). */
  resetsAtMs: number
}

/**
 * Provider keys sealed with AES-256-GCM (key from `secret` via HKDF-SHA256, random 96-bit nonce
 * per encryption; tokens are `fgv1.<base64url(nonce|ciphertext|tag)>`), virtual API keys stored as
 * SHA-256 hashes and compared in constant time, per-id daily token quotas (UTC day).
 * Errors are FerrogateErrors: INVALID_REQUEST for a tampered token or wrong secret, NOT_FOUND for an unknown id.
 */
export declare class KeyVault {
  /** `now`: the clock (Unix ms) used for quota days; for tests. */
  constructor(options: { secret: string; now?: () => number })
  static encrypt(plain: string, secret: string): string
  static decrypt(token: string, secret: string): string
  add(id: string, entry: { provider: string; key?: string; dailyTokenQuota?: number }): this
  provider(id: string): string
  /** The provider key in clear, or null. */
  getKey(id: string): string | null
  /** A new random virtual API key for `id` (only its hash is stored). */
  issueKey(id: string): string
  addVirtualKey(key: string, id: string): this
  /** The id a virtual key belongs to, or null. */
  verify(key: string): string | null
  checkQuota(id: string): KeyVaultQuota
  recordUsage(id: string, tokens: number): KeyVaultQuota
}

/**
 * A finding in a JS string: its entity and its UTF-16 offsets (as `String.prototype.slice` takes
 * them); never the matched text.
 */
export interface PiiFinding {
  /** 'email' | 'phone' | 'credit_card' | 'iban' | 'us_ssn' | 'ip_address' | 'api_key' */
  entity: string
  start: number
  end: number
}

/**
 * Personal data and keys in `text`: emails, phone numbers, card numbers (Luhn-checked), IBANs
 * (mod-97-checked), US SSNs, IP addresses and API keys, or only the `entities` named.
 */
export declare function findPii(text: string, entities?: Array<string> | undefined | null): Array<PiiFinding>

// ---- generated from src/binding (napi-rs) ----

/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

/**
 * The native cost tracker. Use `CostTracker` from the package, which wraps this with
 * typed errors and safe alert callbacks.
 */
export declare class NativeCostTracker {
  constructor(options?: CostTrackerOptions | undefined | null)
  /** The date of the built-in price table. */
  get pricingDate(): string
  priceOf(model: string): ModelPriceInfo | null
  /**
   * Records a call and returns its cost in USD. The fields of `UsageRecord` as arguments:
   * reading them off an object costs a property lookup each, several times the work of
   * recording.
   */
  recordCall(user: string | undefined | null, model: string, promptTokens: number, completionTokens: number, cachedPromptTokens?: number | undefined | null, cacheWritePromptTokens?: number | undefined | null, reasoningTokens?: number | undefined | null, latencyMs?: number | undefined | null, success?: boolean | undefined | null, provider?: string | undefined | null, timestamp?: number | undefined | null): number
  /**
   * Spend of one user over the last `days` UTC days; every user's with no `user`. The
   * embedded ledger only (`summaryAsync` for every ledger).
   */
  summary(user?: string | undefined | null, options?: SummaryOptions | undefined | null): CostSummary
  /** `summary` from any ledger, PostgreSQL included (every process's calls). */
  summaryAsync(user?: string | undefined | null, options?: SummaryOptions | undefined | null): Promise<CostSummary>
  /**
   * True when the tracker talks to PostgreSQL or Redis: `summaryAsync`, `flushAsync` and
   * `closeAsync` are then the methods to use.
   */
  get networked(): boolean
  /** Sets a user's budget; `null` removes it. */
  setBudget(user: string, budget?: BudgetOptions | undefined | null): void
  /** A user's budget and where it stands; `null` without one. */
  budget(user: string): BudgetInfo | null
  /** Alerts raised for a user, oldest first. */
  alerts(user: string): Array<CostAlert>
  /** Calls `callback` with every alert, on the event loop, after the call that raised it. */
  onAlert(callback: (alert: CostAlert) => void): void
  stats(): CostTrackerStats
  /** Returns once every recorded call is durable in the ledger. */
  flush(): void
  /** Flushes and closes the ledger; later records are counted as dropped. */
  close(): void
  /**
   * `flush` for every ledger and the budget store: resolves once every recorded call is
   * written and every budget settlement applied.
   */
  flushAsync(): Promise<void>
  /**
   * `close` for every ledger and the budget store: waits for what is queued (up to 5 s per
   * store, then counts what is left as dropped).
   */
  closeAsync(): Promise<void>
  /**
   * For the process's 'exit' event, where nothing asynchronous runs any more: waits (at
   * most `timeoutMs`) for queued rows and settlements to be written.
   */
  flushBeforeExit(timeoutMs: number): boolean
}

/** A front door over one gateway (one per `gatewayRouter`). */
export declare class NativeFrontDoor {
  /** Whether the front door serves `method path` (a router passes other requests on). */
  static knows(method: string, path: string): boolean
  /**
   * The 413 answer to a body over the front door's limit, in the protocol's shape (the
   * router stops reading such a body instead of handing it over).
   */
  static tooLarge(method: string, path: string): WholeAnswer
  /**
   * The caller's key as the front door reads it (Bearer, x-api-key, api-key), for a JS key
   * function to judge; `headers` is Node's `rawHeaders` (name, value, name, value, …).
   */
  static callerKey(headers: Array<string>): string | null
  /**
   * Answers one request as call `callId` of the gateway's delivery pump: a head (with the
   * whole body, or followed by byte batches and an end). `keyVerdict` is the key function's
   * answer (false, true or the caller's identity). Cancel with the gateway's `cancel(callId)`,
   * acknowledge batches with its `ack(callId, n)`.
   */
  handle(callId: number, method: string, path: string, headers: Array<string>, body: Buffer, keyVerdict?: boolean | string | undefined | null): void
}

/**
 * The native gateway. Use `Gateway` from the package, which wraps this with
 * AbortSignal support, async iteration and typed errors.
 */
export declare class NativeGateway {
  /**
   * A front door checking keys against `vault` (a KeyVault's native handle), against the
   * verdicts of a JS key function when `keyFunction` is true, or against `serveKeys` (the
   * virtual keys of `ferrogate serve`'s config, each with its own quota); else open.
   */
  frontDoor(vault: NativeKeyVault | undefined | null, keyFunction: boolean, serveKeys?: Array<ServeKeyOptions> | undefined | null): NativeFrontDoor
  /**
   * Serves the OpenAI-compatible endpoint (`POST /v1/chat/completions`, `GET /v1/models`,
   * `GET /health`) natively; rejects with a CONFIG message when it cannot listen.
   */
  serve(options: ServeOptions): Promise<NativeServer>
  /**
   * Never throws: a bad configuration is reported by `configError()`, so the JS layer
   * can throw it with the same error shape as every other failure.
   *
   * `cache`, `rateLimiter`, `onCall` and `costs` arrive apart from the options: the JS layer
   * unwraps its classes to their native handles and guards the hook against throws. So do
   * the `custom` guardrails' checks, in the order of their guardrails, wrapped to take and
   * resolve with JSON text.
   */
  constructor(options: GatewayOptions, cache?: NativeResponseCache | undefined | null, rateLimiter?: NativeRateLimiter | undefined | null, onCall?: ((arg: CallRecord) => void) | undefined | null, costs?: NativeCostTracker | undefined | null, semanticCache?: NativeSemanticCache | undefined | null, guardrailChecks?: Array<(inputJson: string) => Promise<string>>)
  /** Calls by outcome and error code, cache and limiter counters, hook errors. */
  stats(): GatewayStats | null
  /** Counts an `onCall` hook that threw (called by the JS guard around the hook). */
  recordHookError(): void
  configError(): ErrorInfo | null
  /**
   * Sets the function every call delivers to, once, before the first call. It receives
   * the JSON text of a flat array `[callId, kind, payload, …]` holding whatever was ready
   * at once: kind 0 = text (a string), 1 = tool call (an event object), 2 = done (the
   * ChatResponse), 3 = failed (an ErrorInfo). Kinds 2 and 3 end their call.
   */
  listen(dispatch: (batchJson: string) => void): void
  /**
   * Starts call `callId` (chosen by the caller, unique among its calls in flight) and
   * returns its request id. `stream` decides whether text events are delivered as they
   * arrive; the end (done or failed) is always delivered, also for a request that is
   * invalid or a gateway that is closed. With `traceparent` (the call span's W3C context)
   * every upstream request carries it, and a trace report (kind 7) precedes the end.
   */
  begin(callId: number, request: ChatRequest, stream: boolean, traceparent?: string | undefined | null): string
  /**
   * Embeds `request.input` as call `callId` (unique among calls in flight, like `begin`'s;
   * `cancel(callId)` aborts it, from the moment this returns). The promise resolves with the
   * response or the error, and rejects only for napi's own type checks. `traceparent` as
   * for `begin`: the outcome then carries the trace report.
   */
  embed(callId: number, request: EmbedRequest, traceparent?: string | undefined | null): Promise<EmbedOutcome>
  /**
   * Aborts a call: the upstream connection is closed and the call ends with ABORTED.
   * A call that already ended is left alone.
   */
  cancel(callId: number): void
  /** JS consumed `count` more events of a stream: that many more may come. */
  ack(callId: number, count: number): void
  /**
   * Route aliases, then "provider/model" for every model named in a route or advertised
   * by a provider.
   */
  models(): Array<string>
  /** Prometheus text exposition of the gateway's metrics. */
  metrics(): string
  /** Latency anomalies found since the last call (the JS layer hands them to `onAnomaly`). */
  takeAnomalies(): Array<LatencyAnomaly>
  /** One entry per route target: breaker state, calls in flight, recent latency and errors. */
  health(): Array<DeploymentHealth>
  /**
   * Refuses new calls at once and ends calls in flight with ABORTED; `waitClosed()` then
   * resolves once they have settled.
   */
  close(): void
  /**
   * After `close()`: resolves once every call in flight has settled (its result handed
   * over) and the backends have written what the calls recorded.
   */
  waitClosed(): Promise<void>
  isOpen(): boolean
}

/**
 * Provider keys sealed with AES-256-GCM, virtual API keys kept as SHA-256 hashes and
 * compared in constant time, per-id daily token quotas (UTC day).
 */
export declare class NativeKeyVault {
  /**
   * An empty secret is refused by the JS wrapper before this runs, and by every
   * encryption here.
   */
  constructor(options: KeyVaultOptions)
  /**
   * AES-256-GCM with a key derived from `secret` (HKDF-SHA256) and a random 96-bit nonce;
   * returns `fgv1.<base64url(nonce ‖ ciphertext ‖ tag)>`.
   */
  static encrypt(plain: string, secret: string): string
  /** Fails with INVALID_REQUEST when the token was altered or the secret is wrong. */
  static decrypt(token: string, secret: string): string
  add(id: string, entry: KeyVaultEntry): void
  provider(id: string): string
  /** The provider key in clear, or null when the entry has none. */
  getKey(id: string): string | null
  /**
   * Issues a new random virtual API key for `id`; only its hash is stored, so this is
   * the only time it can be read.
   */
  issueKey(id: string): string
  /** Registers an existing virtual API key for `id` (stored as its SHA-256 hash). */
  addVirtualKey(key: string, id: string): void
  /** The id a virtual key belongs to, or null. Constant-time over every stored hash. */
  verify(key: string): string | null
  checkQuota(id: string, nowMsAt?: number | undefined | null): QuotaInfo
  recordUsage(id: string, tokens: number, nowMsAt?: number | undefined | null): QuotaInfo
}

/** The native rate limiter. Use `RateLimiter` from the package. */
export declare class NativeRateLimiter {
  constructor(options: RateLimiterOptions)
  /**
   * Resolves once Redis answers (at once without `redisUrl`); rejects with
   * UPSTREAM_UNAVAILABLE naming the server (never its password) when it cannot be reached
   * within the connect timeout.
   */
  open(): Promise<void>
  /** Admits one request costing `tokens` for `key`, or refuses it (consuming nothing). */
  check(key: string, tokens?: number | undefined | null): RateLimitDecision
  /** `check` for every backend, local or shared. */
  acquire(key: string, tokens?: number | undefined | null): Promise<RateLimitDecision>
  stats(): RateLimiterStats
  /** Releases the Redis connection; later calls fail with CONFIG. */
  close(): void
}

/** The native response cache. Use `ResponseCache` from the package. */
export declare class NativeResponseCache {
  constructor(options?: ResponseCacheOptions | undefined | null)
  /**
   * Resolves once the Redis tier answers (at once without `redisUrl`); rejects with
   * UPSTREAM_UNAVAILABLE naming the server (never its password) when it cannot be reached
   * within the connect timeout.
   */
  open(): Promise<void>
  /** False when Redis is a tier (`redisUrl`): then only the `*Async` methods work. */
  get synchronous(): boolean
  /**
   * The stored answer as JSON text (a `ChatResponse`), or null. One string crosses
   * into JS instead of a property write per field, which is what a hit costs from JS.
   */
  getJson(key: string): string | null
  /** `getJson` through the Redis tier. A Redis that cannot answer is a miss. */
  getJsonAsync(key: string): Promise<string | null>
  /** `ttlSeconds` overrides the cache's default for this entry. */
  set(key: string, value: CachedAnswer, ttlSeconds?: number | undefined | null): void
  /** `set` through the Redis tier. A Redis that cannot answer leaves the entry local. */
  setAsync(key: string, value: CachedAnswer, ttlSeconds?: number | undefined | null): Promise<void>
  /** True when an entry was removed. */
  delete(key: string): boolean
  /** `delete` in both tiers; UPSTREAM_UNAVAILABLE when Redis cannot answer. */
  deleteAsync(key: string): Promise<boolean>
  clear(): void
  /** `clear` in both tiers; UPSTREAM_UNAVAILABLE when Redis cannot answer. */
  clearAsync(): Promise<void>
  /**
   * Finishes the writes to Redis still under way and releases the connection; the cache
   * then works from this process only.
   */
  close(): Promise<void>
  stats(): ResponseCacheStats
  /**
   * The key the gateway uses for `request`: a BLAKE3 hash of everything that changes the
   * answer (model, messages, sampling, max tokens, stop, tools, tool choice, response
   * format) and nothing that does not (user, metadata, signal, timeouts, retries).
   */
  static keyFor(request: ChatRequest): string
}

/** The native semantic cache. Use `SemanticCache` from the package. */
export declare class NativeSemanticCache {
  constructor(options: SemanticCacheOptions)
  /**
   * Resolves once Redis answers and this process's index holds the live entries (at once
   * without `redisUrl`).
   */
  open(): Promise<void>
  stats(): SemanticCacheStats
  /**
   * Adds a vector to the index under `scope` (any string; hashed), without an answer:
   * what `bench/semantic-cache.mjs` measures the index with. Returns the entry's id.
   */
  addVector(scope: string, vector: Float32Array): number
  /**
   * Returns once no scope's partitions are being learnt (they are learnt on a thread of
   * their own): what `bench/semantic-cache.mjs` waits for before it measures lookups.
   */
  waitForIndex(): void
  /**
   * The closest entry of `scope` to `vector` and its cosine similarity, whatever the
   * threshold; null when the scope is empty.
   */
  nearest(scope: string, vector: Float32Array): NearestEntry | null
  /**
   * Stops following Redis and releases the connection (resolves at once without
   * `redisUrl`); lookups then use what this process's index holds.
   */
  close(): Promise<void>
}

/** A running native server; `close()` stops accepting and ends idle connections. */
export declare class NativeServer {
  get port(): number
  get host(): string
  close(): void
  /**
   * Stops accepting, lets requests in progress (streams included) finish for up to
   * `graceMs`, then drops the connections still open; resolves when they are all gone.
   */
  shutdown(graceMs: number): Promise<void>
  /** Connections closed at once because `maxConnections` were open. */
  get refusedConnections(): number
}

/** AWS credentials for a `bedrock` provider. */
export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

export interface BudgetInfo {
  usd: number
  period: 'day' | 'month'
  hard: boolean
  spentUsd: number
  /** Held by calls in flight. */
  reservedUsd: number
  remainingUsd: number
  /** First day of the current period, "YYYY-MM-DD" (UTC). */
  periodStart: string
}

export interface BudgetOptions {
  usd: number
  period: 'day' | 'month'
  /** Refuse calls that could pass the budget (BUDGET_EXCEEDED) instead of only alerting. */
  hard?: boolean
}

/** A prompt-caching breakpoint with its lifetime. */
export interface CacheControl {
  /** How long the cached prefix lives (default: the vendor's, 5 minutes). */
  ttl?: '5m' | '1h'
}

/** What `set()` takes: a `ChatResponse`, or any object with at least `content`. */
export interface CachedAnswer {
  content: string
  id?: string
  provider?: string
  model?: string
  refusal?: string
  toolCalls?: Array<ToolCall>
  finishReason?: 'stop' | 'length' | 'tool_calls' | 'content_filter'
  usage?: CachedUsage
}

export interface CachedUsage {
  promptTokens?: number
  completionTokens?: number
  totalTokens?: number
  estimated?: boolean
  cachedPromptTokens?: number
  cacheWritePromptTokens?: number
  reasoningTokens?: number
}

/** One finished call, handed to `onCall`. */
export interface CallRecord {
  /** What the call asked for: a chat completion or embeddings. */
  operation: 'chat' | 'embeddings'
  requestId: string
  /** The model as the caller asked for it. */
  model: string
  /** The configured provider name; absent when the model did not resolve. */
  provider?: string
  /** The vendor's model name. */
  vendorModel?: string
  route?: string
  user?: string
  metadata?: Record<string, string>
  outcome: 'ok' | 'error' | 'aborted'
  errorCode?: ErrorCode
  /** Zero for a failed call. */
  usage: Usage
  costUsd: number
  /** No upstream call was made (a cache hit, or joined onto an identical call). */
  cached: boolean
  /** A semantic cache hit: the cosine similarity of the question it answered. */
  cacheSimilarity?: number
  latencyMs: number
  ttftMs?: number
  /** Upstream tries (0 for a cached answer). */
  attempts: number
  /**
   * The client protocol of a call that came through the front door (`gatewayRouter`,
   * `ferrogate serve`): 'chat' | 'responses' | 'messages' | 'embeddings'.
   */
  ingress?: string
  /** What a protocol translation left out (the call went on without it). */
  warnings?: Array<string>
  /** What the guardrails found (never the matched text). */
  guardrails?: Array<GuardrailFinding>
}

export interface CallsByOutcome {
  ok: number
  error: number
  aborted: number
}

export interface ChatRequest {
  /** "provider/model", e.g. "openai/gpt-4o-mini", or a route alias. */
  model: string
  messages: Array<Message>
  temperature?: number
  topP?: number
  /** A whole number >= 0. */
  maxTokens?: number
  /** One stop sequence or several, as OpenAI takes them. */
  stop?: string | Array<string>
  responseFormat?: ResponseFormat
  tools?: Array<ToolDefinition>
  toolChoice?: 'auto' | 'none' | 'required' | { name: string }
  /** Key for rate limits, budgets and cost reports; sent to the vendor as its user id. */
  user?: string
  /** Not sent to the vendor; handed to `onCall` with the call's record. */
  metadata?: Record<string, string>
  /** `false` skips the gateway's cache for this call (no lookup, nothing stored). */
  cache?: boolean
  /** Deadline for this call, retries included (> 0). */
  timeoutMs?: number
  /** Further attempts after a retryable failure (a whole number >= 0). */
  maxRetries?: number
  /** Admission order when every target of a route is busy: higher first (default 0). */
  priority?: number
  /** OpenAI `prompt_cache_key`: requests that share it share a prompt cache. */
  promptCacheKey?: string
}

export interface ChatResponse {
  id: string
  /** The configured provider name (the key in `providers`). */
  provider: string
  model: string
  content: string
  /** OpenAI's refusal text, when the model refused. */
  refusal?: string
  toolCalls: Array<ToolCall>
  finishReason: 'stop' | 'length' | 'tool_calls' | 'content_filter'
  usage: Usage
  costUsd: number
  /** No upstream call was made for this request. */
  cached: boolean
  /** A semantic cache hit: the cosine similarity of the question it answered. */
  cacheSimilarity?: number
  latencyMs: number
  /** Time to the first streamed event. */
  ttftMs?: number
  attempts: number
  /** ferrogate's id for this call (also on errors). */
  requestId: string
}

/** `{ type: 'text', text }`, `{ type: 'image', data, mimeType }` (base64) or `{ type: 'image_url', url }`. */
export interface ContentPart {
  type: 'text' | 'image' | 'image_url'
  text?: string
  /** Base64 image bytes (type 'image'). */
  data?: string
  mimeType?: string
  /** type 'image_url': an https or data: URL. */
  url?: string
  /**
   * A prompt-caching breakpoint here: `true`, or `{ ttl: '5m' | '1h' }` (Anthropic
   * `cache_control`, Bedrock `cachePoint`; OpenAI and Gemini cache by themselves).
   */
  cache?: boolean | CacheControl
}

export interface CostAlert {
  type: 'budget_exceeded' | 'unusual_spending' | 'high_cost_model'
  severity: 'info' | 'warning' | 'critical'
  user: string
  message: string
  recommendations: Array<string>
  /** ms since the epoch. */
  timestamp: number
  model?: string
  /** Budget: spent this period; unusual spending: the last 7 days. */
  amountUsd?: number
  /** Budget: the budget; unusual spending: the weekly average of the 4 weeks before. */
  thresholdUsd?: number
}

export interface CostSummary {
  totalCost: number
  totalRequests: number
  averageCostPerRequest: number
  costByModel: Record<string, number>
  requestsByModel: Record<string, number>
  /** One point per day of the window, oldest first. */
  costTrend: Array<CostTrendPoint>
  /** Calls whose model had no price (recorded at cost 0). */
  unpricedRequests: number
}

export interface CostTrackerOptions {
  /**
   * A path to, or an object in, LiteLLM's `model_prices_and_context_window.json` format,
   * merged over the built-in table.
   */
  pricing?: string | Record<string, LiteLlmModelPrice>
  /** SQLite ledger file; in memory when absent. */
  ledgerPath?: string
  /**
   * A model whose output costs at least this (USD per million tokens) raises a
   * `high_cost_model` alert (default 20).
   */
  highCostOutputPerMillion?: number
  /** The ledger in PostgreSQL (shared by every process) instead of SQLite. */
  postgresUrl?: string
  /** The PostgreSQL schema of the ledger table (default 'public'; created if missing). */
  postgresSchema?: string
  /** Rows kept while PostgreSQL is away (default 100000); beyond, dropped and counted. */
  ledgerBufferRows?: number
  /** Hard budgets reserved and settled in Redis, so they hold across processes. */
  redisUrl?: string
  /** Prefix of the Redis keys (default 'ferrogate:'). */
  prefix?: string
}

export interface CostTrackerStats {
  recorded: number
  unpriced: number
  budgetRefusals: number
  alerts: number
  ledgerWritten: number
  /** Rows the database refused. */
  ledgerFailed: number
  /**
   * Rows recorded after close(), beyond `ledgerBufferRows` while PostgreSQL was away, or
   * left when close() gave up waiting.
   */
  ledgerDropped: number
  /** Rows waiting to be written. */
  ledgerBuffered: number
  /** Budget settlements waiting for Redis. */
  budgetSettlementsPending: number
  /** Budget settlements lost beyond the queue bound (100000). */
  budgetSettlementsDropped: number
  /** Hard-budget calls refused because Redis was unreachable (fail closed). */
  budgetStoreRefusals: number
}

export interface CostTrendPoint {
  /** "YYYY-MM-DD" (UTC). */
  date: string
  cost: number
  requests: number
}

/**
 * Tokens in a text or a message list: exact for OpenAI models (tiktoken encodings), an
 * o200k_base estimate for other vendors, whose tokenizers are not public.
 */
export declare function countTokens(model: string, input: string | Array<Message>): number

/** One route target's state. */
export interface DeploymentHealth {
  route: string
  provider: string
  model: string
  state: 'healthy' | 'ejected' | 'half_open'
  inFlight: number
  /** Calls waiting in the route's admission queue (the same for every target of a route). */
  queued: number
  /** EWMA of whole-call latency (0 before the first success). */
  ewmaLatencyMs: number
  /** EWMA of time to first token over streamed calls. */
  ewmaTtftMs?: number
  /** Failed share of the recent calls (the error-rate window). */
  errorRate: number
  /** Epoch ms until which the target is ejected or cooling down after a 429. */
  ejectedUntil?: number
  /** The provider's key pool (`apiKeys`), each key by a short hash of it, never the key. */
  keys?: Array<KeyHealth>
}

/** How a native `embed` call ended: exactly one of the two is set. */
export interface EmbedOutcome {
  response?: EmbedResponse
  error?: ErrorInfo
  /** The trace report of a call given a `traceparent` (what its spans are made from). */
  trace?: any
}

/** `gateway.embed()`'s request, without `signal` (the JS wrapper handles it). */
export interface EmbedRequest {
  /** A route alias or "provider/model". */
  model: string
  /** One text, or several (one vector each, in order). */
  input: string | string[]
  /** Output vector size, for models that can shorten theirs (a whole number > 0). */
  dimensions?: number
  /** Key for rate limits, budgets and cost reports; sent to the vendor as its user id. */
  user?: string
  /** Passed through to `onCall`. */
  metadata?: Record<string, string>
  /** `false` skips the gateway's cache for this call. */
  cache?: boolean
  /** Deadline for this call, retries included (> 0). */
  timeoutMs?: number
  /** Further attempts after a retryable failure (a whole number >= 0). */
  maxRetries?: number
}

/** `gateway.embed()`'s answer. */
export interface EmbedResponse {
  /** One vector per input, in the order of the inputs. */
  embeddings: Array<Float32Array>
  /** The vendor's model name. */
  model: string
  /** The configured provider that answered. */
  provider: string
  usage: EmbedUsage
  /** 0 for a cached answer or an unpriced model. */
  costUsd: number
  /** Answered from the gateway's cache. */
  cached: boolean
  requestId: string
  latencyMs: number
  /** Upstream tries (0 for a cached answer). */
  attempts: number
}

export interface EmbedUsage {
  promptTokens: number
  /** Equal to `promptTokens`: embeddings have no output tokens. */
  totalTokens: number
}

/** The fields of a rejected call; the JS layer throws them as a `FerrogateError`. */
export interface ErrorInfo {
  code: ErrorCode
  /** The HTTP status a server should answer with. */
  status: number
  message: string
  provider?: string
  retryAfterMs?: number
  requestId: string
  /** The vendor's request id, when it sent one. */
  upstreamRequestId?: string
  /** Lower-level detail (transport error, vendor error type). */
  cause?: string
  /** GUARDRAIL_BLOCKED: the guardrail that blocked the call. */
  guardrail?: string
  /** GUARDRAIL_BLOCKED: what it found ('credit_card', 'regex', 'tokens', 'custom', 'timeout', …). */
  entity?: string
}

/**
 * What `findPii` (lib/text.js) finds, packed into `into`: three numbers per finding, the
 * entity's index in `piiEntities()`, then its start and end as UTF-16 offsets (what
 * `String.prototype.slice` takes). Returns how many numbers the findings take; when that is
 * more than `into` holds, nothing is written and the caller asks again with room for them.
 * The wrapper makes the `{ entity, start, end }` objects: one object literal in JS costs far
 * less than setting three properties through N-API, which took longer than the scan; and it
 * keeps `into` from call to call, where a new array per call cost an allocation, page faults
 * and a finalizer.
 */
export declare function findPiiPacked(text: string, entities: Array<string> | undefined | null, into: Uint32Array): number

export interface GatewayOptions {
  providers: Record<string, ProviderConfig>
  /** Route alias -> deployments: load balancing, fallbacks, circuit breaking. */
  routes?: Record<string, Array<RouteTarget>>
  routing?: RoutingOptions
  /** Deadline for a whole call, retries included (> 0; default 60000). */
  timeoutMs?: number
  /** Further attempts after a retryable failure (a whole number >= 0; default 3). */
  maxRetries?: number
  /**
   * First backoff step in ms when the vendor gives no wait hint (default 500). Before retry n
   * (1, 2, …) the step is this × 2^(n-1), capped at 8 s; the wait is a uniformly random time
   * between half the step and the whole step.
   */
  retryBaseDelayMs?: number
  /** Where a model with no "provider/" prefix goes (a provider name), so OpenAI clients can send plain model names. */
  defaultProvider?: string
  /** The Responses store (`store: true`, `previous_response_id`): in memory unless `redisUrl`. */
  responses?: ResponsesOptions
  /**
   * Checks on every call's prompt before it leaves (input) and on its answer before it
   * reaches the caller (output), on every ingress.
   */
  guardrails?: GuardrailsOptions
}

/** `gateway.stats()`: counters since the gateway was created. */
export interface GatewayStats {
  callsByOutcome: CallsByOutcome
  /** Failed and aborted calls by error code (codes seen at least once). */
  callsByErrorCode: Partial<Record<ErrorCode, number>>
  /** Calls answered from the cache. */
  cacheHits: number
  /** Calls that went upstream through the cache. */
  cacheMisses: number
  /** Calls that joined an identical call already in flight. */
  cacheCoalesced: number
  /** Calls our RateLimiter refused (vendor 429s are in callsByErrorCode only). */
  limiterRefusals: number
  /** Calls refused by a hard budget (BUDGET_EXCEEDED). */
  budgetRefusals: number
  /** Calls the cost tracker had no price for. */
  unpricedCalls: number
  /** `onCall` threw or its promise rejected. */
  hookErrors: number
  /** Records not delivered to `onCall` because its queue was full. */
  hookDropped: number
  /**
   * Calls of unconfigured models that metrics counted under `model="other"` (past the
   * first 32 such models).
   */
  modelLabelOverflow: number
}

/** How often a guardrail found an entity in one call, and what it did. */
export interface GuardrailFinding {
  guardrail: string
  entity: string
  action: 'redact' | 'block' | 'flag'
  count: number
}

/**
 * One guardrail: `{ type: 'pii', entities?, action }`, `{ type: 'regex', pattern, action }`,
 * `{ type: 'maxInputTokens', limit, action? }` or `{ type: 'custom', check, timeoutMs?, onError? }`.
 */
export interface GuardrailOptions {
  type: 'pii' | 'regex' | 'maxInputTokens' | 'custom'
  /** Its name on findings, metrics and errors (default: the type). */
  name?: string
  /** type 'pii': which entities (default all). */
  entities?: Array<'email' | 'phone' | 'credit_card' | 'iban' | 'us_ssn' | 'ip_address' | 'api_key'>
  /**
   * 'redact' replaces each match (`[CREDIT_CARD]`, `[REDACTED]` for a regex), 'block' fails
   * the call with GUARDRAIL_BLOCKED, 'flag' only records. maxInputTokens: 'block' (default) or 'flag'.
   */
  action?: 'redact' | 'block' | 'flag'
  /** type 'regex': Rust `regex` syntax, which cannot backtrack (linear time on any input). */
  pattern?: string
  /** type 'maxInputTokens': the most prompt tokens a call may send. */
  limit?: number
  /** type 'custom': how long `check` may take (default 1000). */
  timeoutMs?: number
  /** type 'custom': what a check that throws, rejects or times out means (default 'allow'). */
  onError?: 'allow' | 'block'
}

/** `GatewayOptions.guardrails`: each list runs in order. */
export interface GuardrailsOptions {
  input?: Array<GuardrailOptions>
  output?: Array<GuardrailOptions>
}

/** One key of a provider's pool. */
export interface KeyHealth {
  /** A short hash of the key ("k-1a2b3c4d"). */
  id: string
  state: 'active' | 'resting' | 'revoked'
  /** Epoch ms until which a resting key rests. */
  restingUntil?: number
}

export interface KeyVaultEntry {
  /** The provider this key belongs to (a name in `GatewayOptions.providers`). */
  provider: string
  /** The provider API key; kept encrypted in memory. */
  key?: string
  /** Tokens this id may use per UTC day. */
  dailyTokenQuota?: number
}

export interface KeyVaultOptions {
  /** High-entropy secret the AES-256-GCM key is derived from (HKDF-SHA256). */
  secret: string
}

/** A call whose latency was an outlier for its provider/model (EWMA z-score). */
export interface LatencyAnomaly {
  provider: string
  model: string
  latencyMs: number
  /** The moving average latency before this call. */
  expectedMs: number
  zScore: number
  /** 'warning' (z >= 3) or 'critical' (z >= 6). */
  severity: 'warning' | 'critical'
  /** Unix ms. */
  at: number
}

/** One entry of a LiteLLM price file (USD per token). */
export interface LiteLlmModelPrice {
  inputCostPerToken?: number
  outputCostPerToken?: number
  cacheReadInputTokenCost?: number
  cacheCreationInputTokenCost?: number
  maxOutputTokens?: number
}

export interface Message {
  role: 'system' | 'user' | 'assistant' | 'tool'
  /**
   * Required, except on an assistant message that carries `toolCalls` (then it may be
   * absent or null, as OpenAI sends it).
   */
  content?: string | Array<ContentPart> | null
  /** For role 'tool': the id of the call this message answers. */
  toolCallId?: string
  /** For role 'assistant': the calls the model made. */
  toolCalls?: Array<ToolCall>
  /**
   * A prompt-caching breakpoint after this message's last block: `true`, or `{ ttl: '5m' | '1h' }` (Anthropic
   * `cache_control`, Bedrock `cachePoint`; OpenAI and Gemini cache by themselves).
   */
  cache?: boolean | CacheControl
}

export interface ModelPriceInfo {
  inputPerMillion: number
  outputPerMillion: number
  cachedInputPerMillion?: number
  cacheWritePerMillion?: number
  maxOutputTokens?: number
  /** 'pricing' (the caller's overrides) or 'builtin'. */
  source: 'pricing' | 'builtin'
}

export interface NamedToolChoice {
  name: string
}

/** A streamed event as the native layer delivers it; see `StreamEvent` for the union. */
export interface NativeStreamEvent {
  type: 'text' | 'tool_call' | 'done'
  text?: string
  index?: number
  id?: string
  name?: string
  argumentsDelta?: string
  response?: ChatResponse
}

export interface NearestEntry {
  entry: number
  similarity: number
}

/**
 * `CostTracker.open(options)`: the tracker with its PostgreSQL and Redis connections made
 * (schema created, budgets loaded) on the addon's threads, so the event loop never waits.
 */
export declare function openCostTracker(options?: CostTrackerOptions | undefined | null): Promise<NativeCostTracker>

/** The names of the entities, by the index `findPiiPacked` gives them. */
export declare function piiEntities(): Array<string>

/** One configured provider; its key in `providers` is the name used in "provider/model". */
export interface ProviderConfig {
  /**
   * 'openai' (any OpenAI-compatible server with `baseUrl`), 'anthropic', 'gemini', 'azure',
   * 'bedrock', 'vertex', 'mock', or an OpenAI-compatible preset (kind 'openai' with the
   * vendor's base URL and key variable): 'groq', 'mistral', 'deepseek', 'xai', 'together',
   * 'fireworks', 'openrouter', 'cerebras', 'ollama'.
   */
  kind: 'openai' | 'anthropic' | 'gemini' | 'azure' | 'bedrock' | 'vertex' | 'mock' | 'groq' | 'mistral' | 'deepseek' | 'xai' | 'together' | 'fireworks' | 'openrouter' | 'cerebras' | 'ollama'
  /**
   * Else the kind's variable: OPENAI_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY (or
   * GOOGLE_API_KEY) / AZURE_OPENAI_API_KEY / AWS_BEARER_TOKEN_BEDROCK, a preset's own.
   */
  apiKey?: string
  /**
   * A key pool: calls use the first key that is not resting; a key answered 429 rests for
   * its retry delay, one answered 401/403 until restart.
   */
  apiKeys?: Array<string>
  /** As the official SDKs take it: OpenAI's includes `/v1`, Anthropic's and Gemini's do not. */
  baseUrl?: string
  /** Models this provider advertises in `models()`. */
  models?: Array<string>
  /** Extra headers sent with every request. */
  headers?: Record<string, string>
  /** OpenAI organization id (`OpenAI-Organization` header). */
  organization?: string
  /** Deadline for a whole call to this provider, retries included (> 0; default: the gateway's). */
  timeoutMs?: number
  /** Further attempts after a retryable failure (a whole number >= 0; default: the gateway's). */
  maxRetries?: number
  /** `mock` only: delay before each streamed chunk (default 15 ms). */
  mockChunkDelayMs?: number
  /**
   * A PEM file of CA certificates to trust for this provider, besides the bundled web
   * roots, the system store and `NODE_EXTRA_CA_CERTS` (a private CA, a corporate proxy).
   */
  caCertPath?: string
  /**
   * kind 'openai': the wire API used upstream, 'chat' (default, `/chat/completions`) or
   * 'responses' (`/responses`, for models that exist only there).
   */
  api?: 'chat' | 'responses'
  /** azure, classic URLs: `/openai/deployments/{deployment}/…` (with `apiVersion`). */
  deployment?: string
  /** azure, classic URLs: the `api-version` query (with `deployment`). */
  apiVersion?: string
  /**
   * azure: an Entra ID token sent as Bearer instead of `api-key`: a string, or an async
   * function asked before every request (it caches and refreshes as it sees fit).
   */
  azureAdToken?: string | (() => Promise<string>)
  /** bedrock: the AWS region (else AWS_REGION / AWS_DEFAULT_REGION). */
  region?: string
  /** bedrock: credentials instead of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN. */
  credentials?: AwsCredentials
  /** vertex: the Google Cloud project. */
  project?: string
  /** vertex: the region (e.g. 'us-central1', or 'global'). */
  location?: string
  /** vertex: a service-account key file (else GOOGLE_APPLICATION_CREDENTIALS). */
  credentialsPath?: string
}

export interface QuotaInfo {
  allowed: boolean
  /** Absent when the id has no quota. */
  remainingTokens?: number
  usedTokens: number
  /** Next UTC midnight (Unix ms), when the day's usage resets. */
  resetsAtMs: number
}

export interface RateLimitDecision {
  allowed: boolean
  /** 0 when allowed; else how long until the same request would be. */
  retryAfterMs: number
  /** Infinity when there is no request limit. */
  remainingRequests: number
  /** Infinity when there is no token limit. */
  remainingTokens: number
}

export interface RateLimiterOptions {
  requestsPerMinute?: number
  tokensPerMinute?: number
  /**
   * How much of a minute a key may spend at once (default: all of it). In requests when
   * `requestsPerMinute` is set (the token bucket then holds the same share of its
   * minute), else in tokens.
   */
  burst?: number
  /**
   * Keeps the buckets in Redis, shared by every process using the same URL and prefix;
   * `check()` then throws (use `acquire()`). The constructor returns at once and connects in the background
   * (`await open()` waits for the connection).
   */
  redisUrl?: string
  /**
   * With `redisUrl`: while Redis cannot answer, admit calls (true) or refuse them with
   * UPSTREAM_UNAVAILABLE (false, the default).
   */
  failOpen?: boolean
  /** With `redisUrl`: prepended to every Redis key (default "ferrogate:"). */
  prefix?: string
}

export interface RateLimiterStats {
  /** "memory" or "redis". */
  backend: string
  /** Redis operations that failed (admissions and token settlements). */
  storeErrors: number
  /** Requests admitted unchecked because Redis failed and `failOpen` is set. */
  failOpenAdmissions: number
}

/** `text` with each finding replaced by `[EMAIL]`, `[CREDIT_CARD]`, … */
export declare function redactPii(text: string, entities?: Array<string> | undefined | null): string

/**
 * `text` with every secret shape replaced: URL credentials, private key blocks, JWTs, AWS,
 * GitHub, Slack, Stripe, OpenAI, Anthropic and Google keys, `key=value` pairs named like a
 * secret, and absolute file paths. The gateway's own messages go through the same rules.
 */
export declare function redactSecrets(text: string): string

export interface ResponseCacheOptions {
  /** Most answers kept (default 10000 when `maxBytes` is not set either). */
  maxEntries?: number
  /** Most bytes of answers kept (text, tool calls, key and a fixed overhead per entry). */
  maxBytes?: number
  /** Default time to live; entries never expire without it. */
  ttlSeconds?: number
  /** Prefixed to every key, so tenants sharing a store never share answers. */
  namespace?: string
  /**
   * Adds Redis as a second tier shared by every process using the same URL and prefix;
   * `get`/`set`/`delete`/`clear` then return Promises. The constructor returns at once and connects in the background
   * (`await open()` waits for the connection).
   */
  redisUrl?: string
  /** With `redisUrl`: prepended to every Redis key (default "ferrogate:"). */
  prefix?: string
  /**
   * With `redisUrl`: answers whose stored form is larger stay in this process only
   * (default 1 MiB).
   */
  maxValueBytes?: number
}

export interface ResponseCacheStats {
  hits: number
  misses: number
  /** In this process (the local tier when `redisUrl` is set). */
  entries: number
  bytes: number
  /** With `redisUrl` only: lookups answered by Redis. */
  sharedHits?: number
  /** With `redisUrl` only: Redis operations that failed or read an unreadable value. */
  sharedErrors?: number
  /** With `redisUrl` only: answers larger than `maxValueBytes`, kept in this process only. */
  sharedSkipped?: number
}

export interface ResponseFormat {
  type: 'text' | 'json_object' | 'json_schema'
  /** json_schema: the schema's name. */
  name?: string
  /** json_schema: the JSON Schema the answer must follow. */
  schema?: Record<string, unknown>
}

/** Where Responses kept with `store: true` live (for `previous_response_id`, GET, DELETE). */
export interface ResponsesOptions {
  /** Keep them in Redis, so that any process continues a conversation (default: this process's memory). */
  redisUrl?: string
  /** Prepended to every Redis key (default 'ferrogate:responses:'). */
  prefix?: string
  /** How long a stored response lives (default 86400). */
  ttlSeconds?: number
  /** In memory: most responses kept; the oldest go first (default 10000). */
  maxEntries?: number
  /** In memory: most bytes kept in all, and the largest one response stored anywhere (default 64 MiB). */
  maxBytes?: number
}

/** One deployment behind a route alias. */
export interface RouteTarget {
  /** A key of `providers`. */
  provider: string
  /** The vendor's model name. */
  model: string
  /** Share of traffic relative to the route's other targets (default 1). */
  weight?: number
  /** Most calls in flight on this target; more wait in the admission queue. */
  maxConcurrent?: number
  /**
   * Whether active health checks may call this target (default true; checks are off
   * unless `routing.healthCheckIntervalMs` is set).
   */
  healthCheck?: boolean
}

/** Circuit breaker, health check and admission queue parameters for every route. */
export interface RoutingOptions {
  /** A target is ejected after this many failures in a row (default 5). */
  consecutiveFailures?: number
  /** ...or when more than this share of its last `errorRateWindow` calls failed (default 0.5). */
  errorRate?: number
  /** Calls in the error-rate window (default 20; judged from min(window, 10) calls on). */
  errorRateWindow?: number
  /** How long an ejected target sits out before one probe call (default 30000). */
  cooldownMs?: number
  /** Active health checks: a 1-token request to every target this often. Off by default. */
  healthCheckIntervalMs?: number
  /** Calls that may wait per route when every target is at maxConcurrent (default 1024). */
  queueLimit?: number
}

export interface SemanticCacheOptions {
  /**
   * The model that embeds the last user message: a route alias or "provider/model", called
   * through the gateway's own `embed()`.
   */
  embeddingModel: string
  /** Least cosine similarity of a hit (default 0.95). */
  threshold?: number
  /** Most entries kept (default 10000); the oldest go first. */
  maxEntries?: number
  /** Entries expire after this long (default: never in memory, 24 h in Redis). */
  ttlSeconds?: number
  /** Caches with different namespaces never share entries. */
  namespace?: string
  scope?: SemanticCacheScope
  /** Entries in Redis, followed by every process's index. */
  redisUrl?: string
  /** With `redisUrl`: prepended to every Redis key (default "ferrogate:"). */
  prefix?: string
}

export interface SemanticCacheScope {
  /** Conversations with more messages skip the cache (default 4). */
  maxMessages?: number
}

export interface SemanticCacheStats {
  hits: number
  misses: number
  /** In this process's index. */
  entries: number
  lookups: number
  embedErrors: number
  /** The median similarity of the last 1024 hits; null before the first. */
  p50SimilarityOfHits?: number
  /** With `redisUrl`: Redis operations that failed. */
  storeErrors: number
}

export interface ServeKeyOptions {
  key: string
  /** The caller's identity (request.user); default `key-N`. */
  user?: string
  dailyTokenQuota?: number
}

export interface ServeOptions {
  /** Default 127.0.0.1. */
  host?: string
  /** 0 picks a free port. */
  port: number
  /** Virtual keys; without them, no authentication. */
  keys?: Array<ServeKeyOptions>
  /** A request's headers must arrive within this; default 30 s. */
  headersTimeoutMs?: number
  /** A request's body must arrive within this after its headers; default 60 s. */
  bodyTimeoutMs?: number
  /** A connection with no request in progress is closed after this; default 30 s. */
  keepAliveTimeoutMs?: number
  /** Connections open at once; one more is closed at once. Default 1024. */
  maxConnections?: number
}

export interface SummaryOptions {
  /** UTC days, today included (default 30). */
  days?: number
}

export interface ToolCall {
  id: string
  name: string
  /** JSON text of the arguments, as the model produced it. */
  arguments: string
  /**
   * Gemini's opaque signature of the model's reasoning behind this call; send the call
   * back unchanged (Gemini 3 rejects a later turn without it).
   */
  thoughtSignature?: string
}

export interface ToolDefinition {
  name: string
  description?: string
  /** JSON Schema of the arguments. */
  parameters?: Record<string, unknown>
  /**
   * A prompt-caching breakpoint after this tool (it caches the tools up to it): `true`, or `{ ttl: '5m' | '1h' }` (Anthropic
   * `cache_control`, Bedrock `cachePoint`; OpenAI and Gemini cache by themselves).
   */
  cache?: boolean | CacheControl
}

export interface Usage {
  /** Includes cached and cache-write prompt tokens. */
  promptTokens: number
  /** Includes reasoning / thinking tokens. */
  completionTokens: number
  totalTokens: number
  /** Counted here (tiktoken) because the vendor sent no usage. */
  estimated: boolean
  cachedPromptTokens: number
  cacheWritePromptTokens: number
  reasoningTokens: number
}

/** What `CostTracker.record()` takes. */
export interface UsageRecord {
  /** Default 'anonymous'. */
  user?: string
  /** "provider/model" or a bare model name. */
  model: string
  promptTokens: number
  completionTokens: number
  /** Of promptTokens, read from the vendor's prompt cache. */
  cachedPromptTokens?: number
  /** Of promptTokens, written to the vendor's prompt cache. */
  cacheWritePromptTokens?: number
  /** Of completionTokens, spent on reasoning (priced as output). */
  reasoningTokens?: number
  latencyMs?: number
  /** false records the call as failed (default true). */
  success?: boolean
  provider?: string
  /** When the call happened (ms since the epoch; default now), for imports. */
  timestamp?: number
}

export interface WholeAnswer {
  status: number
  /** `[name, value]` pairs. */
  headers: Array<Array<string>>
  body: string
}
