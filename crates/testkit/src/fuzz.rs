//! Inputs for the fuzz properties of the readers of untrusted files (COLMAP text and binary,
//! `transforms.json`, checkpoints, EXIF, the config): arbitrary bytes, and a valid file damaged the
//! way real files are — bits flipped, cut short, bytes inserted or removed, a count or length
//! overwritten with a huge value, a token of a text file replaced with an edge value. Each reader's
//! property asserts that it returns `Ok` or `Err` and never panics (proptest reports a panic as a
//! failure, with the shrunk input). Every property runs a bounded number of cases ([`CASES`]) so
//! the whole set stays well under a minute in release mode on 2 cores.

use proptest::prelude::*;

pub use proptest;

/// Cases per fuzz property: the time bound of the set (see the README's testing section).
pub const CASES: u32 = 256;

/// The config of a fuzz property: [`CASES`] cases (or `FLYTHROUGH_FUZZ_CASES`, for a longer run by
/// hand), no failure persistence file in the source tree.
pub fn config() -> ProptestConfig {
    let cases = std::env::var("FLYTHROUGH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values that break unchecked counts and lengths: a `2^60` count overflows a `Vec`'s capacity, a
/// `2^34` one asks for hundreds of gigabytes, `u32::MAX` is `-1` as an `i32`.
pub const HUGE: [u64; 9] = [
    u64::MAX,
    1 << 63,
    1 << 60,
    1 << 40,
    1 << 34,
    1 << 32,
    u32::MAX as u64,
    (1 << 31) - 1,
    0,
];

/// One change to a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip bit `bit` of the byte at (the index modulo the length).
    FlipBit(usize, u8),
    /// Cut the file at (the index modulo the length + 1).
    Truncate(usize),
    /// Overwrite 8 little-endian bytes at the index with a value.
    Overwrite8(usize, u64),
    /// Overwrite 4 little-endian bytes at the index with a value.
    Overwrite4(usize, u32),
    /// Insert bytes at the index.
    Insert(usize, Vec<u8>),
    /// Remove up to `n` bytes at the index.
    Remove(usize, usize),
}

impl Mutation {
    pub fn apply(&self, b: &mut Vec<u8>) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match self {
            Mutation::FlipBit(i, bit) => {
                if !b.is_empty() {
                    let i = at(*i, b.len());
                    b[i] ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate(i) => {
                let i = at(*i, b.len() + 1);
                b.truncate(i);
            }
            Mutation::Overwrite8(i, v) => {
                let i = at(*i, b.len());
                overwrite(b, i, &v.to_le_bytes())
            }
            Mutation::Overwrite4(i, v) => {
                let i = at(*i, b.len());
                overwrite(b, i, &v.to_le_bytes())
            }
            Mutation::Insert(i, bytes) => {
                let i = at(*i, b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
        }
    }
}

fn overwrite(b: &mut [u8], at: usize, v: &[u8]) {
    let end = (at + v.len()).min(b.len());
    b[at..end].copy_from_slice(&v[..end - at]);
}

/// A huge value, an edge value or any `u64`.
pub fn huge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => proptest::sample::select(HUGE.to_vec()),
        1 => any::<u64>(),
    ]
}

/// One [`Mutation`]; indexes are taken modulo the length, so any index fits any file.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        4 => (any::<usize>(), huge_u64()).prop_map(|(i, v)| Mutation::Overwrite8(i, v)),
        2 => (any::<usize>(), huge_u64()).prop_map(|(i, v)| Mutation::Overwrite4(i, v as u32)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

/// `seed` with 1 to 4 [`Mutation`]s applied.
pub fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(mutation(), 1..=4).prop_map(move |ms| {
        let mut b = seed.clone();
        for m in &ms {
            m.apply(&mut b);
        }
        b
    })
}

/// Arbitrary bytes (up to `max_len`), or one of `seeds` mutated (three times in four).
pub fn bytes_or_mutated(seeds: Vec<Vec<u8>>, max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<BoxedStrategy<Vec<u8>>> =
        seeds.into_iter().map(|s| mutated(s).boxed()).collect();
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..max_len),
        3 => proptest::strategy::Union::new(seeds),
    ]
}

/// Tokens that break unchecked text parsing: signs, overflows, non-finite and absurd numbers,
/// empty strings, comment and quote characters.
pub const EDGE_TOKENS: [&str; 22] = [
    "-1",
    "0",
    "-0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "-1e309",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "1152921504606846976",
    "\"\"",
    "[]",
    "{}",
    "#",
    "\"\u{0}\"",
    "\u{feff}",
];

/// One change to a text file, at the level of its lines and whitespace-separated tokens.
#[derive(Debug, Clone)]
pub enum TextMutation {
    /// Replace token `t` of line `l` (both modulo) with an edge value.
    Token(usize, usize, &'static str),
    /// Remove line `l`.
    RemoveLine(usize),
    /// Repeat line `l`.
    RepeatLine(usize),
    /// Cut the text at a character boundary near the index.
    Truncate(usize),
    /// Insert a string at a character boundary near the index.
    Insert(usize, String),
}

impl TextMutation {
    pub fn apply(&self, s: &str) -> String {
        let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
        let pick = |i: usize, n: usize| if n == 0 { 0 } else { i % n };
        let boundary = |i: usize| {
            let mut i = pick(i, s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match self {
            TextMutation::Token(l, t, v) => {
                if !lines.is_empty() {
                    let l = pick(*l, lines.len());
                    let mut toks: Vec<String> = lines[l].split(' ').map(str::to_string).collect();
                    let t = pick(*t, toks.len());
                    toks[t] = v.to_string();
                    lines[l] = toks.join(" ");
                }
                lines.join("\n") + "\n"
            }
            TextMutation::RemoveLine(l) => {
                if !lines.is_empty() {
                    lines.remove(pick(*l, lines.len()));
                }
                lines.join("\n") + "\n"
            }
            TextMutation::RepeatLine(l) => {
                if !lines.is_empty() {
                    let l = pick(*l, lines.len());
                    lines.insert(l, lines[l].clone());
                }
                lines.join("\n") + "\n"
            }
            TextMutation::Truncate(i) => s[..boundary(*i)].to_string(),
            TextMutation::Insert(i, v) => {
                let i = boundary(*i);
                format!("{}{v}{}", &s[..i], &s[i..])
            }
        }
    }
}

/// One [`TextMutation`].
pub fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        6 => (any::<usize>(), any::<usize>(), proptest::sample::select(EDGE_TOKENS.to_vec()))
            .prop_map(|(l, t, v)| TextMutation::Token(l, t, v)),
        1 => any::<usize>().prop_map(TextMutation::RemoveLine),
        1 => any::<usize>().prop_map(TextMutation::RepeatLine),
        1 => any::<usize>().prop_map(TextMutation::Truncate),
        1 => (any::<usize>(), any::<String>()).prop_map(|(i, v)| TextMutation::Insert(i, v)),
    ]
}

/// `seed` with 1 to 4 [`TextMutation`]s applied.
pub fn mutated_text(seed: String) -> impl Strategy<Value = String> {
    proptest::collection::vec(text_mutation(), 1..=4).prop_map(move |ms| {
        let mut s = seed.clone();
        for m in &ms {
            s = m.apply(&s);
        }
        s
    })
}

/// An arbitrary string (up to `max_len` characters), or one of `seeds` mutated (three times in four).
pub fn text_or_mutated(seeds: Vec<String>, max_len: usize) -> impl Strategy<Value = String> {
    let seeds: Vec<BoxedStrategy<String>> =
        seeds.into_iter().map(|s| mutated_text(s).boxed()).collect();
    prop_oneof![
        1 => proptest::collection::vec(any::<char>(), 0..max_len)
            .prop_map(|v| v.into_iter().collect::<String>()),
        3 => proptest::strategy::Union::new(seeds),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_fit_any_length() {
        for m in [
            Mutation::FlipBit(7, 3),
            Mutation::Truncate(100),
            Mutation::Overwrite8(5, u64::MAX),
            Mutation::Overwrite4(1, 7),
            Mutation::Insert(9, vec![1, 2]),
            Mutation::Remove(3, 10),
        ] {
            for len in [0, 1, 3, 8, 20] {
                let mut b = vec![0u8; len];
                m.apply(&mut b);
            }
        }
        let mut b = vec![0u8; 16];
        Mutation::Overwrite8(4, 1 << 60).apply(&mut b);
        assert_eq!(&b[4..12], &(1u64 << 60).to_le_bytes());
        assert_eq!(
            TextMutation::Token(1, 2, "nan").apply("a b c\n1 2 3\n"),
            "a b c\n1 2 nan\n"
        );
        assert_eq!(TextMutation::Truncate(2).apply("é"), "é");
        assert_eq!(TextMutation::Truncate(1).apply("é"), "");
    }
}
