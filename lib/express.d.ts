// Types of ferrogate/express (hand-written).
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ChatRequest, ChatResponse, Gateway, KeyVault, StreamEvent } from '../index'

type Req = IncomingMessage & Record<string, any>
type Res = ServerResponse
type Next = (error?: unknown) => void
export type Middleware = (req: Req, res: Res, next: Next) => void
export type ErrorMiddleware = (error: unknown, req: Req, res: Res, next: Next) => void

/** What `aiMiddleware` puts on `req.ai`: the gateway's calls bound to the caller. */
export interface BoundAI {
  /** The caller's identity, sent as `request.user` on every call. */
  user?: string
  chat(request: ChatRequest): Promise<ChatResponse>
  stream(request: ChatRequest, onChunk: (text: string) => void): Promise<ChatResponse>
  streamEvents(request: ChatRequest): AsyncIterable<StreamEvent>
}

declare global {
  namespace Express {
    interface Request {
      ai?: BoundAI
    }
  }
}

export function aiMiddleware(gateway: Gateway, options?: { user?: (req: Req) => string | undefined }): Middleware

export interface OpenAIRouterOptions {
  /** Virtual keys (Bearer auth): a KeyVault, or a function returning true / the caller's id. */
  keys?: KeyVault | ((key: string, req: Req) => boolean | string | Promise<boolean | string>)
  /** Where 5xx errors are logged, redacted (default console.error; false for none). */
  log?: ((line: string) => void) | false
  /** Hand unknown paths to `next()` instead of answering 404. */
  passThrough?: boolean
}
/** Mount at `/v1`: `POST /chat/completions` (JSON and SSE) and `GET /models`, OpenAI's wire format. */
/** gatewayRouter mounted at `/v1`: the same router. */
export function openaiRouter(gateway: Gateway, options?: OpenAIRouterOptions): Middleware
/**
 * Every client protocol of the native front door (`/v1/chat/completions`, `/v1/models`, …),
 * mounted at the app's root; other paths go to `next()`. Keys are read from
 * `Authorization: Bearer`, `x-api-key` or `api-key`.
 */
export function gatewayRouter(gateway: Gateway, options?: Omit<OpenAIRouterOptions, 'passThrough'>): Middleware

export interface RateLimitVerdict {
  allowed: boolean
  retryAfterMs: number
  remainingRequests: number
  remainingTokens: number
}
export interface RateLimiterLike {
  check?(key: string, tokens?: number): RateLimitVerdict | Promise<RateLimitVerdict>
  acquire?(key: string, tokens?: number): Promise<RateLimitVerdict>
}
export function rateLimit(
  limiter: RateLimiterLike,
  options?: { key?: (req: Req) => string; tokens?: (req: Req) => number; limit?: number },
): Middleware

/** `{ error: { id, code, message, type } }` with the error's status; secrets redacted. */
export function errorHandler(options?: { log?: ((line: string) => void) | false }): ErrorMiddleware

/** Prometheus text exposition of `gateway.metrics()`. */
export function metricsHandler(gateway: Gateway): Middleware

/** The public description of an error, as errorHandler() answers it. */
export interface DescribedError {
  status: number
  id: string
  code: string
  message: string
  type: string
  retryAfterMs?: number
}
export function describeError(error: unknown): DescribedError
/** errorHandler()'s answer to `error`, with `extra` fields next to `error` in the body. */
export function sendError(
  res: Res,
  error: unknown,
  options?: { log?: ((line: string) => void) | false; extra?: Record<string, unknown>; described?: DescribedError },
): void

/** What the dashboard reads of a cost summary. */
export interface DashboardCostSummary {
  totalCost: number
  totalRequests: number
  costByModel: Record<string, number> | { model: string; cost: number; requests?: number }[]
  costTrend: { date: string; cost: number; requests: number }[]
  requestsByModel?: Record<string, number>
}

/** What a cost tracker needs to offer the dashboard (CostTracker.summary; a Promise with `postgresUrl`). */
export interface CostSummarySource {
  summary(user: string | null, options?: { days?: number }): DashboardCostSummary | Promise<DashboardCostSummary>
}

export interface DashboardOptions {
  /** Cost per day and cost by model come from its summary(null, { days }). */
  costs?: CostSummarySource
  /** Days of cost history (default 30). */
  days?: number
  title?: string
  /** How often the page reloads its data (default 10000; 0 never). */
  refreshMs?: number
  /** Calls kept for exact latency percentiles (default 10000). */
  maxRecords?: number
}

export interface DashboardData {
  generatedAt: string
  days: number
  sources: { costs: boolean; stats: boolean; metrics: boolean }
  totals: { cost: number; requests: number; errors: number }
  costPerDay: { date: string; cost: number; requests: number }[]
  costByModel: { model: string; cost: number; requests?: number }[]
  latency: {
    source: 'calls' | 'histogram' | 'none'
    count: number
    p50Ms: number | null
    p99Ms: number | null
    byModel: { model: string; count: number; p50Ms: number | null; p99Ms: number | null }[]
  }
  cache: { hits: number; misses: number; hitRate: number | null }
  refusals: { rateLimited: number; budget: number; total: number }
}

/**
 * `GET /` → one self-contained HTML page (SVG charts: cost per day, cost by model, latency
 * p50/p99, cache hit rate, refusals); `GET /data` → its JSON. Mount it behind your own auth.
 */
export function dashboardHandler(
  gateway: Gateway,
  options?: DashboardOptions,
): Middleware & {
  /** Give it the gateway's onCall records for exact latency percentiles. */
  record(record: { latencyMs: number; model?: string; provider?: string; vendorModel?: string; outcome?: string }): void
  /** A Promise when `costs.summary()` returns one. */
  data(): DashboardData | Promise<DashboardData>
}

export type SSEItem = string | { event?: string; id?: string; data: unknown } | object
export function sse(
  res: Res,
  source: AsyncIterable<SSEItem> | Iterable<SSEItem> | ((signal: AbortSignal) => AsyncIterable<SSEItem> | Iterable<SSEItem>),
  options?: { heartbeatMs?: number; done?: string },
): Promise<void>

/** Removes API keys, bearer tokens, key=/token= values and absolute paths from text. */
export function redact(text: string): string
