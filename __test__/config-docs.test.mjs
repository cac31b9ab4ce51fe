// docs/CONFIG.md against the code: every key of GatewayOptions, ProviderConfig, the routing and
// class options (from index.d.ts) and of `ferrogate serve`'s config (the keys its validator
// accepts) is documented in its section, and every documented key exists. The field lists
// lib/shapes.js checks values against are the declared ones too.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { test } from 'node:test'

import shapes from '../lib/shapes.js'

const dts = fs.readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8')
const doc = fs.readFileSync(new URL('../docs/CONFIG.md', import.meta.url), 'utf8')

function declared(name) {
  const keys = new Set()
  for (const block of dts.matchAll(new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`, 'g'))) {
    const body = block[1].replace(/\/\*[\s\S]*?\*\//g, '')
    for (const m of body.matchAll(/^ {2}([A-Za-z_$][\w$]*)\??:/gm)) keys.add(m[1])
  }
  assert.ok(keys.size > 0, `index.d.ts declares ${name}`)
  return keys
}

/** The keys in the first column of the table under the heading that starts with `heading`. */
function documented(heading) {
  const start = doc.split('\n').findIndex((line) => /^#{2,3} /.test(line) && line.replace(/^#+ /, '').startsWith(heading))
  assert.ok(start >= 0, `docs/CONFIG.md has a section "${heading}"`)
  const keys = new Set()
  for (const line of doc.split('\n').slice(start + 1)) {
    if (/^#{2,3} /.test(line)) break
    const first = /^\| ([^|]+) \|/.exec(line)?.[1]
    if (!first || first === 'Key' || /^-+$/.test(first)) continue
    for (const m of first.matchAll(/`([A-Za-z_$][\w$]*)`/g)) keys.add(m[1])
  }
  return keys
}

const sorted = (set) => [...set].sort()

test('every GatewayOptions, ProviderConfig, routing and class option key is documented, and nothing else', () => {
  for (const [heading, type] of [
    ['GatewayOptions', 'GatewayOptions'],
    ['RoutingOptions', 'RoutingOptions'],
    ['RouteTarget', 'RouteTarget'],
    ['Guardrails', 'GuardrailOptions'],
    ['ProviderConfig', 'ProviderConfig'],
    ['ResponseCacheOptions', 'ResponseCacheOptions'],
    ['SemanticCacheOptions', 'SemanticCacheOptions'],
    ['RateLimiterOptions', 'RateLimiterOptions'],
    ['CostTrackerOptions', 'CostTrackerOptions'],
  ]) {
    assert.deepEqual(sorted(documented(heading)), sorted(declared(type)), `docs/CONFIG.md "${heading}" vs index.d.ts ${type}`)
  }
})

test("every key `ferrogate serve` accepts is documented in the serve section, and it accepts every documented one", () => {
  assert.deepEqual(sorted(documented('The `ferrogate serve` config file')), sorted(Object.keys(shapes.SERVE_CONFIG.fields)))
})

test('the shapes errors and the serve validator use are the declared types, field for field', () => {
  const fields = (shape) => sorted(Object.keys(shape.fields))
  assert.deepEqual(fields(shapes.CHAT_REQUEST), sorted(declared('ChatRequest')))
  assert.deepEqual(fields(shapes.GATEWAY_OPTIONS), sorted(declared('GatewayOptions')))
  assert.deepEqual(fields(shapes.PROVIDER_CONFIG), sorted(declared('ProviderConfig')))
  assert.deepEqual(fields(shapes.ROUTE_TARGET), sorted(declared('RouteTarget')))
  assert.deepEqual(fields(shapes.ROUTING_OPTIONS), sorted(declared('RoutingOptions')))
  assert.deepEqual(fields(shapes.GUARDRAIL), sorted(declared('GuardrailOptions')))
  assert.deepEqual(fields(shapes.RESPONSE_CACHE_OPTIONS), sorted(declared('ResponseCacheOptions')))
  assert.deepEqual(fields(shapes.SEMANTIC_CACHE_OPTIONS), sorted(declared('SemanticCacheOptions')))
  assert.deepEqual(fields(shapes.RATE_LIMITER_OPTIONS), sorted(declared('RateLimiterOptions')))
  assert.deepEqual(fields(shapes.COST_TRACKER_OPTIONS), sorted(declared('CostTrackerOptions')))
  const gatewayJson = [...declared('GatewayOptions')].filter((key) => !['onCall', 'onAnomaly'].includes(key))
  assert.deepEqual(fields(shapes.SERVE_CONFIG), sorted([...gatewayJson, 'host', 'port', 'engine', 'server', 'keys']))
})
