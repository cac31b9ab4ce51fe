'use strict'
// `ferrogate serve`: the OpenAI-compatible endpoint of ferrogate/express as a standalone proxy
// on node:http (no Express). Config = GatewayOptions as JSON (class instances replaced by their
// options objects) plus host, port and keys, with ${ENV_VAR} references for secrets.

const fs = require('node:fs')
const http = require('node:http')
const { randomBytes } = require('node:crypto')
const ferrogate = require('../index.js')
const { openaiRouter, redact } = require('./express.js')

class ConfigError extends Error {}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/** Replaces `${VAR}` (and `${VAR:-default}`) in every string of the config. */
function expandEnv(value, env, at = '') {
  if (typeof value === 'string') {
    return value.replace(ENV_REFERENCE, (_, name, fallback) => {
      const found = env[name]
      if (found != null && found !== '') return found
      if (fallback !== undefined) return fallback
      throw new ConfigError(`config at ${at || '(root)'} needs environment variable ${name}, which is not set`)
    })
  }
  if (Array.isArray(value)) return value.map((item, i) => expandEnv(item, env, `${at}[${i}]`))
  if (value != null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, at ? `${at}.${k}` : k)]))
  }
  return value
}

function readConfig(path, env = process.env) {
  let text
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`cannot read the config file: ${error.code ?? error.message}`)
  }
  let parsed
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new ConfigError(`the config file is not valid JSON: ${error.message}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError('the config must be a JSON object')
  return expandEnv(parsed, env)
}

// GatewayOptions fields that take a class instance in JS, given here as its options object.
const INSTANCE_FIELDS = { cache: 'ResponseCache', rateLimiter: 'RateLimiter', costs: 'CostTracker' }

function gatewayOptions(config) {
  const { host, port, keys, engine, server, ...options } = config
  for (const [field, className] of Object.entries(INSTANCE_FIELDS)) {
    const value = options[field]
    if (value == null || value === false) continue
    const Class = ferrogate[className]
    if (typeof Class !== 'function') throw new ConfigError(`config ${field}: this ferrogate build has no ${className}`)
    options[field] = new Class(value)
  }
  return options
}

// The connection layer of both engines (the config's `server` object); docs/API.md "serve".
const SERVER_DEFAULTS = {
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 60_000,
  keepAliveTimeoutMs: 30_000,
  maxConnections: 1024,
  shutdownGraceMs: 25_000,
}

function serverLimits(server) {
  if (server == null) return { ...SERVER_DEFAULTS }
  if (typeof server !== 'object' || Array.isArray(server)) throw new ConfigError('config server must be an object')
  const limits = { ...SERVER_DEFAULTS }
  for (const [name, value] of Object.entries(server)) {
    if (!(name in SERVER_DEFAULTS)) throw new ConfigError(`config server.${name} is not a server option (${Object.keys(SERVER_DEFAULTS).join(', ')})`)
    const least = name === 'shutdownGraceMs' ? 0 : 1
    if (!Number.isInteger(value) || value < least || value > 86_400_000) throw new ConfigError(`config server.${name} must be a whole number from ${least} to 86400000`)
    limits[name] = value
  }
  return limits
}

// The backends serve built from the config are its own: closed after the gateway.
async function closeBackends(options) {
  await Promise.allSettled([
    options.costs?.close?.(),
    options.cache?.close?.(),
    Promise.resolve().then(() => options.rateLimiter?.close?.()),
  ])
}

function keyVault(keys) {
  if (keys == null) return undefined
  if (!Array.isArray(keys)) throw new ConfigError('config keys must be an array of { key, user?, dailyTokenQuota? }')
  // Only hashes of the keys are kept; the secret only seals provider keys, which serve does not store.
  const vault = new ferrogate.KeyVault({ secret: randomBytes(32).toString('hex') })
  const seen = new Set()
  keys.forEach((entry, i) => {
    if (entry == null || typeof entry.key !== 'string' || entry.key === '') throw new ConfigError(`config keys[${i}].key must be a non-empty string`)
    const id = entry.user != null ? String(entry.user) : `key-${i + 1}`
    if (!seen.has(id)) {
      vault.add(id, { provider: '', dailyTokenQuota: entry.dailyTokenQuota })
      seen.add(id)
    }
    vault.addVirtualKey(entry.key, id)
  })
  return vault
}

function validatedKeys(keys) {
  if (keys == null) return undefined
  if (!Array.isArray(keys)) throw new ConfigError('config keys must be an array of { key, user?, dailyTokenQuota? }')
  return keys.map((entry, i) => {
    if (entry == null || typeof entry.key !== 'string' || entry.key === '') throw new ConfigError(`config keys[${i}].key must be a non-empty string`)
    const quota = entry.dailyTokenQuota
    if (quota != null && !(Number.isInteger(quota) && quota >= 0)) throw new ConfigError(`config keys[${i}].dailyTokenQuota must be a whole number >= 0`)
    return { key: entry.key, user: entry.user == null ? undefined : String(entry.user), dailyTokenQuota: quota ?? undefined }
  })
}

/**
 * The native engine: a Rust HTTP server (hyper) over the native gateway; no JS on the request
 * path. Same endpoints and wire format as the node engine (openaiRouter).
 */
async function startNative(config, overrides) {
  const limits = serverLimits(config.server)
  const options = gatewayOptions(config)
  const gateway = new ferrogate.Gateway(options)
  const host = overrides.host ?? config.host ?? '127.0.0.1'
  const port = Number(overrides.port ?? config.port ?? 4000)
  const { shutdownGraceMs, ...connectionLimits } = limits
  let server
  try {
    server = await gateway[ferrogate.NATIVE_SERVE]({ host, port, keys: validatedKeys(config.keys), ...connectionLimits })
  } catch (error) {
    await gateway.close()
    await closeBackends(options)
    throw new ConfigError(error.message)
  }
  // The server runs on the addon's threads, which do not keep Node's event loop alive.
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  const shownHost = server.host.includes(':') ? `[${server.host}]` : server.host
  let closing
  return {
    engine: 'native',
    gateway,
    url: `http://${shownHost}:${server.port}`,
    /** Stops accepting, lets requests and streams finish (up to `shutdownGraceMs`), flushes the backends. */
    close() {
      closing ??= (async () => {
        await server.shutdown(shutdownGraceMs)
        await gateway.close()
        await closeBackends(options)
        clearInterval(keepAlive)
      })()
      return closing
    },
  }
}

/** Starts the proxy; resolves with `{ url, close() }`. `overrides.engine`: 'native' (default) or 'node'. */
async function startServe(config, overrides = {}) {
  const engine = overrides.engine ?? config.engine ?? 'native'
  if (engine === 'native') return startNative(config, overrides)
  if (engine !== 'node') throw new ConfigError(`engine must be 'native' or 'node', not '${engine}'`)
  const limits = serverLimits(config.server)
  const options = gatewayOptions(config)
  const gateway = new ferrogate.Gateway(options)
  const log = overrides.log ?? ((line) => process.stderr.write(`${redact(line)}\n`))
  const router = openaiRouter(gateway, { keys: keyVault(config.keys), log })
  const server = http.createServer({
    headersTimeout: limits.headersTimeoutMs,
    // node counts the whole request (headers and body) from its start.
    requestTimeout: limits.headersTimeoutMs + limits.bodyTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often node looks for requests past their timeouts (its default, 30 s, would add up to 30 s).
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.bodyTimeoutMs) / 4))),
  }, (req, res) => {
    const path = req.url.split('?')[0]
    if (path.startsWith('/v1/')) {
      req.url = req.url.slice(3)
      return router(req, res)
    }
    if (path === '/health' && req.method === 'GET') {
      res.setHeader('Content-Type', 'application/json')
      return res.end('{"status":"ok"}')
    }
    res.statusCode = 404
    res.setHeader('Content-Type', 'application/json')
    res.end(JSON.stringify({ error: { message: `Unknown request URL: ${req.method} ${redact(path)}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' } }))
  })
  // Past the cap, node closes a new connection at once.
  server.maxConnections = limits.maxConnections
  const host = overrides.host ?? config.host ?? '127.0.0.1'
  const port = overrides.port ?? config.port ?? 4000
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(Number(port), host, resolve)
  })
  const address = server.address()
  let closing
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    engine: 'node',
    server,
    gateway,
    url: `http://${shownHost}:${address.port}`,
    /** Stops accepting, lets requests and streams finish (up to `shutdownGraceMs`), flushes the backends. */
    close() {
      closing ??= (async () => {
        const closed = new Promise((resolve) => server.close(resolve))
        // Kept-alive connections are closed as soon as their request in progress has ended.
        server.closeIdleConnections()
        const idle = setInterval(() => server.closeIdleConnections(), 50)
        const grace = setTimeout(() => server.closeAllConnections(), limits.shutdownGraceMs)
        await closed
        clearInterval(idle)
        clearTimeout(grace)
        await gateway.close()
        await closeBackends(options)
      })()
      return closing
    },
  }
}

module.exports = { startServe, readConfig, expandEnv, gatewayOptions, ConfigError }
