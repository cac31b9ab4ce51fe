//! A large scope's entries in partitions (an inverted file): the vectors are grouped around
//! centroids learnt from the scope itself (spherical k-means on a sample), and each partition
//! keeps its members' sign-bit codes side by side. A lookup compares the query with the
//! centroids and scans the codes of the nearest few partitions only, so its cost grows with
//! the square root of the scope rather than with the scope: at 100,000 entries it reads some
//! 4,000 codes and 256 centroids where the scan of every code reads 100,000. Storing an answer
//! is one comparison with the centroids and an append to a partition.
//!
//! A paraphrase lies next to what it paraphrases, so both fall to the same centroid, or to
//! one of the next few the lookup also scans; whatever it misses, the answer is still an exact
//! dot product, never an estimate (`index.rs`).

use super::binary::{self, Run};
use super::index::dot;

/// Partitions a lookup scans at least, nearest centroid first.
const MIN_PROBES: usize = 8;
/// Codes a lookup scans at least: more partitions are probed until their members reach it,
/// so a scope with few members a partition is still searched widely.
const PROBED_CODES: usize = 4_096;
/// Centroids ranked at once; the rest are sorted only if these partitions are too small.
const FIRST_PROBES: usize = 32;
/// Training reads this many vectors a partition (evenly spread over the slots) …
pub const TRAINING_VECTORS_PER_PARTITION: usize = 32;
/// … in this many rounds of assigning them and moving each centroid to its members' mean.
const TRAINING_ROUNDS: usize = 6;

/// How many partitions a scope of `live` entries is split into: the power of two at or below
/// its square root (64 to 1,024), so the centroids a lookup compares and the codes it scans grow
/// alike.
pub fn partitions_for(live: usize) -> usize {
  let root = (live as f64).sqrt() as usize;
  (1usize << root.max(1).ilog2()).clamp(64, 1_024)
}

/// Unit vectors, one a partition.
pub struct Centroids {
  dims: usize,
  values: Vec<f32>,
}

impl Centroids {
  /// Spherical k-means over `sample` (unit vectors of `dims`, one after another) into up to
  /// `count` centroids. The seeds are spread farthest-first (each the sample vector least
  /// similar to every seed before it), which costs one round of assignment and keeps two
  /// seeds from starting in one group; the same sample always gives the same centroids. A
  /// centroid left with no members moves to another sample vector rather than stay empty.
  pub fn train(sample: &[f32], dims: usize, count: usize) -> Centroids {
    let vectors = sample.len() / dims.max(1);
    let count = count.min(vectors).max(1);
    let mut centroids = Centroids {
      dims,
      values: Vec::with_capacity(count * dims),
    };
    if vectors == 0 {
      return centroids;
    }
    let vector = |i: usize| &sample[i * dims..(i + 1) * dims];
    let mut nearest_seed = vec![f32::NEG_INFINITY; vectors];
    let mut next = 0;
    for _ in 0..count {
      centroids.values.extend_from_slice(vector(next));
      let seed = vector(next);
      for (i, similarity) in nearest_seed.iter_mut().enumerate() {
        *similarity = similarity.max(dot(seed, vector(i)));
      }
      next = (0..vectors)
        .min_by(|&a, &b| nearest_seed[a].total_cmp(&nearest_seed[b]))
        .unwrap_or(0);
    }
    for round in 0..TRAINING_ROUNDS {
      let mut sums = vec![0f32; count * dims];
      let mut members = vec![0usize; count];
      for vector in sample.chunks_exact(dims) {
        let nearest = centroids.nearest(vector);
        members[nearest] += 1;
        for (sum, x) in sums[nearest * dims..(nearest + 1) * dims]
          .iter_mut()
          .zip(vector)
        {
          *sum += x;
        }
      }
      let moved = centroids.values.chunks_exact_mut(dims).enumerate();
      for ((i, centroid), (sum, members)) in moved.zip(sums.chunks_exact(dims).zip(members)) {
        let norm = dot(sum, sum).sqrt();
        if members > 0 && norm.is_normal() {
          for (value, x) in centroid.iter_mut().zip(sum) {
            *value = x / norm;
          }
        } else {
          let reseed = (i * 7_919 + round * 104_729) % vectors;
          centroid.copy_from_slice(&sample[reseed * dims..(reseed + 1) * dims]);
        }
      }
    }
    centroids
  }

  pub fn len(&self) -> usize {
    self.values.len() / self.dims.max(1)
  }

  /// The centroid most similar to `vector`.
  pub fn nearest(&self, vector: &[f32]) -> usize {
    self
      .similarities(vector)
      .enumerate()
      .fold((0, f32::NEG_INFINITY), |best, (i, similarity)| {
        if similarity > best.1 {
          (i, similarity)
        } else {
          best
        }
      })
      .0
  }

  /// Each centroid's similarity to `vector`, in centroid order.
  fn similarities<'a>(&'a self, vector: &'a [f32]) -> impl Iterator<Item = f32> + 'a {
    self
      .values
      .chunks_exact(self.dims)
      .map(move |centroid| dot(centroid, vector))
  }
}

/// One partition's members: slots and, in the same order, their codes.
#[derive(Default)]
struct Partition {
  slots: Vec<u32>,
  codes: Vec<u64>,
}

/// Where a slot's code is kept.
#[derive(Clone, Copy)]
struct Place {
  partition: u32,
  position: u32,
}

const NOWHERE: Place = Place {
  partition: u32::MAX,
  position: u32::MAX,
};

pub struct Partitions {
  centroids: Centroids,
  words: usize,
  partitions: Vec<Partition>,
  /// By slot.
  places: Vec<Place>,
  /// Live entries when the centroids were learnt: the scope is partitioned anew once it has
  /// grown well past them.
  pub trained_on: usize,
}

impl Partitions {
  pub fn new(centroids: Centroids, words: usize, trained_on: usize) -> Self {
    let partitions = (0..centroids.len()).map(|_| Partition::default()).collect();
    Partitions {
      centroids,
      words,
      partitions,
      places: Vec::new(),
      trained_on,
    }
  }

  /// The partition a vector belongs in.
  pub fn partition_of(&self, vector: &[f32]) -> usize {
    self.centroids.nearest(vector)
  }

  /// Files `slot` (not yet in any partition) with its `code` under `partition`.
  pub fn add(&mut self, slot: usize, partition: usize, code: &[u64]) {
    let Some(members) = self.partitions.get_mut(partition) else {
      return;
    };
    if self.places.len() <= slot {
      self.places.resize(slot + 1, NOWHERE);
    }
    self.places[slot] = Place {
      partition: partition as u32,
      position: members.slots.len() as u32,
    };
    members.slots.push(slot as u32);
    members.codes.extend_from_slice(code);
  }

  /// Takes `slot` out of its partition; the partition's last member fills the gap.
  pub fn remove(&mut self, slot: usize) {
    let Some(place) = self.places.get_mut(slot) else {
      return;
    };
    let Place {
      partition,
      position,
    } = std::mem::replace(place, NOWHERE);
    let Some(members) = self.partitions.get_mut(partition as usize) else {
      return;
    };
    let (position, words) = (position as usize, self.words);
    if position >= members.slots.len() || members.codes.len() < words {
      return;
    }
    members.slots.swap_remove(position);
    let last = members.codes.len() - words;
    members.codes.copy_within(last.., position * words);
    members.codes.truncate(last);
    if let Some(&moved) = members.slots.get(position) {
      self.places[moved as usize].position = position as u32;
    }
  }

  /// Up to `k` slots of least Hamming distance to `code` (the code of `query`) among the
  /// members of the partitions nearest to `query`, by the rules of [`MIN_PROBES`] and
  /// [`PROBED_CODES`].
  /// Removed slots leave their partitions, so every slot returned is live; the caller checks
  /// the few returned for expiry rather than the scan every code that would enter.
  pub fn closest(&self, query: &[f32], code: &[u64], k: usize) -> Vec<usize> {
    let mut order: Vec<(f32, u32)> = (self.centroids.similarities(query)).zip(0u32..).collect();
    let most_similar_first = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0);
    let ranked = FIRST_PROBES.min(order.len());
    if ranked < order.len() {
      order.select_nth_unstable_by(ranked, most_similar_first);
    }
    order[..ranked].sort_unstable_by(most_similar_first);
    let mut runs = Vec::with_capacity(ranked);
    let mut covered = 0;
    for i in 0..order.len() {
      if runs.len() >= MIN_PROBES && covered >= PROBED_CODES {
        break;
      }
      if i == ranked {
        order[ranked..].sort_unstable_by(most_similar_first);
      }
      let members = &self.partitions[order[i].1 as usize];
      covered += members.slots.len();
      runs.push(Run {
        codes: &members.codes,
        slots: Some(&members.slots),
      });
    }
    binary::closest_in_runs(&runs, self.words, code, k, |_| true)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::semantic::index::normalised;

  fn unit(rng: &mut fastrand::Rng, dims: usize) -> Vec<f32> {
    normalised((0..dims).map(|_| rng.f32() - 0.5).collect()).expect("vector")
  }

  #[test]
  fn the_partition_count_follows_the_square_root_of_the_scope() {
    assert_eq!(partitions_for(0), 64);
    assert_eq!(partitions_for(16_384), 128);
    assert_eq!(partitions_for(100_000), 256);
    assert_eq!(partitions_for(10_000_000), 1_024);
  }

  #[test]
  fn training_separates_well_apart_groups() {
    let dims = 32;
    let mut rng = fastrand::Rng::with_seed(3);
    let centres: Vec<Vec<f32>> = (0..4).map(|_| unit(&mut rng, dims)).collect();
    let mut sample = Vec::new();
    let mut group_of = Vec::new();
    for i in 0..400 {
      let centre = &centres[i % 4];
      let noise = unit(&mut rng, dims);
      let member: Vec<f32> = centre
        .iter()
        .zip(&noise)
        .map(|(c, n)| c + 0.1 * n)
        .collect();
      sample.extend(normalised(member).expect("member"));
      group_of.push(i % 4);
    }
    let centroids = Centroids::train(&sample, dims, 4);
    assert_eq!(centroids.len(), 4);
    // Every member of a group shares its centroid, and no two groups share one.
    let mut centroid_of_group = [usize::MAX; 4];
    for (vector, group) in sample.chunks_exact(dims).zip(group_of) {
      let nearest = centroids.nearest(vector);
      if centroid_of_group[group] == usize::MAX {
        centroid_of_group[group] = nearest;
      }
      assert_eq!(centroid_of_group[group], nearest);
    }
    let mut distinct = centroid_of_group.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4);
    assert_eq!(Centroids::train(&[], dims, 4).len(), 0);
  }

  #[test]
  fn removing_a_member_keeps_every_other_one_findable() {
    let dims = 64;
    let words = binary::words(dims);
    let mut rng = fastrand::Rng::with_seed(5);
    let vectors: Vec<Vec<f32>> = (0..300).map(|_| unit(&mut rng, dims)).collect();
    let sample: Vec<f32> = vectors.concat();
    let mut partitions = Partitions::new(Centroids::train(&sample, dims, 8), words, 300);
    for (slot, vector) in vectors.iter().enumerate() {
      let partition = partitions.partition_of(vector);
      partitions.add(slot, partition, &binary::code_of(vector));
    }
    for slot in (0..300).step_by(3) {
      partitions.remove(slot);
    }
    partitions.remove(10_000);
    for (slot, vector) in vectors.iter().enumerate() {
      // Every partition is probed at this size, so the nearest code is the vector's own.
      let found = partitions.closest(vector, &binary::code_of(vector), 1);
      if slot % 3 == 0 {
        assert_ne!(found, vec![slot]);
      } else {
        assert_eq!(found, vec![slot]);
      }
    }
  }
}
