#!/usr/bin/env node
// Detection quality and speed of the `pii` guardrail's detector, side by side with the two JS
// libraries people use for the same job, on one seeded corpus:
//   ferrogate (findPii, native), redact-pii (SyncRedactor, its defaults), openredaction (its defaults).
// The corpus: SENTENCES sentences made with @faker-js/faker (seed SEED), each with known positions
// of emails, phone numbers, Luhn-valid card numbers, valid IBANs, SSNs, IP addresses and API keys,
// and near-misses that must NOT be flagged: card-like numbers failing Luhn, dates, order numbers,
// tracking numbers. Precision and recall per entity: a finding is right when it overlaps a true
// span of its entity; a true span is found when a finding of its entity overlaps it.
// Throughput: MB of corpus per CPU second (process.cpuUsage), each detector over the whole corpus.
//
// The comparison libraries are not dependencies of ferrogate; install them for this run:
//   npm install --no-save @faker-js/faker@10 redact-pii@3 openredaction@1
//   node bench/pii-quality.mjs            (SENTENCES=10000 SEED=20261207 by default)
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const SENTENCES = Number(process.env.SENTENCES || 10_000)
const SEED = Number(process.env.SEED || 20_261_207)
const ENTITIES = ['email', 'phone', 'credit_card', 'iban', 'us_ssn', 'ip_address', 'api_key']

const load = (name) => {
  try {
    return require(name)
  } catch {
    console.error(`bench/pii-quality: ${name} is not installed; run: npm install --no-save @faker-js/faker@10 redact-pii@3 openredaction@1`)
    process.exit(2)
  }
}
const { faker } = load('@faker-js/faker')
const redactPii = load('redact-pii')
const { OpenRedaction } = load('openredaction')
const { findPii } = require('../index.js')

// ------------------------------------------------------------------------------------ the corpus

faker.seed(SEED)
const luhnOk = (digits) =>
  [...digits].reverse().reduce((sum, d, i) => {
    let n = Number(d)
    if (i % 2 === 1) n = n * 2 > 9 ? n * 2 - 9 : n * 2
    return sum + n
  }, 0) %
    10 ===
  0

const values = {
  email: () => faker.internet.email(),
  phone: () => (faker.datatype.boolean(0.8) ? faker.phone.number() : faker.phone.number({ style: 'international' })),
  credit_card: () => {
    const card = faker.finance.creditCardNumber()
    return faker.datatype.boolean(0.3) ? card.replaceAll('-', ' ') : faker.datatype.boolean(0.2) ? card.replaceAll('-', '') : card
  },
  iban: () => faker.finance.iban({ formatted: faker.datatype.boolean() }),
  us_ssn: () => {
    const area = faker.number.int({ min: 1, max: 899 })
    const ssnArea = area === 666 ? 667 : area
    return `${String(ssnArea).padStart(3, '0')}-${String(faker.number.int({ min: 1, max: 99 })).padStart(2, '0')}-${String(faker.number.int({ min: 1, max: 9999 })).padStart(4, '0')}`
  },
  ip_address: () => (faker.datatype.boolean(0.7) ? faker.internet.ipv4() : faker.internet.ipv6()),
  api_key: () =>
    faker.helpers.arrayElement([
      () => `sk-proj-${faker.string.alphanumeric(48)}`,
      () => `AKIA${faker.string.alphanumeric({ length: 16, casing: 'upper' })}`,
      () => `ghp_${faker.string.alphanumeric(36)}`,
      () => `xoxb-${faker.string.numeric(12)}-${faker.string.numeric(13)}-${faker.string.alphanumeric(24)}`,
      () => `sk_live_${faker.string.alphanumeric(24)}`,
      () => `AIza${faker.string.alphanumeric(35)}`,
    ])(),
}
const nearMisses = [
  () => {
    // A card number with its check digit off by one: fails Luhn.
    const digits = faker.finance.creditCardNumber().replaceAll('-', '')
    const last = (Number(digits.at(-1)) + 1) % 10
    const bad = digits.slice(0, -1) + last
    return luhnOk(bad) ? bad.slice(0, -1) + ((last + 1) % 10) : bad
  },
  () => faker.date.past({ years: 3 }).toISOString().slice(0, 10),
  () => faker.date.past({ years: 3 }).toLocaleDateString('en-US'),
  () => `ORD-${faker.string.numeric(8)}`,
  () => faker.string.numeric(16),
  () => `#${faker.string.numeric(6)}`,
  () => faker.finance.amount({ min: 10, max: 99999, dec: 2 }),
  () => faker.string.numeric(10),
]

const templates = {
  email: ['Please write to {} about the refund.', 'Contact {} for details.', 'Send the report to {}.'],
  phone: ['Call me at {} after lunch.', 'My number is {}.', 'You can reach support on {}.'],
  credit_card: ['Charge it to {} please.', 'The card on file is {}.', 'Card number: {}.'],
  iban: ['Wire the money to {} by Friday.', 'My IBAN is {}.', 'Pay into account {}.'],
  us_ssn: ['SSN on file: {}.', 'My social security number is {}.'],
  ip_address: ['Login attempt from {} was blocked.', 'The server at {} is down.'],
  api_key: ['Use the key {} for staging.', 'Our token is {} do not share it.'],
}

const sentences = []
const truth = [] // { entity, start, end } in the joined corpus
let corpus = ''
for (let i = 0; i < SENTENCES; i++) {
  let sentence = ''
  const spans = []
  const parts = faker.number.int({ min: 1, max: 3 })
  for (let p = 0; p < parts; p++) {
    if (faker.datatype.boolean(0.35)) {
      // A sentence with nothing personal in it, only a near-miss.
      sentence += `${faker.helpers.arrayElement(['Order', 'Invoice', 'Ticket', 'Reference', 'Amount'])} ${faker.helpers.arrayElement(nearMisses)()} was ${faker.word.verb()}ed on ${faker.helpers.arrayElement(nearMisses)()}. `
      continue
    }
    const entity = faker.helpers.arrayElement(ENTITIES)
    const value = values[entity]()
    const [before, after] = faker.helpers.arrayElement(templates[entity]).split('{}')
    sentence += before
    spans.push({ entity, start: sentence.length, end: sentence.length + value.length })
    sentence += value + after + ' '
  }
  for (const span of spans) truth.push({ entity: span.entity, start: corpus.length + span.start, end: corpus.length + span.end })
  sentences.push(sentence)
  corpus += sentence + '\n'
}

// ------------------------------------------------------------------------------------- detectors

const REDACT_PII_TYPES = {
  EMAIL_ADDRESS: 'email',
  PHONE_NUMBER: 'phone',
  CREDIT_CARD_NUMBER: 'credit_card',
  US_SOCIAL_SECURITY_NUMBER: 'us_ssn',
  IP_ADDRESS: 'ip_address',
}

// Every placeholder redact-pii writes (its built-ins' names in upper snake case), longest first, so the
// text between them can be found in the original.
const REDACT_PII_PLACEHOLDERS = [
  'US_SOCIAL_SECURITY_NUMBER', 'CREDIT_CARD_NUMBER', 'STREET_ADDRESS', 'EMAIL_ADDRESS', 'PHONE_NUMBER', 'PERSON_NAME',
  'CREDENTIALS', 'IP_ADDRESS', 'USERNAME', 'PASSWORD', 'ZIPCODE', 'DIGITS', 'URL',
]

/** Spans of a redacted text's placeholders, by aligning it with the original. */
function alignPlaceholders(original, redacted, placeholders) {
  const token = new RegExp(`(${placeholders.join('|')})`, 'g')
  const pieces = redacted.split(token)
  const spans = []
  let at = 0
  for (let k = 0; k < pieces.length; k++) {
    if (k % 2 === 0) {
      const found = original.indexOf(pieces[k], at)
      if (found < 0) break
      if (k > 0) spans.at(-1).end = found
      at = found + pieces[k].length
    } else {
      spans.push({ type: pieces[k], start: at, end: at })
    }
  }
  return spans
}

const openRedactionType = (type) => {
  const t = type.toUpperCase()
  if (t.includes('EMAIL')) return 'email'
  if (t.includes('PHONE') || t.includes('MOBILE')) return 'phone'
  if (t.includes('CREDIT_CARD') || t === 'CARD_NUMBER') return 'credit_card'
  if (t.includes('IBAN')) return 'iban'
  if (t === 'SSN' || t.includes('SOCIAL_SECURITY')) return 'us_ssn'
  if (t.includes('IPV4') || t.includes('IPV6') || t.includes('IP_ADDRESS')) return 'ip_address'
  if (/KEY|TOKEN|SECRET/.test(t)) return 'api_key'
  return null
}

const detectors = {
  ferrogate: {
    run: (text) => findPii(text),
    findings: (text) => findPii(text).map((f) => ({ entity: f.entity, start: f.start, end: f.end })),
  },
  'redact-pii': (() => {
    const redactor = new redactPii.SyncRedactor()
    return {
      run: (text) => redactor.redact(text),
      findings: (text) =>
        alignPlaceholders(text, redactor.redact(text), REDACT_PII_PLACEHOLDERS)
          .filter((s) => REDACT_PII_TYPES[s.type])
          .map((s) => ({ entity: REDACT_PII_TYPES[s.type], start: s.start, end: s.end })),
    }
  })(),
  openredaction: (() => {
    const redactor = new OpenRedaction({ redactionMode: 'placeholder' })
    return {
      run: (text) => redactor.detect(text),
      findings: async (text) =>
        (await redactor.detect(text)).detections
          .map((d) => ({ entity: openRedactionType(d.type), start: d.position[0], end: d.position[1] }))
          .filter((f) => f.entity),
    }
  })(),
}

// --------------------------------------------------------------------------------------- scoring

const overlaps = (a, b) => a.start < b.end && b.start < a.end

function score(findings) {
  const rows = {}
  for (const entity of ENTITIES) {
    const mine = findings.filter((f) => f.entity === entity)
    const truths = truth.filter((t) => t.entity === entity)
    // Both lists are sorted by start: a sweep pairs them in linear time.
    const hit = new Set()
    let right = 0
    let j = 0
    for (const f of mine) {
      while (j < truths.length && truths[j].end <= f.start) j++
      let matched = false
      for (let k = j; k < truths.length && truths[k].start < f.end; k++) {
        if (overlaps(f, truths[k])) {
          matched = true
          hit.add(k)
        }
      }
      if (matched) right++
    }
    rows[entity] = {
      precision: mine.length ? right / mine.length : null,
      recall: truths.length ? hit.size / truths.length : null,
      found: mine.length,
      truth: truths.length,
    }
  }
  return rows
}

async function throughput(detector) {
  let rounds = 0
  const start = process.cpuUsage()
  let cpu = 0
  while (cpu < 1.0 || rounds < 1) {
    await detector.run(corpus)
    rounds++
    const used = process.cpuUsage(start)
    cpu = (used.user + used.system) / 1e6
  }
  return (Buffer.byteLength(corpus) * rounds) / 1e6 / cpu
}

truth.sort((a, b) => a.start - b.start)
const results = {}
for (const [name, detector] of Object.entries(detectors)) {
  const findings = (await detector.findings(corpus)).sort((a, b) => a.start - b.start)
  results[name] = { rows: score(findings), mbPerSecond: await throughput(detector) }
}

const pct = (v) => (v == null ? '–' : v.toFixed(3))
console.log(`corpus: ${SENTENCES} sentences (seed ${SEED}), ${(Buffer.byteLength(corpus) / 1e6).toFixed(2)} MB, ${truth.length} true spans\n`)
console.log(`| entity | ${Object.keys(results).map((n) => `${n} P / R`).join(' | ')} |`)
console.log(`|---|${Object.keys(results).map(() => '---').join('|')}|`)
for (const entity of ENTITIES) {
  console.log(`| ${entity} (${results.ferrogate.rows[entity].truth}) | ${Object.values(results).map((r) => `${pct(r.rows[entity].precision)} / ${pct(r.rows[entity].recall)}`).join(' | ')} |`)
}
console.log(`| MB/s (one core, CPU time) | ${Object.values(results).map((r) => r.mbPerSecond.toFixed(2)).join(' | ')} |`)
const fastestJs = Math.max(results['redact-pii'].mbPerSecond, results.openredaction.mbPerSecond)
console.log(`\nferrogate / the faster JS library: ${(results.ferrogate.mbPerSecond / fastestJs).toFixed(0)}×`)

const ours = results.ferrogate.rows
const goals = [
  ['recall ≥ 0.99 on cards', ours.credit_card.recall >= 0.99],
  ['recall ≥ 0.99 on IBANs', ours.iban.recall >= 0.99],
  ['recall ≥ 0.99 on emails', ours.email.recall >= 0.99],
  ['precision ≥ 0.99 on cards', ours.credit_card.precision >= 0.99],
  ['throughput ≥ 50× the faster JS library', results.ferrogate.mbPerSecond >= 50 * fastestJs],
]
for (const [goal, met] of goals) console.log(`${met ? 'met' : 'MISSED'}: ${goal}`)
process.exitCode = goals.every(([, met]) => met) ? 0 : 1
