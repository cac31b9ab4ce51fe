#!/usr/bin/env node
// The semantic cache's index beside hnswlib-node (nmslib's C++ HNSW), on the same vectors, in one run:
//   - build time, lookup latency (p50, p99, one query at a time, each through its N-API call), recall@1 against an
//     exact scan, whether a cache at threshold 0.95 decides hit or miss as with the exact answer, and memory per entry
//     (RSS growth while the index is built, over the entries);
//   - the CPU a miss adds to a call (scope hash + index search + storing the answer), beside the same chat call
//     without a semantic cache and the embedding call alone (all three on the in-process mock provider).
// Vectors: N unit vectors of D dims in C clusters (a centre plus noise, as sentence embeddings bunch by topic).
// Two query sets of Q each, exact answers by a full scan in JS:
//   paraphrase  a stored vector turned by a random angle to cosine 0.93..0.99 (what a cache lookup asks)
//   fresh       a new vector from the same clusters (a question never asked: the nearest is farther)
//
//   node bench/semantic-cache.mjs          N=100000 D=384 C=1000 Q=500 CALLS=3000
// hnswlib-node is installed on first run into ~/.cache/ferrogate-bench (bench/lib.mjs requireBenchOnly). Use a release
// build of ferrogate (FERROGATE_MODULE=<a folder with it> to point at one).
import { createRequire } from 'node:module';
import path from 'node:path';
import { REPO_DIR, requireFerrogate, requireBenchOnly } from './lib.mjs';

const N = Number(process.env.N || 100_000);
const D = Number(process.env.D || 384);
const C = Number(process.env.C || 1000);
const Q = Number(process.env.Q || 500);
const CALLS = Number(process.env.CALLS || 3000);
// The default threshold of SemanticCache: a lookup's answer matters to a cache only as a hit or a miss at it.
const THRESHOLD = 0.95;
// Which parts run: `index` (the 100,000-entry comparison), `size` (lookups by scope size), `miss` (a miss's CPU).
const SECTIONS = new Set((process.env.SECTIONS || 'index,size,miss').split(','));
const require = createRequire(import.meta.url);
const ferrogate = requireFerrogate();
const native = require(path.join(process.env.FERROGATE_MODULE || REPO_DIR, 'binding.js'));
const { HierarchicalNSW } = requireBenchOnly('hnswlib-node');

// A seeded generator (mulberry32) and Gaussian samples (Box-Muller): the same vectors every run.
let seed = 0x5eed;
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
function normalise(v) {
  let norm = 0;
  for (let i = 0; i < v.length; i++) norm += v[i] * v[i];
  norm = Math.sqrt(norm);
  for (let i = 0; i < v.length; i++) v[i] /= norm;
  return v;
}
const dot = (a, b) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

const centres = Array.from({ length: C }, () => normalise(Float32Array.from({ length: D }, gaussian)));
const member = () => {
  const centre = centres[Math.floor(random() * C)];
  return normalise(Float32Array.from({ length: D }, (_, i) => centre[i] + 0.08 * gaussian()));
};
/** `base` turned towards a random direction until its cosine with it is `cosine`. */
function paraphraseOf(base, cosine) {
  const noise = Float32Array.from({ length: D }, gaussian);
  const along = dot(noise, base);
  for (let i = 0; i < D; i++) noise[i] -= along * base[i];
  normalise(noise);
  const sine = Math.sqrt(1 - cosine * cosine);
  return Float32Array.from({ length: D }, (_, i) => cosine * base[i] + sine * noise[i]);
}

const say = (line) => process.stderr.write(`${line}\n`);
say(`vectors: ${N} x ${D} in ${C} clusters; ${Q} queries per set`);
const vectors = Array.from({ length: N }, member);
const querySets = {
  paraphrase: Array.from({ length: Q }, () => paraphraseOf(vectors[Math.floor(random() * N)], 0.93 + 0.06 * random())),
  fresh: Array.from({ length: Q }, member),
};
const exact = {};
for (const [name, queries] of SECTIONS.has('index') ? Object.entries(querySets) : []) {
  exact[name] = queries.map((q) => {
    let best = -2;
    let at = -1;
    for (let i = 0; i < N; i++) {
      const s = dot(q, vectors[i]);
      if (s > best) [best, at] = [s, i];
    }
    return at;
  });
}

const rss = () => {
  globalThis.gc?.();
  return process.memoryUsage().rss;
};
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

function measure(name, build, lookup) {
  const before = rss();
  const started = process.hrtime.bigint();
  const index = build();
  const buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const bytesPerEntry = (rss() - before) / N;
  const result = { name, buildSeconds: +buildSeconds.toFixed(1), bytesPerEntry: Math.round(bytesPerEntry) };
  for (const [set, queries] of Object.entries(querySets)) {
    for (const q of queries.slice(0, 50)) lookup(index, q); // warm-up
    const times = [];
    let found = 0;
    let sameDecision = 0;
    queries.forEach((q, i) => {
      const t0 = process.hrtime.bigint();
      const at = lookup(index, q);
      times.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (at === exact[set][i]) found++;
      // What a cache at threshold 0.95 decides (hit or miss) with this answer and with the exact one.
      const hit = at !== undefined && dot(q, vectors[at]) >= THRESHOLD;
      if (hit === dot(q, vectors[exact[set][i]]) >= THRESHOLD) sameDecision++;
    });
    times.sort((a, b) => a - b);
    result[set] = {
      p50us: +percentile(times, 0.5).toFixed(1),
      p99us: +percentile(times, 0.99).toFixed(1),
      recallAt1: +(found / Q).toFixed(3),
      sameHitOrMissAt095: +(sameDecision / Q).toFixed(3),
    };
  }
  say(JSON.stringify(result));
  return result;
}

const results = [];
if (SECTIONS.has('index')) results.push(
  measure(
    'ferrogate (at 100,000 entries: codes of the partitions nearest the query, exact re-rank of 32)',
    () => {
      const cache = new native.NativeSemanticCache({ embeddingModel: 'bench/none', maxEntries: N });
      const ids = new Map();
      vectors.forEach((v, i) => ids.set(cache.addVector('bench', v), i));
      cache.waitForIndex(); // partitions are learnt on a thread of its own
      return { cache, ids };
    },
    ({ cache, ids }, q) => ids.get(cache.nearest('bench', q)?.entry),
  ),
);
if (SECTIONS.has('index')) results.push(
  measure(
    'hnswlib-node (M=16, efConstruction=200, ef=64)',
    () => {
      const index = new HierarchicalNSW('cosine', D);
      index.initIndex(N, 16, 200, 100);
      index.setEf(64);
      vectors.forEach((v, i) => index.addPoint(Array.from(v), i));
      return index;
    },
    (index, q) => index.searchKnn(Array.from(q), 1).neighbors[0],
  ),
);

// Scope sizes across the index's three ways to search (src/semantic/index.rs: every vector up to EXACT_UP_TO slots,
// the scan of sign-bit codes up to PARTITION_FROM live entries, then the codes of the partitions nearest the query):
// on the first vectors of the set, the lookup time of paraphrases of them (cosine 0.93..0.99) and recall@1 against an
// exact scan for those and for fresh queries, then the time of a miss (lookup and store). SIZES overrides the list.
const sizes = (process.env.SIZES || '128,256,1024,4096,16384,32768,65536,100000').split(',').map(Number);
const bySize = [];
if (SECTIONS.has('size')) {
  const cache = new native.NativeSemanticCache({ embeddingModel: 'bench/none', maxEntries: 2 * N });
  for (const size of sizes.filter((n) => n <= N)) {
    const scope = `size-${size}`;
    for (let i = 0; i < size; i++) cache.addVector(scope, vectors[i]);
    cache.waitForIndex(); // a scope past PARTITION_FROM is searched through its partitions once learnt
    const sets = {
      paraphrase: Array.from({ length: 200 }, () => paraphraseOf(vectors[Math.floor(random() * size)], 0.93 + 0.06 * random())),
      fresh: Array.from({ length: 200 }, member),
    };
    const row = { entries: size };
    for (const [set, queries] of Object.entries(sets)) {
      for (const q of queries) cache.nearest(scope, q);
      let found = 0;
      const times = queries.map((q) => {
        const t0 = process.hrtime.bigint();
        const got = cache.nearest(scope, q);
        const us = Number(process.hrtime.bigint() - t0) / 1000;
        let best = -2;
        for (let i = 0; i < size; i++) best = Math.max(best, dot(q, vectors[i]));
        // Equal similarity counts as found: two stored vectors can be equally near.
        if (got && got.similarity >= best - 1e-5) found++;
        return us;
      });
      times.sort((a, b) => a - b);
      row[set] = { p50us: +percentile(times, 0.5).toFixed(1), p99us: +percentile(times, 0.99).toFixed(1), recallAt1: +(found / queries.length).toFixed(3) };
    }
    // A miss as the cache meets it: the lookup of a question never asked, then its vector stored (what a miss
    // adds to the index's work), one after another with nothing in between.
    const missTimes = Array.from({ length: 200 }, member).map((q) => {
      const t0 = process.hrtime.bigint();
      cache.nearest(scope, q);
      cache.addVector(scope, q);
      return Number(process.hrtime.bigint() - t0) / 1000;
    });
    missTimes.sort((a, b) => a - b);
    row.miss = { p50us: +percentile(missTimes, 0.5).toFixed(1), p99us: +percentile(missTimes, 0.99).toFixed(1) };
    bySize.push(row);
    say(JSON.stringify(row));
  }
}

// The CPU a miss adds: the same chat (a new question every call) with and without a semantic cache, and the
// embedding call alone; one call in flight, on the in-process mock provider. Before each round the cached
// gateway's scope is filled (with unmeasured misses) to the round's size; MISS_SIZES overrides the list.
async function cpuPerCall(run) {
  for (let i = 0; i < 200; i++) await run(`warm ${i} ${Math.random()}`);
  const start = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) await run(`question number ${i} ${Math.random()}`);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / CALLS;
}
const providers = { mock: { kind: 'mock', models: ['demo', 'embed'], mockChunkDelayMs: 0 } };
const ask = (content) => ({ model: 'mock/demo', messages: [{ role: 'user', content }], maxTokens: 8 });
const plain = new ferrogate.Gateway({ providers });
const semanticCache = new ferrogate.SemanticCache({ embeddingModel: 'mock/embed', maxEntries: 200_000 });
const cached = new ferrogate.Gateway({ providers, semanticCache });
const missSizes = (process.env.MISS_SIZES || '0,4096,16384,32768,65536,100000').split(',').map(Number);
const rounds = [];
let filled = 0;
for (const size of SECTIONS.has('miss') ? missSizes : []) {
  for (; filled < size; filled++) await cached.chat(ask(`filler ${filled} ${Math.random()}`));
  const from = filled;
  const chat = await cpuPerCall((q) => plain.chat(ask(q)));
  const embed = await cpuPerCall((q) => plain.embed({ model: 'mock/embed', input: q }));
  const withCache = await cpuPerCall((q) => cached.chat(ask(q)));
  filled += CALLS + 200;
  rounds.push({ entriesFrom: from, entriesTo: filled, chatUs: +chat.toFixed(1), embedUs: +embed.toFixed(1), chatWithSemanticMissUs: +withCache.toFixed(1), addedUs: +(withCache - chat - embed).toFixed(1) });
  say(JSON.stringify(rounds.at(-1)));
}
const stats = semanticCache.stats();
await plain.close();
await cached.close();
console.log(JSON.stringify({ N, D, C, Q, index: results, lookupByScopeSize: bySize, missCpu: rounds, semanticStats: stats }, null, 2));
