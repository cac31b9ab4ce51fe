// Types of ferrogate/queue (hand-written; the implementation is lib/queue.js).
import { EventEmitter } from 'node:events'
import type { Gateway, Usage } from '../index'

export type JobType = 'text_generation' | 'code_review' | 'translation' | 'analysis'

export interface JobInputs {
  text_generation: { prompt: string }
  code_review: { code: string; language: string }
  translation: { text: string; targetLanguage: string; sourceLanguage?: string }
  analysis: { content: string; analysisType: string }
}

export type AIJob = {
  [T in JobType]: {
    type: T
    input: JobInputs[T]
    /** Resolved when the job runs; an unknown model fails it with NOT_FOUND. */
    model?: string
    /** Lower runs first (BullMQ's rule); 0 or absent: no priority. At most 2097152. */
    priority?: number
    /** The gateway call's `user`: limits, budgets and the ledger see it. */
    userId: string
    /** POSTed `{ jobId, success, result | error, timestamp }` when the job ends, signed with callbackSecret. */
    callbackUrl?: string
  }
}[JobType]

export interface AddOptions {
  delayMs?: number
  attempts?: number
}

export interface AIQueueOptions {
  gateway: Gateway
  redisUrl: string
  /** Default "ai-processing". */
  name?: string
  /** BullMQ key prefix (default "bull"). */
  prefix?: string
  defaultModel: string
  /** Jobs one worker runs at once (default 5). */
  concurrency?: number
  /** Tries per job (default 3). */
  attempts?: number
  /** First step of the exponential backoff between tries (default 2000). */
  backoffMs?: number
  /** Signs callbacks: `x-ferrogate-signature: sha256=<hex HMAC-SHA256 of the raw body>`. */
  callbackSecret?: string
  /** Tries per callback (default 5), with exponential backoff from callbackBackoffMs (default 1000). */
  callbackAttempts?: number
  callbackBackoffMs?: number
  /** Per callback try (default 10000). */
  callbackTimeoutMs?: number
  /**
   * Hosts (names or addresses, as in the URL) a callback may reach although they are private,
   * loopback, link-local or metadata addresses; every other callback goes to public addresses only.
   */
  callbackAllowHosts?: string[]
  /** Run a worker in this process (default true); false makes a producer only. */
  worker?: boolean
  /** BullMQ's stalled-job check interval and job lock duration (defaults 30000 each). */
  stalledIntervalMs?: number
  lockDurationMs?: number
}

export interface JobResult {
  content: string
  /** The model as named in the job (or defaultModel). */
  model: string
  usage: Usage
  costUsd: number
}

export interface JobError {
  code: string
  message: string
}

export interface JobOutcome {
  state: 'completed' | 'failed' | 'active' | 'waiting' | 'delayed' | 'prioritized' | 'waiting-children' | 'unknown'
  result?: JobResult
  error?: JobError
  /** Tries made so far (when the job has finished). */
  attempts?: number
}

export interface QueueStats {
  waiting: number
  active: number
  completed: number
  failed: number
  delayed: number
}

export declare class AIQueue extends EventEmitter {
  constructor(options: AIQueueOptions)
  /** Resolves once Redis answered and the worker (if any) is ready. */
  ready(): Promise<void>
  /** Rejects with a FerrogateError INVALID_REQUEST for an unknown type or a missing input field. */
  add(job: AIJob, opts?: AddOptions): Promise<string>
  addBulk(jobs: (AIJob & { opts?: AddOptions })[]): Promise<string[]>
  result(jobId: string, opts?: { timeoutMs?: number }): Promise<JobOutcome>
  stats(): Promise<QueueStats>
  clean(opts: { completedOlderThanMs?: number; failedOlderThanMs?: number }): Promise<{ completed: number; failed: number }>
  /** Removes every job and key of the queue. */
  obliterate(): Promise<void>
  close(): Promise<void>
  on(event: 'completed', listener: (event: { jobId: string; result: JobResult }) => void): this
  on(event: 'failed', listener: (event: { jobId: string; error: JobError }) => void): this
  on(event: 'progress', listener: (event: { jobId: string; progress: number | object }) => void): this
  on(event: 'callbackFailed', listener: (event: { jobId: string; error: Error }) => void): this
  on(event: 'error', listener: (error: Error) => void): this
}

export declare const JOB_TYPES: Readonly<Record<JobType, readonly string[]>>
export declare const NON_RETRYABLE_CODES: readonly string[]
export declare function signCallbackBody(secret: string, body: string | Buffer): string
export declare function verifyCallbackSignature(secret: string, body: string | Buffer, header: string | undefined): boolean
