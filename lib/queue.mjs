// ESM entry of ferrogate/queue: the implementation is the CommonJS file next to it.
import queue from './queue.js'

export const { AIQueue, JOB_TYPES, NON_RETRYABLE_CODES, signCallbackBody, verifyCallbackSignature } = queue
export default queue
