// ESM entry of ferrogate/intelligent: the implementation is the CommonJS file next to it.
import intelligent from './intelligent.js'

export const { intentRecognition, smartValidation, routeSuggestion, aiErrorHandler, CodeGenerator, errorSignature } = intelligent
export default intelligent
