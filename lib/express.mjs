// ESM entry of ferrogate/express: the same objects as the CommonJS module.
import express from './express.js'

export const { aiMiddleware, gatewayRouter, openaiRouter, rateLimit, errorHandler, metricsHandler, dashboardHandler, sse, redact, describeError, sendError } = express
export default express
