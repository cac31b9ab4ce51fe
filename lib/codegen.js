'use strict'
// CodeGenerator: Express routes (TypeScript), node:test suites and OpenAPI 3 documents.
//
// The code itself is built from the spec or the source, deterministically (templates), so it
// is real code whatever the model says, and the same input gives the same structure offline.
// The model fills in prose through one structured-output call per run: a route's summary,
// description and implementation notes; test case ideas (as test.todo) per export; an API's
// title, description and a summary per operation. When the model fails or times out, that
// prose falls back to the spec's own text.

const { requirePeer } = require('./peers.js')
const path = require('node:path')
const { configError } = require('./errors.js')
const { requireGateway } = require('./shapes.js')
const { duration, requireModel, structuredCall, missReason, newMissCounters, safely, redact } = require('./model-call.js')

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options']
const BODY_METHODS = new Set(['post', 'put', 'patch'])
const MAX_SOURCE_CHARS = 12_000
const ROUTE_PATH = /^(\/([A-Za-z0-9\-._~@%]|:[A-Za-z_][A-Za-z0-9_]*\??|\{[A-Za-z_][A-Za-z0-9_]*\})*)+$/

const invalidInput = (message) => Object.assign(new Error(message), { code: 'INVALID_REQUEST', status: 400 })

// ------------------------------------------------------------------------------ names and text

const words = (text) =>
  String(text)
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
const pascal = (text) => words(text).map((w) => w[0].toUpperCase() + w.slice(1).toLowerCase()).join('')
const camel = (text) => {
  const p = pascal(text)
  return p ? p[0].toLowerCase() + p.slice(1) : p
}
const safeIdentifier = (name, fallback) => {
  const id = camel(name) || fallback
  return /^[0-9]/.test(id) ? `_${id}` : id
}

/**
 * Text that can sit inside a block comment (or a YAML string) whatever the spec or the model
 * wrote. Control characters go first, so that none can hide a `*` + `/` from the next step;
 * U+2028 and U+2029 end a line in JavaScript, so they would end a line comment.
 */
const commentSafe = (text) =>
  redact(String(text))
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '')
    .replace(/[\u2028\u2029]/g, ' ')
    .replace(/\*\//g, '* /')
    .trim()

/** commentSafe on one line: for line comments and the lines of a header comment. */
const oneLine = (text) => commentSafe(text).replace(/\s*\n\s*/g, ' ')

/** `/users/:id` and `/users/{id}` → the Express form, the OpenAPI form and the names. */
function pathForms(route) {
  const names = []
  const segments = route.split('/').map((segment) => {
    const match = /^:([A-Za-z_][A-Za-z0-9_]*)\??$/.exec(segment) ?? /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(segment)
    if (!match) return { text: segment }
    names.push(match[1])
    return { param: match[1] }
  })
  return {
    express: segments.map((s) => (s.param ? `:${s.param}` : s.text)).join('/'),
    openapi: segments.map((s) => (s.param ? `{${s.param}}` : s.text)).join('/'),
    params: names,
    operationId: (method) =>
      camel(
        [method, ...segments.map((s) => (s.param ? `by ${s.param}` : s.text))]
          .filter(Boolean)
          .join(' '),
      ) || method,
  }
}

// ------------------------------------------------------------------------------ spec

const jsonType = (schema) => {
  const type = Array.isArray(schema?.type) ? schema.type.find((t) => t !== 'null') : schema?.type
  return typeof type === 'string' ? type : schema?.enum ? typeof schema.enum[0] : undefined
}

function normalizeParameter(raw, name, spec, pathParams) {
  const entry = typeof raw === 'string' ? { type: raw } : { ...raw }
  const paramName = entry.name ?? name
  if (typeof paramName !== 'string' || !/^[A-Za-z_$][\w$-]*$/.test(paramName)) {
    throw invalidInput(`spec parameter ${JSON.stringify(paramName)} needs a name made of letters, digits, _ or -`)
  }
  const schema = entry.schema ?? { type: entry.type ?? 'string', ...(entry.enum ? { enum: entry.enum } : {}), ...(entry.format ? { format: entry.format } : {}) }
  const where = entry.in ?? (pathParams.includes(paramName) ? 'path' : BODY_METHODS.has(spec.method) ? 'body' : 'query')
  if (!['path', 'query', 'header', 'body'].includes(where)) throw invalidInput(`spec parameter ${paramName}: in must be path, query, header or body`)
  return {
    name: paramName,
    in: where,
    required: where === 'path' ? true : Boolean(entry.required),
    description: typeof entry.description === 'string' ? entry.description : undefined,
    schema,
  }
}

function normalizeResponses(responses) {
  const list = []
  if (Array.isArray(responses)) {
    for (const r of responses) list.push({ status: String(r.status ?? r.code ?? 200), description: r.description, schema: r.schema, example: r.example })
  } else if (responses && typeof responses === 'object') {
    for (const [status, r] of Object.entries(responses)) {
      list.push(typeof r === 'string' ? { status, description: r } : { status, description: r?.description, schema: r?.schema, example: r?.example })
    }
  }
  for (const r of list) {
    if (!/^[1-5][0-9][0-9]$/.test(r.status)) throw invalidInput(`spec response status ${JSON.stringify(r.status)} is not an HTTP status`)
    if (typeof r.description !== 'string' || r.description === '') r.description = defaultDescription(r.status)
  }
  if (list.length === 0) list.push({ status: '200', description: 'OK' })
  return list
}

const defaultDescription = (status) =>
  ({ 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 500: 'Internal Server Error' })[status] ??
  `Status ${status}`

/** The seed's route spec `{ path, method, parameters, responses, description }`, checked. */
function normalizeSpec(raw) {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidInput('a route spec must be an object { path, method, parameters?, responses?, description? }')
  if (typeof raw.path !== 'string' || !raw.path.startsWith('/')) throw invalidInput('spec.path must be a string starting with /')
  // A route path is letters, digits, - . _ ~ @ % and parameters (:id, {id}); anything else
  // (quotes, *, ;, parentheses, spaces) is no path Express routes, and is refused rather
  // than carried into the generated file.
  if (!ROUTE_PATH.test(raw.path)) {
    throw invalidInput('spec.path may hold only letters, digits, - . _ ~ @ % / and parameters (:id or {id})')
  }
  const method = String(raw.method ?? 'get').toLowerCase()
  if (!METHODS.includes(method)) throw invalidInput(`spec.method must be one of ${METHODS.join(', ')}`)
  const forms = pathForms(raw.path)
  const spec = { method, path: raw.path, description: typeof raw.description === 'string' ? raw.description : undefined }
  let parameters = []
  if (Array.isArray(raw.parameters)) parameters = raw.parameters.map((p, i) => normalizeParameter(p, p?.name ?? `param${i}`, spec, forms.params))
  else if (raw.parameters && typeof raw.parameters === 'object') parameters = Object.entries(raw.parameters).map(([name, p]) => normalizeParameter(p, name, spec, forms.params))
  for (const name of forms.params) {
    if (!parameters.some((p) => p.in === 'path' && p.name === name)) parameters.unshift({ name, in: 'path', required: true, schema: { type: 'string' } })
  }
  const operationId = typeof raw.operationId === 'string' && /^[A-Za-z_$][\w$]*$/.test(raw.operationId) ? raw.operationId : forms.operationId(method)
  return { ...spec, forms, parameters, responses: normalizeResponses(raw.responses), operationId }
}

// ------------------------------------------------------------------------------ TypeScript

function tsType(schema) {
  if (schema == null || typeof schema !== 'object') return 'unknown'
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum.map((v) => JSON.stringify(v)).join(' | ')
  switch (jsonType(schema)) {
    case 'string':
      return 'string'
    case 'integer':
    case 'number':
      return 'number'
    case 'boolean':
      return 'boolean'
    case 'null':
      return 'null'
    case 'array':
      return `Array<${tsType(schema.items)}>`
    case 'object': {
      const props = schema.properties && typeof schema.properties === 'object' ? Object.entries(schema.properties) : []
      if (props.length === 0) return 'Record<string, unknown>'
      const required = new Set(Array.isArray(schema.required) ? schema.required : [])
      return `{ ${props.map(([k, v]) => `${JSON.stringify(k)}${required.has(k) ? '' : '?'}: ${tsType(v)};`).join(' ')} }`
    }
    default:
      return 'unknown'
  }
}

/** A small example value for a response schema (the handler's placeholder answer). */
function exampleOf(schema, depth = 0) {
  if (schema == null || typeof schema !== 'object' || depth > 8) return null
  if ('example' in schema) return schema.example
  if ('const' in schema) return schema.const
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0]
  switch (jsonType(schema)) {
    case 'string':
      return schema.format === 'date-time' ? '2024-01-01T00:00:00Z' : 'string'
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum : 0
    case 'boolean':
      return false
    case 'array':
      return [exampleOf(schema.items, depth + 1)].filter((v) => v !== null)
    case 'object':
      return Object.fromEntries(Object.entries(schema.properties ?? {}).map(([k, v]) => [k, exampleOf(v, depth + 1)]))
    default:
      return null
  }
}

function interfaceOf(name, params) {
  if (params.length === 0) return ''
  const fields = params.map((p) => {
    const type = p.in === 'path' || p.in === 'query' || p.in === 'header' ? 'string' : tsType(p.schema)
    const doc = p.description ? `/** ${commentSafe(p.description)} */\n` : ''
    return `${doc}${JSON.stringify(p.name)}${p.required ? '' : '?'}: ${type};`
  })
  return `export interface ${name} {\n${fields.join('\n')}\n}\n`
}

/** Checks of one parameter, as statements pushing to `problems`. */
function checksOf(p) {
  const source = { path: 'req.params', query: 'req.query', header: 'req.headers', body: 'body' }[p.in]
  const key = p.in === 'header' ? p.name.toLowerCase() : p.name
  const value = `${source}[${JSON.stringify(key)}]`
  const problem = (text) => `problems.push(${JSON.stringify(`${p.name} ${text}`)});`
  const lines = []
  const type = jsonType(p.schema)
  const present = `${value} !== undefined`
  const fromText = p.in !== 'body'
  // Text (path, query, header, a string field) can be present but empty; a number or a
  // boolean in a JSON body cannot, and comparing one with "" does not type-check (TS2367).
  // (An enum's type is the union of its values, which "" is not part of.)
  const canBeEmpty = fromText || (type === 'string' && !(Array.isArray(p.schema?.enum) && p.schema.enum.length > 0))
  const absent = fromText ? `${value} === undefined` : `${value} == null`
  if (p.required) lines.push(`if (${absent}${canBeEmpty ? ` || ${value} === ""` : ''}) ${problem('is required')}`)
  if (type === 'integer' || type === 'number') {
    const number = fromText ? `Number(${value})` : value
    const test = type === 'integer' ? `Number.isInteger(${number})` : `typeof ${number} === "number" && Number.isFinite(${number})`
    lines.push(`if (${present} && !(${test})) ${problem(type === 'integer' ? 'must be an integer' : 'must be a number')}`)
  } else if (type === 'boolean') {
    const test = fromText ? `["true", "false"].includes(String(${value}))` : `typeof ${value} === "boolean"`
    lines.push(`if (${present} && !(${test})) ${problem('must be true or false')}`)
  } else if (type === 'string' && !fromText) {
    lines.push(`if (${present} && typeof ${value} !== "string") ${problem('must be a string')}`)
  } else if (type === 'array' && !fromText) {
    lines.push(`if (${present} && !Array.isArray(${value})) ${problem('must be an array')}`)
  }
  if (Array.isArray(p.schema?.enum) && p.schema.enum.length > 0) {
    const allowed = JSON.stringify(p.schema.enum.map((v) => (fromText ? String(v) : v)))
    lines.push(`if (${present} && !${allowed}.includes(${value})) ${problem(`must be one of ${p.schema.enum.join(', ')}`)}`)
  }
  return lines
}

function routeSource(spec, prose) {
  const base = pascal(spec.operationId)
  const byPlace = (place) => spec.parameters.filter((p) => p.in === place)
  const pathParams = byPlace('path')
  const queryParams = byPlace('query')
  const bodyParams = byPlace('body')
  const success = spec.responses.find((r) => r.status.startsWith('2')) ?? { status: '200', description: 'OK' }
  const paramsType = pathParams.length ? `${base}Params` : 'Record<string, string>'
  const queryType = queryParams.length ? `${base}Query` : 'Record<string, unknown>'
  const bodyType = bodyParams.length ? `${base}Body` : 'unknown'
  const responseType = success.schema ? `${base}Response` : undefined
  const routerName = `${camel(spec.operationId)}Router`
  const checks = spec.parameters.flatMap(checksOf)
  const example = success.example ?? (success.schema ? exampleOf(success.schema) : { ok: true })
  const route = oneLine(`${spec.method.toUpperCase()} ${spec.forms.openapi}`)
  const header = [
    ...(prose.summary === route ? [] : [prose.summary, '']),
    ...(prose.description ? [prose.description, ''] : []),
    route,
    ...spec.responses.map((r) => `@response ${r.status} ${oneLine(r.description)}`),
  ]
  const notes = prose.notes.length ? ['// Implementation notes:', ...prose.notes.map((n) => `// - ${n}`)] : []
  const answer =
    success.status === '204'
      ? 'res.status(204).end();'
      : `const answer${responseType ? `: ${responseType}` : ''} = ${JSON.stringify(example)};\nres.status(${success.status}).json(answer);`
  return `/**
${header.map((line) => ` * ${line}`.trimEnd()).join('\n')}
 */
import { Router, type NextFunction, type Request, type Response } from "express";

${interfaceOf(`${base}Params`, pathParams)}
${interfaceOf(`${base}Query`, queryParams)}
${interfaceOf(`${base}Body`, bodyParams)}
${responseType ? `export type ${responseType} = ${tsType(success.schema)};\n` : ''}
export const ${routerName} = Router();

${routerName}.${spec.method}(
  ${JSON.stringify(spec.forms.express)},
  async (req: Request<${paramsType}, unknown, ${bodyType}, ${queryType}>, res: Response, next: NextFunction) => {
    try {
      ${bodyParams.length ? `const body = (req.body ?? {}) as Partial<${bodyType}>;` : ''}
      const problems: string[] = [];
      ${checks.join('\n')}
      if (problems.length > 0) {
        res.status(400).json({ error: "Validation failed", details: problems });
        return;
      }
      ${notes.join('\n')}
      ${answer}
    } catch (error) {
      next(error);
    }
  },
);

export default ${routerName};
`
}

// ------------------------------------------------------------------------------ source analysis

/** Parameters before the first default or rest: what `fn.length` is. */
function arityOf(paramText) {
  if (paramText == null) return undefined
  const text = paramText.trim()
  if (text === '') return 0
  if (/[{[(]/.test(text)) return undefined // destructuring: not worth a parser here
  let count = 0
  for (const part of text.split(',')) {
    const p = part.trim()
    if (p === '') continue
    if (p.startsWith('...') || p.includes('=')) break
    count++
  }
  return count
}

/** Exported functions and values, Express routes and the routers they hang on. */
function analyzeSource(source) {
  const text = String(source).replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
  const exports = new Map()
  const add = (name, kind, arity) => {
    if (name && !exports.has(name)) exports.set(name, { name, kind, arity })
  }
  for (const m of text.matchAll(/export\s+(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)\s*(?:<[^>]*>)?\(([^)]*)\)/g)) add(m[1], 'function', arityOf(m[2]))
  for (const m of text.matchAll(/export\s+(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*(async\s+)?(?:function\b[^(]*\(([^)]*)\)|\(([^)]*)\)\s*(?::[^=]+)?=>|([A-Za-z_$][\w$]*)\s*=>)?/g)) {
    const isFunction = m[3] !== undefined || m[4] !== undefined || m[5] !== undefined || /^\s*(async\s+)?(function|\()/.test(text.slice(m.index + m[0].length - 1))
    add(m[1], isFunction ? 'function' : 'value', m[5] !== undefined ? 1 : arityOf(m[3] ?? m[4]))
  }
  for (const m of text.matchAll(/export\s+class\s+([A-Za-z_$][\w$]*)/g)) add(m[1], 'class')
  for (const m of text.matchAll(/export\s*\{([^}]*)\}/g)) {
    for (const part of m[1].split(',')) {
      const name = part.trim().split(/\s+as\s+/).pop()?.trim()
      if (name && name !== 'default') add(name, 'value')
    }
  }
  const functionArity = new Map()
  for (const m of text.matchAll(/(?:^|[\s;])(?:async\s+)?function\s+([A-Za-z_$][\w$]*)\s*\(([^)]*)\)/g)) functionArity.set(m[1], arityOf(m[2]))
  for (const m of text.matchAll(/(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s+)?\(([^)]*)\)\s*=>/g)) functionArity.set(m[1], arityOf(m[2]))
  for (const m of text.matchAll(/module\.exports\s*=\s*\{([^}]*)\}/g)) {
    for (const part of m[1].split(',')) {
      const [key, value] = part.split(':').map((s) => s?.trim())
      if (key && /^[A-Za-z_$][\w$]*$/.test(key)) {
        const local = value && /^[A-Za-z_$][\w$]*$/.test(value) ? value : key
        add(key, functionArity.has(local) ? 'function' : 'value', functionArity.get(local))
      }
    }
  }
  for (const m of text.matchAll(/(?:module\.)?exports\.([A-Za-z_$][\w$]*)\s*=\s*(async\s+)?(function\b[^(]*\(([^)]*)\)|\(([^)]*)\)\s*=>|([A-Za-z_$][\w$]*))?/g)) {
    const local = m[6]
    const isFunction = m[3] !== undefined && local === undefined ? true : functionArity.has(local)
    add(m[1], isFunction ? 'function' : 'value', local ? functionArity.get(local) : arityOf(m[4] ?? m[5]))
  }
  const hasDefault = /export\s+default\b|module\.exports\s*=\s*(?!\{)/.test(text)
  const defaultName = /export\s+default\s+([A-Za-z_$][\w$]*)\s*;?\s*$/m.exec(text)?.[1]

  const routes = []
  const seen = new Set()
  for (const m of text.matchAll(/\b([A-Za-z_$][\w$]*)\s*\.\s*(get|post|put|patch|delete|head|options)\s*\(\s*(['"`])(\/[^'"`]*)\3/g)) {
    const key = `${m[2]} ${m[4]}`
    if (seen.has(key)) continue
    seen.add(key)
    routes.push({ receiver: m[1], method: m[2], path: m[4] })
  }
  return { exports: [...exports.values()], hasDefault, defaultName, routes }
}

// ------------------------------------------------------------------------------ OpenAPI

/** Structural check of an OpenAPI 3 document: the problems found (none means valid). */
function validateOpenAPI(doc) {
  const problems = []
  if (doc == null || typeof doc !== 'object') return ['the document is not an object']
  if (typeof doc.openapi !== 'string' || !/^3\.\d+\.\d+$/.test(doc.openapi)) problems.push('openapi must be a 3.x.y version string')
  if (doc.info == null || typeof doc.info !== 'object') problems.push('info is missing')
  else {
    if (typeof doc.info.title !== 'string' || doc.info.title === '') problems.push('info.title must be a non-empty string')
    if (typeof doc.info.version !== 'string' || doc.info.version === '') problems.push('info.version must be a non-empty string')
  }
  if (doc.paths == null || typeof doc.paths !== 'object' || Array.isArray(doc.paths)) {
    problems.push('paths must be an object')
    return problems
  }
  const operationIds = new Set()
  for (const [route, item] of Object.entries(doc.paths)) {
    if (!route.startsWith('/')) problems.push(`path ${route} must start with /`)
    const templated = [...route.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])
    for (const [method, op] of Object.entries(item ?? {})) {
      if (!METHODS.includes(method)) continue
      const at = `${method.toUpperCase()} ${route}`
      if (op?.responses == null || typeof op.responses !== 'object' || Object.keys(op.responses).length === 0) problems.push(`${at}: responses must not be empty`)
      for (const [status, response] of Object.entries(op?.responses ?? {})) {
        if (!/^([1-5][0-9][0-9]|[1-5]XX|default)$/.test(status)) problems.push(`${at}: response key ${status} is not a status`)
        if (typeof response?.description !== 'string') problems.push(`${at} ${status}: description is required`)
      }
      if (op?.operationId) {
        if (operationIds.has(op.operationId)) problems.push(`${at}: operationId ${op.operationId} is not unique`)
        operationIds.add(op.operationId)
      }
      const params = Array.isArray(op?.parameters) ? op.parameters : []
      for (const p of params) {
        if (typeof p?.name !== 'string' || !['path', 'query', 'header', 'cookie'].includes(p?.in)) problems.push(`${at}: a parameter needs a name and in`)
        if (p?.in === 'path' && p.required !== true) problems.push(`${at}: path parameter ${p.name} must be required`)
      }
      for (const name of templated) {
        if (!params.some((p) => p?.in === 'path' && p.name === name)) problems.push(`${at}: path parameter ${name} is not declared`)
      }
    }
  }
  return problems
}

function operationOf(spec, summary) {
  const op = { operationId: spec.operationId, summary }
  if (spec.description && spec.description !== summary) op.description = spec.description
  const params = spec.parameters.filter((p) => p.in !== 'body')
  if (params.length) {
    op.parameters = params.map((p) => ({
      name: p.name,
      in: p.in,
      required: p.required,
      ...(p.description ? { description: p.description } : {}),
      schema: p.schema,
    }))
  }
  const body = spec.parameters.filter((p) => p.in === 'body')
  if (BODY_METHODS.has(spec.method)) {
    const schema = { type: 'object' }
    if (body.length) {
      schema.properties = Object.fromEntries(body.map((p) => [p.name, p.description ? { ...p.schema, description: p.description } : p.schema]))
      const required = body.filter((p) => p.required).map((p) => p.name)
      if (required.length) schema.required = required
    }
    op.requestBody = { required: body.some((p) => p.required), content: { 'application/json': { schema } } }
  }
  op.responses = Object.fromEntries(
    spec.responses.map((r) => [r.status, { description: r.description, ...(r.schema ? { content: { 'application/json': { schema: r.schema } } } : {}) }]),
  )
  return op
}

// ------------------------------------------------------------------------------ the generator

let prettierModule
const prettier = () => (prettierModule ??= requirePeer('CodeGenerator', 'prettier'))

class CodeGenerator {
  #gateway
  #model
  #timeoutMs
  #onMiss
  #offline
  #counters = { calls: 0, answered: 0, misses: 0, missReasons: newMissCounters() }

  constructor(options = {}) {
    requireGateway(options.gateway, 'CodeGenerator')
    requireModel(options.model, 'CodeGenerator')
    this.#gateway = options.gateway
    this.#model = options.model
    this.#timeoutMs = duration(options.timeoutMs, 'timeoutMs', 30_000)
    this.#onMiss = options.onMiss
    // Offline (the CLI without --config, on the mock provider) nothing is asked: the mock's
    // schema-shaped answer would put "summary" and "title" placeholders where the spec's own
    // text belongs.
    this.#offline = options.offline === true
    this.user = options.user
  }

  stats() {
    return { ...this.#counters, missReasons: { ...this.#counters.missReasons } }
  }

  /** The model's structured answer, or undefined when it has none in time. */
  async #ask(name, schema, system, prompt) {
    if (this.#offline) return undefined
    this.#counters.calls++
    try {
      const { value } = await structuredCall(this.#gateway, {
        model: this.#model,
        name,
        schema,
        system,
        prompt: redact(prompt),
        user: this.user,
        timeoutMs: this.#timeoutMs,
        maxTokens: 1200,
        feature: 'codegen',
      })
      if (value == null || typeof value !== 'object') throw Object.assign(new Error('not an object'), { code: 'INVALID_ANSWER' })
      this.#counters.answered++
      return value
    } catch (error) {
      const reason = missReason(error)
      this.#counters.misses++
      this.#counters.missReasons[reason]++
      safely(this.#onMiss, reason, error)
      return undefined
    }
  }

  /** A TypeScript Express route (Router) for the seed's spec, formatted by Prettier. */
  async route(rawSpec) {
    const spec = normalizeSpec(typeof rawSpec === 'string' ? parseJson(rawSpec, 'the route spec') : rawSpec)
    const answer = await this.#ask(
      'route_docs',
      {
        type: 'object',
        properties: {
          summary: { type: 'string', maxLength: 120 },
          description: { type: 'string' },
          implementationNotes: { type: 'array', items: { type: 'string' }, maxItems: 5 },
        },
        required: ['summary', 'description', 'implementationNotes'],
        additionalProperties: false,
      },
      'You document an Express API route from its spec: a one-line summary, a short description, and up to five implementation notes for the developer who fills in the handler.',
      JSON.stringify({ method: spec.method.toUpperCase(), path: spec.path, description: spec.description, parameters: spec.parameters, responses: spec.responses }),
    )
    const text = (value) => (typeof value === 'string' && value.trim() !== '' ? commentSafe(value).replace(/\n+/g, ' ') : undefined)
    const prose = {
      summary: text(answer?.summary) ?? text(spec.description) ?? text(`${spec.method.toUpperCase()} ${spec.forms.openapi}`),
      description: text(answer?.description),
      notes: Array.isArray(answer?.implementationNotes) ? answer.implementationNotes.map(text).filter(Boolean).slice(0, 5) : [],
    }
    if (prose.description === prose.summary) prose.description = undefined
    if (!answer && spec.description && prose.summary !== text(spec.description)) prose.description = text(spec.description)
    return prettier().format(routeSource(spec, prose), { parser: 'typescript' })
  }

  /**
   * A node:test suite for a module's source: each export is checked (functions by type and
   * arity), each Express route is called over loopback and must not answer 5xx, and the
   * model's test ideas become test.todo entries. `options.importPath` is what the suite imports
   * (default `./<fileName>`).
   */
  async tests(source, options = {}) {
    const code = String(source ?? '')
    const analysis = analyzeSource(code)
    const fileName = options.fileName ?? 'module.js'
    const importPath = options.importPath ?? `./${path.basename(fileName)}`
    const exported = analysis.exports
    if (exported.length === 0 && analysis.routes.length === 0 && !analysis.hasDefault) {
      throw invalidInput(`found no exports and no routes in ${path.basename(fileName)}`)
    }
    const targets = exported.filter((e) => e.kind === 'function').map((e) => e.name)
    const answer = targets.length
      ? await this.#ask(
          'test_ideas',
          {
            type: 'object',
            properties: Object.fromEntries(targets.map((name) => [name, { type: 'array', items: { type: 'string' }, maxItems: 4 }])),
            required: targets,
            additionalProperties: false,
          },
          'You write test ideas for a JavaScript module: for each exported function, up to four short test case titles (behaviour, edge cases, errors).',
          code.slice(0, MAX_SOURCE_CHARS),
        )
      : undefined
    const lines = []
    lines.push(`// node:test suite for ${oneLine(path.basename(fileName))}, generated by ferrogate codegen.`)
    lines.push(answer ? `// Checks come from the source; test.todo titles are the model's test ideas.` : `// Checks come from the source.`)
    lines.push(`import { test } from "node:test";`)
    lines.push(`import assert from "node:assert/strict";`)
    const routers = routerExports(analysis)
    if (routers.length) lines.push(`import express from "express";`, `import { once } from "node:events";`)
    lines.push(`import * as mod from ${JSON.stringify(importPath)};`)
    lines.push(``)
    lines.push(`// CommonJS modules arrive as the default export; ES modules as named ones.`)
    lines.push(`const subject = { ...(mod.default !== null && typeof mod.default === "object" ? mod.default : {}), ...mod };`)
    lines.push(``)
    for (const e of exported) {
      if (e.kind === 'function') {
        lines.push(`test(${JSON.stringify(`${e.name} is an exported function`)}, () => {`)
        lines.push(`  assert.equal(typeof subject[${JSON.stringify(e.name)}], "function");`)
        if (e.arity !== undefined) lines.push(`  assert.equal(subject[${JSON.stringify(e.name)}].length, ${e.arity});`)
        lines.push(`});`)
        const ideas = Array.isArray(answer?.[e.name]) ? answer[e.name].filter((t) => typeof t === 'string' && t.trim() !== '').slice(0, 4) : []
        for (const idea of ideas) lines.push(`test.todo(${JSON.stringify(`${e.name}: ${commentSafe(idea)}`)});`)
      } else if (e.kind === 'class') {
        lines.push(`test(${JSON.stringify(`${e.name} is an exported class`)}, () => {`)
        lines.push(`  assert.equal(typeof subject[${JSON.stringify(e.name)}], "function");`)
        lines.push(`});`)
      } else {
        lines.push(`test(${JSON.stringify(`${e.name} is exported`)}, () => {`)
        lines.push(`  assert.ok(${JSON.stringify(e.name)} in subject);`)
        lines.push(`});`)
      }
    }
    if (exported.length === 0 && analysis.hasDefault) {
      lines.push(`test("the module has a default export", () => {`, `  assert.notEqual(mod.default, undefined);`, `});`)
    }
    for (const { router, routes } of routers) {
      for (const route of routes) {
        const url = route.path.replace(/:([A-Za-z_][\w]*)\??/g, '1').replace(/\{[^}]+\}/g, '1')
        lines.push(`test(${JSON.stringify(`${route.method.toUpperCase()} ${route.path} answers without a server error`)}, async () => {`)
        lines.push(`  const app = express();`)
        lines.push(`  app.use(express.json());`)
        lines.push(`  app.use(${router});`)
        lines.push(`  const server = app.listen(0, "127.0.0.1");`)
        lines.push(`  await once(server, "listening");`)
        lines.push(`  try {`)
        const body = BODY_METHODS.has(route.method) ? `, headers: { "content-type": "application/json" }, body: "{}"` : ''
        lines.push(`    const res = await fetch(\`http://127.0.0.1:\${server.address().port}${url.replace(/[`$\\]/g, '')}\`, { method: ${JSON.stringify(route.method.toUpperCase())}${body} });`)
        lines.push(`    assert.ok(res.status < 500, \`status \${res.status}\`);`)
        lines.push(`  } finally {`)
        lines.push(`    server.close();`)
        lines.push(`  }`)
        lines.push(`});`)
      }
    }
    return prettier().format(lines.join('\n'), { parser: 'babel' })
  }

  /** An OpenAPI 3.0.3 document (YAML) for a route spec (JSON) or a module's Express routes. */
  async docs(source, options = {}) {
    const { stringify } = requirePeer('CodeGenerator', 'yaml')
    const text = String(source ?? '')
    const fileName = options.fileName ?? 'api'
    let specs
    const trimmed = text.trim()
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
      const parsed = parseJson(trimmed, 'the spec')
      specs = (Array.isArray(parsed) ? parsed : [parsed]).map(normalizeSpec)
    } else {
      const { routes } = analyzeSource(text)
      if (routes.length === 0) throw invalidInput(`found no Express routes (router.get('/path', …)) in ${path.basename(fileName)}`)
      // Wildcard and regex routes ('/files/*') have no OpenAPI path: they are left out.
      specs = routes.filter((r) => ROUTE_PATH.test(r.path)).map((r) => normalizeSpec({ method: r.method, path: r.path }))
      if (specs.length === 0) throw invalidInput(`found no Express routes with plain paths in ${path.basename(fileName)}`)
    }
    const ids = new Set()
    for (const spec of specs) {
      let id = spec.operationId
      for (let n = 2; ids.has(id); n++) id = `${spec.operationId}${n}`
      spec.operationId = id
      ids.add(id)
    }
    const keyOf = (spec) => `${spec.method.toUpperCase()} ${spec.forms.openapi}`
    const answer = await this.#ask(
      'api_docs',
      {
        type: 'object',
        properties: {
          title: { type: 'string', maxLength: 80 },
          description: { type: 'string' },
          summaries: {
            type: 'object',
            properties: Object.fromEntries(specs.map((s) => [keyOf(s), { type: 'string', maxLength: 120 }])),
            required: specs.map(keyOf),
            additionalProperties: false,
          },
        },
        required: ['title', 'description', 'summaries'],
        additionalProperties: false,
      },
      'You document an HTTP API for its OpenAPI description: a title, a short description, and a one-line summary for each operation (keyed "METHOD /path").',
      trimmed.slice(0, MAX_SOURCE_CHARS),
    )
    const line = (value) => (typeof value === 'string' && value.trim() !== '' ? commentSafe(value).replace(/\s+/g, ' ') : undefined)
    const title = line(options.title) ?? line(answer?.title) ?? (pascal(path.basename(fileName).replace(/\.[^.]+$/, '')).replace(/([a-z])([A-Z])/g, '$1 $2') || 'API')
    const doc = { openapi: '3.0.3', info: { title, version: options.version ?? '1.0.0' } }
    const description = line(answer?.description)
    if (description) doc.info.description = description
    doc.paths = {}
    for (const spec of specs) {
      const summary = line(answer?.summaries?.[keyOf(spec)]) ?? line(spec.description) ?? keyOf(spec)
      doc.paths[spec.forms.openapi] ??= {}
      doc.paths[spec.forms.openapi][spec.method] = operationOf(spec, summary)
    }
    const problems = validateOpenAPI(doc)
    if (problems.length) throw invalidInput(`the generated OpenAPI document is invalid: ${problems.join('; ')}`)
    return prettier().format(stringify(doc, { lineWidth: 0 }), { parser: 'yaml' })
  }
}

/** Routers the module exports, with the routes registered on each. */
function routerExports(analysis) {
  const exportedNames = new Set(analysis.exports.map((e) => e.name))
  const byReceiver = new Map()
  for (const route of analysis.routes) {
    if (!byReceiver.has(route.receiver)) byReceiver.set(route.receiver, [])
    byReceiver.get(route.receiver).push(route)
  }
  const out = []
  for (const [receiver, routes] of byReceiver) {
    if (exportedNames.has(receiver)) out.push({ router: `subject[${JSON.stringify(receiver)}]`, routes })
    else if (analysis.defaultName === receiver) out.push({ router: 'mod.default', routes })
  }
  return out
}

function parseJson(text, what) {
  try {
    return JSON.parse(text)
  } catch (error) {
    throw invalidInput(`${what} is not valid JSON: ${error.message}`)
  }
}

module.exports = { CodeGenerator, validateOpenAPI, analyzeSource, normalizeSpec, configError }
