//! Text normalisation and hashing for the deduplicators: written here (not taken from a crate) so a
//! document's hash, and so what a seed drops, stays the same across saekit versions.

/// Lower case, whitespace runs as one space, trimmed: what exact dedup compares.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The words near dedup shingles: runs of letters and digits, lower-cased (punctuation dropped).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase())
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xbf58_476d_1ce4_e5b9;
const K2: u64 = 0x94d0_49bb_1331_11eb;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(K1);
    z = (z ^ (z >> 27)).wrapping_mul(K2);
    z ^ (z >> 31)
}

/// A 64-bit hash of `bytes` under `seed`: 8 bytes at a time, each folded in through a multiply and
/// the finaliser, the length last.
#[inline]
pub(crate) fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = mix64(seed ^ K0);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let v = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        h = mix64(h ^ v.wrapping_mul(K0)).rotate_left(23);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = mix64(h ^ u64::from_le_bytes(tail).wrapping_mul(K0)).rotate_left(23);
    }
    mix64(h ^ (bytes.len() as u64).wrapping_mul(K1))
}

/// A 128-bit hash of `bytes` (two 64-bit hashes under different seeds).
pub fn hash128(bytes: &[u8]) -> u128 {
    ((hash64(bytes, 0x5eed_0001) as u128) << 64) | hash64(bytes, 0x5eed_0002) as u128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_ignores_case_and_whitespace_only() {
        assert_eq!(normalise("  Hello\t\tWORLD \n"), "hello world");
        assert_ne!(normalise("hello, world"), normalise("hello world"));
        assert_eq!(words("It's a-test, 42!").collect::<Vec<_>>(), ["it", "s", "a", "test", "42"]);
    }

    #[test]
    fn hashes_are_pinned_and_tell_near_inputs_apart() {
        // Pinned: a change here changes what every seed drops.
        assert_eq!(hash64(b"saekit mixes", 0), 3677814323605041587);
        assert_eq!(hash128(b"saekit"), 296225018845938811184333026698484496566);
        assert_ne!(hash64(b"abc", 0), hash64(b"abc", 1));
        assert_ne!(hash64(b"abcdefgh", 0), hash64(b"abcdefgi", 0));
        assert_ne!(hash64(b"a\0", 0), hash64(b"a", 0));
        let distinct: std::collections::HashSet<u64> = (0..10_000u32).map(|i| hash64(&i.to_le_bytes(), 7)).collect();
        assert_eq!(distinct.len(), 10_000);
    }
}
