//! The vector index of the semantic cache: one per scope (everything but the last user
//! message), so a lookup only ever sees answers to the same model, system prompt, earlier
//! turns, tools and sampling.
//!
//! Every scope keeps its vectors, normalised (so cosine similarity is a dot product), in one
//! flat array, and beside each its sign-bit code (`binary.rs`: one bit a dimension, 48 bytes
//! for 384 dims). Whatever finds the candidates, the answer is the best of them by the exact
//! dot product on the flat array, so a similarity is never an estimate. Three ways to find
//! them, by the scope's size:
//! - up to `EXACT_UP_TO` slots, every vector (exact);
//! - then a scan of the codes, whose `CODE_CANDIDATES` of least Hamming distance are
//!   re-ranked: about 2.5 ns an entry at 384 dims against 50 for comparing the floats, so a
//!   scan of 16,384 entries costs what comparing 1,000 vectors did, and storing an answer is an
//!   append. On the bench's vectors it finds the exact nearest of every paraphrase;
//! - from [`GRAPH_FROM`] live entries, an HNSW graph over 8-bit copies of the vectors
//!   (`usearch`), which returns a few candidates in a time that barely grows with the scope,
//!   but costs about 0.4 ms an insert.
//!
//! Why `usearch` and not a pure-Rust graph: on the bench's 100,000 × 384 vectors
//! `hnsw_rs` 0.3 searched 2.4× slower than hnswlib (a hash map and an `Arc` per visited point)
//! and cannot delete; `usearch` deletes and reuses slots, and its 8-bit vectors cut the memory a
//! search reads fourfold (`bench/semantic-cache.mjs`). A removed entry's slot is reused by the
//! next insert, so a scope never needs rebuilding.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::binary;

/// A scope's key: a BLAKE3 hash of its canonical encoding.
pub type ScopeKey = [u8; 32];

/// Live entries from which a scope is searched through a graph rather than by a scan of codes.
/// Below it the scan is faster than the graph's search, and a miss stores its answer without
/// the graph's 0.4 ms insert. Measured on a quiet machine (`bench/semantic-cache.mjs`): the scan
/// 358 / 431 µs p50 / p99 at 65,535 entries, growing by about 5.5 µs a thousand; the graph
/// 696 / 1,392 µs at 100,000. The scan stays ahead to about twice that, and the graph keeps a
/// lookup's time nearly flat beyond. Reaching it builds the scope's graph once, on a thread of
/// its own with no lock held: about 0.37 ms an entry, so some 50 s of CPU at 384 dims.
#[cfg(not(test))]
pub const GRAPH_FROM: usize = 131_072;
/// Small in unit tests, so the graph's paths run in a debug build in seconds.
#[cfg(test)]
pub const GRAPH_FROM: usize = 512;
/// Neighbours kept per node (HNSW's `M`), and the candidates explored while inserting and while
/// searching. Inserting dominates what a stored answer costs (half a millisecond at 100,000
/// entries, where usearch's default of 128 took 1.2 ms); with the exact re-rank, 64 still gives
/// recall@1 ≥ 0.99 on the bench's vectors.
const GRAPH_NEIGHBOURS: usize = 16;
const EF_CONSTRUCTION: usize = 64;
const EF_SEARCH: usize = 64;
/// Candidates the graph returns, of which the exact dot product picks the answer: more than one,
/// because 8-bit similarities can swap two near neighbours.
const GRAPH_CANDIDATES: usize = 8;

/// Slots up to which a scope is scanned exactly, every vector compared: up to about 128 that
/// costs what the scan of codes and its re-rank of [`CODE_CANDIDATES`] cost.
const EXACT_UP_TO: usize = 128;
/// Candidates the scan of codes keeps for the exact dot product to rank. On the bench's
/// vectors one finds the nearest of every paraphrase; a question never asked (whose nearest is
/// barely nearer than its neighbours) needs about 64 for recall@1 ≥ 0.95 up to 65,536 entries
/// (32: 0.90–0.96), and more as the scope grows; 128 keep a margin up to [`GRAPH_FROM`].
/// Re-ranking 128 costs about 6 µs.
const CODE_CANDIDATES: usize = 128;

/// Eight running sums, so the compiler vectorises the loop.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
  let mut sums = [0f32; 8];
  let (left, right) = (a.chunks_exact(8), b.chunks_exact(8));
  let tail: f32 = left
    .remainder()
    .iter()
    .zip(right.remainder())
    .map(|(x, y)| x * y)
    .sum();
  for (x, y) in left.zip(right) {
    for lane in 0..8 {
      sums[lane] += x[lane] * y[lane];
    }
  }
  sums.iter().sum::<f32>() + tail
}

/// `vector` scaled to length 1, or `None` when it has no direction or holds a non-finite
/// number (such a vector could match anything, or nothing).
pub fn normalised(mut vector: Vec<f32>) -> Option<Vec<f32>> {
  if vector.is_empty() || vector.iter().any(|x| !x.is_finite()) {
    return None;
  }
  let norm = dot(&vector, &vector).sqrt();
  if !norm.is_normal() {
    return None;
  }
  for x in &mut vector {
    *x /= norm;
  }
  Some(vector)
}

/// The closest live entry of a scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
  pub entry: u64,
  pub similarity: f32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
  entry: u64,
  /// Milliseconds since the Unix epoch; `None` never expires.
  expires_at: Option<u64>,
  alive: bool,
}

impl Slot {
  fn usable(&self, now: u64) -> bool {
    self.alive && self.expires_at.is_none_or(|at| at > now)
  }
}

struct ScopeIndex {
  dims: usize,
  slots: Vec<Slot>,
  /// Slot `i`'s vector at `[i * dims, (i + 1) * dims)`.
  vectors: Vec<f32>,
  /// Words in a sign-bit code (`binary::words(dims)`).
  words: usize,
  /// Slot `i`'s code at `[i * words, (i + 1) * words)`.
  codes: Vec<u64>,
  /// Slots of removed entries, reused before the arrays grow.
  free: Vec<usize>,
  live: usize,
  slot_of: HashMap<u64, usize>,
  /// Keyed by slot; made when the scope reaches [`GRAPH_FROM`] live entries.
  graph: Option<Index>,
  /// A graph is being built from a snapshot, outside the scope's lock.
  building_graph: bool,
}

/// The live slots of a scope when its graph's build began, their vectors in slot order.
struct GraphSnapshot {
  dims: usize,
  members: Vec<(usize, u64)>,
  vectors: Vec<f32>,
}

impl GraphSnapshot {
  /// A graph of the snapshot's slots, or `None` when usearch cannot make one (the scope stays
  /// a full scan: slower, never wrong).
  fn build(&self) -> Option<Index> {
    let options = IndexOptions {
      dimensions: self.dims,
      metric: MetricKind::Cos,
      quantization: ScalarKind::I8,
      connectivity: GRAPH_NEIGHBOURS,
      expansion_add: EF_CONSTRUCTION,
      expansion_search: EF_SEARCH,
      multi: false,
    };
    let graph = Index::new(&options).ok()?;
    graph.reserve(self.members.len().max(GRAPH_FROM) * 2).ok()?;
    let vectors = self.vectors.chunks_exact(self.dims);
    for (&(slot, _), vector) in self.members.iter().zip(vectors) {
      if !graph_add(&graph, slot, vector) {
        return None;
      }
    }
    Some(graph)
  }
}

impl ScopeIndex {
  fn new(dims: usize) -> Self {
    ScopeIndex {
      dims,
      slots: Vec::new(),
      vectors: Vec::new(),
      words: binary::words(dims),
      codes: Vec::new(),
      free: Vec::new(),
      live: 0,
      slot_of: HashMap::new(),
      graph: None,
      building_graph: false,
    }
  }

  fn vector(&self, slot: usize) -> &[f32] {
    &self.vectors[slot * self.dims..(slot + 1) * self.dims]
  }

  fn nearest(&self, query: &[f32], now: u64) -> Option<Nearest> {
    let usable = |slot: &usize| self.slots.get(*slot).is_some_and(|s| s.usable(now));
    let every_slot = || self.scan(query, now);
    let Some(graph) = &self.graph else {
      return every_slot();
    };
    let slots = |keys: Vec<u64>| {
      keys
        .into_iter()
        .filter_map(|key| usize::try_from(key).ok())
        .filter(usable)
        .collect::<Vec<_>>()
    };
    // Unfiltered first: a filter is asked about every point the search visits, each a random
    // read of `slots` (a cache miss apiece, more than the search itself). Removed entries are
    // out of the graph, so only an expired one can be among the few found.
    match graph.search(query, GRAPH_CANDIDATES) {
      Ok(found) if found.keys.is_empty() => None,
      Ok(found) => {
        let usable_found = slots(found.keys);
        if !usable_found.is_empty() {
          return self.best_of(query, usable_found.into_iter());
        }
        // The whole neighbourhood has expired: the filtered search looks past it.
        let filter = |key: u64| usize::try_from(key).is_ok_and(|slot| usable(&slot));
        match graph.filtered_search(query, GRAPH_CANDIDATES, filter) {
          Ok(found) => self.best_of(query, slots(found.keys).into_iter()),
          Err(_) => every_slot(),
        }
      }
      // Only an allocation can fail here: scanning everything is slower but still right.
      Err(_) => every_slot(),
    }
  }

  /// The nearest usable slot without the graph: every vector compared when there are few, else
  /// the [`CODE_CANDIDATES`] nearest by their codes' Hamming distance, of which the exact dot
  /// product picks the answer.
  fn scan(&self, query: &[f32], now: u64) -> Option<Nearest> {
    let usable = |slot: usize| self.slots[slot].usable(now);
    if self.slots.len() <= EXACT_UP_TO {
      return self.best_of(query, (0..self.slots.len()).filter(|&slot| usable(slot)));
    }
    let code = binary::code_of(query);
    let candidates = binary::closest(&self.codes, self.words, &code, CODE_CANDIDATES, usable);
    self.best_of(query, candidates.into_iter())
  }

  /// The slot of `slots` most similar to `query`, by the exact dot product.
  fn best_of(&self, query: &[f32], slots: impl Iterator<Item = usize>) -> Option<Nearest> {
    slots
      .map(|slot| Nearest {
        entry: self.slots[slot].entry,
        similarity: dot(query, self.vector(slot)),
      })
      .fold(None, |best: Option<Nearest>, this| match best {
        Some(best) if best.similarity >= this.similarity => Some(best),
        _ => Some(this),
      })
  }

  /// False when the graph could not take the vector (out of memory): the entry is not added.
  fn insert(&mut self, entry: u64, vector: &[f32], expires_at: Option<u64>) -> bool {
    let slot = match self.free.pop() {
      Some(slot) => {
        self.vectors[slot * self.dims..(slot + 1) * self.dims].copy_from_slice(vector);
        binary::encode(
          vector,
          &mut self.codes[slot * self.words..(slot + 1) * self.words],
        );
        slot
      }
      None => {
        self.vectors.extend_from_slice(vector);
        self.codes.extend(binary::code_of(vector));
        self.slots.push(Slot {
          entry,
          expires_at,
          alive: false,
        });
        self.slots.len() - 1
      }
    };
    if let Some(graph) = &self.graph {
      if !graph_add(graph, slot, vector) {
        self.free.push(slot);
        return false;
      }
    }
    self.slots[slot] = Slot {
      entry,
      expires_at,
      alive: true,
    };
    self.slot_of.insert(entry, slot);
    self.live += 1;
    true
  }

  /// A snapshot to build this scope's graph from, when it has grown to need one and no build
  /// is under way; the build is then this caller's.
  fn take_graph_build(&mut self) -> Option<GraphSnapshot> {
    if self.graph.is_some() || self.building_graph || self.live < GRAPH_FROM {
      return None;
    }
    self.building_graph = true;
    let mut snapshot = GraphSnapshot {
      dims: self.dims,
      members: Vec::with_capacity(self.live),
      vectors: Vec::with_capacity(self.live * self.dims),
    };
    for (slot, record) in self.slots.iter().enumerate() {
      if record.alive {
        snapshot.members.push((slot, record.entry));
        snapshot.vectors.extend_from_slice(self.vector(slot));
      }
    }
    Some(snapshot)
  }

  /// Takes a graph built from `built`, brought up to date with what changed meanwhile.
  fn adopt_graph(&mut self, graph: Option<Index>, built: &[(usize, u64)]) {
    self.building_graph = false;
    let Some(graph) = graph else { return };
    for &(slot, entry) in built {
      if self
        .slots
        .get(slot)
        .is_none_or(|record| !record.alive || record.entry != entry)
      {
        let _ = graph.remove(slot as u64);
      }
    }
    let built: HashMap<usize, u64> = built.iter().copied().collect();
    for (slot, record) in self.slots.iter().enumerate() {
      if record.alive
        && built.get(&slot) != Some(&record.entry)
        && !graph_add(&graph, slot, self.vector(slot))
      {
        return;
      }
    }
    self.graph = Some(graph);
  }

  fn remove(&mut self, entry: u64) -> bool {
    let Some(slot) = self.slot_of.remove(&entry) else {
      return false;
    };
    if let Some(record) = self.slots.get_mut(slot) {
      record.alive = false;
    }
    if let Some(graph) = &self.graph {
      // A key the graph lost is as good as removed: the slot is dead either way.
      let _ = graph.remove(slot as u64);
    }
    self.free.push(slot);
    self.live -= 1;
    true
  }

  /// Removes every entry expired by `now`; the entries they were.
  fn expire(&mut self, now: u64) -> Vec<u64> {
    let expired: Vec<u64> = self
      .slots
      .iter()
      .filter(|slot| slot.alive && !slot.usable(now))
      .map(|slot| slot.entry)
      .collect();
    for entry in &expired {
      self.remove(*entry);
    }
    expired
  }
}

/// Adds a slot's vector, doubling the graph's capacity when it is full (usearch needs room
/// reserved before an add).
/// Builds a scope's graph on a thread of its own. It takes tens of seconds of CPU at
/// [`GRAPH_FROM`] entries: on the call that crossed the threshold it would hold that caller,
/// and the runtime's worker under it (every other call of an in-process gateway), for as long.
/// No lock is held meanwhile; lookups and inserts go on, answered by scans of the codes, and
/// the graph takes in what changed when it is adopted.
fn build_graph_apart(scope_index: Arc<RwLock<ScopeIndex>>, snapshot: GraphSnapshot) {
  let adopting = scope_index.clone();
  let spawned = std::thread::Builder::new()
    .name("ferrogate-graph".to_string())
    .spawn(move || {
      let graph = snapshot.build();
      adopting
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .adopt_graph(graph, &snapshot.members);
    });
  if spawned.is_err() {
    // No thread to build on: the scope stays a scan (slower, never wrong) and the next
    // insert tries again.
    scope_index
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .adopt_graph(None, &[]);
  }
}

fn graph_add(graph: &Index, slot: usize, vector: &[f32]) -> bool {
  if graph.size() >= graph.capacity() && graph.reserve(graph.capacity().max(64) * 2).is_err() {
    return false;
  }
  graph.add(slot as u64, vector).is_ok()
}

/// Every scope's index, and which scope each entry is in.
#[derive(Default)]
pub struct VectorIndex {
  scopes: RwLock<HashMap<ScopeKey, Arc<RwLock<ScopeIndex>>>>,
  scope_of: RwLock<HashMap<u64, ScopeKey>>,
  entries: AtomicUsize,
  /// Entries oldest first (removed ones are skipped when met), for `trim`.
  order: Mutex<VecDeque<u64>>,
}

impl VectorIndex {
  /// The closest usable entry to `query` (normalised) in `scope`.
  pub fn nearest(&self, scope: &ScopeKey, query: &[f32], now: u64) -> Option<Nearest> {
    let index = self.read_scopes().get(scope).cloned()?;
    let index = index
      .read()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    if index.dims != query.len() {
      return None;
    }
    index.nearest(query, now)
  }

  /// Adds an entry (a no-op for one already in); false when its vector's size differs
  /// from the scope's.
  pub fn insert(
    &self,
    scope: ScopeKey,
    entry: u64,
    vector: &[f32],
    expires_at: Option<u64>,
  ) -> bool {
    {
      let mut scope_of = self
        .scope_of
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
      if scope_of.contains_key(&entry) {
        return true;
      }
      scope_of.insert(entry, scope);
    }
    let scope_index = self
      .scopes
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .entry(scope)
      .or_insert_with(|| Arc::new(RwLock::new(ScopeIndex::new(vector.len()))))
      .clone();
    let mut index = scope_index
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    if index.dims != vector.len() {
      self.forget_entry(entry);
      return false;
    }
    if !index.insert(entry, vector, expires_at) {
      self.forget_entry(entry);
      return false;
    }
    let graph_build = index.take_graph_build();
    drop(index);
    if let Some(snapshot) = graph_build {
      build_graph_apart(scope_index, snapshot);
    }
    self.entries.fetch_add(1, Ordering::Relaxed);
    let mut order = self
      .order
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    order.push_back(entry);
    if order.len() > 2 * self.len() + 1024 {
      order.retain(|entry| self.contains(*entry));
    }
    true
  }

  /// Removes the oldest entries until at most `max` are left; the entries removed.
  pub fn trim(&self, max: usize) -> Vec<u64> {
    let mut removed = Vec::new();
    while self.len() > max {
      let oldest = self
        .order
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop_front();
      let Some(oldest) = oldest else { break };
      if self.remove(oldest) {
        removed.push(oldest);
      }
    }
    removed
  }

  /// True when the entry was in the index.
  pub fn remove(&self, entry: u64) -> bool {
    let Some(scope) = self.forget_entry(entry) else {
      return false;
    };
    let Some(index) = self.read_scopes().get(&scope).cloned() else {
      return false;
    };
    let removed = index
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .remove(entry);
    if removed {
      self.entries.fetch_sub(1, Ordering::Relaxed);
    }
    removed
  }

  /// Drops the entries expired by `now`; the entries dropped.
  pub fn expire(&self, now: u64) -> Vec<u64> {
    let indexes: Vec<_> = self.read_scopes().values().cloned().collect();
    let mut expired = Vec::new();
    for index in indexes {
      let gone = index
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .expire(now);
      expired.extend(gone);
    }
    for entry in &expired {
      self.forget_entry(*entry);
    }
    self.entries.fetch_sub(expired.len(), Ordering::Relaxed);
    expired
  }

  pub fn contains(&self, entry: u64) -> bool {
    self
      .scope_of
      .read()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .contains_key(&entry)
  }

  pub fn len(&self) -> usize {
    self.entries.load(Ordering::Relaxed)
  }

  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  fn forget_entry(&self, entry: u64) -> Option<ScopeKey> {
    self
      .scope_of
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .remove(&entry)
  }

  /// Blocks until no scope's graph is being built (benches and tests, which measure or check
  /// the graph right after filling a scope).
  pub fn wait_for_graphs(&self) {
    let building = || {
      self.read_scopes().values().any(|index| {
        index
          .read()
          .unwrap_or_else(|poisoned| poisoned.into_inner())
          .building_graph
      })
    };
    while building() {
      std::thread::sleep(std::time::Duration::from_millis(5));
    }
  }

  #[cfg(test)]
  fn searches_a_graph(&self, scope: &ScopeKey) -> bool {
    self.read_scopes().get(scope).is_some_and(|index| {
      index
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .graph
        .is_some()
    })
  }

  fn read_scopes(
    &self,
  ) -> std::sync::RwLockReadGuard<'_, HashMap<ScopeKey, Arc<RwLock<ScopeIndex>>>> {
    self
      .scopes
      .read()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn unit(seed: u64, dims: usize) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    normalised((0..dims).map(|_| rng.f32() - 0.5).collect()).expect("vector")
  }

  /// `base` turned towards a random direction until its cosine with `base` is `cosine`.
  fn at_cosine(base: &[f32], cosine: f32, seed: u64) -> Vec<f32> {
    let noise = unit(seed, base.len());
    let along = dot(&noise, base);
    let orthogonal: Vec<f32> = noise.iter().zip(base).map(|(n, b)| n - along * b).collect();
    let orthogonal = normalised(orthogonal).expect("orthogonal");
    let sine = (1.0 - cosine * cosine).sqrt();
    base
      .iter()
      .zip(&orthogonal)
      .map(|(b, o)| cosine * b + sine * o)
      .collect()
  }

  #[test]
  fn the_nearest_entry_is_found_in_its_scope_only() {
    let index = VectorIndex::default();
    let stored = unit(1, 64);
    index.insert([1; 32], 7, &stored, None);
    let query = at_cosine(&stored, 0.97, 2);
    let found = index.nearest(&[1; 32], &query, 0).expect("nearest");
    assert_eq!(found.entry, 7);
    assert!((found.similarity - 0.97).abs() < 1e-4, "{found:?}");
    assert_eq!(index.nearest(&[2; 32], &query, 0), None);
  }

  #[test]
  fn expired_and_removed_entries_are_not_found() {
    let index = VectorIndex::default();
    let stored = unit(1, 32);
    index.insert([1; 32], 1, &stored, Some(1_000));
    assert!(index.nearest(&[1; 32], &stored, 999).is_some());
    assert!(index.nearest(&[1; 32], &stored, 1_000).is_none());
    assert_eq!(index.expire(1_000), vec![1]);
    assert_eq!(index.len(), 0);
    index.insert([1; 32], 2, &stored, None);
    assert!(index.remove(2));
    assert!(index.nearest(&[1; 32], &stored, 0).is_none());
    assert!(index.is_empty());
  }

  #[test]
  fn trimming_removes_the_oldest_entries() {
    let index = VectorIndex::default();
    for entry in 0..10 {
      index.insert([1; 32], entry, &unit(entry, 16), None);
    }
    index.remove(0);
    assert_eq!(index.trim(6), vec![1, 2, 3]);
    assert_eq!(index.len(), 6);
    assert!(index.contains(9) && !index.contains(3));
  }

  #[test]
  fn a_large_scope_becomes_a_graph_and_keeps_finding_its_entries() {
    let index = VectorIndex::default();
    let dims = 32;
    let count = GRAPH_FROM + 200;
    let vectors: Vec<Vec<f32>> = (0..count as u64).map(|i| unit(i + 10, dims)).collect();
    for (i, vector) in vectors.iter().enumerate() {
      index.insert([3; 32], i as u64, vector, None);
    }
    index.wait_for_graphs();
    let mut found = 0;
    for (i, vector) in vectors.iter().enumerate().step_by(37) {
      let query = at_cosine(vector, 0.98, i as u64);
      if index.nearest(&[3; 32], &query, 0).map(|n| n.entry) == Some(i as u64) {
        found += 1;
      }
    }
    let asked = count.div_ceil(37);
    assert!(found * 100 >= asked * 95, "{found} of {asked}");
    assert!(index.searches_a_graph(&[3; 32]));
    // Removed entries' slots are reused: the graph keeps finding what is added after them.
    for i in 0..(count - 100) {
      assert!(index.remove(i as u64));
    }
    assert_eq!(index.len(), 100);
    let last = count as u64 - 1;
    let found = index.nearest(&[3; 32], &vectors[last as usize], 0);
    assert_eq!(found.map(|n| n.entry), Some(last));
    for i in 0..300u64 {
      assert!(index.insert([3; 32], 1_000_000 + i, &unit(50_000 + i, dims), None));
    }
    for i in (0..300u64).step_by(29) {
      let found = index.nearest(&[3; 32], &unit(50_000 + i, dims), 0);
      assert_eq!(found.map(|n| n.entry), Some(1_000_000 + i));
      assert!(found.is_some_and(|n| (n.similarity - 1.0).abs() < 1e-5));
    }
  }

  #[test]
  fn a_graph_finds_the_one_usable_entry_when_every_nearer_one_has_expired() {
    let index = VectorIndex::default();
    let dims = 16;
    let count = GRAPH_FROM + 50;
    for i in 0..count as u64 {
      index.insert([4; 32], i, &unit(i + 100, dims), Some(1_000));
    }
    let survivor = unit(7, dims);
    index.insert([4; 32], 99_999, &survivor, None);
    index.wait_for_graphs();
    assert!(index.searches_a_graph(&[4; 32]));
    let query = unit(200, dims);
    assert_ne!(
      index.nearest(&[4; 32], &query, 0).map(|n| n.entry),
      Some(99_999),
      "before expiry a nearer entry answers"
    );
    let found = index
      .nearest(&[4; 32], &query, 1_000)
      .expect("the survivor");
    assert_eq!(found.entry, 99_999);
    assert!((found.similarity - dot(&query, &survivor)).abs() < 1e-4);
  }

  #[test]
  fn a_graph_built_outside_the_lock_takes_in_what_changed_meanwhile() {
    let dims = 16;
    let mut scope = ScopeIndex::new(dims);
    for i in 0..GRAPH_FROM as u64 {
      assert!(scope.insert(i, &unit(i + 1, dims), None));
    }
    let snapshot = scope.take_graph_build().expect("a build is due");
    assert!(scope.take_graph_build().is_none(), "one build at a time");
    // While the graph is built: one entry removed and its slot reused, and a new one added.
    assert!(scope.remove(5));
    assert!(scope.insert(90_000, &unit(90_000, dims), None));
    assert!(scope.insert(90_001, &unit(90_001, dims), None));
    scope.adopt_graph(snapshot.build(), &snapshot.members);
    assert!(scope.graph.is_some());
    for entry in [90_000u64, 90_001, 7, 300] {
      let seed = if entry >= 90_000 { entry } else { entry + 1 };
      let found = scope.nearest(&unit(seed, dims), 0).map(|n| n.entry);
      assert_eq!(found, Some(entry));
    }
    assert_ne!(scope.nearest(&unit(6, dims), 0).map(|n| n.entry), Some(5));
  }

  /// Unit vectors in `clusters` groups, each a random centre plus Gaussian noise of `spread` a
  /// component (as `bench/semantic-cache.mjs` makes them), and the generator for more.
  fn clustered(seed: u64, dims: usize, clusters: usize, spread: f32) -> impl FnMut() -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let gaussian = |rng: &mut fastrand::Rng| {
      let (u, v) = (1.0 - rng.f32(), rng.f32());
      (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let centres: Vec<Vec<f32>> = (0..clusters)
      .map(|_| (0..dims).map(|_| gaussian(&mut rng)).collect())
      .map(|centre| normalised(centre).expect("centre"))
      .collect();
    move || {
      let centre = &centres[rng.usize(..clusters)];
      let member = centre
        .iter()
        .map(|c| c + spread * gaussian(&mut rng))
        .collect();
      normalised(member).expect("member")
    }
  }

  /// The exact answer: every usable slot compared.
  fn exact_nearest(scope: &ScopeIndex, query: &[f32], now: u64) -> Option<Nearest> {
    let usable = |slot: &usize| scope.slots[*slot].usable(now);
    scope.best_of(query, (0..scope.slots.len()).filter(usable))
  }

  #[test]
  fn the_scan_of_codes_finds_the_exact_nearest_of_a_near_duplicate() {
    let dims = 384;
    let mut scope = ScopeIndex::new(dims);
    let mut next = clustered(1, dims, 50, 0.08);
    let vectors: Vec<Vec<f32>> = (0..2_000).map(|_| next()).collect();
    for (entry, vector) in vectors.iter().enumerate() {
      assert!(scope.insert(entry as u64, vector, None));
    }
    assert!(scope.slots.len() > EXACT_UP_TO && scope.graph.is_none());
    for (entry, vector) in vectors.iter().enumerate().step_by(41) {
      let query = at_cosine(vector, 0.93, entry as u64);
      let found = scope.nearest(&query, 0).expect("nearest");
      assert_eq!(found.entry, entry as u64);
      assert_eq!(Some(found), exact_nearest(&scope, &query, 0));
    }
  }

  #[test]
  fn over_clustered_vectors_the_scan_of_codes_agrees_with_the_exact_scan() {
    let dims = 384;
    let mut scope = ScopeIndex::new(dims);
    let mut next = clustered(2, dims, 10, 0.08);
    for entry in 0..3_000 {
      assert!(scope.insert(entry, &next(), None));
    }
    // New members of the clusters (300 a cluster), not paraphrases of stored vectors: their
    // nearest entry is barely nearer than the rest of its cluster, the hardest case for codes.
    // The generator is seeded, so the count is the same every run: 171 of 200 when written,
    // 78 with 8 candidates instead of 64.
    let asked = 200;
    let agreed = (0..asked)
      .map(|_| next())
      .filter(|query| scope.nearest(query, 0) == exact_nearest(&scope, query, 0))
      .count();
    assert!(agreed * 100 >= asked * 80, "{agreed} of {asked}");
  }

  #[test]
  fn the_scan_of_codes_skips_expired_and_removed_slots() {
    let dims = 64;
    let mut scope = ScopeIndex::new(dims);
    let count = EXACT_UP_TO as u64 * 3;
    for entry in 0..count {
      assert!(scope.insert(entry, &unit(entry + 1, dims), Some(1_000)));
    }
    let survivor = unit(7, dims);
    assert!(scope.insert(count, &survivor, None));
    let query = unit(11, dims);
    assert_eq!(scope.nearest(&query, 0).map(|n| n.entry), Some(10));
    assert!(scope.remove(10));
    let found = scope.nearest(&query, 0).expect("nearest");
    assert_ne!(found.entry, 10);
    assert_eq!(Some(found), exact_nearest(&scope, &query, 0));
    // Every nearer code has expired: the scan keeps looking until it has usable candidates.
    let found = scope.nearest(&query, 1_000).expect("the survivor");
    assert_eq!(found.entry, count);
    assert!((found.similarity - dot(&query, &survivor)).abs() < 1e-5);
    // A removed slot's code is overwritten when the slot is reused.
    assert!(scope.insert(count + 1, &query, None));
    assert_eq!(scope.nearest(&query, 0).map(|n| n.entry), Some(count + 1));
  }

  #[test]
  fn vectors_without_a_direction_are_refused() {
    assert!(normalised(vec![0.0; 8]).is_none());
    assert!(normalised(vec![f32::NAN, 1.0]).is_none());
    assert!(normalised(Vec::new()).is_none());
  }
}
