// findPii / redactPii: the `pii` guardrail's detector from JS. Offsets are JS string (UTF-16)
// offsets, whatever precedes the finding; a finding never carries the matched text.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { findPii, redactPii } from '../index.js'

test('findings carry entity and UTF-16 offsets, never the text', () => {
  const text = 'Héllo 🎉 — mail jane.doe@example.com, card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32.'
  const found = findPii(text)
  assert.deepEqual(found.map((f) => [f.entity, text.slice(f.start, f.end)]), [
    ['email', 'jane.doe@example.com'],
    ['credit_card', '4111 1111 1111 1111'],
    ['iban', 'GB82 WEST 1234 5698 7654 32'],
  ])
  for (const finding of found) assert.deepEqual(Object.keys(finding).sort(), ['end', 'entity', 'start'])
})

test('each of the seven entities is named as the native side counts them', () => {
  const text =
    'a@b.io, 555-123-4567, 4111 1111 1111 1111, GB82WEST12345698765432, 123-45-6789, 10.0.0.7, AKIAIOSFODNN7EXAMPLE'
  assert.deepEqual(findPii(text).map((f) => [f.entity, text.slice(f.start, f.end)]), [
    ['email', 'a@b.io'],
    ['phone', '555-123-4567'],
    ['credit_card', '4111 1111 1111 1111'],
    ['iban', 'GB82WEST12345698765432'],
    ['us_ssn', '123-45-6789'],
    ['ip_address', '10.0.0.7'],
    ['api_key', 'AKIAIOSFODNN7EXAMPLE'],
  ])
  assert.deepEqual(findPii(''), [])
  assert.throws(() => findPii(42), /INVALID_REQUEST|text must be a string/)
})

test('a text with more findings than the last one is answered whole, offsets and all', () => {
  for (const count of [3, 1000, 70_000, 2]) {
    const text = Array.from({ length: count }, (_, i) => `é${i} user${i}@example.com`).join(' · ')
    const found = findPii(text)
    assert.equal(found.length, count)
    found.forEach((f, i) => assert.deepEqual([f.entity, text.slice(f.start, f.end)], ['email', `user${i}@example.com`]))
  }
})

test('near-misses are not flagged: Luhn failures, dates, order numbers, bad IBAN checksums', () => {
  const text = 'Order ORD-12345678 on 2024-01-15, ref 4111 1111 1111 1112, tracking 1234567812345670, IBAN GB82WEST12345698765433'
  assert.deepEqual(findPii(text), [])
})

test('redactPii replaces each finding; entities narrows what is looked for; an unknown entity is refused', () => {
  const text = 'SSN 123-45-6789 from 10.0.0.7 with key AKIAIOSFODNN7EXAMPLE'
  assert.equal(redactPii(text), 'SSN [US_SSN] from [IP_ADDRESS] with key [API_KEY]')
  assert.equal(redactPii(text, ['ip_address']), 'SSN 123-45-6789 from [IP_ADDRESS] with key AKIAIOSFODNN7EXAMPLE')
  assert.throws(() => findPii(text, ['passport']), /unknown PII entity 'passport': one of email, phone, credit_card, iban, us_ssn, ip_address, api_key/)
})
