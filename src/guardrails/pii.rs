//! PII detection for the `pii` guardrail: one pass over the text finds emails, phone numbers,
//! payment card numbers, IBANs, US social security numbers, IP addresses and API keys.
//!
//! It is a hand-written scanner rather than a set of regular expressions because most of what
//! makes a finding right is not a pattern: a card number must pass Luhn and start like a card an
//! issuer hands out, an IBAN must have its country's length and pass mod 97, an SSN must not use
//! an area number the SSA never assigns, an address must parse. Checking those on candidates that
//! one byte-class dispatch finds keeps the common case (letters and spaces) to a compare per byte.
//! Everything it matches is ASCII, so every offset it returns is a UTF-8 character boundary.

use std::net::{Ipv4Addr, Ipv6Addr};

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
    self.find_into(text.as_bytes(), &mut found);
    found
  }

  fn find_into(&self, bytes: &[u8], found: &mut Vec<Finding>) {
    let mut i = 0;
    while i < bytes.len() {
      let byte = bytes[i];
      let boundary = i == 0 || !is_word_byte(bytes[i - 1]);
      if boundary && STARTS[usize::from(byte)] {
        if let Some(finding) = self.candidate_at(bytes, i) {
          found.push(finding);
          i = finding.end;
          continue;
        }
      }
      if byte == b'@' && self.wants(Entity::Email) {
        if let Some(finding) = email_around(bytes, i) {
          // The local part was scanned as ordinary text: drop what was found inside it.
          while found.last().is_some_and(|last| last.end > finding.start) {
            found.pop();
          }
          found.push(finding);
          i = finding.end;
          continue;
        }
      }
      i += 1;
      // Inside a word nothing can start: skip to its end, stopping only at an `@`.
      if is_word_byte(byte) {
        while i < bytes.len() && WORD_NOT_AT[usize::from(bytes[i])] {
          i += 1;
        }
      }
    }
  }

  /// The text with every finding replaced by its placeholder, and the findings (offsets into
  /// the original text).
  pub fn redact(&self, text: &str) -> (String, Vec<Finding>) {
    let found = self.find(text);
    (replace(text, &found), found)
  }

  /// What starts at `i` (a word boundary), by the first byte: numbers, upper-case codes (IBANs,
  /// some keys), hexadecimal (IPv6) and key prefixes.
  fn candidate_at(&self, bytes: &[u8], i: usize) -> Option<Finding> {
    let ipv6 = || {
      if self.wants(Entity::IpAddress) {
        ipv6_at(bytes, i)
      } else {
        None
      }
    };
    let key = || {
      if self.wants(Entity::ApiKey) {
        api_key_at(bytes, i)
      } else {
        None
      }
    };
    match bytes[i] {
      b'0'..=b'9' => self.numeric_at(bytes, i).or_else(ipv6),
      b'+' | b'(' => self.numeric_at(bytes, i),
      b'A'..=b'F' => self.upper_at(bytes, i).or_else(key).or_else(ipv6),
      b'G'..=b'Z' => self.upper_at(bytes, i).or_else(key),
      b'a'..=b'f' | b':' => ipv6(),
      b'g' | b'r' | b's' | b'x' => key(),
      _ => None,
    }
  }

  /// Numbers: an IPv4 address, an SSN, a card or a phone number, whichever the digits make.
  fn numeric_at(&self, bytes: &[u8], start: usize) -> Option<Finding> {
    let run = NumericRun::scan(bytes, start)?;
    let finding = |entity: Entity, end: usize| Some(Finding { entity, start, end });
    if self.wants(Entity::IpAddress) && run.separators_only(b'.') && run.groups == 4 {
      if let Ok(text) = std::str::from_utf8(&bytes[start..run.end]) {
        if text.parse::<Ipv4Addr>().is_ok() {
          return finding(Entity::IpAddress, run.end);
        }
      }
    }
    if self.wants(Entity::UsSsn) && run.is_ssn_shape() && valid_ssn(&run.digits) {
      return finding(Entity::UsSsn, run.end);
    }
    // Grouped like a card, a Luhn-valid issuer number is one. One block of digits is as often an
    // order or tracking number: it needs a word about cards or payment just before it.
    if self.wants(Entity::CreditCard)
      && run.is_card_shape()
      && valid_card(&run.digits)
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

  /// Upper-case starts: an IBAN.
  fn upper_at(&self, bytes: &[u8], start: usize) -> Option<Finding> {
    if !self.wants(Entity::Iban) {
      return None;
    }
    let end = iban_end(bytes, start)?;
    Some(Finding {
      entity: Entity::Iban,
      start,
      end,
    })
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
  WORD[usize::from(byte)]
}

/// Byte classes as tables: the scanner's inner loop is one load per byte.
const fn word_member(b: u8) -> bool {
  b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}
const fn start_member(b: u8) -> bool {
  b.is_ascii_digit()
    || b.is_ascii_uppercase()
    || matches!(b, b'+' | b'(' | b':' | b'a'..=b'g' | b'r' | b's' | b'x')
}
const fn tables() -> [[bool; 256]; 3] {
  let mut tables = [[false; 256]; 3];
  let mut b = 0;
  while b < 256 {
    let byte = b as u8;
    tables[0][b] = word_member(byte);
    tables[1][b] = word_member(byte) && byte != b'@';
    tables[2][b] = start_member(byte);
    b += 1;
  }
  tables
}
const TABLES: [[bool; 256]; 3] = tables();
const WORD: [bool; 256] = TABLES[0];
const WORD_NOT_AT: [bool; 256] = TABLES[1];
/// Bytes a finding can start with (besides the `@` of an email, found from the middle).
const STARTS: [bool; 256] = TABLES[2];

// ------------------------------------------------------------------------------------- numbers

/// A run of digits with single separators between groups (`4111 1111-…`, `(555) 123-4567`,
/// `10.0.0.1`), as found from a boundary.
struct NumericRun {
  digits: Vec<u8>,
  /// Each group's digit count.
  group_sizes: Vec<usize>,
  separators: Vec<u8>,
  groups: usize,
  end: usize,
  /// `+` before the first digit.
  plus: bool,
  /// The first group was written `(555)`.
  parenthesized: bool,
}

impl NumericRun {
  fn scan(bytes: &[u8], start: usize) -> Option<NumericRun> {
    let mut run = NumericRun {
      digits: Vec::new(),
      group_sizes: Vec::new(),
      separators: Vec::new(),
      groups: 0,
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
    let mut size = 0;
    loop {
      match bytes.get(i) {
        Some(digit @ b'0'..=b'9') => {
          run.digits.push(*digit);
          size += 1;
          i += 1;
          if run.digits.len() > 24 {
            return None;
          }
        }
        Some(b')') if run.parenthesized && run.groups == 0 && size > 0 => {
          // `(555) 123`: the closing parenthesis ends the first group, a space may follow.
          run.group_sizes.push(size);
          run.groups = 1;
          size = 0;
          run.separators.push(b')');
          i += 1;
          if bytes.get(i) == Some(&b' ') {
            i += 1;
          }
          if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
          }
        }
        Some(&sep @ (b' ' | b'-' | b'.' | b'/'))
          if size > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) =>
        {
          run.group_sizes.push(size);
          run.groups += 1;
          size = 0;
          run.separators.push(sep);
          i += 1;
        }
        _ => break,
      }
    }
    if size == 0 || (run.parenthesized && run.groups == 0) {
      return None;
    }
    run.group_sizes.push(size);
    run.groups += 1;
    run.end = i;
    // The number must end at a word boundary: `4111…1111abc` is not a card.
    if bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
      return None;
    }
    Some(run)
  }

  fn separators_only(&self, separator: u8) -> bool {
    self.separators.iter().all(|&s| s == separator)
  }

  /// `123-45-6789` or `123 45 6789`.
  fn is_ssn_shape(&self) -> bool {
    !self.plus
      && !self.parenthesized
      && self.group_sizes == [3, 2, 4]
      && self.separators.windows(2).all(|pair| pair[0] == pair[1])
      && matches!(self.separators.first(), Some(b'-' | b' '))
  }

  /// 13 to 19 digits, as one block or in groups split by one kind of space or dash.
  fn is_card_shape(&self) -> bool {
    let count = self.digits.len();
    if self.plus || self.parenthesized || !(13..=19).contains(&count) {
      return false;
    }
    if self.groups == 1 {
      return true;
    }
    let same_separator = self.separators.windows(2).all(|pair| pair[0] == pair[1])
      && matches!(self.separators.first(), Some(b' ' | b'-'));
    let grouped = matches!(
      self.group_sizes.as_slice(),
      [4, 4, 4, 4]
        | [4, 4, 4, 4, 3]
        | [4, 4, 4, 4, 1]
        | [4, 4, 4, 1]
        | [4, 6, 5]
        | [4, 6, 4]
        | [4, 4, 4, 3]
    );
    same_separator && grouped
  }

  /// Where a phone number written this way ends (with an extension `x123` / `ext. 123`), or
  /// None when the digits are not written like one.
  fn phone_end(&self, bytes: &[u8]) -> Option<usize> {
    let count = self.digits.len();
    let sizes = self.group_sizes.as_slice();
    let dashes_or_dots = || {
      self.separators.windows(2).all(|pair| pair[0] == pair[1])
        && matches!(self.separators.first(), Some(b'-' | b'.' | b' '))
    };
    let north_american = match sizes {
      // (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
      [3, 3, 4] => self.parenthesized || dashes_or_dots(),
      // 1-555-123-4567, +1 555 123 4567
      [1, 3, 3, 4] => self.digits[0] == b'1' && (self.plus || dashes_or_dots()),
      _ => false,
    };
    // International: + and 8 to 15 digits in any grouping (E.164).
    let international =
      self.plus && (8..=15).contains(&count) && self.separators.iter().all(|&s| s != b'/');
    if !(north_american || international) {
      return None;
    }
    Some(extension_end(bytes, self.end))
  }
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
  window.windows(2).enumerate().any(|(i, _)| {
    CARD_WORDS.iter().any(|word| {
      window.len() >= i + word.len()
        && window[i..i + word.len()].eq_ignore_ascii_case(word)
        && (i == 0 || !window[i - 1].is_ascii_alphabetic())
    })
  })
}

fn luhn(digits: &[u8]) -> bool {
  let sum: u32 = digits
    .iter()
    .rev()
    .enumerate()
    .map(|(i, &d)| {
      let d = u32::from(d - b'0');
      if !i.is_multiple_of(2) {
        let doubled = d * 2;
        if doubled > 9 {
          doubled - 9
        } else {
          doubled
        }
      } else {
        d
      }
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

fn iban_length(country: &[u8]) -> Option<usize> {
  IBAN_LENGTHS
    .iter()
    .find(|(code, _)| &code[..] == country)
    .map(|(_, len)| *len)
}

/// The end of an IBAN starting at `start`: its country's number of characters, written as one
/// block or in groups of four split by single spaces, passing the mod-97 check.
fn iban_end(bytes: &[u8], start: usize) -> Option<usize> {
  let country = bytes.get(start..start + 2)?;
  if !country.iter().all(u8::is_ascii_uppercase)
    || !bytes
      .get(start + 2..start + 4)?
      .iter()
      .all(u8::is_ascii_digit)
  {
    return None;
  }
  let length = iban_length(country)?;
  let mut chars = Vec::with_capacity(length);
  let mut i = start;
  let mut spaced = None;
  while chars.len() < length {
    let byte = *bytes.get(i)?;
    if byte == b' ' && chars.len().is_multiple_of(4) && !chars.is_empty() && spaced != Some(false) {
      spaced = Some(true);
      i += 1;
      continue;
    }
    if !(byte.is_ascii_uppercase() || byte.is_ascii_digit()) {
      return None;
    }
    if chars.len().is_multiple_of(4) && !chars.is_empty() && spaced.is_none() {
      spaced = Some(false);
    }
    chars.push(byte);
    i += 1;
  }
  if bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
    return None;
  }
  iban_checksum_ok(&chars).then_some(i)
}

/// ISO 13616: move the first four characters to the end, letters as 10..35, the number mod 97 is 1.
fn iban_checksum_ok(chars: &[u8]) -> bool {
  let mut remainder: u32 = 0;
  for &c in chars[4..].iter().chain(&chars[..4]) {
    let value = match c {
      b'0'..=b'9' => u32::from(c - b'0'),
      b'A'..=b'Z' => u32::from(c - b'A') + 10,
      _ => return false,
    };
    remainder = if value >= 10 {
      (remainder * 100 + value) % 97
    } else {
      (remainder * 10 + value) % 97
    };
  }
  remainder == 1
}

// --------------------------------------------------------------------------------------- email

fn is_local_byte(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
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
  while end < bytes.len()
    && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'.' | b'-'))
    && end - at < 190
  {
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

fn ipv6_at(bytes: &[u8], start: usize) -> Option<Finding> {
  let len = bytes[start..]
    .iter()
    .take(45)
    .take_while(|&&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
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
type KeyFamily = (&'static [u8], fn(u8) -> bool, usize);

const KEY_PREFIXES: &[KeyFamily] = &[
  (b"sk-ant-", key_byte, 32),
  (b"sk-proj-", key_byte, 32),
  (b"sk-", alnum, 20),
  (b"sk_live_", alnum, 16),
  (b"sk_test_", alnum, 16),
  (b"rk_live_", alnum, 16),
  (b"AKIA", upper_or_digit, 16),
  (b"ASIA", upper_or_digit, 16),
  (b"AIza", key_byte, 35),
  (b"ghp_", alnum, 36),
  (b"gho_", alnum, 36),
  (b"ghu_", alnum, 36),
  (b"ghs_", alnum, 36),
  (b"ghr_", alnum, 36),
  (b"github_pat_", key_byte, 22),
  (b"glpat-", key_byte, 20),
  (b"xoxb-", key_byte, 20),
  (b"xoxp-", key_byte, 20),
  (b"xoxa-", key_byte, 20),
  (b"xapp-", key_byte, 20),
];

fn key_byte(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

fn alnum(byte: u8) -> bool {
  byte.is_ascii_alphanumeric()
}

fn upper_or_digit(byte: u8) -> bool {
  byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

fn api_key_at(bytes: &[u8], start: usize) -> Option<Finding> {
  let rest = &bytes[start..];
  let (prefix, allowed, fewest) = KEY_PREFIXES
    .iter()
    .find(|(prefix, _, _)| rest.starts_with(prefix))?;
  let body = rest[prefix.len()..]
    .iter()
    .take_while(|&&b| allowed(b))
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
