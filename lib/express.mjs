// ESM entry of ferrogate/express: the same objects as the CommonJS module.
import express from './express.js'

export const { aiMiddleware, openaiRouter, rateLimit, errorHandler, metricsHandler, dashboardHandler, sse, redact, toChatRequest, describeError, sendError } = express
export default express
