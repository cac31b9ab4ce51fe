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
