'use strict'
// dashboardHandler(gateway, { costs }): one self-contained HTML page (hand-written SVG charts,
// no build step, no dependency) and its JSON at `/data`. It reads whatever the build has and
// says where each figure came from:
// - cost per day and by model: costs.summary(null, { days }) (CostTracker); without one, cost
//   by model from the gateway's metrics (ferrogate_cost_usd_total).
// - latency p50/p99: exact, from the calls given to `handler.record` (pass it as the gateway's
//   onCall); else estimated from the ferrogate_request_duration_seconds histogram (linear
//   within a bucket, as Prometheus' histogram_quantile does).
// - cache hit rate and refusals: gateway.stats() when it exists, else the metrics counters.

const MAX_RECORDS = 10_000

// ------------------------------------------------------------------------------ metrics text

/** Samples of a Prometheus text exposition: { name, labels, value }. */
function parseMetrics(text) {
  const samples = []
  for (const line of String(text ?? '').split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (!match) continue
    const labels = {}
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))
    const value = match[3] === '+Inf' ? Infinity : Number(match[3])
    if (!Number.isNaN(value)) samples.push({ name: match[1], labels, value })
  }
  return samples
}

const sumOf = (samples, name, filter = () => true) => samples.filter((s) => s.name === name && filter(s.labels)).reduce((total, s) => total + s.value, 0)

/** The q-quantile of cumulative buckets [{ le, count }] (sorted by le), in the buckets' unit. */
function histogramQuantile(q, buckets) {
  const total = buckets.at(-1)?.count ?? 0
  if (total === 0) return null
  const rank = q * total
  let previousLe = 0
  let previousCount = 0
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (le === Infinity) return previousLe
      const inBucket = count - previousCount
      return inBucket === 0 ? le : previousLe + (le - previousLe) * ((rank - previousCount) / inBucket)
    }
    previousLe = le
    previousCount = count
  }
  return previousLe
}

function bucketsOf(samples, filter) {
  const byLe = new Map()
  for (const s of samples) {
    if (s.name !== 'ferrogate_request_duration_seconds_bucket' || !filter(s.labels)) continue
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)
    byLe.set(le, (byLe.get(le) ?? 0) + s.value)
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }))
}

const percentile = (sorted, q) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))])
const round = (value, digits) => (value == null ? null : Number(value.toFixed(digits)))
const modelName = (labels) => (labels.provider ? `${labels.provider}/${labels.model}` : labels.model)

// ------------------------------------------------------------------------------ the data

function safeCall(fn) {
  try {
    return fn()
  } catch {
    return undefined
  }
}

function costFigures(summary) {
  if (summary == null || typeof summary !== 'object') return undefined
  const perDay = Array.isArray(summary.costTrend)
    ? summary.costTrend.map((d) => ({ date: String(d.date), cost: Number(d.cost) || 0, requests: Number(d.requests) || 0 }))
    : []
  let byModel = []
  if (Array.isArray(summary.costByModel)) {
    byModel = summary.costByModel.map((m) => ({ model: String(m.model), cost: Number(m.cost) || 0, requests: m.requests }))
  } else if (summary.costByModel && typeof summary.costByModel === 'object') {
    byModel = Object.entries(summary.costByModel).map(([model, cost]) => ({
      model,
      cost: typeof cost === 'number' ? cost : Number(cost?.cost) || 0,
      requests: summary.requestsByModel?.[model] ?? cost?.requests,
    }))
  }
  return {
    perDay,
    byModel: byModel.sort((a, b) => b.cost - a.cost),
    totalCost: Number(summary.totalCost) || 0,
    totalRequests: Number(summary.totalRequests) || 0,
  }
}

/**
 * Everything the page shows, as JSON. `records` are CallRecords (or `{ model, latencyMs }`)
 * handed to `record()`. A Promise when `costs.summary()` returns one (a CostTracker with
 * `postgresUrl`); a summary that fails leaves the cost figures to the metrics.
 */
function dashboardData(gateway, { costs, days = 30, records = [] } = {}) {
  const summary = costs != null && typeof costs.summary === 'function' ? safeCall(() => costs.summary(null, { days })) : undefined
  if (summary != null && typeof summary.then === 'function') {
    return Promise.resolve(summary).then(
      (answer) => dataWith(gateway, costFigures(answer), days, records),
      () => dataWith(gateway, undefined, days, records),
    )
  }
  return dataWith(gateway, costFigures(summary), days, records)
}

function dataWith(gateway, costFigs, days, records) {
  const metricsText = typeof gateway?.metrics === 'function' ? safeCall(() => gateway.metrics()) : undefined
  const samples = parseMetrics(metricsText)
  const stats = typeof gateway?.stats === 'function' ? safeCall(() => gateway.stats()) : undefined
  const sources = { costs: Boolean(costFigs), stats: stats != null && typeof stats === 'object', metrics: metricsText !== undefined }

  // Requests and cost by model, from the metrics where the cost tracker has nothing.
  const metricModels = new Map()
  for (const s of samples) {
    if (s.name === 'ferrogate_requests_total' && s.labels.provider) {
      const entry = metricModels.get(modelName(s.labels)) ?? { cost: 0, requests: 0, errors: 0 }
      entry.requests += s.value
      if (s.labels.outcome !== 'ok') entry.errors += s.value
      metricModels.set(modelName(s.labels), entry)
    } else if (s.name === 'ferrogate_cost_usd_total') {
      const entry = metricModels.get(modelName(s.labels)) ?? { cost: 0, requests: 0, errors: 0 }
      entry.cost += s.value
      metricModels.set(modelName(s.labels), entry)
    }
  }
  const requests = sumOf(samples, 'ferrogate_requests_total')
  const errors = sumOf(samples, 'ferrogate_requests_total', (l) => l.outcome !== 'ok')
  const costByModel =
    costFigs?.byModel ??
    [...metricModels.entries()].map(([model, m]) => ({ model, cost: round(m.cost, 8), requests: m.requests })).sort((a, b) => b.cost - a.cost || a.model.localeCompare(b.model))

  // Latency: exact from the recorded calls, else estimated from the histogram.
  let latency
  const timed = records.filter((r) => Number.isFinite(r?.latencyMs) && (r.outcome === undefined || r.outcome === 'ok'))
  if (timed.length > 0) {
    const groups = new Map()
    for (const r of timed) {
      const model = r.provider && r.vendorModel ? `${r.provider}/${r.vendorModel}` : String(r.model ?? 'unknown')
      if (!groups.has(model)) groups.set(model, [])
      groups.get(model).push(r.latencyMs)
    }
    const all = timed.map((r) => r.latencyMs).sort((a, b) => a - b)
    latency = {
      source: 'calls',
      count: all.length,
      p50Ms: round(percentile(all, 0.5), 3),
      p99Ms: round(percentile(all, 0.99), 3),
      byModel: [...groups.entries()]
        .map(([model, values]) => {
          values.sort((a, b) => a - b)
          return { model, count: values.length, p50Ms: round(percentile(values, 0.5), 3), p99Ms: round(percentile(values, 0.99), 3) }
        })
        .sort((a, b) => a.model.localeCompare(b.model)),
    }
  } else {
    const overall = bucketsOf(samples, () => true)
    const models = [...new Set(samples.filter((s) => s.name === 'ferrogate_request_duration_seconds_count').map((s) => modelName(s.labels)))].sort()
    const toMs = (seconds) => (seconds == null ? null : round(seconds * 1000, 3))
    latency = {
      source: overall.length ? 'histogram' : 'none',
      count: overall.at(-1)?.count ?? 0,
      p50Ms: toMs(histogramQuantile(0.5, overall)),
      p99Ms: toMs(histogramQuantile(0.99, overall)),
      byModel: models.map((model) => {
        const buckets = bucketsOf(samples, (l) => modelName(l) === model)
        return { model, count: buckets.at(-1)?.count ?? 0, p50Ms: toMs(histogramQuantile(0.5, buckets)), p99Ms: toMs(histogramQuantile(0.99, buckets)) }
      }),
    }
  }

  const number = (value) => (Number.isFinite(value) ? value : 0)
  const hits = sources.stats ? number(stats.cacheHits) + number(stats.cacheCoalesced) : sumOf(samples, 'ferrogate_cache_hits_total')
  const misses = sources.stats ? number(stats.cacheMisses) : sumOf(samples, 'ferrogate_cache_misses_total')
  const rateLimited = sources.stats ? number(stats.limiterRefusals) : sumOf(samples, 'ferrogate_rate_limit_refusals_total')
  const budget = sources.stats ? number(stats.budgetRefusals) : sumOf(samples, 'ferrogate_budget_refusals_total')

  return {
    generatedAt: new Date().toISOString(),
    days,
    sources,
    totals: {
      cost: round(costFigs ? costFigs.totalCost : costByModel.reduce((t, m) => t + m.cost, 0), 8),
      requests: costFigs ? costFigs.totalRequests : requests,
      errors,
    },
    costPerDay: costFigs?.perDay ?? [],
    costByModel,
    latency,
    cache: { hits, misses, hitRate: hits + misses > 0 ? round(hits / (hits + misses), 4) : null },
    refusals: { rateLimited, budget, total: rateLimited + budget },
  }
}

// ------------------------------------------------------------------------------ the page

function page({ title, refreshMs }) {
  const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  :root { --ink: #1d2733; --muted: #6b7785; --bar: #3a7bd5; --bar2: #e0803a; --ok: #2f9e6a; --bad: #c8453c; --line: #e3e8ee; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f6f8fa; }
  header { padding: 16px 24px; background: #fff; border-bottom: 1px solid var(--line); display: flex; align-items: baseline; gap: 16px; }
  h1 { font-size: 18px; margin: 0; }
  #updated { color: var(--muted); font-size: 12px; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(420px, 100%), 1fr)); gap: 16px; padding: 16px 24px; }
  @media (max-width: 480px) { main { padding: 12px 8px; gap: 12px; } header { padding: 12px 8px; } }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  h2 { font-size: 14px; margin: 0 0 8px; }
  .figures { display: flex; gap: 24px; flex-wrap: wrap; }
  .figure b { display: block; font-size: 22px; }
  .figure span { color: var(--muted); font-size: 12px; }
  svg text { font-size: 11px; fill: var(--ink); }
  svg .axis { stroke: var(--line); }
  .empty { color: var(--muted); font-style: italic; }
  .source { color: var(--muted); font-size: 11px; margin-top: 6px; }
</style>
</head>
<body>
<header><h1>${escapeHtml(title)}</h1><span id="updated">loading…</span></header>
<main>
  <section id="totals"><h2>Totals</h2><div class="figures">
    <div class="figure"><b id="total-cost">–</b><span>cost (USD)</span></div>
    <div class="figure"><b id="total-requests">–</b><span>requests</span></div>
    <div class="figure"><b id="total-errors">–</b><span>errors</span></div>
  </div></section>
  <section id="cost-per-day"><h2>Cost per day</h2><div class="chart"></div><div class="source"></div></section>
  <section id="cost-by-model"><h2>Cost by model</h2><div class="chart"></div><div class="source"></div></section>
  <section id="latency"><h2>Latency (ms)</h2><div class="figures">
    <div class="figure"><b id="latency-p50">–</b><span>p50</span></div>
    <div class="figure"><b id="latency-p99">–</b><span>p99</span></div>
  </div><div class="chart"></div><div class="source"></div></section>
  <section id="cache"><h2>Cache</h2><div class="figures">
    <div class="figure"><b id="cache-hit-rate">–</b><span>hit rate</span></div>
    <div class="figure"><b id="cache-hits">–</b><span>hits</span></div>
    <div class="figure"><b id="cache-misses">–</b><span>misses</span></div>
  </div><div class="chart"></div></section>
  <section id="refusals"><h2>Refusals</h2><div class="figures">
    <div class="figure"><b id="refusals-rate-limited">–</b><span>rate limited</span></div>
    <div class="figure"><b id="refusals-budget">–</b><span>over budget</span></div>
    <div class="figure"><b id="refusals-total">–</b><span>total</span></div>
  </div></section>
</main>
<script>
'use strict';
(function () {
  var SVG = 'http://www.w3.org/2000/svg';
  var refreshMs = ${Number(refreshMs) || 0};
  var dataUrl = location.pathname.replace(/\\/?$/, '/data');

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (text != null) node.textContent = text;
    return node;
  }
  // Dollars with cents, and small amounts to three significant digits ($0.000346), never a $0.000 that is not zero.
  function usd(value) {
    var v = Number(value);
    if (v === 0 || !isFinite(v)) return '$' + (v === 0 ? '0' : String(v));
    if (Math.abs(v) >= 1) return '$' + v.toFixed(2);
    var digits = Math.min(20, Math.max(2, 2 - Math.floor(Math.log10(Math.abs(v)))));
    return '$' + v.toFixed(digits).replace(/(\\.\\d\\d\\d*?)0+$/, '$1');
  }
  function ms(value) { return value == null ? '–' : Number(value).toFixed(value < 10 ? 2 : 0); }
  function setFigure(id, value, text) {
    var node = document.getElementById(id);
    node.dataset.value = value == null ? '' : String(value);
    node.textContent = text;
  }
  function empty(container, message) {
    container.textContent = '';
    var p = document.createElement('p');
    p.className = 'empty';
    p.textContent = message;
    container.appendChild(p);
  }

  // Vertical bars: items [{ label, value }] with their value in data-value.
  function columns(container, items, format, color) {
    if (!items.length) return empty(container, 'no data yet');
    var width = 560, height = 180, left = 8, bottom = 34, top = 18;
    var max = Math.max.apply(null, items.map(function (i) { return i.value; })) || 1;
    var step = (width - left) / items.length, barWidth = Math.max(4, Math.min(48, step * 0.7));
    var svg = el('svg', { viewBox: '0 0 ' + width + ' ' + height, width: '100%', role: 'img' });
    svg.appendChild(el('line', { x1: left, x2: width, y1: height - bottom, y2: height - bottom, 'class': 'axis' }));
    // Value labels: only on nonzero bars, largest first, each only where it does not overlap one already placed
    // (11px text is about 6.2 units a character); every bar keeps its value in a tooltip.
    var placed = [];
    var labelled = {};
    items
      .map(function (item, i) { return { i: i, value: item.value, text: format(item.value) }; })
      .filter(function (entry) { return entry.value !== 0; })
      .sort(function (a, b) { return b.value - a.value; })
      .forEach(function (entry) {
        var center = left + entry.i * step + step / 2, half = entry.text.length * 3.1 + 2;
        var free = placed.every(function (p) { return center + half <= p[0] || center - half >= p[1]; });
        if (free && center - half >= 0 && center + half <= width) {
          placed.push([center - half, center + half]);
          labelled[entry.i] = entry.text;
        }
      });
    var axisEnd = -Infinity;
    items.forEach(function (item, i) {
      var h = (height - bottom - top) * (item.value / max);
      var x = left + i * step + (step - barWidth) / 2;
      var g = el('g', { 'class': 'bar', 'data-label': item.label, 'data-value': String(item.value) });
      g.appendChild(el('title', {}, item.label + ': ' + format(item.value)));
      g.appendChild(el('rect', { x: x, y: height - bottom - h, width: barWidth, height: Math.max(h, 0.5), fill: color }));
      if (labelled[i] != null) {
        g.appendChild(el('text', { x: x + barWidth / 2, y: height - bottom - h - 4, 'text-anchor': 'middle', 'class': 'value' }, labelled[i]));
      }
      if (items.length <= 16 || i % Math.ceil(items.length / 8) === 0) {
        // Axis labels stay inside the chart (the edge ones anchored at its edges) and never touch each other.
        var labelWidth = String(item.label).length * 6.2, labelX = x + barWidth / 2, anchor = 'middle';
        var from = labelX - labelWidth / 2;
        if (from < 0) { labelX = 0; anchor = 'start'; from = 0; }
        else if (from + labelWidth > width) { labelX = width; anchor = 'end'; from = width - labelWidth; }
        if (from < axisEnd + 6) return svg.appendChild(g);
        axisEnd = from + labelWidth;
        g.appendChild(el('text', { x: labelX, y: height - bottom + 14, 'text-anchor': anchor, 'class': 'label' }, item.label));
      }
      svg.appendChild(g);
    });
    container.textContent = '';
    container.appendChild(svg);
  }

  // Horizontal bars, one row per item, with one or two series.
  function rows(container, items, series, format) {
    if (!items.length) return empty(container, 'no data yet');
    var width = 560, labelWidth = 170, rowHeight = 18 * series.length + 10;
    var height = items.length * rowHeight + 8;
    var max = 0;
    items.forEach(function (item) { series.forEach(function (s) { max = Math.max(max, item[s.key] || 0); }); });
    max = max || 1;
    var svg = el('svg', { viewBox: '0 0 ' + width + ' ' + height, width: '100%', role: 'img' });
    items.forEach(function (item, i) {
      var y = 4 + i * rowHeight;
      var g = el('g', { 'class': 'row', 'data-label': item.label });
      g.appendChild(el('text', { x: 0, y: y + 13, 'class': 'label' }, item.label));
      series.forEach(function (s, j) {
        var value = item[s.key];
        var w = value == null ? 0 : (width - labelWidth - 90) * (value / max);
        var bar = el('g', { 'class': 'bar', 'data-series': s.key, 'data-label': item.label, 'data-value': value == null ? '' : String(value) });
        bar.appendChild(el('rect', { x: labelWidth, y: y + j * 18, width: Math.max(w, 0.5), height: 14, fill: s.color }));
        bar.appendChild(el('text', { x: labelWidth + w + 4, y: y + j * 18 + 11, 'class': 'value' }, (s.name ? s.name + ' ' : '') + format(value)));
        g.appendChild(bar);
      });
      svg.appendChild(g);
    });
    container.textContent = '';
    container.appendChild(svg);
  }

  function ring(container, rate) {
    var svg = el('svg', { viewBox: '0 0 120 120', width: '120', role: 'img' });
    var r = 48, c = 2 * Math.PI * r;
    svg.appendChild(el('circle', { cx: 60, cy: 60, r: r, fill: 'none', stroke: '#e3e8ee', 'stroke-width': 14 }));
    if (rate != null) {
      svg.appendChild(el('circle', { cx: 60, cy: 60, r: r, fill: 'none', stroke: 'var(--ok)', 'stroke-width': 14,
        'stroke-dasharray': (c * rate) + ' ' + c, transform: 'rotate(-90 60 60)', 'class': 'hit-arc', 'data-value': String(rate) }));
    }
    svg.appendChild(el('text', { x: 60, y: 64, 'text-anchor': 'middle' }, rate == null ? 'no lookups' : (rate * 100).toFixed(1) + '%'));
    container.textContent = '';
    container.appendChild(svg);
  }

  function sourceNote(section, text) { document.querySelector('#' + section + ' .source').textContent = text; }

  function render(data) {
    setFigure('total-cost', data.totals.cost, usd(data.totals.cost));
    setFigure('total-requests', data.totals.requests, String(data.totals.requests));
    setFigure('total-errors', data.totals.errors, String(data.totals.errors));

    columns(document.querySelector('#cost-per-day .chart'), data.costPerDay.map(function (d) { return { label: d.date, value: d.cost }; }), usd, 'var(--bar)');
    sourceNote('cost-per-day', data.sources.costs ? 'from the cost tracker, last ' + data.days + ' days' : 'needs a CostTracker (dashboardHandler(gateway, { costs }))');
    rows(document.querySelector('#cost-by-model .chart'), data.costByModel.map(function (m) { return { label: m.model, cost: m.cost }; }), [{ key: 'cost', color: 'var(--bar)' }], usd);
    sourceNote('cost-by-model', data.sources.costs ? 'from the cost tracker' : 'from the gateway metrics');

    setFigure('latency-p50', data.latency.p50Ms, ms(data.latency.p50Ms));
    setFigure('latency-p99', data.latency.p99Ms, ms(data.latency.p99Ms));
    rows(document.querySelector('#latency .chart'), data.latency.byModel.map(function (m) { return { label: m.model, p50Ms: m.p50Ms, p99Ms: m.p99Ms }; }),
      [{ key: 'p50Ms', name: 'p50', color: 'var(--bar)' }, { key: 'p99Ms', name: 'p99', color: 'var(--bar2)' }], ms);
    sourceNote('latency', data.latency.source === 'calls' ? 'exact, from ' + data.latency.count + ' recorded calls'
      : data.latency.source === 'histogram' ? 'estimated from the latency histogram (' + data.latency.count + ' calls)' : 'no calls yet');

    setFigure('cache-hit-rate', data.cache.hitRate, data.cache.hitRate == null ? '–' : (data.cache.hitRate * 100).toFixed(1) + '%');
    setFigure('cache-hits', data.cache.hits, String(data.cache.hits));
    setFigure('cache-misses', data.cache.misses, String(data.cache.misses));
    ring(document.querySelector('#cache .chart'), data.cache.hitRate);

    setFigure('refusals-rate-limited', data.refusals.rateLimited, String(data.refusals.rateLimited));
    setFigure('refusals-budget', data.refusals.budget, String(data.refusals.budget));
    setFigure('refusals-total', data.refusals.total, String(data.refusals.total));

    var updated = document.getElementById('updated');
    updated.textContent = 'updated ' + new Date(data.generatedAt).toLocaleString();
    document.body.dataset.generatedAt = data.generatedAt;
    document.body.dataset.ready = 'true';
  }

  function load() {
    fetch(dataUrl, { headers: { accept: 'application/json' } })
      .then(function (res) { if (!res.ok) throw new Error('HTTP ' + res.status); return res.json(); })
      .then(render)
      .catch(function (error) { document.getElementById('updated').textContent = 'could not load the data: ' + error.message; })
      .then(function () { if (refreshMs > 0) setTimeout(load, refreshMs); });
  }
  load();
})();
</script>
</body>
</html>
`
}

// ------------------------------------------------------------------------------ the handler

/**
 * `GET /` → the page, `GET /data` → its JSON (paths relative to where it is mounted).
 * `handler.record(callRecord)`: give it the gateway's onCall records for exact latency figures.
 */
function dashboardHandler(gateway, options = {}) {
  if (gateway == null || typeof gateway !== 'object') throw new TypeError('dashboardHandler needs a gateway')
  const days = options.days ?? 30
  const html = page({ title: options.title ?? 'ferrogate dashboard', refreshMs: options.refreshMs ?? 10_000 })
  const records = []
  const maxRecords = options.maxRecords ?? MAX_RECORDS

  function handler(req, res, next) {
    const path = (req.url ?? '/').split('?')[0]
    const send = (status, type, body) => {
      res.statusCode = status
      res.setHeader('Content-Type', type)
      res.setHeader('Cache-Control', 'no-store')
      res.setHeader('Content-Length', Buffer.byteLength(body))
      res.end(req.method === 'HEAD' ? undefined : body)
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      if (typeof next === 'function') return next()
      return send(405, 'text/plain; charset=utf-8', 'Method Not Allowed')
    }
    if (path === '/' || path === '' || path === '/index.html') return send(200, 'text/html; charset=utf-8', html)
    if (path === '/data' || path === '/data.json') {
      const failed = () =>
        send(500, 'application/json; charset=utf-8', JSON.stringify({ error: { code: 'INTERNAL', message: 'the dashboard data could not be read' } }))
      let data
      try {
        data = dashboardData(gateway, { costs: options.costs, days, records })
      } catch {
        return failed()
      }
      if (typeof data?.then === 'function') {
        // The response may be gone by the time the summary answers: nothing may escape.
        data
          .then((answer) => send(200, 'application/json; charset=utf-8', JSON.stringify(answer)), failed)
          .catch(() => {})
        return
      }
      return send(200, 'application/json; charset=utf-8', JSON.stringify(data))
    }
    if (typeof next === 'function') return next()
    return send(404, 'text/plain; charset=utf-8', 'Not Found')
  }
  handler.record = (record) => {
    if (record == null || !Number.isFinite(record.latencyMs)) return
    records.push(record)
    if (records.length > maxRecords) records.splice(0, records.length - maxRecords)
  }
  handler.data = () => dashboardData(gateway, { costs: options.costs, days, records })
  return handler
}

module.exports = { dashboardHandler, dashboardData, parseMetrics, histogramQuantile }
