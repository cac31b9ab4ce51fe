// dashboardHandler: its JSON after real traffic through a gateway, and its page in headless
// Chromium (Debian's chromium with playwright-core) — the numbers the charts show are read back
// from the page's DOM and compared with what was recorded; a screenshot is saved.
// CostTracker, ResponseCache, RateLimiter and the onCall hook are used when this build has them;
// otherwise a cost source with known figures stands in for the tracker, and the page must show it.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import express from 'express'
import ferrogate, { Gateway } from 'ferrogate'
import { dashboardHandler } from 'ferrogate/express'
import { histogramQuantile, parseMetrics } from '../lib/dashboard.js'
import { launchChromium } from './helpers/chromium.mjs'

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const has = (name) => typeof ferrogate[name] === 'function'

/** A cost source with fixed figures: what a CostTracker's summary() gives, for builds without one. */
const standInCosts = {
  summary: () => ({
    totalCost: 0.0042,
    totalRequests: 7,
    averageCostPerRequest: 0.0006,
    costByModel: { 'vendor/gpt-4o-mini': 0.003, 'mock/mock-1': 0.0012 },
    costTrend: [
      { date: '2026-11-29', cost: 0.001, requests: 2 },
      { date: '2026-11-30', cost: 0.0012, requests: 2 },
      { date: '2026-12-01', cost: 0.002, requests: 3 },
    ],
  }),
}

let traffic
before(async () => {
  const costs = has('CostTracker') ? new ferrogate.CostTracker({ pricing: { 'mock-1': { input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 } } }) : standInCosts
  const options = { providers: { mock: { kind: 'mock', mockChunkDelayMs: 1 } }, maxRetries: 0 }
  if (has('CostTracker')) options.costs = costs
  if (has('ResponseCache')) options.cache = new ferrogate.ResponseCache({ maxEntries: 100 })
  if (has('RateLimiter')) options.rateLimiter = new ferrogate.RateLimiter({ requestsPerMinute: 2 })
  let dashboard
  const hooked = []
  options.onCall = (record) => {
    hooked.push(record)
    dashboard?.record(record)
  }
  const gateway = new Gateway(options)
  dashboard = dashboardHandler(gateway, { costs, refreshMs: 0 })

  const latencies = []
  const ask = async (content, user) => {
    try {
      const response = await gateway.chat({ model: 'mock/mock-1', messages: [{ role: 'user', content }], user })
      if (!response.cached) latencies.push(response.latencyMs)
      return response
    } catch (error) {
      return error
    }
  }
  // One user per call here, so the limiter (2 a minute per user) refuses only bob's third call below.
  for (const [i, content] of ['one', 'two', 'one', 'three', 'one'].entries()) await ask(content, `alice-${i}`)
  const refused = []
  for (const content of ['x', 'y', 'z']) refused.push(await ask(`limited ${content}`, 'bob'))

  // The hook runs off the call's path: wait for it, and record by hand where this build has no hook.
  for (let i = 0; i < 50 && hooked.length < 8; i++) await sleep(20)
  if (hooked.length === 0) {
    for (const latencyMs of latencies) dashboard.record({ provider: 'mock', vendorModel: 'mock-1', latencyMs, outcome: 'ok' })
  }

  const app = express()
  app.use('/dashboard', dashboard)
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  traffic = { gateway, costs, dashboard, server, url: `http://127.0.0.1:${server.address().port}/dashboard`, latencies, hooked, refused }
})
after(async () => {
  traffic.server.closeAllConnections()
  await new Promise((resolve) => traffic.server.close(resolve))
  await traffic.gateway.close()
})

const percentile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
}

test('/data holds the recorded figures', async () => {
  const res = await fetch(`${traffic.url}/data`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type'), /application\/json/)
  const data = await res.json()
  const summary = traffic.costs.summary(null, { days: 30 })
  assert.equal(data.totals.requests, summary.totalRequests)
  assert.equal(data.totals.cost, Number(summary.totalCost.toFixed(8)))
  assert.deepEqual(
    data.costPerDay.map((d) => [d.date, d.cost]),
    summary.costTrend.map((d) => [d.date, d.cost]),
  )
  assert.deepEqual(
    Object.fromEntries(data.costByModel.map((m) => [m.model, m.cost])),
    Array.isArray(summary.costByModel) ? Object.fromEntries(summary.costByModel.map((m) => [m.model, m.cost])) : summary.costByModel,
  )
  assert.equal(data.latency.source, 'calls')
  if (traffic.hooked.length === 0) {
    assert.equal(data.latency.count, traffic.latencies.length)
    assert.equal(data.latency.p50Ms, Number(percentile(traffic.latencies, 0.5).toFixed(3)))
    assert.equal(data.latency.p99Ms, Number(percentile(traffic.latencies, 0.99).toFixed(3)))
  } else {
    const okLatencies = traffic.hooked.filter((r) => r.outcome === 'ok').map((r) => r.latencyMs)
    assert.equal(data.latency.p50Ms, Number(percentile(okLatencies, 0.5).toFixed(3)))
  }
  if (has('ResponseCache')) {
    // 'one' three times: two hits; every other allowed call a miss.
    assert.equal(data.cache.hits, 2)
    assert.ok(data.cache.hitRate > 0 && data.cache.hitRate < 1)
  }
  if (has('RateLimiter')) {
    assert.equal(traffic.refused.filter((r) => r?.code === 'RATE_LIMITED').length, 1)
    assert.equal(data.refusals.rateLimited, 1)
  }
  else assert.equal(data.refusals.total, 0)
})

test('in headless Chromium: the charts show the recorded numbers; screenshot saved', async (t) => {
  const data = await (await fetch(`${traffic.url}/data`)).json()
  const browser = await launchChromium(t)
  if (browser === null) return
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    page.setDefaultTimeout(60_000)
    const pageErrors = []
    page.on('pageerror', (error) => pageErrors.push(error))
    const requests = []
    page.on('request', (request) => requests.push(request.url()))
    // No trailing slash: the page must still find its data.
    await page.goto(traffic.url)
    await page.waitForSelector('body[data-ready="true"]')
    const shown = await page.evaluate(() => {
      const figure = (id) => document.getElementById(id).dataset.value
      const bars = (selector) => [...document.querySelectorAll(`${selector} g.bar`)].map((g) => [g.dataset.label, g.dataset.series ?? null, g.dataset.value])
      return {
        totalCost: figure('total-cost'),
        totalRequests: figure('total-requests'),
        perDay: bars('#cost-per-day'),
        byModel: bars('#cost-by-model'),
        p50: figure('latency-p50'),
        p99: figure('latency-p99'),
        latencyBars: bars('#latency'),
        hitRate: figure('cache-hit-rate'),
        hits: figure('cache-hits'),
        rateLimited: figure('refusals-rate-limited'),
        budget: figure('refusals-budget'),
        perDayText: [...document.querySelectorAll('#cost-per-day g.bar text.label')].map((n) => n.textContent),
      }
    })
    const text = (value) => (value == null ? '' : String(value))
    assert.equal(shown.totalCost, text(data.totals.cost))
    assert.equal(shown.totalRequests, text(data.totals.requests))
    assert.deepEqual(shown.perDay, data.costPerDay.map((d) => [d.date, null, text(d.cost)]))
    // Past 16 days (a CostTracker's trend has every day of the period) only some bars are labelled, in order and
    // at most every ceil(n / 8)th; which ones, the 30-day test below checks for overlaps.
    const candidates = data.costPerDay.filter((_, i, days) => days.length <= 16 || i % Math.ceil(days.length / 8) === 0).map((d) => d.date)
    assert.ok(shown.perDayText.length >= Math.min(candidates.length, 4), JSON.stringify(shown.perDayText))
    assert.deepEqual(shown.perDayText, candidates.filter((date) => shown.perDayText.includes(date)))
    assert.deepEqual(shown.byModel, data.costByModel.map((m) => [m.model, 'cost', text(m.cost)]))
    assert.ok(shown.perDay.length > 0 && shown.byModel.length > 0, 'the cost charts have bars')
    assert.equal(shown.p50, text(data.latency.p50Ms))
    assert.equal(shown.p99, text(data.latency.p99Ms))
    assert.deepEqual(
      shown.latencyBars,
      data.latency.byModel.flatMap((m) => [
        [m.model, 'p50Ms', text(m.p50Ms)],
        [m.model, 'p99Ms', text(m.p99Ms)],
      ]),
    )
    assert.equal(shown.hitRate, text(data.cache.hitRate))
    assert.equal(shown.hits, text(data.cache.hits))
    assert.equal(shown.rateLimited, text(data.refusals.rateLimited))
    assert.equal(shown.budget, text(data.refusals.budget))
    assert.deepEqual(pageErrors, [])
    // Self-contained: the page and its data, nothing from elsewhere.
    assert.deepEqual([...new Set(requests.map((u) => new URL(u).pathname))].sort(), ['/dashboard', '/dashboard/data'])
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    const screenshot = path.join(ARTIFACTS, 'dashboard.png')
    await page.screenshot({ path: screenshot, fullPage: true })
    assert.ok(fs.statSync(screenshot).size > 1000)
    t.diagnostic(`screenshot: ${screenshot}`)
  } finally {
    await browser.close()
  }
})

test('latency from the histogram when no calls were recorded; unknown paths fall through', async () => {
  const gateway = new Gateway({ providers: { mock: { kind: 'mock', mockChunkDelayMs: 1 } } })
  try {
    await gateway.chat({ model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] })
    const dashboard = dashboardHandler(gateway)
    const data = dashboard.data()
    assert.equal(data.sources.costs, false)
    assert.equal(data.latency.source, 'histogram')
    assert.equal(data.latency.count, 1)
    assert.ok(data.latency.p50Ms > 0)
    assert.deepEqual(data.costByModel.map((m) => m.model), ['mock/m'])
    assert.equal(data.totals.requests, 1)
    assert.deepEqual(data.costPerDay, [])
    let passed = false
    dashboard({ method: 'GET', url: '/elsewhere' }, {}, () => (passed = true))
    assert.ok(passed)
  } finally {
    await gateway.close()
  }
})

test('histogramQuantile interpolates within a bucket like histogram_quantile', () => {
  const buckets = [
    { le: 0.1, count: 0 },
    { le: 0.5, count: 50 },
    { le: 1, count: 90 },
    { le: Infinity, count: 100 },
  ]
  assert.equal(histogramQuantile(0.5, buckets), 0.5)
  assert.ok(Math.abs(histogramQuantile(0.7, buckets) - 0.75) < 1e-9)
  assert.equal(histogramQuantile(0.99, buckets), 1)
  assert.equal(histogramQuantile(0.5, []), null)
  assert.deepEqual(parseMetrics('a_total{x="1",y="q\\"z"} 3\n# c\nb 2.5'), [
    { name: 'a_total', labels: { x: '1', y: 'q"z' }, value: 3 },
    { name: 'b', labels: {}, value: 2.5 },
  ])
})

test('30 days of mixed traffic in Chromium at 1280 and 390 px: no overlapping labels, no nonzero cost shown as $0.000', async (t) => {
  if (!has('CostTracker')) return t.skip('this build has no CostTracker')
  // One price per prompt token, so a day's cost is its prompt tokens times 1e-6: 346 tokens cost $0.000346.
  const costs = new ferrogate.CostTracker({ pricing: { 'mix-1': { input_cost_per_token: 0.000001, output_cost_per_token: 0.000001 } } })
  const day = 86_400_000
  const now = Date.now()
  const tokensByDay = new Map([[1, 346], [2, 120_000], [3, 80_000], [5, 2_500], [6, 410_000], [7, 90], [9, 55_000], [12, 7], [13, 300_000]])
  for (let back = 0; back < 30; back++) {
    // Every third day has no traffic at all; the others a mix of tiny and large spend.
    const tokens = tokensByDay.get(back) ?? (back % 3 === 0 ? 0 : 1_000 * (back + 1))
    if (tokens) costs.record({ user: 'u', model: 'mock/mix-1', promptTokens: tokens, completionTokens: 0, timestamp: now - back * day })
  }
  const gateway = new Gateway({ providers: { mock: { kind: 'mock' } } })
  const app = express()
  app.use('/dashboard', dashboardHandler(gateway, { costs, refreshMs: 0 }))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const browser = await launchChromium(t)
  try {
    if (browser === null) return
    const url = `http://127.0.0.1:${server.address().port}/dashboard`
    const data = await (await fetch(`${url}/data`)).json()
    assert.ok(data.costPerDay.length >= 30 && data.costPerDay.some((d) => d.cost === 0) && data.costPerDay.some((d) => d.cost === 0.000346))
    for (const width of [1280, 390]) {
      const page = await browser.newPage({ viewport: { width, height: 900 } })
      page.setDefaultTimeout(60_000)
      await page.goto(url)
      await page.waitForSelector('body[data-ready="true"]')
      const shown = await page.evaluate(() => {
        const texts = [...document.querySelectorAll('#cost-per-day svg text')].map((node) => {
          const box = node.getBoundingClientRect()
          return { text: node.textContent, value: node.closest('g.bar')?.dataset.value ?? null, kind: node.getAttribute('class'), box: [box.left, box.top, box.right, box.bottom] }
        })
        const tooltips = [...document.querySelectorAll('#cost-per-day g.bar')].map((g) => [g.dataset.value, g.querySelector('title')?.textContent])
        return { texts, tooltips, overflow: document.documentElement.scrollWidth - window.innerWidth }
      })
      const overlapping = []
      shown.texts.forEach((a, i) =>
        shown.texts.slice(i + 1).forEach((b) => {
          const apart = a.box[2] <= b.box[0] + 0.5 || b.box[2] <= a.box[0] + 0.5 || a.box[3] <= b.box[1] + 0.5 || b.box[3] <= a.box[1] + 0.5
          if (!apart) overlapping.push([a.text, b.text])
        }),
      )
      assert.deepEqual(overlapping, [], `labels overlap at ${width}px`)
      const values = shown.texts.filter((x) => x.kind === 'value')
      assert.ok(values.length >= 2, `some bars are labelled at ${width}px`)
      for (const label of values) {
        assert.notEqual(Number(label.value), 0, `a zero day is labelled (${label.text})`)
        assert.doesNotMatch(label.text, /^\$0(\.0*)?$/, `a nonzero cost (${label.value}) shown as ${label.text}`)
        assert.ok(Math.abs(Number(label.text.slice(1)) - Number(label.value)) <= Number(label.value) * 0.006 + 1e-12, `${label.text} for ${label.value}`)
      }
      // Every bar says its value on hover; the smallest nonzero day to three significant digits.
      const tiny = shown.tooltips.find(([value]) => Number(value) === 0.000346)
      assert.match(tiny?.[1] ?? '', /: \$0\.000346$/)
      assert.ok(shown.overflow <= 0, `the page scrolls sideways at ${width}px (${shown.overflow}px)`)
      fs.mkdirSync(ARTIFACTS, { recursive: true })
      await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-30-days-${width}.png`), fullPage: true })
      await page.close()
    }
  } finally {
    await browser?.close()
    server.close()
    await gateway.close()
  }
})
