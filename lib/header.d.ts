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
  /** One entry per route target. */
  health(): DeploymentHealth[]
  /** Refuses new calls and ends calls in flight with ABORTED; resolves once they have settled. */
  close(): Promise<void>
}

// ---- generated from src/binding (napi-rs) ----
