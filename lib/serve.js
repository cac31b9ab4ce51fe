'use strict'
// `ferrogate serve`: the front door of ferrogate/express as a standalone proxy, on the native
// HTTP server (default) or on Express with gatewayRouter (`--engine node`). Config = GatewayOptions as JSON (class instances replaced by their
// options objects) plus host, port and keys, with ${ENV_VAR} references for secrets.

const fs = require('node:fs')
const nodePath = require('node:path')
const ferrogate = require('../index.js')
const { gatewayRouter, redact } = require('./express.js')
const shapes = require('./shapes.js')

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

const READ_FAILURES = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'it is a folder' }

/**
 * Keys the config does not know: a misspelled `timeoutMS` or `rateLimit` would otherwise be
 * ignored, and the proxy would start without the timeout or the limiter it was meant to have.
 */
function checkKnownKeys(config, file) {
  const unknown = shapes.unknownKeys(shapes.SERVE_CONFIG, config)
  if (unknown.length === 0) return
  const described = unknown.map(({ path, key, known }) => {
    const suggestion = shapes.closest(key, known)
    return `'${path}'${suggestion ? ` (did you mean '${suggestion}'?)` : ''}`
  })
  throw new ConfigError(`${file}: unknown config key${unknown.length > 1 ? 's' : ''} ${described.join(', ')}; docs/CONFIG.md lists every key`)
}

// Config values that are file paths (caCertPath, a vertex provider's credentialsPath, the ledger, the pricing file): relative ones resolve against the config file's folder,
// so the config works whatever folder serve is started from.
function resolvePaths(config, folder) {
  const resolve = (value) => (typeof value === 'string' && value !== '' && value !== ':memory:' && !nodePath.isAbsolute(value) ? nodePath.resolve(folder, value) : value)
  for (const provider of Object.values(config.providers ?? {})) {
    if (provider == null || typeof provider !== 'object') continue
    for (const key of ['caCertPath', 'credentialsPath']) if (key in provider) provider[key] = resolve(provider[key])
  }
  if (config.costs != null && typeof config.costs === 'object') {
    if ('ledgerPath' in config.costs) config.costs.ledgerPath = resolve(config.costs.ledgerPath)
    if (typeof config.costs.pricing === 'string') config.costs.pricing = resolve(config.costs.pricing)
  }
  return config
}

function readConfig(path, env = process.env) {
  let text
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (error) {
    const why = READ_FAILURES[error.code] ?? error.code ?? error.message
    throw new ConfigError(`cannot read the config file ${nodePath.resolve(path)}: ${why}`)
  }
  let parsed
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    // JSON.parse quotes the text around the fault, which may hold a key.
    throw new ConfigError(`the config file ${path} is not valid JSON: ${redact(error.message)}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`the config file ${path} must hold a JSON object`)
  checkKnownKeys(parsed, path)
  return resolvePaths(expandEnv(parsed, env), nodePath.dirname(nodePath.resolve(path)))
}

const isLoopback = (host) => /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/i.test(String(host))

/** The warning `serve` prints when it listens beyond this machine with no client keys, else undefined. */
function exposureWarning(host, keys) {
  if (isLoopback(host) || (Array.isArray(keys) && keys.length > 0)) return undefined
  return `warning: serving on ${host} without "keys": anyone who can reach this address can spend the provider keys. Add "keys" to the config, or listen on 127.0.0.1.`
}

// GatewayOptions fields that take a class instance in JS, given here as its options object.
const INSTANCE_FIELDS = { cache: 'ResponseCache', semanticCache: 'SemanticCache', rateLimiter: 'RateLimiter', costs: 'CostTracker' }

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
    options.semanticCache?.close?.(),
    Promise.resolve().then(() => options.rateLimiter?.close?.()),
  ])
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
 * path. Same front door, endpoints and wire format as the node engine (gatewayRouter).
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
  let express
  try {
    express = require('express')
  } catch {
    throw new ConfigError("engine 'node' needs the express package (npm install express)")
  }
  const limits = serverLimits(config.server)
  const serveKeys = validatedKeys(config.keys)
  const options = gatewayOptions(config)
  const gateway = new ferrogate.Gateway(options)
  const log = overrides.log ?? ((line) => process.stderr.write(`${redact(line)}\n`))
  const app = express()
  app.disable('x-powered-by')
  app.get('/health', (req, res) => res.json({ status: 'ok' }))
  // The same front door as the native engine: only the HTTP server differs.
  app.use(gatewayRouter(gateway, { serveKeys, log }))
  app.use((req, res) => {
    const path = req.url.split('?')[0]
    res.status(404).json({ error: { message: `Unknown request URL: ${req.method} ${redact(path)}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' } })
  })
  const server = require('node:http').createServer({
    headersTimeout: limits.headersTimeoutMs,
    // node counts the whole request (headers and body) from its start.
    requestTimeout: limits.headersTimeoutMs + limits.bodyTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often node looks for requests past their timeouts (its default, 30 s, would add up to 30 s).
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.bodyTimeoutMs) / 4))),
  }, app)
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

module.exports = { startServe, readConfig, expandEnv, gatewayOptions, exposureWarning, ConfigError }
