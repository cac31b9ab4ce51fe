// Types of ferrogate/express (hand-written).
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ChatRequest, ChatResponse, Gateway, KeyVault, StreamEvent } from './index'

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
  /** Largest accepted body (default 16 MiB). */
  bodyLimitBytes?: number
  /** Where 5xx errors are logged, redacted (default console.error; false for none). */
  log?: ((line: string) => void) | false
  /** Hand unknown paths to `next()` instead of answering 404. */
  passThrough?: boolean
}
/** Mount at `/v1`: `POST /chat/completions` (JSON and SSE) and `GET /models`, OpenAI's wire format. */
export function openaiRouter(gateway: Gateway, options?: OpenAIRouterOptions): Middleware

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

export type SSEItem = string | { event?: string; id?: string; data: unknown } | object
export function sse(
  res: Res,
  source: AsyncIterable<SSEItem> | Iterable<SSEItem> | ((signal: AbortSignal) => AsyncIterable<SSEItem> | Iterable<SSEItem>),
  options?: { heartbeatMs?: number; done?: string },
): Promise<void>

/** Removes API keys, bearer tokens, key=/token= values and absolute paths from text. */
export function redact(text: string): string
/** An OpenAI chat.completions body as a ferrogate ChatRequest. */
export function toChatRequest(body: unknown): ChatRequest
