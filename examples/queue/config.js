'use strict'
// Shared by the queue example's producer and worker: the gateway and the queue options.
const { Gateway } = require('ferrogate')

const { OPENAI_API_KEY, OPENAI_BASE_URL } = process.env

function gatewayAndModel() {
  if (OPENAI_API_KEY) {
    const openai = { kind: 'openai', apiKey: OPENAI_API_KEY }
    if (OPENAI_BASE_URL) openai.baseUrl = OPENAI_BASE_URL
    return { gateway: new Gateway({ providers: { openai }, maxRetries: 2 }), defaultModel: 'openai/gpt-4o-mini', using: 'OpenAI' }
  }
  return { gateway: new Gateway({ providers: { mock: { kind: 'mock' } } }), defaultModel: 'mock/mock-1', using: 'no OPENAI_API_KEY: the built-in mock provider' }
}

const queueOptions = {
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  name: process.env.QUEUE_NAME || 'ferrogate-example',
  prefix: process.env.QUEUE_PREFIX || 'bull',
}

module.exports = { gatewayAndModel, queueOptions }
