'use strict'
// The delivery protocol: how every call of every gateway reaches JS. The native side wakes the
// JS thread once for whatever is ready (events of many streams, responses of many chats) and
// hands it to `dispatch` as the JSON text of one flat array [callId, kind, payload, ...].

const { FerrogateError, invalid, abortedBefore, rethrown } = require('./errors.js')
const telemetry = require('./telemetry.js')

// The kinds match src/binding/pump.rs.
const TEXT = 0
const TOOL_CALL = 1
const DONE = 2
const FAILED = 3
// The front door's answers (src/binding/ingress.rs): a head, a stream's byte batches, its end.
const HEAD = 4
const BYTES = 5
const END = 6
// Kind 7, a traced call's report, is read only by telemetry.js (dispatch hands it every delivery).
// A stream may run this many events ahead of its consumer (src/binding/mod.rs STREAM_CREDITS);
// consumed events are acknowledged in steps of ACK_STEP, so short streams never need to.
const ACK_STEP = 64

const calls = new Map()
let lastCallId = 0
const nextCallId = () => (lastCallId = (lastCallId + 1) >>> 0)

function dispatch(batchJson) {
  const batch = JSON.parse(batchJson)
  for (let i = 0; i < batch.length; i += 3) {
    const call = calls.get(batch[i])
    if (call === undefined) continue
    if (call.telemetry !== null) call.telemetry.delivered(batch[i + 1], batch[i + 2])
    call.deliver(batch[i + 1], batch[i + 2])
  }
}

// A call's coded error; one the caller's own signal aborted keeps the signal's reason as its cause.
const callError = (info, signal) =>
  new FerrogateError(info, info.code === 'ABORTED' && signal?.aborted ? signal.reason : undefined)

// What the native side delivers to under one call id, acknowledging what JS consumed.
class Delivery {
  constructor(native) {
    this.native = native
    this.id = nextCallId()
    this.unacked = 0
    // A traced call's span (lib/telemetry.js), told of each delivery.
    this.telemetry = null
  }

  acknowledgeOne() {
    if (++this.unacked === ACK_STEP) {
      this.native.ack(this.id, ACK_STEP)
      this.unacked = 0
    }
  }
}

// One call in flight: the native side's call id, its AbortSignal wiring, and its end.
class Call extends Delivery {
  constructor(native, body, stream, signal, traceParent) {
    super(native)
    this.signal = signal
    this.onAbort = null
    this.telemetry = telemetry.startCall('chat', body, stream, traceParent)
    // Throws only for napi's own type checks of the request; the rest arrives as FAILED.
    this.requestId = rethrown(
      () => native.begin(this.id, body, stream, this.telemetry?.traceparent),
      (error) => this.telemetry?.refused(error, 'INVALID_REQUEST') ?? error,
    )
    calls.set(this.id, this)
    if (signal) {
      this.onAbort = () => native.cancel(this.id)
      signal.addEventListener('abort', this.onAbort, { once: true })
    }
  }

  // After its end (or once JS gave up on it): later deliveries are dropped.
  settle() {
    calls.delete(this.id)
    if (this.onAbort !== null) this.signal.removeEventListener('abort', this.onAbort)
  }

  cancel() {
    this.settle()
    this.native.cancel(this.id)
    this.telemetry?.abandoned()
  }

  error(info) {
    return callError(info, this.signal)
  }
}

// chat(): one promise, settled by the call's end.
class ChatCall extends Call {
  constructor(native, body, signal, resolve, reject, stream = false) {
    super(native, body, stream, signal)
    this.resolve = resolve
    this.reject = reject
  }

  deliver(kind, payload) {
    if (kind === DONE) {
      this.settle()
      this.resolve(payload)
    } else if (kind === FAILED) {
      this.settle()
      this.reject(this.error(payload))
    }
  }
}

// stream(): text goes straight to onChunk, on the dispatch that brought it.
class CallbackCall extends ChatCall {
  constructor(native, body, signal, onChunk, resolve, reject) {
    super(native, body, signal, resolve, reject, true)
    this.onChunk = onChunk
  }

  deliver(kind, payload) {
    if (kind !== TEXT) return super.deliver(kind, payload)
    try {
      this.onChunk(payload)
    } catch (error) {
      // Cancelling the native call closes the upstream request.
      this.cancel()
      this.reject(
        new FerrogateError(
          { code: 'CALLBACK_ERROR', status: 500, message: `onChunk threw: ${error?.message ?? String(error)}`, requestId: this.requestId },
          error,
        ),
      )
      return
    }
    this.acknowledgeOne()
  }
}

// streamEvents(): events queue here until the async iterator asks for them.
class EventsCall extends Call {
  constructor(native, body, signal, traceParent) {
    super(native, body, true, signal, traceParent)
    this.events = []
    this.failure = null
    this.ended = false
    this.wake = null
  }

  deliver(kind, payload) {
    if (kind === TEXT) {
      this.events.push({ type: 'text', text: payload })
    } else if (kind === TOOL_CALL) {
      this.events.push(payload)
    } else if (kind === DONE) {
      this.settle()
      this.ended = true
      this.events.push({ type: 'done', response: payload })
    } else if (kind === FAILED) {
      this.settle()
      this.ended = true
      this.failure = this.error(payload)
    }
    if (this.wake !== null) {
      const wake = this.wake
      this.wake = null
      wake()
    }
  }

  // The consumer took one more event.
  consumed() {
    this.acknowledgeOne()
  }

  next() {
    return new Promise((resolve) => {
      this.wake = resolve
    })
  }
}

// One request answered by the front door: the head, then (for a stream) byte batches, each
// handed to `sink` as it comes; JS only writes them.
class IngressCall extends Delivery {
  constructor(native, door, sink, request) {
    super(native)
    this.sink = sink
    this.telemetry = telemetry.startIngress(request.method, request.path, request.headers)
    calls.set(this.id, this)
    try {
      const headers = this.telemetry?.headers ?? request.headers
      door.handle(this.id, request.method, request.path, headers, request.body, request.keyVerdict ?? undefined)
    } catch (error) {
      calls.delete(this.id)
      throw this.telemetry?.refused(error, '_OTHER') ?? error
    }
  }

  deliver(kind, payload) {
    if (kind === HEAD) {
      if (payload.body !== undefined) calls.delete(this.id)
      this.sink.head(payload)
    } else if (kind === BYTES) {
      // Acknowledged once written; a full socket holds the acknowledgement until it drains,
      // which stops the native side after STREAM_CREDITS batches.
      if (this.sink.bytes(payload)) this.acknowledgeOne()
      else this.sink.onDrain(() => this.acknowledgeOne())
    } else if (kind === END) {
      calls.delete(this.id)
      this.sink.end()
    }
  }

  cancel() {
    this.native.cancel(this.id)
  }
}

// embed(): the native promise resolves with { response } or { error } (a coded error, as chat's).
async function embedCall(native, body, signal) {
  if (signal?.aborted) throw abortedBefore(signal)
  const id = nextCallId()
  const traced = telemetry.startCall('embeddings', body, false)
  const pending = rethrown(
    () => native.embed(id, body, traced?.traceparent),
    (error) => invalid(traced?.refused(error, 'INVALID_REQUEST') ?? error),
  )
  const onAbort = () => native.cancel(id)
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const outcome = await pending
    traced?.settled(outcome)
    const { response, error } = outcome
    if (error) throw callError(error, signal)
    return response
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}

module.exports = { dispatch, ChatCall, CallbackCall, EventsCall, IngressCall, embedCall }
