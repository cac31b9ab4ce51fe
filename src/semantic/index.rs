//! The vector index of the semantic cache: one per scope (everything but the last user
//! message), so a lookup only ever sees answers to the same model, system prompt, earlier
//! turns, tools and sampling.
//!
//! A scope starts as a flat array scanned in full (exact, and faster than any graph for a
//! few thousand vectors); past [`GRAPH_FROM`] live entries it becomes an HNSW graph
//! (`hnsw_rs`: pure Rust, maintained, incremental inserts while searching, filtered
//! search). `hnsw_rs` cannot delete, so an expired or evicted entry is a tombstone the search
//! filters out, and the graph is rebuilt from its live points once tombstones outnumber
//! them. Vectors are normalised on the way in, so cosine similarity is a dot product.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

/// A scope's key: a BLAKE3 hash of its canonical encoding.
pub type ScopeKey = [u8; 32];

/// Live entries from which a scope is an HNSW graph rather than a flat scan. Below it a full
/// scan of normalised vectors (a few µs per thousand 384-float vectors) beats the graph's
/// pointer chasing and is exact; `bench/semantic-cache.mjs` measures both sides.
#[cfg(not(test))]
pub const GRAPH_FROM: usize = 4096;
/// Small in unit tests, so the graph's paths run in a debug build in seconds.
#[cfg(test)]
pub const GRAPH_FROM: usize = 512;
/// Neighbours kept per node and layer (HNSW's `M`).
const GRAPH_NEIGHBOURS: usize = 16;
const GRAPH_LAYERS: usize = 16;
/// Candidates explored while inserting and while searching: what buys recall@1 ≥ 0.95 on
/// the bench's 100,000 vectors at a lookup well under a millisecond.
const EF_CONSTRUCTION: usize = 100;
const EF_SEARCH: usize = 64;

/// Cosine distance of normalised vectors: `1 - a·b`, never NaN (the vectors are checked
/// finite before they get here; `hnsw_rs` panics on a NaN distance).
#[derive(Debug, Clone, Copy, Default)]
pub struct DotDistance;

impl Distance<f32> for DotDistance {
  fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
    let distance = 1.0 - dot(a, b);
    if distance.is_nan() {
      2.0
    } else {
      distance.max(0.0)
    }
  }
}

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

enum Storage {
  /// Slot `i`'s vector at `[i * dims, (i + 1) * dims)`.
  Flat(Vec<f32>),
  /// Points carry their slot as their id.
  Graph(Box<Hnsw<'static, f32, DotDistance>>),
}

struct ScopeIndex {
  dims: usize,
  slots: Vec<Slot>,
  live: usize,
  slot_of: HashMap<u64, usize>,
  storage: Storage,
}

impl ScopeIndex {
  fn new(dims: usize) -> Self {
    ScopeIndex {
      dims,
      slots: Vec::new(),
      live: 0,
      slot_of: HashMap::new(),
      storage: Storage::Flat(Vec::new()),
    }
  }

  fn nearest(&self, query: &[f32], now: u64) -> Option<Nearest> {
    match &self.storage {
      Storage::Flat(vectors) => {
        let mut best: Option<Nearest> = None;
        for (slot, vector) in self.slots.iter().zip(vectors.chunks_exact(self.dims)) {
          if !slot.usable(now) {
            continue;
          }
          let similarity = dot(query, vector);
          if best.is_none_or(|best| similarity > best.similarity) {
            best = Some(Nearest {
              entry: slot.entry,
              similarity,
            });
          }
        }
        best
      }
      Storage::Graph(graph) => {
        let usable = |id: &usize| self.slots.get(*id).is_some_and(|slot| slot.usable(now));
        let found = graph.search_filter(query, 1, EF_SEARCH, Some(&usable));
        let best = found.first()?;
        let slot = self.slots.get(best.get_origin_id())?;
        Some(Nearest {
          entry: slot.entry,
          similarity: 1.0 - best.get_distance(),
        })
      }
    }
  }

  fn insert(&mut self, entry: u64, vector: &[f32], expires_at: Option<u64>) {
    let slot = self.slots.len();
    self.slots.push(Slot {
      entry,
      expires_at,
      alive: true,
    });
    self.slot_of.insert(entry, slot);
    self.live += 1;
    match &mut self.storage {
      Storage::Flat(vectors) => {
        vectors.extend_from_slice(vector);
        if self.live >= GRAPH_FROM {
          self.rebuild();
        }
      }
      Storage::Graph(graph) => graph.insert_slice((vector, slot)),
    }
  }

  fn remove(&mut self, entry: u64) -> bool {
    let Some(slot) = self.slot_of.remove(&entry) else {
      return false;
    };
    if let Some(slot) = self.slots.get_mut(slot) {
      slot.alive = false;
    }
    self.live -= 1;
    if self.slots.len() - self.live > self.live.max(64) {
      self.rebuild();
    }
    true
  }

  /// Tombstones for every entry expired by `now`; the entries they were.
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

  /// The live entries, renumbered, in a flat array or a fresh graph by their count.
  fn rebuild(&mut self) {
    let mut kept: Vec<(Slot, Vec<f32>)> = Vec::with_capacity(self.live);
    match &self.storage {
      Storage::Flat(vectors) => {
        for (slot, vector) in self.slots.iter().zip(vectors.chunks_exact(self.dims)) {
          if slot.alive {
            kept.push((*slot, vector.to_vec()));
          }
        }
      }
      Storage::Graph(graph) => {
        for point in graph.get_point_indexation() {
          if let Some(slot) = self.slots.get(point.get_origin_id()).filter(|s| s.alive) {
            kept.push((*slot, point.get_v().to_vec()));
          }
        }
      }
    }
    self.slots = kept.iter().map(|(slot, _)| *slot).collect();
    self.slot_of = self
      .slots
      .iter()
      .enumerate()
      .map(|(at, slot)| (slot.entry, at))
      .collect();
    self.live = self.slots.len();
    self.storage = if self.live >= GRAPH_FROM / 2 {
      let graph = Hnsw::new(
        GRAPH_NEIGHBOURS,
        self.live.max(GRAPH_FROM),
        GRAPH_LAYERS,
        EF_CONSTRUCTION,
        DotDistance,
      );
      for (at, (_, vector)) in kept.iter().enumerate() {
        graph.insert_slice((vector, at));
      }
      Storage::Graph(Box::new(graph))
    } else {
      Storage::Flat(kept.into_iter().flat_map(|(_, vector)| vector).collect())
    };
  }
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
    let index = self
      .scopes
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .entry(scope)
      .or_insert_with(|| Arc::new(RwLock::new(ScopeIndex::new(vector.len()))))
      .clone();
    let mut index = index
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    if index.dims != vector.len() {
      self.forget_entry(entry);
      return false;
    }
    index.insert(entry, vector, expires_at);
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
    let mut found = 0;
    for (i, vector) in vectors.iter().enumerate().step_by(37) {
      let query = at_cosine(vector, 0.98, i as u64);
      if index.nearest(&[3; 32], &query, 0).map(|n| n.entry) == Some(i as u64) {
        found += 1;
      }
    }
    let asked = count.div_ceil(37);
    assert!(found * 100 >= asked * 95, "{found} of {asked}");
    // Removing most entries rebuilds the graph as a flat array of the live ones.
    for i in 0..(count - 100) {
      assert!(index.remove(i as u64));
    }
    assert_eq!(index.len(), 100);
    let last = count as u64 - 1;
    let found = index.nearest(&[3; 32], &vectors[last as usize], 0);
    assert_eq!(found.map(|n| n.entry), Some(last));
  }

  #[test]
  fn vectors_without_a_direction_are_refused() {
    assert!(normalised(vec![0.0; 8]).is_none());
    assert!(normalised(vec![f32::NAN, 1.0]).is_none());
    assert!(normalised(Vec::new()).is_none());
  }
}
