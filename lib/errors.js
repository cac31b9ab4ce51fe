'use strict'
// Coded errors and request ids, shared by index.js and every lib/ module: one FerrogateError,
// one id generator, one CONFIG error, one parser of the native layer's coded messages.

const { randomBytes } = require('node:crypto')

class FerrogateError extends Error {
  constructor(info, cause) {
    super(info.message, cause === undefined ? undefined : { cause })
    this.name = 'FerrogateError'
    this.code = info.code
    this.status = info.status
    this.requestId = info.requestId
    if (info.provider != null) this.provider = info.provider
    if (info.retryAfterMs != null) this.retryAfterMs = Math.ceil(info.retryAfterMs)
    if (info.upstreamRequestId != null) this.upstreamRequestId = info.upstreamRequestId
    if (info.guardrail != null) this.guardrail = info.guardrail
    if (info.entity != null) this.entity = info.entity
    if (cause === undefined && info.cause != null) this.cause = new Error(info.cause)
  }
}

// Same shape as the native layer's ids, for errors raised before a call reaches it.
const newRequestId = () => `fg_${randomBytes(8).toString('hex')}`

/** A CONFIG error (500): the options or the configuration are wrong. */
const configError = (message, cause) =>
  new FerrogateError({ code: 'CONFIG', status: 500, message, requestId: newRequestId() }, cause)

/** INVALID_REQUEST (400) around the error napi's own argument checks threw. */
const invalid = (error, requestId = newRequestId()) =>
  new FerrogateError(
    { code: 'INVALID_REQUEST', status: 400, message: `invalid request: ${error.message}`, requestId },
    error,
  )

// A signal aborted before the call: nothing is sent upstream.
const abortedBefore = (signal) =>
  new FerrogateError(
    { code: 'ABORTED', status: 499, message: "request aborted by the caller's signal", requestId: newRequestId() },
    signal.reason,
  )

const STATUS_OF_CODE = {
  INVALID_REQUEST: 400,
  GUARDRAIL_BLOCKED: 400,
  BUDGET_EXCEEDED: 402,
  NOT_FOUND: 404,
  RATE_LIMITED: 429,
  CONFIG: 500,
  UPSTREAM_UNAVAILABLE: 503,
}

// Native errors that keep their code arrive as "CODE|message" (src/binding/mod.rs `coded`);
// napi's own argument checks arrive as plain text and get `fallback`'s error. `word` may
// reword the message for its code; `cause` becomes the error's cause.
function codedError(error, fallback, { word, cause } = {}) {
  const match = /^([A-Z_]+)\|(.*)$/s.exec(error?.message ?? '')
  if (match === null) return fallback(error)
  const [, code, message] = match
  const info = { code, status: STATUS_OF_CODE[code] ?? 500, message: word ? word(code, message) : message, requestId: newRequestId() }
  return new FerrogateError(info, cause)
}

/** A native error that keeps its code, else INVALID_REQUEST. */
const codedOrInvalid = (error) => codedError(error, invalid)

/** `work()`'s result; what it throws becomes `toError(thrown)`. */
function rethrown(work, toError) {
  try {
    return work()
  } catch (error) {
    throw toError(error)
  }
}

/** The same for asynchronous work: always a Promise, also when `work` throws before it starts. */
async function rethrownAsync(work, toError) {
  try {
    return await work()
  } catch (error) {
    throw toError(error)
  }
}

module.exports = {
  FerrogateError,
  newRequestId,
  configError,
  invalid,
  abortedBefore,
  codedError,
  codedOrInvalid,
  rethrown,
  rethrownAsync,
  STATUS_OF_CODE,
}
