'use strict'
// KeyVault: sealed provider keys, hashed virtual keys and daily token quotas.

const { inspect } = require('node:util')
const native = require('./addon.js')
const shapes = require('./shapes.js')
const { FerrogateError, newRequestId, configError, codedError, rethrown } = require('./errors.js')
const { nativeHandles } = require('./handles.js')

// napi's own argument checks on KeyVault methods arrive as plain text, which may quote the
// value (a provider key): only the field it names is kept.
const vaultArgumentError = (error) =>
  new FerrogateError({
    code: 'INVALID_REQUEST',
    status: 400,
    message: `KeyVault: invalid argument: ${shapes.plainNapiMessage(error?.message)}`,
    requestId: newRequestId(),
  })

const vaultError = (error) => codedError(error, vaultArgumentError)

const vaultCall = (work) => rethrown(work, vaultError)

/**
 * Provider keys sealed with AES-256-GCM (key derived from `secret` with HKDF-SHA256, a random
 * 96-bit nonce per encryption), virtual API keys stored as SHA-256 hashes and compared in
 * constant time, and per-id daily token quotas that reset at UTC midnight.
 */
class KeyVault {
  #native
  #now

  constructor(options) {
    if (options == null || typeof options.secret !== 'string' || options.secret === '') {
      throw configError('KeyVault needs { secret }: a non-empty string')
    }
    if (options.now != null && typeof options.now !== 'function') throw configError('KeyVault now must be a function')
    this.#native = new native.NativeKeyVault({ secret: options.secret })
    // The front door (gatewayRouter) checks keys and quotas against the native vault itself.
    nativeHandles.set(this, this.#native)
    this.#now = options.now ?? Date.now
  }

  static encrypt(plain, secret) {
    return vaultCall(() => native.NativeKeyVault.encrypt(plain, secret))
  }

  static decrypt(token, secret) {
    return vaultCall(() => native.NativeKeyVault.decrypt(token, secret))
  }

  add(id, entry) {
    vaultCall(() => this.#native.add(id, entry))
    return this
  }

  provider(id) {
    return vaultCall(() => this.#native.provider(id))
  }

  getKey(id) {
    return vaultCall(() => this.#native.getKey(id))
  }

  issueKey(id) {
    return vaultCall(() => this.#native.issueKey(id))
  }

  addVirtualKey(key, id) {
    vaultCall(() => this.#native.addVirtualKey(key, id))
    return this
  }

  verify(key) {
    if (typeof key !== 'string') return null
    return this.#native.verify(key)
  }

  checkQuota(id) {
    return vaultCall(() => this.#native.checkQuota(id, this.#now()))
  }

  recordUsage(id, tokens) {
    return vaultCall(() => this.#native.recordUsage(id, tokens, this.#now()))
  }

  [inspect.custom]() {
    return 'KeyVault { [secret] }'
  }
}

module.exports = { KeyVault }
