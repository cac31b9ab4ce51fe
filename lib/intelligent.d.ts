// Types of ferrogate/intelligent (hand-written; the implementation is lib/intelligent.js).
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Gateway } from '../index'

type Req = IncomingMessage & Record<string, any>
type Res = ServerResponse
type Next = (error?: unknown) => void

/** Why a model call gave nothing usable (the keys of `missReasons`). */
export type MissReason = 'timeout' | 'budget' | 'rateLimited' | 'invalid' | 'error'
export type MissCounters = Record<MissReason, number>
export type OnMiss = (reason: MissReason, error: unknown, req?: Req) => void

export interface AIContext {
  /** One of `intents` when they were given. */
  intent: string
  entities: { type: string; value: string }[]
  /** 0 to 1. */
  confidence: number
  suggestedAction: string
}

declare global {
  namespace Express {
    interface Request {
      aiContext?: AIContext
    }
  }
}

export interface IntentRecognitionOptions {
  gateway: Gateway
  model: string
  /** The intents to choose from: the answer schema's enum. */
  intents?: string[]
  /** Headers are set at or above this confidence (default 0.8). */
  minConfidence?: number
  /** `next()` is called within this time whatever the model does (default 1500). */
  timeoutMs?: number
  /** How long an answer is reused for identical content (default 300; 0 turns the cache off). */
  cacheTtlSeconds?: number
  /** Default 1000. */
  maxCacheEntries?: number
  /** The `user` of the model call (budgets, limits); default `req.ai?.user` from aiMiddleware. */
  user?: (req: Req) => string | undefined
  /** Called on every miss (failure, timeout, refusal); what it throws is ignored. */
  onMiss?: OnMiss
}

export interface IntentRecognitionStats {
  /** Requests that had content to classify. */
  requests: number
  /** Requests that got `aiContext` from a model call. */
  recognized: number
  /** Requests answered from the cache. */
  cacheHits: number
  /** Requests without content (no model call). */
  skipped: number
  /** Requests that went on without `aiContext` because the model missed. */
  misses: number
  missReasons: MissCounters
  cacheEntries: number
}

export type IntelligentMiddleware<S> = ((req: Req, res: Res, next: Next) => void) & { stats(): S }

/**
 * Sets `req.aiContext` from one structured-output call on `body.message`, `body.query` or
 * `?q=`, and `X-AI-Intent` / `X-AI-Confidence` at or above `minConfidence`. Never blocks a
 * request: on a failure, a refusal or after `timeoutMs` it calls `next()` without `aiContext`.
 */
export function intentRecognition(options: IntentRecognitionOptions): IntelligentMiddleware<IntentRecognitionStats>

export interface SmartValidationOptions {
  /** A JSON Schema (ajv, with ajv-formats) per intent. */
  schemas: Record<string, object>
  /** With a gateway and model, the suggestions come from the model. */
  gateway?: Gateway
  model?: string
  /** The intent is trusted (and the body validated) at or above this confidence (default 0.7). */
  minConfidence?: number
  /** The model's time for suggestions (default 1000); then rule-based suggestions are sent. */
  suggestionTimeoutMs?: number
  cacheTtlSeconds?: number
  onMiss?: OnMiss
}

export interface ValidationDetail {
  /** JSON Pointer of the offending value (for `required`, of the missing property). */
  path: string
  keyword: string
  message: string
  params: Record<string, unknown>
}

/** The 400 body smartValidation answers with. */
export interface ValidationFailure {
  error: 'Validation failed'
  details: ValidationDetail[]
  suggestions: string[]
}

export interface SmartValidationStats {
  validated: number
  failed: number
  modelSuggestions: number
  misses: number
  missReasons: MissCounters
}

export function smartValidation(options: SmartValidationOptions): IntelligentMiddleware<SmartValidationStats>

/** `X-Suggested-Route` when `req.aiContext.suggestedAction` maps to a path other than this one. */
export function routeSuggestion(map: Record<string, string>): (req: Req, res: Res, next: Next) => void

export interface ErrorAnalysis {
  errorType: string
  severity: 'low' | 'medium' | 'high' | 'critical'
  suggestions: string[]
}

export interface AIErrorHandlerOptions {
  gateway: Gateway
  model: string
  /** The answer is never delayed past this (default 1500). */
  budgetMs?: number
  /** Where 5xx errors are logged, redacted (default console.error; false for none). */
  log?: ((line: string) => void) | false
  /** Return false to answer an error without asking the model. */
  analyze?: (error: unknown, req: Req) => boolean
  /**
   * Analyse 5xx errors whose message is shown (ferrogate errors such as UPSTREAM_UNAVAILABLE)
   * too (default false: 4xx only). An error whose message is hidden (a plain 500) never gets one.
   */
  analyze5xx?: boolean
  /** Default 3600. */
  cacheTtlSeconds?: number
  maxCacheEntries?: number
  onMiss?: OnMiss
}

export interface AIErrorHandlerStats {
  errors: number
  analyzed: number
  cacheHits: number
  misses: number
  missReasons: MissCounters
  cacheEntries: number
}

/**
 * errorHandler()'s answer `{ error: { id, code, message, type } }`, plus `analysis` when the
 * model answers within `budgetMs`. Analyses are cached per error signature; secrets are
 * redacted before the prompt is built.
 */
export function aiErrorHandler(
  options: AIErrorHandlerOptions,
): ((error: unknown, req: Req, res: Res, next: Next) => void) & { stats(): AIErrorHandlerStats }

/**
 * The prompt of an error analysis, which is also its cache key: name, code, status, message
 * and stack frames redacted, with ids, numbers and quoted values blanked, and the matched
 * route pattern (`req.route.path`), never the URL the client sent.
 */
export function errorSignature(error: unknown, described?: { code: string; status: number }, req?: Req): string

/** The seed's route spec. */
export interface RouteSpec {
  path: string
  method?: string
  description?: string
  operationId?: string
  /** An array of parameters, or a map name → type name or parameter. */
  parameters?:
    | RouteParameter[]
    | Record<string, string | Omit<RouteParameter, 'name'>>
  /** status → description, or `{ description, schema?, example? }`; or an array with `status`. */
  responses?:
    | Record<string, string | { description?: string; schema?: object; example?: unknown }>
    | { status: number | string; description?: string; schema?: object; example?: unknown }[]
}

export interface RouteParameter {
  name: string
  /** Default: path when the path names it, else body for POST/PUT/PATCH, else query. */
  in?: 'path' | 'query' | 'header' | 'body'
  type?: string
  schema?: object
  enum?: unknown[]
  format?: string
  required?: boolean
  description?: string
}

export interface CodeGeneratorOptions {
  gateway: Gateway
  model: string
  /** The model's time per generation (default 30000); then the input's own text is used. */
  timeoutMs?: number
  user?: string
  onMiss?: OnMiss
}

export class CodeGenerator {
  constructor(options: CodeGeneratorOptions)
  /** A TypeScript Express Router for the spec (object or JSON text), Prettier-formatted. */
  route(spec: RouteSpec | string): Promise<string>
  /** A node:test suite (ES module) for a module's source. */
  tests(source: string, options?: { fileName?: string; importPath?: string }): Promise<string>
  /** OpenAPI 3.0.3 YAML for a route spec (JSON text, one or an array) or a module's Express routes. */
  docs(source: string, options?: { fileName?: string; title?: string; version?: string }): Promise<string>
  stats(): { calls: number; answered: number; misses: number; missReasons: MissCounters }
}
