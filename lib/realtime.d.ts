// Types of ferrogate/realtime (hand-written; the implementation is lib/realtime.js).
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Gateway, Usage } from '../index'

export interface ChatHistoryOptions {
  /** Messages kept per session and sent with each question (default 50). */
  maxMessages?: number
  /** How long an idle session can be resumed (default 86400). */
  ttlSeconds?: number
  /** Keep sessions in Redis, so any process can resume them. */
  redisUrl?: string
  /** Redis key prefix for sessions (default "ferrogate:chat:"). */
  keyPrefix?: string
  /** In memory only: sessions kept at most, least recently used dropped first (default 10000). */
  maxSessions?: number
  /** In memory only: bytes (JSON) of all sessions at most, least recently used dropped first (default 64 MiB). */
  maxBytes?: number
}

export interface AttachChatOptions {
  gateway: Gateway
  /** Default "/ws/chat". */
  path?: string
  /** The models a client may pick with change_model. */
  models: string[]
  /** Default models[0]; must be one of models. */
  defaultModel?: string
  systemPrompt?: string
  /** The user a connection acts for: `user` of its gateway calls, and the target of user_typing. */
  user?: (req: IncomingMessage) => string | undefined
  /** false (or a throw) refuses the upgrade with HTTP 401. */
  authenticate?: (req: IncomingMessage) => boolean | Promise<boolean>
  history?: ChatHistoryOptions
  /**
   * A client whose unsent data passes this many bytes pauses the upstream read; a message that finds
   * it passed (a client sending without reading) closes the socket with 1008 (default 1 MiB).
   */
  maxBufferedBytes?: number
  /** Largest frame accepted from a client (default 1 MiB). */
  maxPayloadBytes?: number
  /** Dead connections are dropped after two missed pings (default 30000). */
  pingIntervalMs?: number
}

export interface ChatHandle {
  /** Aborts answers in flight, closes every socket and the history store. */
  close(): Promise<void>
  /** Open WebSocket connections. */
  sessionCount(): number
  /** The underlying `ws` WebSocketServer (typed by @types/ws when installed). */
  webSocketServer: unknown
}

export interface HistoryMessage {
  role: 'user' | 'assistant'
  content: string
}

/** Client → server frames. */
export type ChatClientMessage =
  | { type: 'chat_message'; id?: string | number; content: string }
  | { type: 'change_model'; model: string }
  | { type: 'clear_history' }
  | { type: 'typing_start' }
  | { type: 'typing_stop' }
  | { type: 'cancel' }

type Stamped<T> = T & { timestamp: string }

/** Server → client frames; each carries an ISO timestamp. */
export type ChatServerMessage = Stamped<
  | { type: 'connection_established'; sessionId: string; model: string; supportedModels: string[]; history: HistoryMessage[] }
  | { type: 'message_received'; messageId: string }
  | { type: 'ai_typing'; isTyping: boolean }
  | { type: 'ai_response_start'; messageId: string }
  | { type: 'ai_response_chunk'; messageId: string; chunk: string }
  | { type: 'ai_response_complete'; messageId: string; fullResponse: string; model: string; usage: Usage; costUsd: number }
  | { type: 'ai_response_error'; messageId: string; code: string; message: string }
  | { type: 'model_changed'; model: string }
  | { type: 'history_cleared' }
  | { type: 'user_typing'; userId: string; isTyping: boolean }
  | { type: 'error'; code: 'INVALID_MESSAGE' | 'UNKNOWN_MODEL' | 'BUSY' | string; message: string }
>

export declare function attachChat(server: HttpServer | HttpsServer, options: AttachChatOptions): ChatHandle

export interface SseChatOptions {
  gateway: Gateway
  defaultModel: string
  /** The models a client may name; any other is a 400 (default [defaultModel]). */
  models?: string[]
  /** Default 30000. */
  heartbeatMs?: number
  /** The user a channel belongs to: for anyone else its clientId answers 404. */
  user?: (req: IncomingMessage) => string | undefined
  /** Batch items run at most this many at a time (default 4); their events still go out in order. */
  batchConcurrency?: number
  /** Default 100. */
  maxBatchSize?: number
}

export type SseChatEvent = Stamped<
  | { type: 'connected'; clientId: string }
  | { type: 'heartbeat' }
  | { type: 'processing_start'; requestId: string }
  | { type: 'response_chunk'; requestId: string; chunk: string }
  | { type: 'response_complete'; requestId: string; fullResponse: string; usage: Usage; costUsd: number }
  | { type: 'error'; requestId: string; code: string; message: string }
  | { type: 'batch_start'; batchId: string; totalRequests: number }
  | { type: 'batch_item_complete'; batchId: string; requestId: string | number; index: number; response: string; usage: Usage; costUsd: number }
  | { type: 'batch_item_error'; batchId: string; requestId: string | number; index: number; code: string; message: string }
  | { type: 'batch_complete'; batchId: string }
>

/** An Express router: mount it with app.use('/events', sseChat(...)). */
export interface SseChatRouter {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void
  /** Open SSE channels. */
  clientCount(): number
  /** Ends every channel and aborts its calls. */
  close(): void
}

export declare function sseChat(options: SseChatOptions): SseChatRouter
