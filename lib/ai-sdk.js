'use strict'
// ferrogate/ai-sdk: a Vercel AI SDK provider whose models are calls through a ferrogate Gateway, so the
// gateway's routes, cache, limits, budgets, retries and ledger apply to every generateText / streamText /
// embed call. It only converts shapes: every decision is the native gateway's.
//
// It implements the provider specification 'v3' (LanguageModelV3, EmbeddingModelV3): ai 6 takes exactly
// that, and ai 7 still accepts a v3 model (it adapts it), while ai 6 refuses a v4 one. It imports nothing
// from `ai` or `@ai-sdk/provider`, so one object serves both majors.

const PROVIDER = 'ferrogate'

const FINISH_REASONS = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool-calls',
  content_filter: 'content-filter',
}

/** The gateway's finish reason as `{ unified, raw }`. */
function finishReason(raw) {
  return { unified: FINISH_REASONS[raw] ?? 'other', raw }
}

/** The gateway's usage in the v3 shape: prompt tokens split by cache, output split by reasoning. */
function usageOf(usage) {
  const cacheRead = usage.cachedPromptTokens ?? 0
  const cacheWrite = usage.cacheWritePromptTokens ?? 0
  const reasoning = usage.reasoningTokens ?? 0
  return {
    inputTokens: {
      total: usage.promptTokens,
      noCache: Math.max(0, usage.promptTokens - cacheRead - cacheWrite),
      cacheRead,
      cacheWrite,
    },
    outputTokens: {
      total: usage.completionTokens,
      text: Math.max(0, usage.completionTokens - reasoning),
      reasoning,
    },
    raw: { ...usage },
  }
}

function providerMetadata(response) {
  return {
    [PROVIDER]: {
      requestId: response.requestId,
      provider: response.provider,
      costUsd: response.costUsd,
      cached: response.cached,
      attempts: response.attempts,
      estimatedUsage: response.usage.estimated,
    },
  }
}

function unsupported(feature, details) {
  return details ? { type: 'unsupported', feature, details } : { type: 'unsupported', feature }
}

class FerrogateAdapterError extends Error {
  constructor(message) {
    super(message)
    this.name = 'FerrogateAdapterError'
    this.code = 'INVALID_REQUEST'
    this.status = 400
  }
}

/** Base64 text of the bytes of a v3 data content (Uint8Array, base64 string or URL). */
function imagePart(part) {
  const { data, mediaType } = part
  if (data instanceof URL) return { type: 'image_url', url: data.href }
  if (typeof data === 'string') {
    if (/^(https?|data):/i.test(data)) return { type: 'image_url', url: data }
    return { type: 'image', data, mimeType: mediaType }
  }
  return { type: 'image', data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'), mimeType: mediaType }
}

function userContent(parts, at) {
  return parts.map((part, i) => {
    if (part.type === 'text') return { type: 'text', text: part.text }
    if (part.type === 'file' && /^image\//.test(part.mediaType ?? '')) return imagePart(part)
    throw new FerrogateAdapterError(`${at}.content[${i}]: a ${part.type} part of type '${part.mediaType ?? part.type}' is not supported (text and images are)`)
  })
}

/** A tool result's output as the text the gateway sends the model. */
function toolOutputText(output) {
  switch (output.type) {
    case 'text':
    case 'error-text':
      return output.value
    case 'json':
    case 'error-json':
      return JSON.stringify(output.value)
    case 'execution-denied':
      return output.reason ?? 'The tool call was denied.'
    case 'content':
      return output.value
        .filter((item) => item.type === 'text')
        .map((item) => item.text)
        .join('\n')
    default:
      return JSON.stringify(output)
  }
}

/** The v3 prompt as the gateway's messages; what a message cannot carry becomes a warning. */
function toMessages(prompt, warnings) {
  const messages = []
  prompt.forEach((message, i) => {
    const at = `prompt[${i}]`
    switch (message.role) {
      case 'system':
        messages.push({ role: 'system', content: message.content })
        break
      case 'user':
        messages.push({ role: 'user', content: userContent(message.content, at) })
        break
      case 'assistant': {
        let text = ''
        const toolCalls = []
        for (const part of message.content) {
          if (part.type === 'text') text += part.text
          else if (part.type === 'tool-call') {
            const args = typeof part.input === 'string' ? part.input : JSON.stringify(part.input ?? {})
            toolCalls.push({ id: part.toolCallId, name: part.toolName, arguments: args })
          } else if (part.type === 'reasoning') {
            if (!warnings.some((w) => w.feature === 'reasoning in the prompt')) {
              warnings.push(unsupported('reasoning in the prompt', 'earlier reasoning is not sent back to the model'))
            }
          }
        }
        messages.push(toolCalls.length ? { role: 'assistant', content: text, toolCalls } : { role: 'assistant', content: text })
        break
      }
      case 'tool':
        for (const part of message.content) {
          if (part.type !== 'tool-result') continue
          messages.push({ role: 'tool', toolCallId: part.toolCallId, content: toolOutputText(part.output) })
        }
        break
      default:
        throw new FerrogateAdapterError(`${at}.role: unknown role '${message.role}'`)
    }
  })
  return messages
}

const UNSUPPORTED_SETTINGS = ['topK', 'presencePenalty', 'frequencyPenalty', 'seed']

/** The v3 call options as a gateway ChatRequest, plus the warnings for what it leaves out. */
function toChatRequest(modelId, options) {
  const warnings = []
  const request = { model: modelId, messages: toMessages(options.prompt, warnings) }
  if (options.maxOutputTokens != null) request.maxTokens = options.maxOutputTokens
  if (options.temperature != null) request.temperature = options.temperature
  if (options.topP != null) request.topP = options.topP
  if (options.stopSequences?.length) request.stop = options.stopSequences
  for (const setting of UNSUPPORTED_SETTINGS) {
    if (options[setting] != null) warnings.push(unsupported(setting))
  }
  const format = options.responseFormat
  if (format?.type === 'json') {
    request.responseFormat = format.schema
      ? { type: 'json_schema', name: format.name ?? 'response', schema: format.schema }
      : { type: 'json_object' }
  }
  const tools = []
  for (const tool of options.tools ?? []) {
    if (tool.type === 'function') {
      tools.push({ name: tool.name, description: tool.description, parameters: tool.inputSchema })
    } else {
      warnings.push(unsupported(`provider tool ${tool.id ?? tool.name}`, 'ferrogate runs function tools only'))
    }
  }
  if (tools.length) request.tools = tools
  const choice = options.toolChoice
  if (choice && tools.length) request.toolChoice = choice.type === 'tool' ? { name: choice.toolName } : choice.type
  // The SDK sets its own user-agent on every call; only headers the application chose are worth a warning.
  const ownHeaders = Object.entries(options.headers ?? {}).filter(([name, value]) => value !== undefined && name.toLowerCase() !== 'user-agent')
  if (ownHeaders.length) {
    warnings.push(unsupported('headers', 'per-call headers are set on the provider in the gateway options'))
  }
  const own = options.providerOptions?.[PROVIDER] ?? {}
  for (const key of ['user', 'metadata', 'cache', 'timeoutMs', 'maxRetries', 'priority']) {
    if (own[key] !== undefined) request[key] = own[key]
  }
  if (options.abortSignal) request.signal = options.abortSignal
  return { request, warnings }
}

class FerrogateLanguageModel {
  constructor(gateway, modelId) {
    this.specificationVersion = 'v3'
    this.provider = PROVIDER
    this.modelId = modelId
    // Images are sent to the vendor by URL, as the vendors take them.
    this.supportedUrls = { 'image/*': [/^https?:\/\//] }
    this.gateway = gateway
  }

  async doGenerate(options) {
    const { request, warnings } = toChatRequest(this.modelId, options)
    const response = await this.gateway.chat(request)
    const content = []
    if (response.content) content.push({ type: 'text', text: response.content })
    for (const call of response.toolCalls) {
      content.push({ type: 'tool-call', toolCallId: call.id, toolName: call.name, input: call.arguments || '{}' })
    }
    return {
      content,
      finishReason: finishReason(response.finishReason),
      usage: usageOf(response.usage),
      providerMetadata: providerMetadata(response),
      request: { body: { ...request, signal: undefined } },
      response: { id: response.id, modelId: response.model, timestamp: new Date() },
      warnings,
    }
  }

  async doStream(options) {
    const { request, warnings } = toChatRequest(this.modelId, options)
    const events = this.gateway.streamEvents(request)[Symbol.asyncIterator]()
    const textId = 'text-0'
    let textOpen = false
    // One entry per streamed tool call, by the gateway's index: its id and name as first seen.
    const tools = new Map()
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue({ type: 'stream-start', warnings })
      },
      async pull(controller) {
        let step
        try {
          step = await events.next()
        } catch (error) {
          controller.enqueue({ type: 'error', error })
          controller.close()
          return
        }
        if (step.done) {
          controller.close()
          return
        }
        const event = step.value
        if (event.type === 'text') {
          if (!textOpen) {
            textOpen = true
            controller.enqueue({ type: 'text-start', id: textId })
          }
          controller.enqueue({ type: 'text-delta', id: textId, delta: event.text })
        } else if (event.type === 'tool_call') {
          let tool = tools.get(event.index)
          if (!tool) {
            tool = { id: event.id ?? `call_${event.index}`, name: event.name ?? '' }
            tools.set(event.index, tool)
            controller.enqueue({ type: 'tool-input-start', id: tool.id, toolName: tool.name })
          }
          if (event.argumentsDelta) controller.enqueue({ type: 'tool-input-delta', id: tool.id, delta: event.argumentsDelta })
        } else if (event.type === 'done') {
          const response = event.response
          if (textOpen) controller.enqueue({ type: 'text-end', id: textId })
          const streamed = [...tools.values()]
          response.toolCalls.forEach((call, i) => {
            // The finished call is the truth for its id, name and arguments; the streamed entry only opened it.
            const opened = streamed[i]
            if (opened) controller.enqueue({ type: 'tool-input-end', id: opened.id })
            controller.enqueue({
              type: 'tool-call',
              toolCallId: opened?.id ?? call.id,
              toolName: call.name,
              input: call.arguments || '{}',
            })
          })
          controller.enqueue({ type: 'response-metadata', id: response.id, modelId: response.model, timestamp: new Date() })
          controller.enqueue({
            type: 'finish',
            finishReason: finishReason(response.finishReason),
            usage: usageOf(response.usage),
            providerMetadata: providerMetadata(response),
          })
        }
      },
      async cancel() {
        // Ends the native call: the upstream request is dropped too.
        await events.return?.()
      },
    })
    return { stream, request: { body: { ...request, signal: undefined } } }
  }
}

class FerrogateEmbeddingModel {
  constructor(gateway, modelId) {
    this.specificationVersion = 'v3'
    this.provider = PROVIDER
    this.modelId = modelId
    // The gateway splits a batch larger than the vendor's limit itself, so the SDK may send any number.
    this.maxEmbeddingsPerCall = Number.POSITIVE_INFINITY
    this.supportsParallelCalls = true
    this.gateway = gateway
  }

  async doEmbed(options) {
    if (typeof this.gateway.embed !== 'function') {
      throw new FerrogateAdapterError('this ferrogate Gateway has no embed(): update ferrogate')
    }
    const own = options.providerOptions?.[PROVIDER] ?? {}
    const request = { model: this.modelId, input: options.values }
    for (const key of ['user', 'metadata', 'cache', 'timeoutMs', 'dimensions']) {
      if (own[key] !== undefined) request[key] = own[key]
    }
    if (options.abortSignal) request.signal = options.abortSignal
    const result = await this.gateway.embed(request)
    return {
      embeddings: result.embeddings.map((vector) => Array.from(vector)),
      usage: { tokens: result.usage.promptTokens },
      providerMetadata: {
        [PROVIDER]: {
          requestId: result.requestId,
          provider: result.provider,
          costUsd: result.costUsd,
          cached: result.cached,
        },
      },
      warnings: [],
    }
  }
}

/**
 * A Vercel AI SDK provider over a ferrogate Gateway: `fg(id)` (any ferrogate model id or route alias)
 * is a language model, `fg.embeddingModel(id)` an embedding model.
 */
function createFerrogate(options = {}) {
  const gateway = options.gateway
  if (!gateway || typeof gateway.chat !== 'function' || typeof gateway.streamEvents !== 'function') {
    throw new TypeError('createFerrogate({ gateway }): gateway must be a ferrogate Gateway')
  }
  const languageModel = (modelId) => {
    if (typeof modelId !== 'string' || !modelId) throw new TypeError('fg(modelId): modelId must be a non-empty string')
    return new FerrogateLanguageModel(gateway, modelId)
  }
  const embeddingModel = (modelId) => {
    if (typeof modelId !== 'string' || !modelId) throw new TypeError('fg.embeddingModel(modelId): modelId must be a non-empty string')
    return new FerrogateEmbeddingModel(gateway, modelId)
  }
  const provider = (modelId) => languageModel(modelId)
  provider.specificationVersion = 'v3'
  provider.languageModel = languageModel
  provider.chat = languageModel
  provider.embeddingModel = embeddingModel
  provider.textEmbeddingModel = embeddingModel
  provider.imageModel = (modelId) => {
    throw new FerrogateAdapterError(`fg.imageModel('${modelId}'): ferrogate has no image models`)
  }
  return provider
}

module.exports = { createFerrogate }
