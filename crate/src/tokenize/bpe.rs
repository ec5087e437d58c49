//! A fast, exact encoder for byte-level BPE tokenizers (the GPT-2 family).
//!
//! [`FastBpe`] reproduces `tokenizers::Tokenizer::encode_fast(text, false)` id for id, for the tokenizers it
//! accepts (see [`FastBpe::from_tokenizer`]), at several times the speed. Where the `tokenizers` crate
//! runs the GPT-2 pre-tokenizer regex through `fancy-regex` and builds offset-tracking strings, this
//! encoder:
//!
//! - finds added/special tokens with a small leftmost-longest matcher, applying each token's
//!   `single_word`/`lstrip`/`rstrip`/`normalized` flags exactly as `tokenizers`' `AddedVocabulary` does;
//! - splits the rest with a hand-written state machine equivalent to the pattern
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, using character classes
//!   taken from `regex-syntax` (the tables `fancy-regex` itself uses, so the Unicode version is the same);
//! - works on raw bytes: the byte-to-unicode mapping is folded into a byte-to-id table;
//! - caches the ids of each word in a per-thread, bounded hash table (words repeat: most lookups hit);
//! - merges with a flat scan over at most 64 symbols when every merge makes a distinct token (then it is
//!   equivalent to `tokenizers`' priority queue), and otherwise with a replica of that priority queue.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokenizers::models::bpe::BPE;
use tokenizers::{ModelWrapper, PreTokenizerWrapper, Tokenizer as HfTokenizer};

/// A byte with no token in the vocabulary.
pub(crate) const NO_ID: u32 = u32::MAX;
/// No merge for a pair.
pub(crate) const NO_MERGE: u64 = u64::MAX;
/// Words of at most this many bytes are merged with the flat scan (when merges are injective).
const SMALL_WORD: usize = 64;
/// Words longer than this are not cached (as in `tokenizers`).
pub(crate) const MAX_CACHED_LEN: usize = 255;
/// The per-thread word cache is emptied when it holds this many words...
const CACHE_MAX_ENTRIES: usize = 1 << 18;
/// ...or this many bytes of words.
const CACHE_MAX_KEY_BYTES: usize = 16 << 20;
/// How many `FastBpe`s one thread keeps caches for.
const CACHES_PER_THREAD: usize = 4;

// Character classes of the pre-tokenizer: exactly one of these per code point...
pub(crate) const CLS_OTHER: u8 = 0;
pub(crate) const CLS_LETTER: u8 = 1;
pub(crate) const CLS_NUMBER: u8 = 2;
pub(crate) const CLS_SPACE: u8 = 3;
pub(crate) const CLS_MASK: u8 = 3;
// ...plus regex's `\w`, used by added tokens marked `single_word`.
pub(crate) const WORD_FLAG: u8 = 4;

/// Classes of all code points: a two-level table (blocks of 256 code points, identical blocks shared).
pub(crate) struct CharClasses {
    index: Vec<u16>,
    blocks: Vec<u8>,
}

impl CharClasses {
    fn build() -> CharClasses {
        let mut full = vec![CLS_OTHER; 0x11_0000];
        for (pattern, class) in [(r"\p{L}", CLS_LETTER), (r"\p{N}", CLS_NUMBER), (r"\s", CLS_SPACE)] {
            for (lo, hi) in unicode_ranges(pattern) {
                full[lo as usize..=hi as usize].iter_mut().for_each(|c| *c = class);
            }
        }
        for (lo, hi) in unicode_ranges(r"\w") {
            full[lo as usize..=hi as usize].iter_mut().for_each(|c| *c |= WORD_FLAG);
        }
        let mut index = Vec::with_capacity(full.len() / 256);
        let mut blocks = Vec::new();
        let mut seen: HashMap<&[u8], u16> = HashMap::new();
        for block in full.chunks(256) {
            let id = *seen.entry(block).or_insert_with(|| {
                blocks.extend_from_slice(block);
                (blocks.len() / 256 - 1) as u16
            });
            index.push(id);
        }
        CharClasses { index, blocks }
    }

    #[inline(always)]
    pub(crate) fn get(&self, cp: u32) -> u8 {
        self.blocks[((self.index[(cp >> 8) as usize] as usize) << 8) | (cp & 0xFF) as usize]
    }
}

/// The code point ranges of a Unicode class, as the `regex` crates (and so `fancy-regex`) define it.
fn unicode_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new().parse(pattern).expect("a valid class");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        other => panic!("{pattern} is not a Unicode class: {other:?}"),
    }
}

pub(crate) static CHAR_CLASSES: LazyLock<CharClasses> = LazyLock::new(CharClasses::build);

/// GPT-2's reversible map from bytes to printable characters.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut n = 0;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        chars[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).expect("below 512")
        };
    }
    chars
}

/// The code point at `s[i..]` (valid UTF-8, `s[i]` a leading byte that is not ASCII) and its length.
#[inline(always)]
pub(crate) fn decode_multibyte(s: &[u8], i: usize) -> (u32, usize) {
    let b0 = s[i] as u32;
    if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (s[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) << 12) | ((s[i + 1] as u32 & 0x3F) << 6) | (s[i + 2] as u32 & 0x3F), 3)
    } else {
        let cp = ((b0 & 0x07) << 18)
            | ((s[i + 1] as u32 & 0x3F) << 12)
            | ((s[i + 2] as u32 & 0x3F) << 6)
            | (s[i + 3] as u32 & 0x3F);
        (cp, 4)
    }
}

/// The code point starting at byte `i` of valid UTF-8.
#[inline]
pub(crate) fn char_at(s: &[u8], i: usize) -> (u32, usize) {
    if s[i] < 0x80 { (s[i] as u32, 1) } else { decode_multibyte(s, i) }
}

/// The start of the character that ends at byte `end` (exclusive) of valid UTF-8.
#[inline]
pub(crate) fn char_start_before(s: &[u8], end: usize) -> usize {
    let mut i = end - 1;
    while s[i] & 0xC0 == 0x80 {
        i -= 1;
    }
    i
}

/// Merge table: pair of ids -> `(rank << 32) | new_id`, open addressing with linear probing.
pub(crate) struct PairMap {
    table: Vec<(u64, u64)>,
    shift: u32,
}

impl PairMap {
    const EMPTY: u64 = u64::MAX;

    pub(crate) fn new(pairs: &HashMap<(u32, u32), (u32, u32)>) -> PairMap {
        let size = (pairs.len() * 2).next_power_of_two().max(16);
        let mut map = PairMap { table: vec![(Self::EMPTY, 0); size], shift: 64 - size.trailing_zeros() };
        let mask = size - 1;
        for (&(a, b), &(rank, new_id)) in pairs {
            let key = Self::key(a, b);
            let mut i = map.slot(key);
            while map.table[i].0 != Self::EMPTY {
                i = (i + 1) & mask;
            }
            map.table[i] = (key, ((rank as u64) << 32) | new_id as u64);
        }
        map
    }

    #[inline(always)]
    fn key(a: u32, b: u32) -> u64 {
        ((a as u64) << 32) | b as u64
    }

    #[inline(always)]
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// `(rank << 32) | new_id`, or [`NO_MERGE`].
    #[inline(always)]
    pub(crate) fn get(&self, a: u32, b: u32) -> u64 {
        let key = Self::key(a, b);
        let mask = self.table.len() - 1;
        let mut i = self.slot(key);
        loop {
            let (k, v) = self.table[i];
            if k == key {
                return v;
            }
            if k == Self::EMPTY {
                return NO_MERGE;
            }
            i = (i + 1) & mask;
        }
    }
}

/// One added token, with the flags that decide where it matches.
#[derive(Debug, Clone)]
pub(crate) struct Added {
    pub(crate) content: Vec<u8>,
    pub(crate) id: u32,
    pub(crate) single_word: bool,
    pub(crate) lstrip: bool,
    pub(crate) rstrip: bool,
    /// Special, and the tokenizer encodes special tokens as text.
    pub(crate) skip: bool,
}

/// A set of added tokens, matched leftmost-longest like `tokenizers`' Aho-Corasick automaton.
#[derive(Debug)]
pub(crate) struct AddedSet {
    pub(crate) tokens: Vec<Added>,
    /// For each first byte, the tokens starting with it, longest first.
    by_first: Vec<Vec<u32>>,
    first: [bool; 256],
}

impl AddedSet {
    pub(crate) fn new(tokens: Vec<Added>) -> Option<AddedSet> {
        if tokens.is_empty() {
            return None;
        }
        let mut by_first = vec![Vec::new(); 256];
        let mut first = [false; 256];
        for (i, t) in tokens.iter().enumerate() {
            by_first[t.content[0] as usize].push(i as u32);
            first[t.content[0] as usize] = true;
        }
        for list in &mut by_first {
            list.sort_by_key(|&i| Reverse(tokens[i as usize].content.len()));
        }
        Some(AddedSet { tokens, by_first, first })
    }

    /// The longest token starting at `s[i..]`: (its length, its index).
    #[inline]
    fn match_at(&self, s: &[u8], i: usize) -> Option<(usize, usize)> {
        self.by_first[s[i] as usize]
            .iter()
            .map(|&t| t as usize)
            .find(|&t| s[i..].starts_with(&self.tokens[t].content))
            .map(|t| (self.tokens[t].content.len(), t))
    }
}

/// A bounded hash table from words (bytes) to their ids, with keys and values in two arenas, behind a
/// small direct-mapped table of short words that fits in the CPU's cache: a hit there reads one cache
/// line, where the arenas cost three scattered reads once rare words have made them large.
pub(crate) struct WordCache {
    hot: Box<[HotEntry]>,
    /// `(hash >> 32) << 32 | (entry index + 1)`; 0 is an empty slot.
    slots: Vec<u64>,
    entries: Vec<CacheEntry>,
    keys: Vec<u8>,
    vals: Vec<u32>,
}

#[derive(Clone, Copy)]
struct CacheEntry {
    hash: u64,
    key_off: u32,
    key_len: u32,
    val_off: u32,
    val_len: u32,
}

/// Words of at most this many bytes...
const HOT_KEY: usize = 22;
/// ...giving at most this many ids are kept in the hot table...
const HOT_IDS: usize = 8;
/// ...of this many entries (64 bytes each: half a megabyte).
const HOT_ENTRIES: usize = 1 << 13;

/// One word of the hot table, one cache line; `key_len` 0 is an empty entry (words are never empty).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct HotEntry {
    hash: u64,
    key_len: u8,
    n_ids: u8,
    key: [u8; HOT_KEY],
    ids: [u32; HOT_IDS],
}

const EMPTY_HOT: HotEntry = HotEntry { hash: 0, key_len: 0, n_ids: 0, key: [0; HOT_KEY], ids: [0; HOT_IDS] };

impl WordCache {
    const INITIAL_SLOTS: usize = 1 << 12;

    pub(crate) fn new() -> WordCache {
        WordCache {
            hot: vec![EMPTY_HOT; HOT_ENTRIES].into_boxed_slice(),
            slots: vec![0; Self::INITIAL_SLOTS],
            entries: Vec::new(),
            keys: Vec::new(),
            vals: Vec::new(),
        }
    }

    /// The first of the two entries (a set) where a word of this hash may be.
    #[inline(always)]
    fn hot_index(hash: u64) -> usize {
        (hash >> 17) as usize & (HOT_ENTRIES - 2)
    }

    #[inline]
    pub(crate) fn get(&mut self, word: &[u8], hash: u64) -> Option<&[u32]> {
        let h = Self::hot_index(hash);
        for way in [h, h + 1] {
            let e = &self.hot[way];
            if e.hash == hash && e.key_len as usize == word.len() && short_eq(&e.key, word) {
                return Some(&self.hot[way].ids[..e.n_ids as usize]);
            }
        }
        let found = self.get_cold(word, hash)?;
        let e = found as usize;
        let CacheEntry { val_off, val_len, .. } = self.entries[e];
        let ids = &self.vals[val_off as usize..(val_off + val_len) as usize];
        if word.len() <= HOT_KEY && ids.len() <= HOT_IDS {
            Self::put_hot(&mut self.hot, h, word, hash, ids);
        }
        Some(&self.vals[val_off as usize..(val_off + val_len) as usize])
    }

    /// Puts a word first in its set, the word that was first second.
    #[inline]
    fn put_hot(hot: &mut [HotEntry], h: usize, word: &[u8], hash: u64, ids: &[u32]) {
        hot[h + 1] = hot[h];
        Self::set_hot(&mut hot[h], word, hash, ids);
    }

    #[inline]
    fn set_hot(e: &mut HotEntry, word: &[u8], hash: u64, ids: &[u32]) {
        e.hash = hash;
        e.key_len = word.len() as u8;
        e.n_ids = ids.len() as u8;
        e.key[..word.len()].copy_from_slice(word);
        e.ids[..ids.len()].copy_from_slice(ids);
    }

    /// The entry of `word` in the arenas.
    #[inline]
    fn get_cold(&self, word: &[u8], hash: u64) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let tag = hash >> 32;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == tag {
                let k = slot as u32 - 1;
                let e = self.entries[k as usize];
                if &self.keys[e.key_off as usize..(e.key_off + e.key_len) as usize] == word {
                    return Some(k);
                }
            }
            i = (i + 1) & mask;
        }
    }

    pub(crate) fn insert(&mut self, word: &[u8], hash: u64, ids: &[u32]) {
        if word.len() <= HOT_KEY && ids.len() <= HOT_IDS {
            Self::put_hot(&mut self.hot, Self::hot_index(hash), word, hash, ids);
        }
        if self.entries.len() >= CACHE_MAX_ENTRIES || self.keys.len() + word.len() > CACHE_MAX_KEY_BYTES {
            // Start the arenas afresh; the hot table keeps the words in use.
            self.slots = vec![0; Self::INITIAL_SLOTS];
            self.entries.clear();
            self.keys.clear();
            self.vals.clear();
        }
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            let mut slots = vec![0; self.slots.len() * 2];
            for (k, e) in self.entries.iter().enumerate() {
                Self::place(&mut slots, e.hash, k);
            }
            self.slots = slots;
        }
        let entry = CacheEntry {
            hash,
            key_off: self.keys.len() as u32,
            key_len: word.len() as u32,
            val_off: self.vals.len() as u32,
            val_len: ids.len() as u32,
        };
        self.keys.extend_from_slice(word);
        self.vals.extend_from_slice(ids);
        self.entries.push(entry);
        Self::place(&mut self.slots, hash, self.entries.len() - 1);
    }

    fn place(slots: &mut [u64], hash: u64, entry: usize) {
        let mask = slots.len() - 1;
        let mut i = hash as usize & mask;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = ((hash >> 32) << 32) | (entry as u64 + 1);
    }
}

/// `key[..word.len()] == word` for a word of at most [`HOT_KEY`] bytes, with a few overlapping loads
/// rather than a call to `memcmp`.
#[inline(always)]
fn short_eq(key: &[u8; HOT_KEY], word: &[u8]) -> bool {
    let n = word.len();
    let load8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let load4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    if n >= 8 {
        load8(key, 0) == load8(word, 0)
            && load8(key, n - 8) == load8(word, n - 8)
            && (n <= 16 || load8(key, 8) == load8(word, 8))
    } else if n >= 4 {
        load4(key, 0) == load4(word, 0) && load4(key, n - 4) == load4(word, n - 4)
    } else {
        key[..n] == *word
    }
}

#[inline]
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0xF135_7AEA_2E62_A9C5;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K).rotate_left(26);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    h = (h ^ (h >> 29)).wrapping_mul(K);
    h ^ (h >> 32)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Word caches of this thread, one per `FastBpe` (by id), most recent last.
    static CACHES: RefCell<Vec<(u64, WordCache)>> = const { RefCell::new(Vec::new()) };
}

/// An exact, fast encoder for byte-level BPE tokenizers (GPT-2 and its kin). Build it with
/// [`FastBpe::from_tokenizer`]; it is `Send + Sync`, and [`FastBpe::encode`] may be called from many
/// threads at once (each thread keeps its own word cache).
pub struct FastBpe {
    id: u64,
    /// The token of each byte, or [`NO_ID`] (then the byte is dropped, as `tokenizers` does).
    byte_ids: [u32; 256],
    merges: PairMap,
    /// The token each merge rank makes.
    rank_new: Vec<u32>,
    /// Every merge makes a different token: the flat scan gives the priority queue's result.
    injective: bool,
    /// BPE's `ignore_merges`: a word that is a token is that token.
    ignore_merges: bool,
    whole_words: HashMap<Vec<u8>, u32>,
    add_prefix_space: bool,
    use_regex: bool,
    /// Added tokens matched in the raw text (`normalized: false`), then those matched in what is left.
    added_raw: Option<AddedSet>,
    added_normalized: Option<AddedSet>,
}

impl std::fmt::Debug for FastBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastBpe")
            .field("merges", &self.rank_new.len())
            .field("injective", &self.injective)
            .field("add_prefix_space", &self.add_prefix_space)
            .field("use_regex", &self.use_regex)
            .field("ignore_merges", &self.ignore_merges)
            .field("added_raw", &self.added_raw.as_ref().map_or(0, |s| s.tokens.len()))
            .field("added_normalized", &self.added_normalized.as_ref().map_or(0, |s| s.tokens.len()))
            .finish()
    }
}

impl Drop for FastBpe {
    fn drop(&mut self) {
        let id = self.id;
        let _ = CACHES.try_with(|c| {
            if let Ok(mut caches) = c.try_borrow_mut() {
                caches.retain(|(owner, _)| *owner != id);
            }
        });
    }
}

/// The merges of a BPE model, in rank order (the model's serialized form lists them so).
pub(crate) fn bpe_merges(bpe: &BPE) -> Option<Vec<(String, String)>> {
    let value = serde_json::to_value(bpe).ok()?;
    value
        .get("merges")?
        .as_array()?
        .iter()
        .map(|m| match m {
            serde_json::Value::Array(pair) if pair.len() == 2 => {
                Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
            }
            serde_json::Value::String(s) => {
                let (a, b) = s.split_once(' ')?;
                (!b.contains(' ')).then(|| (a.to_string(), b.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// `AddedVocabulary::find_matches`: splits `s` into `(start, end, Some(token id))` for the added
/// tokens and `(start, end, None)` for the text between them. Nothing for an empty `s`.
pub(crate) fn split_added(set: &AddedSet, s: &str, pieces: &mut Vec<(usize, usize, Option<u32>)>) {
    let bytes = s.as_bytes();
    let n = bytes.len();
    let mut start_offset = 0;
    let mut i = 0;
    while i < n {
        if !set.first[bytes[i] as usize] {
            i += 1;
            continue;
        }
        let Some((len, t)) = set.match_at(bytes, i) else {
            i += 1;
            continue;
        };
        let (mut start, mut stop) = (i, i + len);
        i = stop;
        let token = &set.tokens[t];
        if token.skip {
            continue;
        }
        if token.single_word {
            let start_space = start == 0 || !is_word_char(char_at(bytes, char_start_before(bytes, start)).0);
            let stop_space = stop == n || !is_word_char(char_at(bytes, stop).0);
            if !start_space || !stop_space {
                continue;
            }
        }
        if token.lstrip {
            let mut new_start = start;
            while new_start > 0 {
                let c = char_start_before(bytes, new_start);
                if !is_space_char(char_at(bytes, c).0) {
                    break;
                }
                new_start = c;
            }
            start = new_start.max(start_offset);
        }
        if token.rstrip {
            while stop < n {
                let (c, l) = char_at(bytes, stop);
                if !is_space_char(c) {
                    break;
                }
                stop += l;
            }
        }
        if start_offset < start {
            pieces.push((start_offset, start, None));
        }
        pieces.push((start, stop, Some(token.id)));
        start_offset = stop;
    }
    if start_offset != n {
        pieces.push((start_offset, n, None));
    }
}

#[inline]
pub(crate) fn is_word_char(cp: u32) -> bool {
    CHAR_CLASSES.get(cp) & WORD_FLAG != 0
}

#[inline]
pub(crate) fn is_space_char(cp: u32) -> bool {
    CHAR_CLASSES.get(cp) & CLS_MASK == CLS_SPACE
}

impl FastBpe {
    /// An encoder giving exactly `t.encode_fast(text, false)`'s ids, or `None` when `t` is not one this
    /// encoder reproduces. Supported: no normalizer, no truncation or padding; pre-tokenizer `ByteLevel`
    /// (any `add_prefix_space`, `use_regex`); model BPE without dropout, `continuing_subword_prefix` or
    /// `end_of_word_suffix` (`unk_token`/`byte_fallback` only if every byte has a token, when they can never
    /// apply; `ignore_merges` supported); added tokens with any `single_word`/`lstrip`/`rstrip`/
    /// `normalized`/`special` flags, and `encode_special_tokens`. Any post-processor (with
    /// `add_special_tokens = false` none adds ids).
    pub fn from_tokenizer(t: &HfTokenizer) -> Option<FastBpe> {
        if t.get_normalizer().is_some() || t.get_truncation().is_some() || t.get_padding().is_some() {
            return None;
        }
        let (add_prefix_space, use_regex) = match t.get_pre_tokenizer()? {
            PreTokenizerWrapper::ByteLevel(b) => (b.add_prefix_space, b.use_regex),
            _ => return None,
        };
        let ModelWrapper::BPE(bpe) = t.get_model() else { return None };
        let nonempty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        if bpe.dropout.is_some_and(|d| d != 0.0)
            || nonempty(&bpe.continuing_subword_prefix)
            || nonempty(&bpe.end_of_word_suffix)
        {
            return None;
        }

        let vocab = bpe.get_vocab();
        let chars = byte_chars();
        let mut byte_ids = [NO_ID; 256];
        for (b, c) in chars.iter().enumerate() {
            if let Some(&id) = vocab.get(c.to_string().as_str()) {
                byte_ids[b] = id;
            }
        }
        if byte_ids.contains(&NO_ID) && (bpe.unk_token.is_some() || bpe.byte_fallback) {
            return None;
        }

        let merges = bpe_merges(bpe)?;
        let mut pairs: HashMap<(u32, u32), (u32, u32)> = HashMap::with_capacity(merges.len());
        let mut rank_new = Vec::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let new_id = *vocab.get(format!("{a}{b}").as_str())?;
            pairs.insert((*vocab.get(a.as_str())?, *vocab.get(b.as_str())?), (rank as u32, new_id));
            rank_new.push(new_id);
        }
        let injective = pairs.values().map(|&(_, new_id)| new_id).collect::<HashSet<_>>().len() == pairs.len();

        let char_bytes: HashMap<char, u8> = chars.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let whole_words = if bpe.ignore_merges {
            vocab
                .iter()
                .filter_map(|(token, &id)| {
                    token.chars().map(|c| char_bytes.get(&c).copied()).collect::<Option<Vec<u8>>>().map(|b| (b, id))
                })
                .collect()
        } else {
            HashMap::new()
        };

        let skip_special = t.get_encode_special_tokens();
        let (mut raw, mut normalized) = (Vec::new(), Vec::new());
        for (id, token) in t.get_added_tokens_decoder() {
            if token.content.is_empty() {
                continue;
            }
            let added = Added {
                content: token.content.as_bytes().to_vec(),
                id,
                single_word: token.single_word,
                lstrip: token.lstrip,
                rstrip: token.rstrip,
                skip: token.special && skip_special,
            };
            if token.normalized { normalized.push(added) } else { raw.push(added) }
        }

        Some(FastBpe {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            byte_ids,
            merges: PairMap::new(&pairs),
            rank_new,
            injective,
            ignore_merges: bpe.ignore_merges,
            whole_words,
            add_prefix_space,
            use_regex,
            added_raw: AddedSet::new(raw),
            added_normalized: AddedSet::new(normalized),
        })
    }

    /// The ids of `text`, as `tokenizer.encode_fast(text, false)` gives them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 4);
        self.encode_into(text, &mut out);
        out
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        self.with_cache(|cache| {
            self.around_added(self.added_raw.as_ref(), text, cache, out, Self::encode_after_raw_added)
        })
    }

    /// Splits `text` around the added tokens of `set` (if any): their ids go to `out` as they are, the
    /// text between them through `encode`.
    fn around_added(
        &self,
        set: Option<&AddedSet>,
        text: &str,
        cache: &mut WordCache,
        out: &mut Vec<u32>,
        encode: fn(&Self, &str, &mut WordCache, &mut Vec<u32>),
    ) {
        let Some(set) = set else { return encode(self, text, cache, out) };
        let mut pieces = Vec::new();
        split_added(set, text, &mut pieces);
        for (start, end, id) in pieces {
            match id {
                Some(id) => out.push(id),
                None => encode(self, &text[start..end], cache, out),
            }
        }
    }

    /// The ids of each text (one thread; callers parallelise).
    pub fn encode_batch(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        texts.iter().map(|t| self.encode(t)).collect()
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut WordCache) -> R) -> R {
        CACHES.with(|c| {
            let mut caches = c.borrow_mut();
            let i = match caches.iter().position(|(owner, _)| *owner == self.id) {
                Some(i) => i,
                None => {
                    if caches.len() >= CACHES_PER_THREAD {
                        caches.remove(0);
                    }
                    caches.push((self.id, WordCache::new()));
                    caches.len() - 1
                }
            };
            f(&mut caches[i].1)
        })
    }

    /// Stage 2 of added-token extraction: the `normalized` tokens, in a piece with no raw ones.
    fn encode_after_raw_added(&self, text: &str, cache: &mut WordCache, out: &mut Vec<u32>) {
        self.around_added(self.added_normalized.as_ref(), text, cache, out, Self::encode_piece)
    }

    /// One piece between added tokens: the `ByteLevel` pre-tokenizer, then BPE on each word.
    fn encode_piece(&self, s: &str, cache: &mut WordCache, out: &mut Vec<u32>) {
        if s.is_empty() {
            return;
        }
        if self.add_prefix_space && !s.starts_with(' ') {
            let mut spaced = String::with_capacity(s.len() + 1);
            spaced.push(' ');
            spaced.push_str(s);
            self.encode_split(spaced.as_bytes(), cache, out);
        } else {
            self.encode_split(s.as_bytes(), cache, out);
        }
    }

    fn encode_split(&self, s: &[u8], cache: &mut WordCache, out: &mut Vec<u32>) {
        if self.use_regex {
            self.pretokenize(s, |w| self.word(w, cache, out));
        } else {
            self.word(s, cache, out);
        }
    }

    /// Splits `s` as GPT-2's pattern
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` does (leftmost-first,
    /// every character is matched), calling `emit` with each word.
    #[inline]
    fn pretokenize(&self, s: &[u8], emit: impl FnMut(&[u8])) {
        super::pretokenize::gpt2(s, emit)
    }

    /// Appends the ids of one pre-tokenized word (raw bytes).
    #[inline]
    fn word(&self, w: &[u8], cache: &mut WordCache, out: &mut Vec<u32>) {
        if w.len() == 1 {
            let id = self.byte_ids[w[0] as usize];
            if id != NO_ID {
                out.push(id);
            }
            return;
        }
        if self.ignore_merges
            && let Some(&id) = self.whole_words.get(w)
        {
            out.push(id);
            return;
        }
        if w.len() > MAX_CACHED_LEN {
            self.bpe(w, out);
            return;
        }
        let hash = hash_bytes(w);
        if let Some(ids) = cache.get(w, hash) {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        self.bpe(w, out);
        cache.insert(w, hash, &out[start..]);
    }

    fn bpe(&self, w: &[u8], out: &mut Vec<u32>) {
        if self.injective && w.len() <= SMALL_WORD { self.bpe_small(w, out) } else { self.bpe_queue(w, out) }
    }

    /// Merges by repeatedly taking the leftmost pair of lowest rank. Equal to [`Self::bpe_queue`] when
    /// merges are injective (pair <-> new token), which the caller checks.
    fn bpe_small(&self, w: &[u8], out: &mut Vec<u32>) {
        let mut ids = [0u32; SMALL_WORD];
        let mut n = 0;
        for &b in w {
            let id = self.byte_ids[b as usize];
            if id != NO_ID {
                ids[n] = id;
                n += 1;
            }
        }
        if n < 2 {
            out.extend_from_slice(&ids[..n]);
            return;
        }
        // merge[k]: the merge of (ids[k], ids[k + 1]), `(rank << 32) | new_id`.
        let mut merge = [NO_MERGE; SMALL_WORD];
        for k in 0..n - 1 {
            merge[k] = self.merges.get(ids[k], ids[k + 1]);
        }
        loop {
            let mut best = NO_MERGE;
            let mut at = 0;
            for (k, &m) in merge[..n - 1].iter().enumerate() {
                if m < best {
                    best = m;
                    at = k;
                }
            }
            if best == NO_MERGE {
                break;
            }
            ids[at] = best as u32;
            ids.copy_within(at + 2..n, at + 1);
            if at + 2 < n {
                merge.copy_within(at + 2..n - 1, at + 1);
            }
            n -= 1;
            merge[at] = if at + 1 < n { self.merges.get(ids[at], ids[at + 1]) } else { NO_MERGE };
            if at > 0 {
                merge[at - 1] = self.merges.get(ids[at - 1], ids[at]);
            }
        }
        out.extend_from_slice(&ids[..n]);
    }

    /// A replica of `tokenizers`' `Word::merge_all` (priority queue on (rank, position), stale entries
    /// recognised by the token they would make), for long words and non-injective merges.
    fn bpe_queue(&self, w: &[u8], out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Symbol {
            id: u32,
            prev: i32,
            next: i32,
            alive: bool,
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(w.len());
        for &b in w {
            let id = self.byte_ids[b as usize];
            if id == NO_ID {
                continue;
            }
            let k = symbols.len() as i32;
            if let Some(last) = symbols.last_mut() {
                last.next = k;
            }
            symbols.push(Symbol { id, prev: k - 1, next: -1, alive: true });
        }
        let key = |m: u64, pos: usize| Reverse((m & 0xFFFF_FFFF_0000_0000) | pos as u64);
        let mut queue = BinaryHeap::with_capacity(symbols.len());
        for k in 1..symbols.len() {
            let m = self.merges.get(symbols[k - 1].id, symbols[k].id);
            if m != NO_MERGE {
                queue.push(key(m, k - 1));
            }
        }
        while let Some(Reverse(top)) = queue.pop() {
            let pos = (top & 0xFFFF_FFFF) as usize;
            let new_id = self.rank_new[(top >> 32) as usize];
            if !symbols[pos].alive || symbols[pos].next < 0 {
                continue;
            }
            let next = symbols[pos].next as usize;
            let right = symbols[next];
            let m = self.merges.get(symbols[pos].id, right.id);
            if m == NO_MERGE || m as u32 != new_id {
                continue;
            }
            symbols[pos].id = new_id;
            symbols[pos].next = right.next;
            symbols[next].alive = false;
            if right.next >= 0 {
                symbols[right.next as usize].prev = pos as i32;
            }
            let current = symbols[pos];
            if current.prev >= 0 {
                let m = self.merges.get(symbols[current.prev as usize].id, current.id);
                if m != NO_MERGE {
                    queue.push(key(m, current.prev as usize));
                }
            }
            if current.next >= 0 {
                let m = self.merges.get(current.id, symbols[current.next as usize].id);
                if m != NO_MERGE {
                    queue.push(key(m, pos));
                }
            }
        }
        out.extend(symbols.iter().filter(|s| s.alive).map(|s| s.id));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Instant;

    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    use super::*;
    use crate::tokenize::Tokenizer;

    fn gpt2() -> HfTokenizer {
        Tokenizer::gpt2().unwrap().hf().clone()
    }

    fn reference(t: &HfTokenizer, text: &str) -> Vec<u32> {
        t.encode_fast(text, false).unwrap().get_ids().to_vec()
    }

    fn corpus_docs() -> Vec<String> {
        let austen = String::from_utf8(zstd::decode_all(crate::data::AUSTEN_JSONL_ZST).unwrap()).unwrap();
        let mut kjv = String::new();
        flate2::read::GzDecoder::new(crate::data::KJV_JSONL_GZ).read_to_string(&mut kjv).unwrap();
        austen
            .lines()
            .chain(kjv.lines())
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["text"].as_str().unwrap().to_string()
            })
            .collect()
    }

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const FRAGMENTS: &[&str] = &[
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "'",
        "'s",
        "'S",
        "'re",
        "'ll",
        "’",
        "<|endoftext|>",
        "a",
        "the",
        " the",
        "1",
        "2024",
        "!",
        "...",
        "é",
        "\u{301}",
        "\u{200d}",
        "🏽",
        "🇫🇷",
        "日本",
        "ـ",
        "x'",
        "\u{2028}",
    ];
    const RANGES: &[(u32, u32)] = &[
        (0x20, 0x7E),
        (0x20, 0x7E),
        (0x20, 0x7E),
        (0x00, 0x1F),
        (0x7F, 0xFF),
        (0x100, 0x24F),
        (0x300, 0x36F),
        (0x370, 0x4FF),
        (0x590, 0x6FF),
        (0x900, 0x97F),
        (0x1680, 0x1680),
        (0x2000, 0x206F),
        (0x2150, 0x218F),
        (0x3000, 0x303F),
        (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3),
        (0xE000, 0xF8FF),
        (0xFE00, 0xFE0F),
        (0xFF00, 0xFFEF),
        (0x1F1E6, 0x1F1FF),
        (0x1F300, 0x1FAFF),
        (0x10000, 0x10FFFF),
    ];

    fn random_strings(count: usize, seed: u64) -> Vec<String> {
        let mut rng = Lcg(seed);
        (0..count)
            .map(|_| {
                let len = 1 + rng.below(24);
                let mut s = String::new();
                for _ in 0..len {
                    if rng.below(4) == 0 {
                        s.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
                    } else {
                        let (lo, hi) = RANGES[rng.below(RANGES.len())];
                        let cp = lo + (rng.next() % (hi - lo + 1) as u64) as u32;
                        s.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    }
                }
                s
            })
            .collect()
    }

    fn torture() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            " ",
            "  ",
            "   ",
            "\t",
            "\t\t",
            "\n",
            "\n\n\n",
            "\r\n",
            "a\r\nb",
            "a \r\n b",
            "\u{a0}",
            "a\u{a0}b",
            "a \u{a0} b",
            "\u{3000}日本\u{3000}",
            "hello ",
            "hello  ",
            "hello   world",
            "hello \tworld",
            "hello\t world",
            " hello",
            "  hello",
            "hello world  ",
            "x \n y",
            "end with tabs\t\t",
            "it's I'M you're we've they'll he'd 'S 'T 'RE 'Ve 'LL 'D",
            "'s",
            "''s",
            "!'s",
            "a'",
            "' ",
            " 's",
            "don’t ’s “quoted” ‘single’",
            "abc123def 3.14 1,000,000 ٣٤٥ ½ Ⅻ ⑦ x²",
            "日本語のテキスト、中文文本。한국어 텍스트",
            "مرحبا بالعالم، هذا نص عربي",
            "हिन्दी में लिखा गया पाठ क्षत्रिय",
            "👨‍👩‍👧‍👦 👍🏽 🇫🇷🇯🇵 🏳️‍🌈 ❤️",
            "<|endoftext|>",
            "<|endoftext|><|endoftext|>",
            "a<|endoftext|>b",
            " <|endoftext|> ",
            "<|endoftext|>text",
            "text<|endoftext|>",
            "<|endoftext|",
            "<|endoftext|>> <<|endoftext|>",
            "\u{0}\u{1}\u{7}\u{1b}[31mred\u{1b}[0m\u{7f}\u{85}\u{9f}",
            "\u{feff}bom \u{200b}zero\u{200b}width \u{2028}line\u{2029}para",
            "Ǆǅǆ ǈ ʰʱ ˆ 々 〆 ᾈ",
            "e\u{301}\u{302}\u{303} a\u{20dd}",
            "https://example.com/path?q=1&r=2#frag",
            "    def f(x):\n        return x  # comment\n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(" ".repeat(5000) + "x");
        v.push("\n".repeat(3000));
        v.push("a".repeat(3000));
        v.push("ab".repeat(1500) + " " + &"9".repeat(700));
        v.push("😀".repeat(300));
        v.push("supercalifragilisticexpialidocious".repeat(5));
        v
    }

    fn assert_parity(t: &HfTokenizer, fast: &FastBpe, texts: &[String]) {
        for text in texts {
            assert_eq!(fast.encode(text), reference(t, text), "text {text:?}");
        }
    }

    #[test]
    fn gpt2_is_supported_and_injective() {
        let fast = FastBpe::from_tokenizer(&gpt2()).unwrap();
        assert!(fast.injective, "{fast:?}");
        assert_eq!(fast.encode("Hello world"), vec![15496, 995]);
        assert_eq!(fast.encode("<|endoftext|>"), vec![50256]);
        assert!(fast.encode("").is_empty());
    }

    #[test]
    fn corpus_parity() {
        let t = gpt2();
        let fast = FastBpe::from_tokenizer(&t).unwrap();
        let docs = corpus_docs();
        assert!(docs.len() > 1000);
        for (i, doc) in docs.iter().enumerate() {
            assert_eq!(fast.encode(doc), reference(&t, doc), "document {i}");
        }
    }

    #[test]
    fn torture_parity() {
        let t = gpt2();
        let fast = FastBpe::from_tokenizer(&t).unwrap();
        assert_parity(&t, &fast, &torture());
        assert_parity(&t, &fast, &random_strings(4000, 7));
    }

    #[test]
    fn pre_tokenizer_splits_match() {
        let fast = FastBpe::from_tokenizer(&gpt2()).unwrap();
        let byte_level = ByteLevel::default().add_prefix_space(false);
        let check = |text: &str| {
            let mut pre: PreTokenizedString = text.into();
            byte_level.pre_tokenize(&mut pre).unwrap();
            let expected: Vec<(usize, usize)> = pre
                .get_splits(OffsetReferential::Original, OffsetType::Byte)
                .into_iter()
                .map(|(_, offsets, _)| offsets)
                .collect();
            let mut got = Vec::new();
            let base = text.as_ptr() as usize;
            fast.pretokenize(text.as_bytes(), |w| {
                let start = w.as_ptr() as usize - base;
                got.push((start, start + w.len()));
            });
            assert_eq!(got, expected, "text {text:?}");
        };
        for text in torture().iter().chain(random_strings(2000, 11).iter()) {
            check(text);
        }
        // Every code point of planes 0-3 and 14, next to letters, digits, spaces and punctuation, so that
        // the splits reveal its class.
        let chars: Vec<char> = (0..0x4_0000u32).chain(0xE_0000..0xE_0200).filter_map(char::from_u32).collect();
        for chunk in chars.chunks(1024) {
            let text: String = chunk.iter().map(|c| format!("a{c}1{c} {c}!{c}\u{a0}{c}\n")).collect();
            check(&text);
        }
    }

    #[test]
    fn small_and_queue_merges_agree() {
        let fast = FastBpe::from_tokenizer(&gpt2()).unwrap();
        for text in random_strings(1000, 3).iter().chain(torture().iter()) {
            fast.pretokenize(text.as_bytes(), |w| {
                if w.len() <= SMALL_WORD {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    fast.bpe_small(w, &mut a);
                    fast.bpe_queue(w, &mut b);
                    assert_eq!(a, b, "word {:?}", String::from_utf8_lossy(w));
                }
            });
        }
    }

    #[test]
    fn variants_parity() {
        let mut texts = torture();
        texts.extend(random_strings(500, 5));
        texts.extend(
            [
                "hello world hello",
                "xhello hello_ hello, (hello)",
                "a [X] b  [X]  c[X]d",
                " \t[X]\t ",
                "[X][X] [X]",
                "hello<|endoftext|>hello",
                "word wor sword worx",
                "<|endoftext|>x <|endoftext|>",
            ]
            .iter()
            .map(|s| s.to_string()),
        );

        let mut prefix = gpt2();
        prefix.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(true)));
        let fast = FastBpe::from_tokenizer(&prefix).unwrap();
        assert!(fast.add_prefix_space);
        assert_parity(&prefix, &fast, &texts);

        let mut no_regex = gpt2();
        no_regex.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).use_regex(false)));
        let fast = FastBpe::from_tokenizer(&no_regex).unwrap();
        assert_parity(&no_regex, &fast, &texts[..texts.len().min(200)]);

        let mut added = gpt2();
        added
            .add_tokens([
                AddedToken::from("hello", false).single_word(true),
                AddedToken::from("[X]", true).lstrip(true).rstrip(true),
                AddedToken::from("wor", false),
                AddedToken::from("endof", false),
                AddedToken::from("é", false).normalized(false).rstrip(true),
            ])
            .unwrap();
        let fast = FastBpe::from_tokenizer(&added).unwrap();
        assert_parity(&added, &fast, &texts);

        added.set_encode_special_tokens(true);
        let fast = FastBpe::from_tokenizer(&added).unwrap();
        assert_parity(&added, &fast, &texts);
    }

    #[test]
    fn unsupported_tokenizers_give_none() {
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::{BertNormalizer, Lowercase};
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::pre_tokenizers::sequence::Sequence;

        let mut bert = HfTokenizer::new(WordPiece::default());
        bert.with_normalizer(Some(BertNormalizer::default())).unwrap();
        bert.with_pre_tokenizer(Some(BertPreTokenizer));
        assert!(FastBpe::from_tokenizer(&bert).is_none());

        let mut lower = gpt2();
        lower.with_normalizer(Some(Lowercase)).unwrap();
        assert!(FastBpe::from_tokenizer(&lower).is_none());

        let mut sequence = gpt2();
        sequence.with_pre_tokenizer(Some(Sequence::new(vec![ByteLevel::default().add_prefix_space(false).into()])));
        assert!(FastBpe::from_tokenizer(&sequence).is_none());

        let mut bare = gpt2();
        bare.with_pre_tokenizer(None::<ByteLevel>);
        assert!(FastBpe::from_tokenizer(&bare).is_none());
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FastBpe>();
        let t = gpt2();
        let fast = FastBpe::from_tokenizer(&t).unwrap();
        let texts = random_strings(300, 9);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| assert_parity(&t, &fast, &texts));
            }
        });
    }

    #[test]
    #[ignore = "timing; run with --release --ignored --nocapture"]
    fn throughput() {
        let t = gpt2();
        let fast = FastBpe::from_tokenizer(&t).unwrap();
        let docs = corpus_docs();
        let bytes: usize = docs.iter().map(|d| d.len()).sum();
        let time = |f: &dyn Fn() -> usize| {
            let start = Instant::now();
            let tokens = f();
            (tokens, start.elapsed().as_secs_f64())
        };
        let reference_pass = || docs.iter().map(|d| reference(&t, d).len()).sum::<usize>();
        let fast_pass = || docs.iter().map(|d| fast.encode(d).len()).sum::<usize>();
        let start = Instant::now();
        let built = FastBpe::from_tokenizer(&t).unwrap();
        println!("FastBpe::from_tokenizer: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
        drop(built);
        println!("corpus: {} documents, {:.1} MB", docs.len(), bytes as f64 / 1e6);
        for pass in ["cold", "warm"] {
            let (n_ref, s_ref) = time(&reference_pass);
            let (n_fast, s_fast) = time(&fast_pass);
            assert_eq!(n_ref, n_fast);
            let (r_ref, r_fast) = (n_ref as f64 / s_ref, n_fast as f64 / s_fast);
            println!(
                "{pass} cache: tokenizers encode_fast {:.2} M tokens/s ({s_ref:.2} s), FastBpe {:.2} M tokens/s \
                 ({s_fast:.2} s): {:.1}x",
                r_ref / 1e6,
                r_fast / 1e6,
                r_fast / r_ref
            );
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
        let start = Instant::now();
        let total: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    let docs = &docs;
                    let fast = &fast;
                    s.spawn(move || docs.iter().skip(k).step_by(threads).map(|d| fast.encode(d).len()).sum::<usize>())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "FastBpe shared by {threads} threads (fresh thread caches): {:.2} M tokens/s",
            total as f64 / secs / 1e6
        );
    }
}
