/* ferrogate — types of the public API. The part below the generated marker comes from
   the Rust doc comments (napi-rs); this header declares the JS layer over it. */

export type ErrorCode =
  | 'RATE_LIMITED' | 'BUDGET_EXCEEDED' | 'AUTHENTICATION' | 'INVALID_REQUEST' | 'NOT_FOUND'
  | 'PROVIDER_ERROR' | 'UPSTREAM_UNAVAILABLE' | 'TIMEOUT' | 'ABORTED' | 'CONFIG' | 'CALLBACK_ERROR'

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
  cause?: unknown
}

export interface ChatRequest {
  /** Aborts the call, the upstream request included; the call rejects with ABORTED. */
  signal?: AbortSignal
}

export interface GatewayOptions {
  /** Answers identical requests from here; `cache: false` on a request skips it. */
  cache?: ResponseCache | false
  /** Keyed by `request.user` (or "anonymous"); a refusal is RATE_LIMITED (429) with retryAfterMs. */
  rateLimiter?: RateLimiter
  /** Called once after every call, whatever its outcome, off the call's path. A throw (or a
   *  rejected promise) is counted in `stats().hookErrors`, never rethrown. */
  onCall?: (record: CallRecord) => void | Promise<void>
}

/** Answers kept by a hash of everything that changes them (see `keyFor`). */
export declare class ResponseCache {
  /** Throws a FerrogateError with code CONFIG when the options are wrong. */
  constructor(options?: ResponseCacheOptions)
  get(key: string): ChatResponse | undefined
  /** `value`: a ChatResponse, or any object with at least `content`. */
  set(key: string, value: CachedAnswer, ttlSeconds?: number): void
  delete(key: string): boolean
  clear(): void
  stats(): ResponseCacheStats
  /** The key the gateway uses for this request. */
  static keyFor(request: ChatRequest): string
}

/** Requests and tokens per minute per key (GCRA). */
export declare class RateLimiter {
  /** Throws a FerrogateError with code CONFIG when the options are wrong. */
  constructor(options: RateLimiterOptions)
  /** Admits one request costing `tokens` for `key` now, or refuses it (consuming nothing). */
  check(key: string, tokens?: number): RateLimitDecision
  acquire(key: string, tokens?: number): Promise<RateLimitDecision>
}

export type StreamEvent =
  | { type: 'text'; text: string }
  | { type: 'tool_call'; index: number; id?: string; name?: string; argumentsDelta: string }
  | { type: 'done'; response: ChatResponse }

export type BatchItem = { ok: true; response: ChatResponse } | { ok: false; error: FerrogateError }

export declare class Gateway {
  /** Throws a FerrogateError with code CONFIG when the options are wrong. */
  constructor(options: GatewayOptions)
  chat(request: ChatRequest): Promise<ChatResponse>
  /** Calls onChunk with each piece of text as it arrives; resolves with the whole response. */
  stream(request: ChatRequest, onChunk: (text: string) => void): Promise<ChatResponse>
  /** Breaking out of the loop aborts the upstream request. */
  streamEvents(request: ChatRequest): AsyncIterable<StreamEvent>
  /** Runs the requests through chat() with at most `concurrency` (default 8) in flight; one item per request, in input order. */
  batch(requests: ChatRequest[], options?: { concurrency?: number }): Promise<BatchItem[]>
  /** Route aliases, then "provider/model" for every model named in a route or advertised by a provider. */
  models(): string[]
  /** One entry per route target. */
  health(): DeploymentHealth[]
  /** Counters since the gateway was created. */
  stats(): GatewayStats
  /** Refuses new calls and ends calls in flight with ABORTED; resolves once they have settled. */
  close(): Promise<void>
}

// ---- generated from src/binding (napi-rs) ----
