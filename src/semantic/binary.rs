//! Sign-bit codes of the index's vectors: one bit a dimension (set where the component is
//! positive), packed into `u64` words. The Hamming distance between two codes estimates the
//! angle between their vectors (each bit differs with probability angle / π), so a scan of
//! codes finds a few candidates that the exact dot product then ranks; it reads 1/32 of the
//! memory a scan of the float vectors reads and needs no multiplication.

use std::collections::BinaryHeap;

/// Words in the code of a `dims`-dimensional vector.
pub fn words(dims: usize) -> usize {
  dims.div_ceil(64)
}

/// Writes `vector`'s code into `code` (`words(vector.len())` long); the unused high bits of the
/// last word stay clear, so they never add to a distance.
fn encode(vector: &[f32], code: &mut [u64]) {
  for (word, chunk) in code.iter_mut().zip(vector.chunks(64)) {
    *word = chunk
      .iter()
      .enumerate()
      .fold(0, |bits, (i, x)| bits | (u64::from(*x > 0.0) << i));
  }
}

/// The code of `vector`.
pub fn code_of(vector: &[f32]) -> Vec<u64> {
  let mut code = vec![0; words(vector.len())];
  encode(vector, &mut code);
  code
}

/// Up to `k` of the codes (`words` words each, code `i` being slot `i`) nearest to `query` by
/// Hamming distance, among the slots `usable` accepts; in no particular order. Ties go to the
/// lower slot.
pub fn closest(
  codes: &[u64],
  words: usize,
  query: &[u64],
  k: usize,
  usable: impl FnMut(usize) -> bool,
) -> Vec<usize> {
  closest_in_runs(&[Run { codes, slots: None }], words, query, k, usable)
}

/// A run of codes, `words` words each: the codes of slots `0..` when `slots` is `None`, else
/// kept apart from the slot array (one partition's members) with `slots[i]` the slot of code
/// `i`.
pub struct Run<'a> {
  pub codes: &'a [u64],
  pub slots: Option<&'a [u32]>,
}

/// As [`closest`], over the codes of several runs.
pub fn closest_in_runs(
  runs: &[Run<'_>],
  words: usize,
  query: &[u64],
  k: usize,
  usable: impl FnMut(usize) -> bool,
) -> Vec<usize> {
  #[cfg(target_arch = "x86_64")]
  if has_popcnt() {
    // SAFETY: the CPU has the instruction `closest_popcnt` is compiled to use.
    return unsafe { closest_popcnt(runs, words, query, k, usable) };
  }
  scan(runs, words, query, k, usable)
}

/// The default x86-64 target predates `popcnt`: without it `count_ones` is a dozen shifts and
/// masks a word, and the scan takes 2.4 times as long (65,536 codes of 384 bits: 5.9 against
/// 2.5 ns a code). `is_x86_feature_detected!` asks the CPU
/// once and caches the answer in an atomic, so this is a load and a test a scan.
#[cfg(target_arch = "x86_64")]
fn has_popcnt() -> bool {
  std::arch::is_x86_feature_detected!("popcnt")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn closest_popcnt(
  runs: &[Run<'_>],
  words: usize,
  query: &[u64],
  k: usize,
  usable: impl FnMut(usize) -> bool,
) -> Vec<usize> {
  scan(runs, words, query, k, usable)
}

/// Inlined into each caller, so it is compiled once with `popcnt` and once without.
#[inline(always)]
fn scan(
  runs: &[Run<'_>],
  words: usize,
  query: &[u64],
  k: usize,
  usable: impl FnMut(usize) -> bool,
) -> Vec<usize> {
  if k == 0 || words == 0 || query.len() != words {
    return Vec::new();
  }
  // The common embedding sizes (256, 384, 512, 768, 1,024, 1,536 dims) with the word count
  // known when compiled: the loop is unrolled, one and a half times as fast as with `words`
  // read at run time (384 dims, 65,536 codes: 2.5 against 3.7 ns a code).
  match words {
    4 => top_k(runs, 4, query, k, usable, distance::<4>),
    6 => top_k(runs, 6, query, k, usable, distance::<6>),
    8 => top_k(runs, 8, query, k, usable, distance::<8>),
    12 => top_k(runs, 12, query, k, usable, distance::<12>),
    16 => top_k(runs, 16, query, k, usable, distance::<16>),
    24 => top_k(runs, 24, query, k, usable, distance::<24>),
    _ => top_k(runs, words, query, k, usable, |code, query| {
      code
        .iter()
        .zip(query)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum()
    }),
  }
}

#[inline(always)]
fn distance<const W: usize>(code: &[u64], query: &[u64]) -> u32 {
  code[..W]
    .iter()
    .zip(&query[..W])
    .map(|(a, b)| (a ^ b).count_ones())
    .sum()
}

#[inline(always)]
fn top_k(
  runs: &[Run<'_>],
  words: usize,
  query: &[u64],
  k: usize,
  mut usable: impl FnMut(usize) -> bool,
  distance: impl Fn(&[u64], &[u64]) -> u32,
) -> Vec<usize> {
  // A max-heap of the best `k` so far: a code enters only if it beats the worst of them, which
  // after the first few hundred codes is rare, so the loop is mostly the distance and one
  // compare. Usability (a read of the slot table) is asked only of codes that would enter.
  let mut best: BinaryHeap<(u32, usize)> = BinaryHeap::with_capacity(k + 1);
  let mut worst = u32::MAX;
  for run in runs {
    for (i, code) in run.codes.chunks_exact(words).enumerate() {
      let distance = distance(code, query);
      if distance >= worst {
        continue;
      }
      let slot = match run.slots {
        None => i,
        Some(slots) => match slots.get(i) {
          Some(&slot) => slot as usize,
          None => continue,
        },
      };
      if usable(slot) {
        best.push((distance, slot));
        if best.len() > k {
          best.pop();
        }
        if best.len() == k {
          worst = best.peek().map_or(u32::MAX, |&(distance, _)| distance);
        }
      }
    }
  }
  best.into_iter().map(|(_, slot)| slot).collect()
}

#[cfg(test)]
mod tests {
  use super::*;

  fn random_codes(seed: u64, count: usize, words: usize) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count * words).map(|_| rng.u64(..)).collect()
  }

  #[test]
  fn a_code_has_a_bit_for_each_positive_component() {
    let vector: Vec<f32> = (0..70)
      .map(|i| if i % 3 == 0 { 0.5 } else { -0.5 })
      .collect();
    let code = code_of(&vector);
    assert_eq!(code.len(), 2);
    for (i, x) in vector.iter().enumerate() {
      assert_eq!(code[i / 64] >> (i % 64) & 1 == 1, *x > 0.0, "bit {i}");
    }
    // Bits past the last dimension stay clear.
    assert_eq!(code[1] >> 6, 0);
  }

  #[test]
  fn the_closest_codes_are_the_ones_of_least_hamming_distance() {
    let words = 3;
    let codes = random_codes(1, 500, words);
    let query = random_codes(2, 1, words);
    let distance = |slot: usize| -> u32 {
      codes[slot * words..(slot + 1) * words]
        .iter()
        .zip(&query)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum()
    };
    let skipped = |slot: usize| slot.is_multiple_of(7);
    let mut found = closest(&codes, words, &query, 10, |slot| !skipped(slot));
    found.sort_unstable();
    let mut expected: Vec<usize> = (0..500).filter(|slot| !skipped(*slot)).collect();
    expected.sort_by_key(|&slot| (distance(slot), slot));
    expected.truncate(10);
    expected.sort_unstable();
    assert_eq!(found, expected);
    assert!(closest(&codes, words, &query, 0, |_| true).is_empty());
    assert_eq!(closest(&codes, words, &query, 1_000, |_| true).len(), 500);
  }

  #[test]
  fn the_popcnt_scan_agrees_with_the_portable_one() {
    for words in [1, 6, 12] {
      let codes = random_codes(words as u64, 2_000, words);
      let query = random_codes(99, 1, words);
      let runs = [Run {
        codes: &codes,
        slots: None,
      }];
      let mut portable = scan(&runs, words, &query, 16, |slot| slot % 5 != 1);
      let mut dispatched = closest(&codes, words, &query, 16, |slot| slot % 5 != 1);
      portable.sort_unstable();
      dispatched.sort_unstable();
      assert_eq!(portable, dispatched, "{words} words");
      #[cfg(target_arch = "x86_64")]
      if has_popcnt() {
        // SAFETY: the CPU has popcnt.
        let mut popcnt = unsafe { closest_popcnt(&runs, words, &query, 16, |slot| slot % 5 != 1) };
        popcnt.sort_unstable();
        assert_eq!(portable, popcnt, "{words} words");
      }
    }
  }
}
