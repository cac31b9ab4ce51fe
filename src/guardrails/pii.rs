//! PII detection for the `pii` guardrail: one pass over the text finds emails, phone numbers,
//! payment card numbers, IBANs, US social security numbers, IP addresses and API keys.
//!
//! It is a hand-written scanner rather than a set of regular expressions because most of what
//! makes a finding right is not a pattern: a card number must pass Luhn and start like a card an
//! issuer hands out, an IBAN must have its country's length and pass mod 97, an SSN must not use
//! an area number the SSA never assigns, an address must parse. Those checks run only where a
//! match may start: the text is classified 64 bytes at a time into bit masks (with SSE2 or AVX2
//! where there are), and a few shifts of the masks leave the candidates, so most words cost no
//! more than their share of a vector compare (see `Candidates`).
//! Everything it matches is ASCII, so every offset it returns is a UTF-8 character boundary.

use std::net::Ipv6Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
  Email,
  Phone,
  CreditCard,
  Iban,
  UsSsn,
  IpAddress,
  ApiKey,
}

impl Entity {
  pub const ALL: [Entity; 7] = [
    Entity::Email,
    Entity::Phone,
    Entity::CreditCard,
    Entity::Iban,
    Entity::UsSsn,
    Entity::IpAddress,
    Entity::ApiKey,
  ];

  /// The name in the guardrail's configuration and on the call record.
  pub fn name(self) -> &'static str {
    match self {
      Entity::Email => "email",
      Entity::Phone => "phone",
      Entity::CreditCard => "credit_card",
      Entity::Iban => "iban",
      Entity::UsSsn => "us_ssn",
      Entity::IpAddress => "ip_address",
      Entity::ApiKey => "api_key",
    }
  }

  pub fn parse(name: &str) -> Option<Entity> {
    Entity::ALL.into_iter().find(|entity| entity.name() == name)
  }

  /// What `redact` puts in the text's place.
  pub fn placeholder(self) -> &'static str {
    match self {
      Entity::Email => "[EMAIL]",
      Entity::Phone => "[PHONE]",
      Entity::CreditCard => "[CREDIT_CARD]",
      Entity::Iban => "[IBAN]",
      Entity::UsSsn => "[US_SSN]",
      Entity::IpAddress => "[IP_ADDRESS]",
      Entity::ApiKey => "[API_KEY]",
    }
  }

  /// Its place in [`Entity::ALL`].
  pub fn index(self) -> usize {
    self as usize
  }

  fn bit(self) -> u8 {
    1 << (self as u8)
  }
}

/// One match: where it is and what it is, never the matched text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
  pub entity: Entity,
  pub start: usize,
  pub end: usize,
}

/// The longest text any entity can match, in bytes: an email address (RFC 5321's 254).
pub const MAX_MATCH_LEN: usize = 254;

#[derive(Debug, Clone, Copy)]
pub struct Detector {
  entities: u8,
}

impl Detector {
  pub fn new(entities: &[Entity]) -> Detector {
    Detector {
      entities: entities.iter().fold(0, |bits, entity| bits | entity.bit()),
    }
  }

  pub fn all() -> Detector {
    Detector::new(&Entity::ALL)
  }

  fn wants(&self, entity: Entity) -> bool {
    self.entities & entity.bit() != 0
  }

  /// Every finding, in order, none overlapping another.
  pub fn find(&self, text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    self.find_into(text, &mut found);
    found
  }

  /// [`Detector::find`] into `found` (cleared first), for a caller that reuses its vector.
  pub fn find_into(&self, text: &str, found: &mut Vec<Finding>) {
    found.clear();
    let bytes = text.as_bytes();
    // Nothing starts inside a finding: candidates before the last one's end are passed over.
    let mut resume = 0;
    for i in Candidates::new(bytes) {
      if i < resume {
        continue;
      }
      if bytes[i] == b'@' {
        if !self.wants(Entity::Email) {
          continue;
        }
        if let Some(finding) = email_around(bytes, i) {
          // The local part was scanned as ordinary text: drop what was found inside it.
          while found.last().is_some_and(|last| last.end > finding.start) {
            found.pop();
          }
          found.push(finding);
          resume = finding.end;
        }
      } else if let Some(finding) = self.candidate_at(bytes, i) {
        found.push(finding);
        resume = finding.end;
      }
    }
  }

  /// The text with every finding replaced by its placeholder, and the findings (offsets into
  /// the original text).
  pub fn redact(&self, text: &str) -> (String, Vec<Finding>) {
    let found = self.find(text);
    (replace(text, &found), found)
  }

  /// What starts at `i` (a candidate), by the first byte: numbers, upper-case codes (IBANs,
  /// some keys), hexadecimal (IPv6) and key prefixes. When a string could be taken for two
  /// entities, the first tried has it.
  fn candidate_at(&self, bytes: &[u8], i: usize) -> Option<Finding> {
    let wanted = |entity: Entity, matcher: fn(&[u8], usize) -> Option<Finding>| {
      move || {
        if self.wants(entity) {
          matcher(bytes, i)
        } else {
          None
        }
      }
    };
    let iban = wanted(Entity::Iban, iban_at);
    let key = wanted(Entity::ApiKey, api_key_at);
    let ipv6 = wanted(Entity::IpAddress, ipv6_at);
    match bytes[i] {
      b'0'..=b'9' => self.numeric_at(bytes, i).or_else(ipv6),
      b'+' | b'(' => self.numeric_at(bytes, i),
      b'A'..=b'F' => iban().or_else(key).or_else(ipv6),
      b'G'..=b'Z' => iban().or_else(key),
      b'a'..=b'f' | b':' => ipv6(),
      b'g' | b'r' | b's' | b'x' => key(),
      _ => None,
    }
  }

  /// Numbers: an IPv4 address, an SSN, a card or a phone number, whichever the digits make.
  fn numeric_at(&self, bytes: &[u8], start: usize) -> Option<Finding> {
    let run = NumericRun::scan(bytes, start)?;
    let finding = |entity: Entity, end: usize| Some(Finding { entity, start, end });
    if self.wants(Entity::IpAddress) && is_ipv4(&run, &bytes[start..run.end]) {
      return finding(Entity::IpAddress, run.end);
    }
    if self.wants(Entity::UsSsn)
      && run.is_ssn_shape()
      && valid_ssn(run.digits(bytes, &mut [0; MAX_RUN_DIGITS]))
    {
      return finding(Entity::UsSsn, run.end);
    }
    // Grouped like a card, a Luhn-valid issuer number is one. One block of digits is as often an
    // order or tracking number: it needs a word about cards or payment just before it.
    if self.wants(Entity::CreditCard)
      && run.is_card_shape()
      && valid_card(run.digits(bytes, &mut [0; MAX_RUN_DIGITS]))
      && (run.groups > 1 || card_context_before(bytes, start))
    {
      return finding(Entity::CreditCard, run.end);
    }
    if self.wants(Entity::Phone) {
      if let Some(end) = run.phone_end(bytes) {
        return finding(Entity::Phone, end);
      }
    }
    None
  }
}

/// `text` with each finding replaced by its placeholder.
pub fn replace(text: &str, found: &[Finding]) -> String {
  let mut out = String::with_capacity(text.len());
  let mut at = 0;
  for finding in found {
    out.push_str(&text[at..finding.start]);
    out.push_str(finding.entity.placeholder());
    at = finding.end;
  }
  out.push_str(&text[at..]);
  out
}

fn is_word_byte(byte: u8) -> bool {
  is(byte, byte_class::WORD)
}

/// Byte classes as bit flags, for the loops over the bytes of a match: keys, IBANs and
/// addresses are a random mix of letters, digits and signs, and one table load and test per
/// byte keeps those loops free of branches on which kind each byte is (they would guess wrong).
mod byte_class {
  pub const DIGIT: u16 = 1;
  pub const UPPER: u16 = 1 << 1;
  pub const LOWER: u16 = 1 << 2;
  pub const UNDERSCORE: u16 = 1 << 3;
  pub const DASH: u16 = 1 << 4;
  pub const DOT: u16 = 1 << 5;
  /// `%` and `+`, which an email's local part may hold.
  pub const PERCENT_PLUS: u16 = 1 << 6;
  /// A byte of a multi-byte character.
  pub const NON_ASCII: u16 = 1 << 7;
  /// `a` to `f` and `A` to `F` (besides being letters).
  pub const HEX_LETTER: u16 = 1 << 8;
  pub const COLON: u16 = 1 << 9;

  pub const ALPHANUMERIC: u16 = DIGIT | UPPER | LOWER;
  pub const WORD: u16 = ALPHANUMERIC | UNDERSCORE | NON_ASCII;
}

const BYTE_CLASSES: [u16; 256] = {
  use byte_class::*;
  let mut table = [0u16; 256];
  let mut b = 0;
  while b < 256 {
    let byte = b as u8;
    table[b] = match byte {
      b'0'..=b'9' => DIGIT,
      b'A'..=b'F' => UPPER | HEX_LETTER,
      b'G'..=b'Z' => UPPER,
      b'a'..=b'f' => LOWER | HEX_LETTER,
      b'g'..=b'z' => LOWER,
      b':' => COLON,
      b'_' => UNDERSCORE,
      b'-' => DASH,
      b'.' => DOT,
      b'%' | b'+' => PERCENT_PLUS,
      0x80..=0xFF => NON_ASCII,
      _ => 0,
    };
    b += 1;
  }
  table
};

/// Whether `byte` is in one of `classes` (flags of [`byte_class`]).
fn is(byte: u8, classes: u16) -> bool {
  BYTE_CLASSES[usize::from(byte)] & classes != 0
}

// ---------------------------------------------------------------------------------- candidates

/// Bytes the candidate search takes in one step: one bit each in a `u64`.
const BLOCK: usize = 64;

/// The byte classes the candidate search needs, as bit masks over one block (bit j: byte j).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Classes {
  /// Letters, digits, `_` and any byte of a multi-byte character.
  word: u64,
  digit: u64,
  /// Two of the bytes that may stand between the groups of a number.
  dash_or_space: u64,
  dot: u64,
  upper: u64,
  colon: u64,
  /// `+` and `(`, which may open a phone number.
  plus_or_paren: u64,
  at: u64,
  /// The first and second bytes of the API key families' prefixes (`sk-`, `ghp_`, `AKIA`, …),
  /// in either case.
  key_first: u64,
  key_second: u64,
}

/// What may start at each byte of a block (bit j: byte j), from its classes, the next block's (a
/// word starts like an IBAN or an IPv6 address by its next bytes) and whether the byte before
/// the block belongs to a word. Each condition is one its matcher checks first (a test holds
/// them to it), so this only turns away what could never match: most words, without a call.
fn block_candidates(this: &Classes, next: &Classes, previous_is_word: bool) -> u64 {
  // A class over this block and the next: `mask >> n` has at bit j the class of byte j + n.
  let both = |class: fn(&Classes) -> u64| u128::from(class(next)) << 64 | u128::from(class(this));
  let digit = both(|c| c.digit);
  let colon = both(|c| c.colon);
  let upper = both(|c| c.upper);
  let plus_or_paren = both(|c| c.plus_or_paren);
  // Nothing but an email starts inside a word.
  let boundary = !((this.word << 1) | u64::from(previous_is_word));
  let number = digit_number_starts(digit, both(|c| c.dash_or_space), both(|c| c.dot))
    | (plus_or_paren & ((digit | plus_or_paren) >> 1));
  // A group of at most four hex digits (letters and digits here) and a colon, or `::` (see
  // `ipv6_may_start_at`).
  let colon_within_four = (colon >> 1) | (colon >> 2) | (colon >> 3) | (colon >> 4);
  let ipv6 = (u128::from(this.word) & colon_within_four) | (colon & (colon >> 1));
  // Country code and check digits (see `iban_end`).
  let iban = upper & (upper >> 1) & (digit >> 2) & (digit >> 3);
  // See `starts_like_key`.
  let key = u128::from(this.key_first) & (both(|c| c.key_second) >> 1);
  // An email is found from its `@`, inside a word or not.
  (boundary & (number | ipv6 | iban | key) as u64) | this.at
}

/// Where a number that starts with a digit may be one an entity takes, by its first group of
/// digits and what follows it (see `NumericRun`): one to three digits and a dot (an IPv4
/// address), one or three and a dash, dot or space (an SSN, a phone number), four and a dash or
/// space and four more digits (a grouped card), or thirteen and more (a card in one block).
/// Dates, amounts and order numbers are mostly none of these and are turned away here, without
/// being scanned. The masks are over two blocks, as in [`block_candidates`].
fn digit_number_starts(digit: u128, dash_or_space: u128, dot: u128) -> u128 {
  // Runs of digits from each byte on, doubled up: `four >> 4` is four more after the first four.
  let two = digit & (digit >> 1);
  let three = two & (digit >> 2);
  let four = two & (two >> 2);
  let eight = four & (four >> 4);
  let thirteen = eight & (four >> 8) & (digit >> 12);
  // A group of exactly `k` digits (`run`: k or more), then one of `separators`, then a digit.
  let group_then = |run: u128, k: u32, separators: u128| {
    run & !(digit >> k) & (separators >> k) & (digit >> (k + 1))
  };
  group_then(digit, 1, dash_or_space | dot)
    | group_then(two, 2, dot)
    | group_then(three, 3, dash_or_space | dot)
    | (group_then(four, 4, dash_or_space) & (four >> 5))
    | thirteen
}

/// The positions, in order, where a finding may start: 64 bytes classified at a time, then
/// only the bytes [`block_candidates`] leaves are visited. Most text is words that cannot start
/// anything, and passing over them in bulk is what makes the scan fast.
struct Candidates<'a> {
  bytes: &'a [u8],
  classify: Classify,
  /// The start of the block `pending` belongs to.
  base: usize,
  /// The block's candidates not visited yet.
  pending: u64,
  /// The block after `base`'s, classified.
  next_block: usize,
  next_classes: Classes,
  previous_is_word: bool,
}

impl<'a> Candidates<'a> {
  fn new(bytes: &'a [u8]) -> Candidates<'a> {
    let classify = classifier();
    Candidates {
      bytes,
      classify,
      base: 0,
      pending: 0,
      next_block: 0,
      next_classes: classify_block_at(classify, bytes, 0),
      previous_is_word: false,
    }
  }
}

impl Iterator for Candidates<'_> {
  type Item = usize;

  fn next(&mut self) -> Option<usize> {
    while self.pending == 0 {
      if self.next_block >= self.bytes.len() {
        return None;
      }
      let this = self.next_classes;
      self.base = self.next_block;
      self.next_block += BLOCK;
      self.next_classes = classify_block_at(self.classify, self.bytes, self.next_block);
      self.pending = block_candidates(&this, &self.next_classes, self.previous_is_word);
      self.previous_is_word = this.word >> (BLOCK - 1) == 1;
    }
    let bit = self.pending.trailing_zeros() as usize;
    self.pending &= self.pending - 1;
    Some(self.base + bit)
  }
}

/// The classes of the block at `start`; bytes past the end are zeros, in no class, as no byte
/// would be.
fn classify_block_at(classify: Classify, bytes: &[u8], start: usize) -> Classes {
  match bytes.get(start..start + BLOCK) {
    Some(block) => match block.try_into() {
      Ok(block) => classify(block),
      Err(_) => Classes::default(),
    },
    None if start >= bytes.len() => Classes::default(),
    None => {
      let mut padded = [0u8; BLOCK];
      padded[..bytes.len() - start].copy_from_slice(&bytes[start..]);
      classify(&padded)
    }
  }
}

/// Classifies a block's bytes.
type Classify = fn(&[u8; BLOCK]) -> Classes;

/// The fastest way this processor has: AVX2 (32 bytes a step) where it is there, else SSE2
/// (16), which every x86-64 processor has; without vectors elsewhere.
#[cfg(target_arch = "x86_64")]
fn classifier() -> Classify {
  if std::arch::is_x86_feature_detected!("avx2") {
    // SAFETY: the processor has AVX2: it was just asked.
    |block| unsafe { classify_avx2(block) }
  } else {
    // SAFETY: SSE2 is part of x86-64 itself.
    |block| unsafe { classify_sse2(block) }
  }
}

#[cfg(not(target_arch = "x86_64"))]
fn classifier() -> Classify {
  classify_portable
}

/// A function that classifies a block with vectors of one width; the steps are the same for
/// SSE2 and AVX2, only the intrinsics' names differ.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_classify {
  ($name:ident, $feature:literal, $width:literal, $vector:ty, $load:ident, $set1:ident,
   $cmpeq:ident, $or:ident, $sub:ident, $min:ident, $movemask:ident) => {
    #[target_feature(enable = $feature)]
    fn $name(block: &[u8; BLOCK]) -> Classes {
      use std::arch::x86_64::*;

      let mut classes = Classes::default();
      for (lane, chunk) in block.chunks_exact($width).enumerate() {
        // SAFETY: `chunk` holds the vector's width of bytes, and an unaligned load reads no more.
        let v: $vector = unsafe { $load(chunk.as_ptr().cast()) };
        let byte = |b: u8| $cmpeq(v, $set1(b as i8));
        let any_of = |set: &[u8]| set.iter().fold($set1(0), |mask, &b| $or(mask, byte(b)));
        // Setting 0x20 folds A-Z onto a-z (and nothing else onto them).
        let folded = $or(v, $set1(0x20));
        let any_folded_of = |set: &[u8]| {
          set.iter().fold($set1(0), |mask, &b| {
            $or(mask, $cmpeq(folded, $set1(b as i8)))
          })
        };
        // `lo..=hi` as unsigned bytes: v - lo, clamped to hi - lo, is unchanged.
        let in_range = |v: $vector, lo: u8, hi: u8| {
          let offset = $sub(v, $set1(lo as i8));
          $cmpeq($min(offset, $set1((hi - lo) as i8)), offset)
        };
        let bits = |mask: $vector| u64::from($movemask(mask) as u32) << ($width * lane);
        let digit = in_range(v, b'0', b'9');
        let letter = in_range(folded, b'a', b'z');
        // The top bit of a byte is its own mask: bytes >= 0x80 belong to words.
        classes.word |= bits($or($or(digit, letter), byte(b'_'))) | bits(v);
        classes.digit |= bits(digit);
        classes.dash_or_space |= bits(any_of(b" -"));
        classes.dot |= bits(byte(b'.'));
        classes.upper |= bits(in_range(v, b'A', b'Z'));
        classes.colon |= bits(byte(b':'));
        classes.plus_or_paren |= bits(any_of(b"+("));
        classes.at |= bits(byte(b'@'));
        classes.key_first |= bits(any_folded_of(KEY_FIRST_BYTES));
        classes.key_second |= bits(any_folded_of(KEY_SECOND_BYTES));
      }
      classes
    }
  };
}

#[cfg(target_arch = "x86_64")]
vector_classify!(
  classify_sse2,
  "sse2",
  16,
  __m128i,
  _mm_loadu_si128,
  _mm_set1_epi8,
  _mm_cmpeq_epi8,
  _mm_or_si128,
  _mm_sub_epi8,
  _mm_min_epu8,
  _mm_movemask_epi8
);

#[cfg(target_arch = "x86_64")]
vector_classify!(
  classify_avx2,
  "avx2",
  32,
  __m256i,
  _mm256_loadu_si256,
  _mm256_set1_epi8,
  _mm256_cmpeq_epi8,
  _mm256_or_si256,
  _mm256_sub_epi8,
  _mm256_min_epu8,
  _mm256_movemask_epi8
);

/// Each class's bit in [`CLASS_BITS`].
mod class_bit {
  pub const WORD: u32 = 0;
  pub const DIGIT: u32 = 1;
  pub const DASH_OR_SPACE: u32 = 2;
  pub const DOT: u32 = 3;
  pub const UPPER: u32 = 4;
  pub const COLON: u32 = 5;
  pub const PLUS_OR_PAREN: u32 = 6;
  pub const AT: u32 = 7;
  pub const KEY_FIRST: u32 = 8;
  pub const KEY_SECOND: u32 = 9;
  pub const COUNT: usize = 10;
}

/// The classes a byte is in: what [`Classes`] means, byte by byte.
const fn class_bits_of(b: u8) -> u16 {
  use class_bit::*;
  const fn in_set(set: &[u8], b: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
      if set[i] == b {
        return true;
      }
      i += 1;
    }
    false
  }
  const fn member(class: u32, is: bool) -> u16 {
    (is as u16) << class
  }
  let folded = b.to_ascii_lowercase();
  member(WORD, BYTE_CLASSES[b as usize] & byte_class::WORD != 0)
    | member(DIGIT, b.is_ascii_digit())
    | member(DASH_OR_SPACE, b == b' ' || b == b'-')
    | member(DOT, b == b'.')
    | member(UPPER, b.is_ascii_uppercase())
    | member(COLON, b == b':')
    | member(PLUS_OR_PAREN, b == b'+' || b == b'(')
    | member(AT, b == b'@')
    | member(KEY_FIRST, in_set(KEY_FIRST_BYTES, folded))
    | member(KEY_SECOND, in_set(KEY_SECOND_BYTES, folded))
}

const CLASS_BITS: [u16; 256] = {
  let mut table = [0u16; 256];
  let mut b = 0;
  while b < 256 {
    table[b] = class_bits_of(b as u8);
    b += 1;
  }
  table
};

impl Classes {
  /// From one mask per class, in [`class_bit`] order.
  fn from_masks(masks: [u64; class_bit::COUNT]) -> Classes {
    use class_bit::*;
    let mask = |class: u32| masks[class as usize];
    Classes {
      word: mask(WORD),
      digit: mask(DIGIT),
      dash_or_space: mask(DASH_OR_SPACE),
      dot: mask(DOT),
      upper: mask(UPPER),
      colon: mask(COLON),
      plus_or_paren: mask(PLUS_OR_PAREN),
      at: mask(AT),
      key_first: mask(KEY_FIRST),
      key_second: mask(KEY_SECOND),
    }
  }
}

/// The classes of a block's bytes without vector instructions: each byte's class bits from
/// [`CLASS_BITS`], eight bytes side by side in a u64, then one multiplication per class gathers
/// the eight bits into a byte of its mask (byte j's bit to bit j) — a few times faster than
/// setting 64 bits of ten masks one by one.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_portable(block: &[u8; BLOCK]) -> Classes {
  const ONES: u64 = 0x0101_0101_0101_0101;
  // Bit 8j of `bits & ONES` lands on bit 56 + j.
  const GATHER: u64 = 0x0102_0408_1020_4080;
  let mut masks = [0u64; class_bit::COUNT];
  for (word, chunk) in block.chunks_exact(8).enumerate() {
    // Byte j: the low and the high eight class bits of byte j.
    let (mut low, mut high) = (0u64, 0u64);
    for (j, &b) in chunk.iter().enumerate() {
      let bits = CLASS_BITS[usize::from(b)];
      low |= u64::from(bits & 0xFF) << (8 * j);
      high |= u64::from(bits >> 8) << (8 * j);
    }
    for (class, mask) in masks.iter_mut().enumerate() {
      let side = if class < 8 {
        low >> class
      } else {
        high >> (class - 8)
      };
      *mask |= ((side & ONES).wrapping_mul(GATHER) >> 56) << (8 * word);
    }
  }
  Classes::from_masks(masks)
}

// ------------------------------------------------------------------------------------- numbers

/// The most digits a run may hold; longer runs are no number any entity takes (a card has at
/// most 19 digits, an E.164 number 15).
const MAX_RUN_DIGITS: usize = 24;

/// The most groups of any entity's shape (a card written `4111 1111 1111 1111 111`).
const MAX_SHAPED_GROUPS: usize = 5;

/// A run of digits with single separators between groups (`4111 1111-…`, `(555) 123-4567`,
/// `10.0.0.1`), as found from a boundary. It keeps only what the entities' shapes ask about, in
/// fixed-size fields: a run is scanned at every number in the text, and allocating per number
/// cost more than the scan.
struct NumericRun {
  /// Where the first digit is (after `+` or `(`).
  digits_start: usize,
  digit_count: usize,
  groups: usize,
  /// The first groups' digit counts.
  group_sizes: [u8; MAX_SHAPED_GROUPS],
  /// The byte between the first two groups (`)` after `(555)`), if there are two.
  separator: Option<u8>,
  /// Every separator is `separator`.
  same_separators: bool,
  /// Some separator is a `/`.
  slash: bool,
  end: usize,
  /// `+` before the first digit.
  plus: bool,
  /// The first group was written `(555)`.
  parenthesized: bool,
}

impl NumericRun {
  fn scan(bytes: &[u8], start: usize) -> Option<NumericRun> {
    let mut run = NumericRun {
      digits_start: start,
      digit_count: 0,
      groups: 0,
      group_sizes: [0; MAX_SHAPED_GROUPS],
      separator: None,
      same_separators: true,
      slash: false,
      end: start,
      plus: false,
      parenthesized: false,
    };
    let mut i = start;
    if bytes[i] == b'+' {
      run.plus = true;
      i += 1;
    }
    if bytes.get(i) == Some(&b'(') {
      run.parenthesized = true;
      i += 1;
    }
    run.digits_start = i;
    loop {
      let group_start = i;
      while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
      }
      let size = i - group_start;
      run.digit_count += size;
      if size == 0 || run.digit_count > MAX_RUN_DIGITS {
        return None;
      }
      // At most MAX_RUN_DIGITS.
      let size = size as u8;
      match bytes.get(i) {
        Some(b')') if run.parenthesized && run.groups == 0 => {
          // `(555) 123`: the closing parenthesis ends the first group, a space may follow.
          run.end_group(size, Some(b')'));
          i += 1;
          if bytes.get(i) == Some(&b' ') {
            i += 1;
          }
          if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
          }
        }
        Some(&separator @ (b' ' | b'-' | b'.' | b'/'))
          if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) =>
        {
          run.end_group(size, Some(separator));
          i += 1;
        }
        _ => {
          if run.parenthesized && run.groups == 0 {
            return None;
          }
          run.end_group(size, None);
          break;
        }
      }
    }
    run.end = i;
    // The number must end at a word boundary: `4111…1111abc` is not a card.
    if bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
      return None;
    }
    Some(run)
  }

  /// Closes a group of `size` digits, and the separator after it (none after the last).
  fn end_group(&mut self, size: u8, separator: Option<u8>) {
    if let Some(slot) = self.group_sizes.get_mut(self.groups) {
      *slot = size;
    }
    self.groups += 1;
    if let Some(separator) = separator {
      match self.separator {
        None => self.separator = Some(separator),
        Some(first) => self.same_separators &= first == separator,
      }
      self.slash |= separator == b'/';
    }
  }

  /// The digits without their separators, copied into `buffer`: only the checks that read
  /// them (Luhn, the SSN's ranges) pay for it.
  fn digits<'b>(&self, bytes: &[u8], buffer: &'b mut [u8; MAX_RUN_DIGITS]) -> &'b [u8] {
    let mut count = 0;
    for &byte in &bytes[self.digits_start..self.end] {
      if byte.is_ascii_digit() {
        buffer[count] = byte;
        count += 1;
      }
    }
    &buffer[..count]
  }

  /// Each group's digit count, or nothing for a run of more groups than any shape has.
  fn group_sizes(&self) -> &[u8] {
    self.group_sizes.get(..self.groups).unwrap_or(&[])
  }

  /// Every separator is `separator` (a single group has none).
  fn separators_only(&self, separator: u8) -> bool {
    self.same_separators && self.separator.is_none_or(|first| first == separator)
  }

  /// All separators alike and one of `allowed` (at least one separator).
  fn uniform_separators(&self, allowed: &[u8]) -> bool {
    self.same_separators && self.separator.is_some_and(|first| allowed.contains(&first))
  }

  /// `123-45-6789` or `123 45 6789`.
  fn is_ssn_shape(&self) -> bool {
    !self.plus
      && !self.parenthesized
      && self.group_sizes() == [3, 2, 4]
      && self.uniform_separators(b"- ")
  }

  /// 13 to 19 digits, as one block or in groups split by one kind of space or dash.
  fn is_card_shape(&self) -> bool {
    let count = self.digit_count;
    if self.plus || self.parenthesized || !(13..=19).contains(&count) {
      return false;
    }
    if self.groups == 1 {
      return true;
    }
    let grouped = matches!(
      self.group_sizes(),
      [4, 4, 4, 4]
        | [4, 4, 4, 4, 3]
        | [4, 4, 4, 4, 1]
        | [4, 4, 4, 1]
        | [4, 6, 5]
        | [4, 6, 4]
        | [4, 4, 4, 3]
    );
    self.uniform_separators(b" -") && grouped
  }

  /// Where a phone number written this way ends (with an extension `x123` / `ext. 123`), or
  /// None when the digits are not written like one.
  fn phone_end(&self, bytes: &[u8]) -> Option<usize> {
    let count = self.digit_count;
    let dashes_or_dots = || self.uniform_separators(b"-. ");
    let north_american = match self.group_sizes() {
      // (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
      [3, 3, 4] => self.parenthesized || dashes_or_dots(),
      // 1-555-123-4567, +1 555 123 4567
      [1, 3, 3, 4] => bytes[self.digits_start] == b'1' && (self.plus || dashes_or_dots()),
      _ => false,
    };
    // International: + and 8 to 15 digits in any grouping (E.164).
    let international = self.plus && (8..=15).contains(&count) && !self.slash;
    if !(north_american || international) {
      return None;
    }
    Some(extension_end(bytes, self.end))
  }
}

/// Four numbers split by dots, each up to 255 and with no leading zero (which some parsers read
/// as octal): what `Ipv4Addr`'s parser takes, checked on the run without parsing it again.
fn is_ipv4(run: &NumericRun, text: &[u8]) -> bool {
  run.groups == 4
    && !run.plus
    && !run.parenthesized
    && run.separators_only(b'.')
    && text.split(|&b| b == b'.').all(|group| match group {
      [_] => true,
      [b'0', ..] => false,
      [_, _] => true,
      [_, _, _] => {
        group
          .iter()
          .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
          <= 255
      }
      _ => false,
    })
}

/// After a phone number: ` x123`, ` ext. 123` or ` ext 123` is part of it.
fn extension_end(bytes: &[u8], end: usize) -> usize {
  for marker in [&b" x"[..], b" ext. ", b" ext ", b" ext."] {
    if bytes[end..].starts_with(marker) {
      let digits_from = end + marker.len();
      let digits = bytes[digits_from..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
      let after = digits_from + digits;
      if (1..=6).contains(&digits) && !bytes.get(after).is_some_and(|&b| is_word_byte(b)) {
        return after;
      }
    }
  }
  end
}

/// The SSA never assigns area 000, 666 or 900-999, group 00 or serial 0000.
fn valid_ssn(digits: &[u8]) -> bool {
  let area = &digits[0..3];
  area != b"000"
    && area != b"666"
    && area[0] != b'9'
    && &digits[3..5] != b"00"
    && &digits[5..9] != b"0000"
}

/// Luhn's checksum, and a number that starts like a card an issuer hands out (Visa, Mastercard,
/// Amex, Discover, JCB, Diners, UnionPay, Maestro) with that issuer's length.
fn valid_card(digits: &[u8]) -> bool {
  luhn(digits) && issued_like(digits)
}

/// Words that say a number is a card's, looked for (case-insensitively) in the 48 bytes before it.
const CARD_WORDS: &[&[u8]] = &[
  b"card",
  b"visa",
  b"mastercard",
  b"amex",
  b"credit",
  b"debit",
  b"cc",
  b"pan",
  b"charge",
  b"payment",
];

fn card_context_before(bytes: &[u8], start: usize) -> bool {
  let window = &bytes[start.saturating_sub(48)..start];
  // Each word is looked for only where a word starts: `scard` holds no `card`.
  (0..window.len()).any(|i| {
    let word_start =
      window[i].is_ascii_alphabetic() && (i == 0 || !window[i - 1].is_ascii_alphabetic());
    word_start
      && CARD_WORDS.iter().any(|word| {
        window[i..]
          .get(..word.len())
          .is_some_and(|text| text.eq_ignore_ascii_case(word))
      })
  })
}

fn luhn(digits: &[u8]) -> bool {
  // Every second digit from the right doubled, and the doubled number's digits added.
  const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
  let value = |digit: u8| u32::from(digit - b'0');
  // By pairs from the right, with no branch per digit (the digits are random).
  let sum: u32 = digits
    .rchunks(2)
    .map(|pair| match *pair {
      [doubled, kept] => DOUBLED[usize::from(doubled - b'0')] + value(kept),
      [kept] => value(kept),
      _ => 0,
    })
    .sum();
  sum.is_multiple_of(10)
}

fn issued_like(digits: &[u8]) -> bool {
  let prefix = |n: usize| -> u32 {
    digits[..n]
      .iter()
      .fold(0, |value, &d| value * 10 + u32::from(d - b'0'))
  };
  let len = digits.len();
  match digits[0] {
    b'4' => matches!(len, 13 | 16 | 19),
    b'5' => {
      (51..=55).contains(&prefix(2)) && len == 16
        || (50..=59).contains(&prefix(2)) && (12..=19).contains(&len)
    }
    b'2' => (2221..=2720).contains(&prefix(4)) && len == 16,
    b'3' => {
      matches!(prefix(2), 34 | 37) && len == 15
        || (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len)
        || ((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39))
          && (14..=19).contains(&len)
    }
    b'6' => {
      (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
        && (16..=19).contains(&len)
        || prefix(2) == 62 && (16..=19).contains(&len)
        || matches!(prefix(2), 63 | 67) && (12..=19).contains(&len)
    }
    _ => false,
  }
}

// ---------------------------------------------------------------------------------------- IBAN

/// Lengths of IBANs by country (the SWIFT registry), so a match takes exactly its country's
/// characters and no word after it.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
  (b"AD", 24),
  (b"AE", 23),
  (b"AL", 28),
  (b"AT", 20),
  (b"AZ", 28),
  (b"BA", 20),
  (b"BE", 16),
  (b"BG", 22),
  (b"BH", 22),
  (b"BR", 29),
  (b"BY", 28),
  (b"CH", 21),
  (b"CR", 22),
  (b"CY", 28),
  (b"CZ", 24),
  (b"DE", 22),
  (b"DK", 18),
  (b"DO", 28),
  (b"EE", 20),
  (b"EG", 29),
  (b"ES", 24),
  (b"FI", 18),
  (b"FO", 18),
  (b"FR", 27),
  (b"GB", 22),
  (b"GE", 22),
  (b"GI", 23),
  (b"GL", 18),
  (b"GR", 27),
  (b"GT", 28),
  (b"HR", 21),
  (b"HU", 28),
  (b"IE", 22),
  (b"IL", 23),
  (b"IQ", 23),
  (b"IS", 26),
  (b"IT", 27),
  (b"JO", 30),
  (b"KW", 30),
  (b"KZ", 20),
  (b"LB", 28),
  (b"LC", 32),
  (b"LI", 21),
  (b"LT", 20),
  (b"LU", 20),
  (b"LV", 21),
  (b"LY", 25),
  (b"MC", 27),
  (b"MD", 24),
  (b"ME", 22),
  (b"MK", 19),
  (b"MR", 27),
  (b"MT", 31),
  (b"MU", 30),
  (b"NL", 18),
  (b"NO", 15),
  (b"PK", 24),
  (b"PL", 28),
  (b"PS", 29),
  (b"PT", 25),
  (b"QA", 29),
  (b"RO", 24),
  (b"RS", 22),
  (b"SA", 24),
  (b"SC", 31),
  (b"SD", 18),
  (b"SE", 24),
  (b"SI", 19),
  (b"SK", 24),
  (b"SM", 27),
  (b"ST", 25),
  (b"SV", 28),
  (b"TL", 23),
  (b"TN", 24),
  (b"TR", 26),
  (b"UA", 29),
  (b"VA", 22),
  (b"VG", 24),
  (b"XK", 20),
  (b"BI", 27),
  (b"DJ", 27),
  (b"FK", 18),
  (b"HN", 28),
  (b"IR", 26),
  (b"MN", 20),
  (b"NI", 28),
  (b"OM", 23),
  (b"RU", 33),
  (b"SO", 23),
  (b"YE", 30),
];

/// The longest IBAN any country has (ISO 13616).
const IBAN_MAX_LEN: usize = 34;

/// [`IBAN_LENGTHS`] indexed by the country code's letters (0: no such country), so that the
/// length is one load.
const IBAN_LENGTH_BY_CODE: [u8; 26 * 26] = {
  let mut table = [0u8; 26 * 26];
  let mut country = 0;
  while country < IBAN_LENGTHS.len() {
    let (code, length) = IBAN_LENGTHS[country];
    table[(code[0] - b'A') as usize * 26 + (code[1] - b'A') as usize] = length as u8;
    country += 1;
  }
  table
};

/// The length of an IBAN of `country` (two upper-case letters).
fn iban_length(country: [u8; 2]) -> Option<usize> {
  let index = usize::from(country[0] - b'A') * 26 + usize::from(country[1] - b'A');
  match IBAN_LENGTH_BY_CODE[index] {
    0 => None,
    length => Some(usize::from(length)),
  }
}

fn iban_at(bytes: &[u8], start: usize) -> Option<Finding> {
  let end = iban_end(bytes, start)?;
  Some(Finding {
    entity: Entity::Iban,
    start,
    end,
  })
}

/// The end of an IBAN starting at `start`: its country's number of characters, written as one
/// block or in groups of four split by single spaces, passing the mod-97 check.
fn iban_end(bytes: &[u8], start: usize) -> Option<usize> {
  let [country_0, country_1, check_0, check_1] = *bytes.get(start..start + 4)? else {
    return None;
  };
  if !(country_0.is_ascii_uppercase()
    && country_1.is_ascii_uppercase()
    && check_0.is_ascii_digit()
    && check_1.is_ascii_digit())
  {
    return None;
  }
  let length = iban_length([country_0, country_1])?;
  let is_iban_char = |b: &u8| is(*b, byte_class::UPPER | byte_class::DIGIT);
  if bytes.get(start + 4) != Some(&b' ') {
    // One block (no space where the first group of four would end): the country's number of
    // letters and digits in a row.
    let chars = bytes.get(start..start + length)?;
    let end = start + length;
    if !chars.iter().all(is_iban_char) || bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
      return None;
    }
    return iban_checksum_ok(chars).then_some(end);
  }
  // In groups of four: spaces may follow each.
  let mut chars = [0; IBAN_MAX_LEN];
  let mut count = 0;
  let mut i = start;
  while count < length {
    let byte = *bytes.get(i)?;
    if byte == b' ' && count.is_multiple_of(4) && count > 0 {
      i += 1;
      continue;
    }
    if !is_iban_char(&byte) {
      return None;
    }
    chars[count] = byte;
    count += 1;
    i += 1;
  }
  if bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
    return None;
  }
  iban_checksum_ok(&chars[..count]).then_some(i)
}

/// ISO 13616: move the first four characters to the end, letters as 10..35, the number mod 97 is 1.
/// The decimal number is built in a u64 and reduced mod 97 only when another two digits could
/// overflow it: one division every seven or so characters instead of one each.
fn iban_checksum_ok(chars: &[u8]) -> bool {
  let mut number: u64 = 0;
  for &c in chars[4..].iter().chain(&chars[..4]) {
    let letter = c.is_ascii_uppercase();
    let value = if letter {
      c.wrapping_sub(b'A') + 10
    } else {
      c.wrapping_sub(b'0')
    };
    if value > 35 {
      return false;
    }
    number = number * if letter { 100 } else { 10 } + u64::from(value);
    if number >= 1 << 56 {
      number %= 97;
    }
  }
  number % 97 == 1
}

// --------------------------------------------------------------------------------------- email

fn is_local_byte(byte: u8) -> bool {
  use byte_class::*;
  is(byte, ALPHANUMERIC | DOT | UNDERSCORE | PERCENT_PLUS | DASH)
}

fn is_domain_byte(byte: u8) -> bool {
  use byte_class::*;
  is(byte, ALPHANUMERIC | DOT | DASH)
}

/// An address around the `@` at `at`: a local part before it, a dotted domain with an
/// alphabetic top-level label after it.
fn email_around(bytes: &[u8], at: usize) -> Option<Finding> {
  let mut start = at;
  while start > 0 && is_local_byte(bytes[start - 1]) && at - start < 64 {
    start -= 1;
  }
  while start < at && bytes[start] == b'.' {
    start += 1;
  }
  if start == at || (start > 0 && is_word_byte(bytes[start - 1])) {
    return None;
  }
  let mut end = at + 1;
  while end < bytes.len() && is_domain_byte(bytes[end]) && end - at < 190 {
    end += 1;
  }
  // A sentence's full stop or a hyphen after the address is not part of it.
  while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
    end -= 1;
  }
  let domain = &bytes[at + 1..end];
  let tld = domain.rsplit(|&b| b == b'.').next()?;
  let labels_ok = domain
    .split(|&b| b == b'.')
    .all(|label| !label.is_empty() && label[0] != b'-' && label[label.len() - 1] != b'-');
  if !domain.contains(&b'.')
    || tld.len() < 2
    || !tld.iter().all(u8::is_ascii_alphabetic)
    || !labels_ok
  {
    return None;
  }
  Some(Finding {
    entity: Entity::Email,
    start,
    end,
  })
}

// ---------------------------------------------------------------------------------------- IPv6

/// An address starts with a group of at most four hex digits and a colon, or with `::`. Checked
/// before anything else: every word starting with a to f comes here, and almost none is one.
fn ipv6_may_start_at(bytes: &[u8], start: usize) -> bool {
  if bytes[start] == b':' {
    return bytes.get(start + 1) == Some(&b':');
  }
  let head = &bytes[start..bytes.len().min(start + 5)];
  head
    .iter()
    .position(|&b| b == b':')
    .is_some_and(|colon| head[..colon].iter().all(u8::is_ascii_hexdigit))
}

fn ipv6_at(bytes: &[u8], start: usize) -> Option<Finding> {
  if !ipv6_may_start_at(bytes, start) {
    return None;
  }
  use byte_class::*;
  let len = bytes[start..]
    .iter()
    .take(45)
    .take_while(|&&b| is(b, DIGIT | HEX_LETTER | COLON | DOT))
    .count();
  let mut end = start + len;
  // A trailing full stop or colon belongs to the sentence.
  while end > start && matches!(bytes[end - 1], b'.' | b':') && !bytes[start..end].ends_with(b"::")
  {
    end -= 1;
  }
  let candidate = &bytes[start..end];
  if candidate.iter().filter(|&&b| b == b':').count() < 2
    || bytes.get(end).is_some_and(|&b| is_word_byte(b))
  {
    return None;
  }
  let text = std::str::from_utf8(candidate).ok()?;
  text.parse::<Ipv6Addr>().ok()?;
  Some(Finding {
    entity: Entity::IpAddress,
    start,
    end,
  })
}

// ------------------------------------------------------------------------------------ API keys

/// A key family: its prefix, the characters allowed after it, and the fewest of them.
type KeyFamily = (&'static [u8], KeyChars, usize);

/// What may follow a key family's prefix.
#[derive(Debug, Clone, Copy)]
enum KeyChars {
  Alphanumeric,
  UpperOrDigit,
  /// Letters, digits, `-` and `_`.
  Token,
}

impl KeyChars {
  /// As [`byte_class`] flags.
  fn classes(self) -> u16 {
    use byte_class::*;
    match self {
      KeyChars::Alphanumeric => ALPHANUMERIC,
      KeyChars::UpperOrDigit => UPPER | DIGIT,
      KeyChars::Token => ALPHANUMERIC | DASH | UNDERSCORE,
    }
  }
}

const KEY_PREFIXES: &[KeyFamily] = &[
  (b"sk-ant-", KeyChars::Token, 32),
  (b"sk-proj-", KeyChars::Token, 32),
  (b"sk-", KeyChars::Alphanumeric, 20),
  (b"sk_live_", KeyChars::Alphanumeric, 16),
  (b"sk_test_", KeyChars::Alphanumeric, 16),
  (b"rk_live_", KeyChars::Alphanumeric, 16),
  (b"AKIA", KeyChars::UpperOrDigit, 16),
  (b"ASIA", KeyChars::UpperOrDigit, 16),
  (b"AIza", KeyChars::Token, 35),
  (b"ghp_", KeyChars::Alphanumeric, 36),
  (b"gho_", KeyChars::Alphanumeric, 36),
  (b"ghu_", KeyChars::Alphanumeric, 36),
  (b"ghs_", KeyChars::Alphanumeric, 36),
  (b"ghr_", KeyChars::Alphanumeric, 36),
  (b"github_pat_", KeyChars::Token, 22),
  (b"glpat-", KeyChars::Token, 20),
  (b"xoxb-", KeyChars::Token, 20),
  (b"xoxp-", KeyChars::Token, 20),
  (b"xoxa-", KeyChars::Token, 20),
  (b"xapp-", KeyChars::Token, 20),
];

/// Every byte a family's prefix starts with, and every byte second in one, in lower case: the
/// candidate search looks for a word starting with one of the first followed by one of the
/// second, in either case.
const KEY_FIRST_BYTES: &[u8] = b"agrsx";
const KEY_SECOND_BYTES: &[u8] = b"ahiklos";

/// For each ASCII first byte, the second bytes some family's prefix goes on with (bit n: byte n).
const KEY_PREFIX_PAIRS: [u128; 128] = {
  let mut pairs = [0u128; 128];
  let mut family = 0;
  while family < KEY_PREFIXES.len() {
    let prefix = KEY_PREFIXES[family].0;
    pairs[prefix[0] as usize] |= 1 << prefix[1];
    family += 1;
  }
  pairs
};

/// Whether a key family's prefix starts with these two bytes: looked up before the families are
/// walked, as every capitalised word and every word starting with g, r, s or x comes here.
fn starts_like_key(rest: &[u8]) -> bool {
  match rest {
    [first, second, ..] if first.is_ascii() && second.is_ascii() => {
      KEY_PREFIX_PAIRS[usize::from(*first)] & (1 << second) != 0
    }
    _ => false,
  }
}

fn api_key_at(bytes: &[u8], start: usize) -> Option<Finding> {
  let rest = &bytes[start..];
  if !starts_like_key(rest) {
    return None;
  }
  // The first two bytes narrow the families down before any prefix is compared whole.
  let (prefix, chars, fewest) = KEY_PREFIXES
    .iter()
    .filter(|(prefix, _, _)| prefix[..2] == rest[..2])
    .find(|(prefix, _, _)| rest.starts_with(prefix))?;
  let allowed = chars.classes();
  let body = rest[prefix.len()..]
    .iter()
    .take_while(|&&b| is(b, allowed))
    .count();
  let end = start + prefix.len() + body;
  if body < *fewest || bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
    return None;
  }
  Some(Finding {
    entity: Entity::ApiKey,
    start,
    end,
  })
}

// ------------------------------------------------------------------------------------ streaming

/// Redacts a stream of text pieces, holding back only a tail that could still become (part of)
/// a match: the trailing run of characters an entity can contain, never more than
/// [`MAX_MATCH_LEN`] bytes. Prose ending in a space is released whole.
pub struct StreamRedactor {
  detector: Detector,
  pending: String,
  findings: Vec<Entity>,
}

impl StreamRedactor {
  pub fn new(detector: Detector) -> StreamRedactor {
    StreamRedactor {
      detector,
      pending: String::new(),
      findings: Vec::new(),
    }
  }

  /// Takes the next piece; returns the redacted text that can be released now.
  pub fn push(&mut self, piece: &str) -> String {
    self.pending.push_str(piece);
    let found = self.detector.find(&self.pending);
    let mut release = held_tail_start(self.pending.as_bytes());
    // A finding that reaches into the held tail may still grow: hold it back whole.
    if let Some(crossing) = found
      .iter()
      .find(|f| f.end > release || f.end == self.pending.len())
    {
      release = release.min(crossing.start);
    }
    let releasable: Vec<Finding> = found.into_iter().filter(|f| f.end <= release).collect();
    self.findings.extend(releasable.iter().map(|f| f.entity));
    let out = replace(&self.pending[..release], &releasable);
    self.pending.drain(..release);
    out
  }

  /// The stream ended: the rest, redacted.
  pub fn finish(&mut self) -> String {
    let (out, found) = self.detector.redact(&self.pending);
    self.findings.extend(found.iter().map(|f| f.entity));
    self.pending.clear();
    out
  }

  /// Bytes held back right now.
  pub fn held(&self) -> usize {
    self.pending.len()
  }

  /// The entities redacted so far.
  pub fn findings(&self) -> &[Entity] {
    &self.findings
  }
}

/// Where the tail that could still be part of a match begins: walk back over characters an
/// entity may contain, and single spaces inside digit or upper-case groups (cards, IBANs, phone
/// numbers), at most [`MAX_MATCH_LEN`] bytes.
fn held_tail_start(bytes: &[u8]) -> usize {
  let floor = bytes.len().saturating_sub(MAX_MATCH_LEN);
  let mut i = bytes.len();
  while i > floor {
    let byte = bytes[i - 1];
    let entity_byte = byte.is_ascii_alphanumeric()
      || matches!(
        byte,
        b'.' | b'_' | b'%' | b'+' | b'-' | b'@' | b':' | b'(' | b')' | b'/'
      );
    // A space after a digit group may join the next group (`4111 1111 …`), also when the next
    // group has not arrived yet.
    let joining_space = byte == b' '
      && i >= 2
      && (bytes[i - 2].is_ascii_digit()
        || bytes[i - 2].is_ascii_uppercase()
        || bytes[i - 2] == b')')
      && (i == bytes.len() || bytes[i].is_ascii_digit() || bytes[i].is_ascii_uppercase());
    if !(entity_byte || joining_space) {
      break;
    }
    i -= 1;
  }
  // A tail that reaches the floor is released up to it; the floor is a character boundary only
  // when it is ASCII, so step forward to one.
  while i < bytes.len() && (bytes[i] & 0xC0) == 0x80 {
    i += 1;
  }
  i
}

#[cfg(test)]
mod tests {
  use super::*;

  fn entities(text: &str) -> Vec<(Entity, &str)> {
    Detector::all()
      .find(text)
      .into_iter()
      .map(|f| (f.entity, &text[f.start..f.end]))
      .collect()
  }

  /// The detector without the candidate search: every matcher tried at every word boundary and
  /// every `@`, as the scan did before it passed over bytes in blocks.
  fn find_everywhere(detector: &Detector, text: &str) -> Vec<Finding> {
    let bytes = text.as_bytes();
    let mut found: Vec<Finding> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
      let boundary = i == 0 || !is_word_byte(bytes[i - 1]);
      let finding = if bytes[i] == b'@' {
        email_around(bytes, i).filter(|_| detector.wants(Entity::Email))
      } else if boundary {
        detector.candidate_at(bytes, i)
      } else {
        None
      };
      match finding {
        Some(finding) => {
          if finding.entity == Entity::Email {
            while found.last().is_some_and(|last| last.end > finding.start) {
              found.pop();
            }
          }
          found.push(finding);
          i = finding.end;
        }
        None => i += 1,
      }
    }
    found
  }

  /// Entities' shapes and near-misses, to build texts from.
  const PIECES: &[&str] = &[
    "card ",
    "visa",
    "Card:",
    "payment ",
    "scard ",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "5555555555554444",
    "3782 822463 10005",
    "4111 1111 1111 1112",
    "1234567812345670",
    "GB82WEST12345698765432",
    "GB82 WEST 1234 5698 7654 32",
    "GB82  WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "GB82WEST12345698765433",
    "123-45-6789",
    "123 45 6789",
    "666-45-6789",
    "192.168.1.20",
    "01.2.3.4",
    "1.2.3.256",
    "1.2.3.4.5",
    "2001:db8::ff00:42:8329",
    "::1",
    "12:30:45",
    "(555) 123-4567",
    "555.123.4567",
    "1-555-123-4567",
    "+44 20 7946 0958",
    "+15551234567",
    "+(555) 123",
    " x89",
    " ext. 123",
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "sk-short",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-123456789012-abcdefghijklmnopqrst",
    "AIzaSyA1234567890abcdefghijklmnopqrstu",
    "Jane.Doe+x@mail.example.co.uk",
    "a@b.io",
    "user@localhost",
    "@handle",
    "2024-01-15",
    "3/27/2024",
    "26174.17",
    "ORD-12345678",
    "é",
    "🎉",
    " ",
    " ",
    "\n",
    ".",
    ",",
    "-",
    "(",
    "+",
    ":",
    "@",
    "_",
  ];

  /// A deterministic text of `parts` pieces and random bytes from `seed`.
  fn generated_text(seed: &mut u64, parts: usize) -> String {
    let mut next = || {
      *seed ^= *seed << 13;
      *seed ^= *seed >> 7;
      *seed ^= *seed << 17;
      *seed as usize
    };
    const LOOSE: &[u8] = b"0123456789 -./:()+@_xXabcdefABCDEFGZskghr";
    let mut text = String::new();
    for _ in 0..parts {
      if next() % 3 == 0 {
        for _ in 0..1 + next() % 6 {
          text.push(char::from(LOOSE[next() % LOOSE.len()]));
        }
      } else {
        text.push_str(PIECES[next() % PIECES.len()]);
      }
    }
    text
  }

  #[test]
  fn the_candidate_search_turns_away_nothing_a_matcher_finds() {
    let detectors = [
      Detector::all(),
      Detector::new(&[Entity::Email]),
      Detector::new(&[Entity::IpAddress, Entity::ApiKey]),
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let mut findings = 0;
    for case in 0..20_000 {
      // Long enough to cross a block (64 bytes) now and then.
      let text = generated_text(&mut seed, 1 + case % 24);
      for detector in &detectors {
        let expected = find_everywhere(detector, &text);
        findings += expected.len();
        assert_eq!(detector.find(&text), expected, "{text:?}");
      }
    }
    assert!(findings > 20_000, "the texts hold findings: {findings}");
  }

  #[test]
  fn every_shape_is_found_at_every_offset_of_a_block() {
    let shapes = [
      (Entity::CreditCard, "4111 1111 1111 1111"),
      (Entity::CreditCard, "3782 822463 10005"),
      (Entity::Iban, "GB82WEST12345698765432"),
      (Entity::Iban, "GB82 WEST 1234 5698 7654 32"),
      (Entity::UsSsn, "123-45-6789"),
      (Entity::IpAddress, "192.168.1.20"),
      (Entity::IpAddress, "1.2.3.4"),
      (Entity::IpAddress, "2001:db8::ff00:42:8329"),
      (Entity::IpAddress, "::1"),
      (Entity::Phone, "(555) 123-4567 x89"),
      (Entity::Phone, "1-555-123-4567"),
      (Entity::Phone, "555.123.4567"),
      (Entity::Phone, "+44 20 7946 0958"),
      (
        Entity::ApiKey,
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
      ),
      (Entity::ApiKey, "AKIAIOSFODNN7EXAMPLE"),
      (Entity::ApiKey, "xoxb-123456789012-abcdefghijklmnopqrst"),
      (Entity::Email, "jane.doe@example.com"),
    ];
    for (entity, shape) in shapes {
      for offset in 0..2 * BLOCK + 2 {
        let text = format!(
          "{}{shape} and on",
          "z ".repeat(offset / 2) + &" ".repeat(offset % 2)
        );
        let start = text.find(shape).unwrap_or_default();
        assert_eq!(
          Detector::all().find(&text),
          [Finding {
            entity,
            start,
            end: start + shape.len()
          }],
          "{shape} at {start}"
        );
      }
    }
    // A single block of digits is a card after a word about cards.
    for offset in 0..2 * BLOCK + 2 {
      let text = format!("{}card 5555555555554444", " ".repeat(offset));
      assert_eq!(
        entities(&text),
        [(Entity::CreditCard, "5555555555554444")],
        "at {offset}"
      );
    }
  }

  /// [`Classes`] set byte by byte from [`class_bits_of`].
  fn classify_bytewise(block: &[u8; BLOCK]) -> Classes {
    let mut masks = [0u64; class_bit::COUNT];
    for (j, &b) in block.iter().enumerate() {
      for (class, mask) in masks.iter_mut().enumerate() {
        *mask |= u64::from(class_bits_of(b) >> class & 1) << j;
      }
    }
    Classes::from_masks(masks)
  }

  #[test]
  fn every_way_of_classifying_gives_the_bytewise_classes() {
    let mut block = [0u8; BLOCK];
    for (i, byte) in block.iter_mut().enumerate() {
      *byte = i as u8;
    }
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    for round in 0..4 + 2_000 {
      if round >= 4 {
        for byte in block.iter_mut() {
          seed ^= seed << 13;
          seed ^= seed >> 7;
          seed ^= seed << 17;
          *byte = seed as u8;
        }
      } else {
        // Every byte value once, in four blocks.
        for (i, byte) in block.iter_mut().enumerate() {
          *byte = (round * BLOCK + i) as u8;
        }
      }
      let bytewise = classify_bytewise(&block);
      assert_eq!(classify_portable(&block), bytewise, "{block:?}");
      assert_eq!(classifier()(&block), bytewise, "{block:?}");
      #[cfg(target_arch = "x86_64")]
      {
        // SAFETY: SSE2 is part of x86-64.
        assert_eq!(unsafe { classify_sse2(&block) }, bytewise, "{block:?}");
        if std::arch::is_x86_feature_detected!("avx2") {
          // SAFETY: the processor has AVX2.
          assert_eq!(unsafe { classify_avx2(&block) }, bytewise, "{block:?}");
        }
      }
    }
  }

  #[test]
  fn every_key_family_starts_with_the_bytes_the_search_looks_for() {
    for (prefix, _, _) in KEY_PREFIXES {
      assert!(
        KEY_FIRST_BYTES.contains(&prefix[0].to_ascii_lowercase()),
        "{prefix:?}"
      );
      assert!(
        KEY_SECOND_BYTES.contains(&prefix[1].to_ascii_lowercase()),
        "{prefix:?}"
      );
      assert!(starts_like_key(prefix), "{prefix:?}");
    }
    assert!(!starts_like_key(b"sh"));
  }

  #[test]
  fn an_entity_index_is_its_place_in_all() {
    for (i, entity) in Entity::ALL.iter().enumerate() {
      assert_eq!(entity.index(), i);
    }
  }

  #[test]
  fn cards_pass_luhn_and_look_issued() {
    assert_eq!(
      entities("card 4111 1111 1111 1111 ok"),
      [(Entity::CreditCard, "4111 1111 1111 1111")]
    );
    assert_eq!(
      entities("4111-1111-1111-1111"),
      [(Entity::CreditCard, "4111-1111-1111-1111")]
    );
    assert_eq!(
      entities("amex 3782 822463 10005."),
      [(Entity::CreditCard, "3782 822463 10005")]
    );
    assert_eq!(
      entities("visa 5555555555554444"),
      [(Entity::CreditCard, "5555555555554444")]
    );
    // One block of digits with no word about cards before it: as likely an order number.
    assert!(entities("tracking 5555555555554444").is_empty());
    // Luhn fails by one digit.
    assert!(entities("4111 1111 1111 1112").is_empty());
    // Luhn holds but no issuer starts so.
    assert!(entities("order 1234567812345670").is_empty());
    // Mixed separators, or glued to letters.
    assert!(entities("4111 1111-1111 1111").is_empty());
    assert!(entities("x4111111111111111").is_empty());
  }

  #[test]
  fn ibans_have_their_country_length_and_pass_mod_97() {
    assert_eq!(
      entities("pay GB82WEST12345698765432 now"),
      [(Entity::Iban, "GB82WEST12345698765432")]
    );
    assert_eq!(
      entities("to GB82 WEST 1234 5698 7654 32 please"),
      [(Entity::Iban, "GB82 WEST 1234 5698 7654 32")]
    );
    assert_eq!(
      entities("DE89370400440532013000"),
      [(Entity::Iban, "DE89370400440532013000")]
    );
    assert!(
      entities("GB82WEST12345698765433").is_empty(),
      "checksum off by one"
    );
    assert!(
      entities("ZZ82WEST12345698765432").is_empty(),
      "no such country"
    );
  }

  #[test]
  fn emails_phones_ssns_and_addresses() {
    assert_eq!(
      entities("mail Jane.Doe+x@mail.example.co.uk."),
      [(Entity::Email, "Jane.Doe+x@mail.example.co.uk")]
    );
    assert!(entities("user@localhost and @handle").is_empty());
    assert_eq!(
      entities("call (555) 123-4567 x89 now"),
      [(Entity::Phone, "(555) 123-4567 x89")]
    );
    assert_eq!(
      entities("call 1-555-123-4567"),
      [(Entity::Phone, "1-555-123-4567")]
    );
    assert_eq!(
      entities("or 555.123.4567"),
      [(Entity::Phone, "555.123.4567")]
    );
    assert_eq!(
      entities("+44 20 7946 0958"),
      [(Entity::Phone, "+44 20 7946 0958")]
    );
    assert_eq!(entities("+15551234567"), [(Entity::Phone, "+15551234567")]);
    assert_eq!(
      entities("ssn 123-45-6789"),
      [(Entity::UsSsn, "123-45-6789")]
    );
    assert!(entities("ssn 666-45-6789 or 123-00-6789").is_empty());
    assert_eq!(
      entities("from 192.168.1.20."),
      [(Entity::IpAddress, "192.168.1.20")]
    );
    assert!(entities("version 1.2.3.400").is_empty());
    assert_eq!(
      entities("at 2001:db8::ff00:42:8329 ok"),
      [(Entity::IpAddress, "2001:db8::ff00:42:8329")]
    );
    assert!(entities("at 12:30:45 on 2024-01-15").is_empty());
  }

  #[test]
  fn api_keys_by_family() {
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
    assert_eq!(entities(&format!("key={key}")), [(Entity::ApiKey, key)]);
    assert_eq!(
      entities("AKIAIOSFODNN7EXAMPLE"),
      [(Entity::ApiKey, "AKIAIOSFODNN7EXAMPLE")]
    );
    assert!(entities("sk-short").is_empty());
  }

  #[test]
  fn redaction_replaces_and_reports_without_text() {
    let (text, found) = Detector::all().redact("card 4111111111111111, mail a@b.io");
    assert_eq!(text, "card [CREDIT_CARD], mail [EMAIL]");
    assert_eq!(
      found.iter().map(|f| f.entity).collect::<Vec<_>>(),
      [Entity::CreditCard, Entity::Email]
    );
    let only_email = Detector::new(&[Entity::Email])
      .redact("card 4111111111111111, mail a@b.io")
      .0;
    assert_eq!(only_email, "card 4111111111111111, mail [EMAIL]");
  }

  #[test]
  fn a_card_split_across_three_chunks_in_every_way_is_redacted() {
    let text = "pay with 4111 1111 1111 1111 today";
    for a in 0..=text.len() {
      for b in a..=text.len() {
        let mut stream = StreamRedactor::new(Detector::all());
        let mut out = stream.push(&text[..a]);
        out.push_str(&stream.push(&text[a..b]));
        out.push_str(&stream.push(&text[b..]));
        out.push_str(&stream.finish());
        assert_eq!(out, "pay with [CREDIT_CARD] today", "split at {a}, {b}");
        assert_eq!(stream.findings(), [Entity::CreditCard]);
      }
    }
  }

  #[test]
  fn prose_is_released_at_once_and_multibyte_text_survives() {
    let mut stream = StreamRedactor::new(Detector::all());
    assert_eq!(stream.push("Hello there, "), "Hello there, ");
    assert_eq!(stream.push("wörld "), "wörld ");
    assert_eq!(stream.push("emoji 🎉 then a@b"), "emoji 🎉 then ");
    assert_eq!(stream.held(), "a@b".len());
    assert_eq!(stream.push(".io done"), "[EMAIL] ");
    assert_eq!(stream.finish(), "done");
  }
}
