// Types of ferrogate/ai-sdk (hand-written). The model objects follow the Vercel AI SDK's provider
// specification v3 (`LanguageModelV3`, `EmbeddingModelV3` from `@ai-sdk/provider` 3.x), which `ai` 6
// takes as it is and `ai` 7 adapts; they are declared structurally here so that this package needs
// neither `ai` nor `@ai-sdk/provider` to type-check.
import type { ChatRequest, Gateway } from '../index'

/** Options ferrogate reads from `providerOptions.ferrogate` of a call: these fields of a ChatRequest. */
export type FerrogateCallOptions = Pick<ChatRequest, 'user' | 'metadata' | 'cache' | 'timeoutMs' | 'maxRetries' | 'priority'>

/** What `providerMetadata.ferrogate` holds after a call. */
export interface FerrogateProviderMetadata {
  requestId: string
  provider: string
  costUsd: number
  cached: boolean
  attempts?: number
  estimatedUsage?: boolean
}

/** A ferrogate model as a Vercel AI SDK `LanguageModelV3`. */
export interface FerrogateLanguageModel {
  readonly specificationVersion: 'v3'
  readonly provider: 'ferrogate'
  readonly modelId: string
  readonly supportedUrls: Record<string, RegExp[]>
  doGenerate(options: any): PromiseLike<any>
  doStream(options: any): PromiseLike<any>
}

/** A ferrogate embedding model as a Vercel AI SDK `EmbeddingModelV3`. */
export interface FerrogateEmbeddingModel {
  readonly specificationVersion: 'v3'
  readonly provider: 'ferrogate'
  readonly modelId: string
  readonly maxEmbeddingsPerCall: number
  readonly supportsParallelCalls: boolean
  doEmbed(options: any): PromiseLike<any>
}

export interface FerrogateProvider {
  /** Any ferrogate model id ("provider/model") or route alias. */
  (modelId: string): FerrogateLanguageModel
  readonly specificationVersion: 'v3'
  languageModel(modelId: string): FerrogateLanguageModel
  chat(modelId: string): FerrogateLanguageModel
  embeddingModel(modelId: string): FerrogateEmbeddingModel
  textEmbeddingModel(modelId: string): FerrogateEmbeddingModel
  imageModel(modelId: string): never
}

export function createFerrogate(options: { gateway: Gateway }): FerrogateProvider
