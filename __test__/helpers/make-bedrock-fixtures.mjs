// Writes __test__/fixtures/providers/bedrock/*.eventstream: ConverseStream answers assembled from AWS's Bedrock
// User Guide tool-use example (the `top_song` tool, station WZPZ; see fixtures/providers/SOURCES.md), framed with
// @smithy/eventstream-codec exactly as Bedrock frames them (string headers :event-type, :content-type,
// :message-type; the `p` padding field Bedrock adds to every event payload). Run: node __test__/helpers/make-bedrock-fixtures.mjs
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

import { eventMessage } from './bedrock-fake.mjs'

const dir = fileURLToPath(new URL('../fixtures/providers/bedrock/', import.meta.url))
const pad = (n) => 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'.slice(0, n)

const toolUse = [
  ['messageStart', { p: pad(11), role: 'assistant' }],
  ['contentBlockStart', { contentBlockIndex: 0, p: pad(27), start: { toolUse: { name: 'top_song', toolUseId: 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q' } } }],
  ['contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input: '' } }, p: pad(40) }],
  ['contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input: '{"sign": ' } }, p: pad(31) }],
  ['contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input: '"WZPZ"}' } }, p: pad(33) }],
  ['contentBlockStop', { contentBlockIndex: 0, p: pad(5) }],
  ['messageStop', { p: pad(20), stopReason: 'tool_use' }],
  ['metadata', { metrics: { latencyMs: 1158 }, p: pad(3), usage: { inputTokens: 375, outputTokens: 54, totalTokens: 429 } }],
]

const answer = 'The most popular song on WZPZ is Elemental Hotel by 8 Storey Hike.'
const pieces = ['The', ' most popular song on', ' WZPZ is Elemental', ' Hotel by 8 Storey Hike', '.']
const text = [
  ['messageStart', { p: pad(11), role: 'assistant' }],
  ...pieces.map((piece, i) => ['contentBlockDelta', { contentBlockIndex: 0, delta: { text: piece }, p: pad(10 + i * 7) }]),
  ['contentBlockStop', { contentBlockIndex: 0, p: pad(5) }],
  ['messageStop', { p: pad(20), stopReason: 'end_turn' }],
  ['metadata', { metrics: { latencyMs: 844 }, p: pad(3), usage: { cacheReadInputTokens: 320, cacheWriteInputTokens: 0, inputTokens: 108, outputTokens: 18, totalTokens: 446 } }],
]
if (pieces.join('') !== answer) throw new Error('pieces do not add up')

for (const [name, events] of [['stream-tool-use-top-song.eventstream', toolUse], ['stream-text-top-song-answer.eventstream', text]]) {
  fs.writeFileSync(dir + name, Buffer.concat(events.map(([type, payload]) => eventMessage(type, payload))))
}
