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
  /** Prometheus text exposition: requests, latency/TTFT histograms, tokens, cost, cache, refusals, circuit state. */
  metrics(): string
  /** One entry per route target. */
  health(): DeploymentHealth[]
  /** Aborts every call in flight; later calls reject with ABORTED. */
  close(): Promise<void>
}

export interface GatewayOptions {
  /** Called with each latency anomaly (EWMA z-score per provider/model) as the call that showed it ends. */
  onAnomaly?: (anomaly: LatencyAnomaly) => void
}

/** Symbol.for('ferrogate.openaiSse'): the Gateway method ferrogate/express streams OpenAI SSE bytes through (internal). */
export declare const OPENAI_SSE: unique symbol

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

// ---- generated from src/binding (napi-rs) ----
