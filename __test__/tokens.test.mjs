// countTokens: tiktoken encodings, exact for OpenAI models, an o200k estimate for others.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { FerrogateError, countTokens } from '../index.js'

test('OpenAI models are counted with their own encoding', () => {
  assert.equal(countTokens('gpt-4o', 'hello world'), 2) // o200k_base
  assert.equal(countTokens('openai/gpt-4', 'hello world'), 2) // cl100k_base, prefix ignored
  assert.equal(countTokens('gpt-4', 'antidisestablishmentarianism'), 6)
})

test('message lists include the chat framing', () => {
  // 3 per message + role + text, plus 3 to prime the reply (OpenAI cookbook).
  assert.equal(countTokens('gpt-4o', [{ role: 'user', content: 'hello world' }]), 9)
  const withImage = countTokens('gpt-4o', [{ role: 'user', content: [{ type: 'text', text: 'hello world' }, { type: 'image_url', url: 'https://x/y.png' }] }])
  assert.equal(withImage, 9 + 85)
})

test('other vendors get an estimate, never zero for text', () => {
  assert.ok(countTokens('anthropic/claude-sonnet-4-5', 'The quick brown fox jumps over the lazy dog.') >= 9)
  assert.ok(countTokens('gemini/gemini-2.5-flash', '秋风瑟瑟，叶落纷纷') > 0)
})

test('bad input is INVALID_REQUEST', () => {
  assert.throws(() => countTokens('gpt-4o', 42), (e) => e instanceof FerrogateError && e.code === 'INVALID_REQUEST')
  assert.throws(() => countTokens('gpt-4o', [{ role: 'alien', content: 'x' }]), (e) => e instanceof FerrogateError && e.code === 'INVALID_REQUEST')
})
