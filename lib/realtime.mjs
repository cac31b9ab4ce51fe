// ESM entry of ferrogate/realtime: the implementation is the CommonJS file next to it.
import realtime from './realtime.js'

export const { attachChat, sseChat } = realtime
export default realtime
