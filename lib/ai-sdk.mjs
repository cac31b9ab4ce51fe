// ESM entry of ferrogate/ai-sdk: the same objects as the CommonJS module.
import aiSdk from './ai-sdk.js'

export const { createFerrogate } = aiSdk
export default aiSdk
