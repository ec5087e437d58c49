//! saekit's exact encoder for the rest of the BPE family and WordPiece: a `tokenizer.json`'s stages
//! rebuilt as plain string work (added tokens → normalizer → pre-tokenizer → model), each reproducing
//! the `tokenizers` crate's semantics, with a per-thread word cache in front of the model.
//!
//! [`Pipeline::from_tokenizer`] decides what is supported: normalizers of [`super::normalize`],
//! pre-tokenizers of [`super::pretokenize`], and the models
//! - byte-level BPE (a `ByteLevel` pre-tokenizer last): symbols are bytes, as in [`super::bpe::FastBpe`];
//! - character BPE (SentencePiece style): symbols are characters, unknown ones `<0xXX>` byte tokens
//!   (`byte_fallback`) or the unknown token (`fuse_unk` joins neighbours);
//! - WordPiece: greedy longest match with `continuing_subword_prefix`, `max_input_chars_per_word`, unk.
//!
//! A character BPE word that misses the cache is cut wherever no token of the vocabulary spans two
//! neighbouring characters (Gemma/Llama-2 style, where spaces become `▁` and nothing splits, a whole
//! text is one word), so that merging stays exact while the pieces are short and cacheable.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::fxhash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokenizers::{Model as _, NormalizedString, Normalizer as _, Tokenizer as HfTokenizer};

use super::bpe::{
    Added, AddedSet, MAX_CACHED_LEN, NO_ID, NO_MERGE, PairMap, WordCache, byte_chars, hash_bytes, split_added,
};
use super::normalize::Normalizer;
use super::pretokenize::PreTokenizer;

/// Words of at most this many symbols are merged with the flat scan (when merges are injective).
const SMALL_WORD: usize = 64;
/// How many `Pipeline`s one thread keeps caches for.
const CACHES_PER_THREAD: usize = 4;

static NEXT_ID: AtomicU64 = AtomicU64::new(1 << 40);

/// One pipeline's caches on one thread: words, and raw chunks (when [`Pipeline::chunked`]).
type Caches = Box<(WordCache, WordCache)>;

thread_local! {
    /// Per pipeline, by id.
    static CACHES: RefCell<Vec<(u64, Caches)>> = const { RefCell::new(Vec::new()) };
}

/// The merges of a BPE model as ids.
struct Merges {
    pairs: PairMap,
    rank_new: Vec<u32>,
    injective: bool,
}

impl Merges {
    fn merge(&self, ids: &mut Vec<u32>) {
        if ids.len() < 2 {
            return;
        }
        if self.injective && ids.len() <= SMALL_WORD { self.merge_small(ids) } else { self.merge_queue(ids) }
    }

    /// Repeatedly merges the leftmost pair of lowest rank (equal to the queue when merges are injective).
    fn merge_small(&self, ids: &mut Vec<u32>) {
        let mut n = ids.len();
        let mut merge = [NO_MERGE; SMALL_WORD];
        for k in 0..n - 1 {
            merge[k] = self.pairs.get(ids[k], ids[k + 1]);
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
            merge[at] = if at + 1 < n { self.pairs.get(ids[at], ids[at + 1]) } else { NO_MERGE };
            if at > 0 {
                merge[at - 1] = self.pairs.get(ids[at - 1], ids[at]);
            }
            if n < 2 {
                break;
            }
        }
        ids.truncate(n);
    }

    /// `tokenizers`' `Word::merge_all`: a priority queue on (rank, position), stale entries recognised by
    /// the token they would make.
    fn merge_queue(&self, ids: &mut Vec<u32>) {
        let n = ids.len();
        let mut prev: Vec<i32> = (0..n as i32).map(|k| k - 1).collect();
        let mut next: Vec<i32> = (1..=n as i32).map(|k| if k == n as i32 { -1 } else { k }).collect();
        let mut alive = vec![true; n];
        let key = |m: u64, pos: usize| Reverse((m & 0xFFFF_FFFF_0000_0000) | pos as u64);
        let mut queue = BinaryHeap::with_capacity(n);
        for k in 1..n {
            let m = self.pairs.get(ids[k - 1], ids[k]);
            if m != NO_MERGE {
                queue.push(key(m, k - 1));
            }
        }
        while let Some(Reverse(top)) = queue.pop() {
            let pos = (top & 0xFFFF_FFFF) as usize;
            let new_id = self.rank_new[(top >> 32) as usize];
            if !alive[pos] || next[pos] < 0 {
                continue;
            }
            let right = next[pos] as usize;
            let m = self.pairs.get(ids[pos], ids[right]);
            if m == NO_MERGE || m as u32 != new_id {
                continue;
            }
            ids[pos] = new_id;
            next[pos] = next[right];
            alive[right] = false;
            if next[right] >= 0 {
                prev[next[right] as usize] = pos as i32;
            }
            if prev[pos] >= 0 {
                let p = prev[pos] as usize;
                let m = self.pairs.get(ids[p], ids[pos]);
                if m != NO_MERGE {
                    queue.push(key(m, p));
                }
            }
            if next[pos] >= 0 {
                let m = self.pairs.get(ids[pos], ids[next[pos] as usize]);
                if m != NO_MERGE {
                    queue.push(key(m, pos));
                }
            }
        }
        let mut w = 0;
        for k in 0..n {
            if alive[k] {
                ids[w] = ids[k];
                w += 1;
            }
        }
        ids.truncate(w);
    }
}

/// Where a character BPE word may be cut into pieces that merge independently: between two characters
/// that are never neighbours inside a token (no merge can then join across), where neither side's
/// symbols could merge or fuse otherwise (byte-fallback and unknown tokens take part in no merge, and
/// no two unknown tokens are fused there). Pieces are short and repeat, so the word cache holds them.
struct Cuts {
    /// Bit `b` of `ascii[a]`: `a` is followed by `b` inside some token.
    ascii: [u128; 128],
    /// The same for pairs with a character outside ASCII.
    pairs: FxHashSet<(char, char)>,
    /// Byte-fallback and unknown tokens are part of no merge.
    inert_unknown: bool,
    /// Unknown characters may become `unk` tokens that fuse with their neighbours.
    fusing_unk: bool,
}

impl Cuts {
    fn new(vocab: &HashMap<String, u32>, merge_parts: &HashSet<u32>, inert: &[u32], fusing_unk: bool) -> Cuts {
        let mut cuts = Cuts {
            ascii: [0; 128],
            pairs: FxHashSet::default(),
            inert_unknown: !inert.iter().any(|id| merge_parts.contains(id)),
            fusing_unk,
        };
        for token in vocab.keys() {
            let mut prev: Option<char> = None;
            for c in token.chars() {
                if let Some(p) = prev {
                    if p.is_ascii() && c.is_ascii() {
                        cuts.ascii[p as usize] |= 1u128 << (c as u32);
                    } else {
                        cuts.pairs.insert((p, c));
                    }
                }
                prev = Some(c);
            }
        }
        cuts
    }

    /// Whether the word may be cut between `a` and `b`.
    #[inline]
    fn between(&self, bpe: &Bpe, a: char, b: char) -> bool {
        let joined = if a.is_ascii() && b.is_ascii() {
            self.ascii[a as usize] & (1u128 << (b as u32)) != 0
        } else {
            self.pairs.contains(&(a, b))
        };
        if joined {
            return false;
        }
        let (known_a, known_b) = (bpe.char_id(a) != NO_ID, bpe.char_id(b) != NO_ID);
        (known_a && known_b) || (self.inert_unknown && (!self.fusing_unk || known_a || known_b))
    }
}

struct Bpe {
    byte_level: bool,
    /// Byte-level: the token of each byte.
    byte_ids: [u32; 256],
    /// Character BPE: the token of each character.
    char_ids: FxHashMap<char, u32>,
    ascii_ids: [u32; 128],
    /// `byte_fallback`: the `<0xXX>` tokens (NO_ID where missing).
    fallback: Option<[u32; 256]>,
    unk: Option<u32>,
    fuse_unk: bool,
    merges: Merges,
    /// `ignore_merges`: a word that is a token is that token.
    whole: Option<FxHashMap<Vec<u8>, u32>>,
    cuts: Option<Cuts>,
}

impl Bpe {
    #[inline]
    fn char_id(&self, c: char) -> u32 {
        if (c as u32) < 128 { self.ascii_ids[c as usize] } else { self.char_ids.get(&c).copied().unwrap_or(NO_ID) }
    }

    /// The initial symbols of `w`, as `BPE::merge_word` makes them.
    fn symbols(&self, w: &str, ids: &mut Vec<u32>) {
        ids.clear();
        if self.byte_level {
            ids.extend(w.bytes().map(|b| self.byte_ids[b as usize]).filter(|&id| id != NO_ID));
            return;
        }
        let mut unk: Option<u32> = None;
        for c in w.chars() {
            let id = self.char_id(c);
            if id != NO_ID {
                if let Some(u) = unk.take() {
                    ids.push(u);
                }
                ids.push(id);
                continue;
            }
            if let Some(fb) = &self.fallback {
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                if bytes.iter().all(|&b| fb[b as usize] != NO_ID) {
                    ids.extend(bytes.iter().map(|&b| fb[b as usize]));
                    continue;
                }
            }
            if let Some(unk_id) = self.unk {
                if let Some(u) = unk.take()
                    && !self.fuse_unk
                {
                    ids.push(u);
                }
                unk = Some(unk_id);
            }
        }
        if let Some(u) = unk {
            ids.push(u);
        }
    }

    fn bpe(&self, w: &str, scratch: &mut Vec<u32>, out: &mut Vec<u32>) {
        self.symbols(w, scratch);
        self.merges.merge(scratch);
        out.extend_from_slice(scratch);
    }
}

struct WordPiece {
    vocab: FxHashMap<Vec<u8>, u32>,
    /// Tokens that start with the continuing prefix, by what follows it.
    continuing: FxHashMap<Vec<u8>, u32>,
    /// The longest key of `vocab` and of `continuing`, in bytes: no match is tried beyond them.
    longest: usize,
    longest_continuing: usize,
    unk: u32,
    max_chars: usize,
}

impl WordPiece {
    fn tokenize(&self, w: &str, out: &mut Vec<u32>) {
        if w.chars().count() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let b = w.as_bytes();
        let start_len = out.len();
        let mut start = 0;
        while start < b.len() {
            let (map, longest) =
                if start == 0 { (&self.vocab, self.longest) } else { (&self.continuing, self.longest_continuing) };
            let mut end = b.len();
            if end - start > longest {
                end = start + longest;
                while end > start && b[end] & 0xC0 == 0x80 {
                    end -= 1;
                }
            }
            let mut found = None;
            while start < end {
                if let Some(&id) = map.get(&b[start..end]) {
                    found = Some(id);
                    break;
                }
                end -= 1;
                while end > start && b[end] & 0xC0 == 0x80 {
                    end -= 1;
                }
            }
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(start_len);
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

enum Model {
    Bpe(Box<Bpe>),
    WordPiece(WordPiece),
}

/// saekit's exact encoder for BPE (byte-level or with byte fallback) and WordPiece tokenizers with any
/// supported normalizer and pre-tokenizer. `Send + Sync`; each thread keeps its own word cache.
pub struct Pipeline {
    id: u64,
    kind: &'static str,
    normalizer: Normalizer,
    pre: PreTokenizer,
    model: Model,
    added_raw: Option<AddedSet>,
    added_normalized: Option<AddedSet>,
    /// The ids of a text are those of its chunks between ASCII spaces, encoded alone: the first
    /// pre-tokenizer step drops whitespace, every normalizer step works character by character
    /// (leaving ' ' alone and nothing composing across it; `Strip` only last), and no normalized added
    /// token holds a space. Chunks repeat, so their ids are cached before any normalizing.
    chunked: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("kind", &self.kind)
            .field("normalizer", &self.normalizer)
            .field("pre_tokenizer", &self.pre)
            .finish()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let id = self.id;
        let _ = CACHES.try_with(|c| {
            if let Ok(mut caches) = c.try_borrow_mut() {
                caches.retain(|(owner, _)| *owner != id);
            }
        });
    }
}

fn merges_of(value: &Value) -> Option<Vec<(String, String)>> {
    value
        .get("merges")?
        .as_array()?
        .iter()
        .map(|m| match m {
            Value::Array(pair) if pair.len() == 2 => {
                Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
            }
            Value::String(s) => {
                let (a, b) = s.split_once(' ')?;
                (!b.contains(' ')).then(|| (a.to_string(), b.to_string()))
            }
            _ => None,
        })
        .collect()
}

impl Pipeline {
    /// An encoder giving exactly `t.encode_fast(text, false)`'s ids, or `None` when some stage of `t` is
    /// not one saekit reproduces (then use the `tokenizers` crate).
    pub fn from_tokenizer(t: &HfTokenizer) -> Option<Pipeline> {
        if t.get_truncation().is_some() || t.get_padding().is_some() {
            return None;
        }
        let normalizer = Normalizer::from_json(&serde_json::to_value(t.get_normalizer()).ok()?)?;
        let pre = PreTokenizer::from_json(&serde_json::to_value(t.get_pre_tokenizer()).ok()?)?;
        let model_json = serde_json::to_value(t.get_model()).ok()?;
        let vocab: HashMap<String, u32> = t.get_model().get_vocab();
        let nonempty = |key: &str| model_json.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        let (model, kind) = match model_json.get("type")?.as_str()? {
            "BPE" => {
                if model_json.get("dropout").and_then(Value::as_f64).is_some_and(|d| d != 0.0)
                    || nonempty("continuing_subword_prefix")
                    || nonempty("end_of_word_suffix")
                {
                    return None;
                }
                let bpe = Self::bpe_model(&model_json, &vocab, &pre)?;
                let kind = if bpe.byte_level { "saekit byte-level BPE pipeline" } else { "saekit character BPE" };
                (Model::Bpe(Box::new(bpe)), kind)
            }
            "WordPiece" => {
                let prefix = model_json.get("continuing_subword_prefix")?.as_str()?.as_bytes().to_vec();
                let unk = *vocab.get(model_json.get("unk_token")?.as_str()?)?;
                let max_chars = model_json.get("max_input_chars_per_word")?.as_u64()? as usize;
                let mut words = FxHashMap::default();
                let mut continuing = FxHashMap::default();
                for (token, &id) in &vocab {
                    let b = token.as_bytes();
                    words.insert(b.to_vec(), id);
                    if b.len() > prefix.len() && b.starts_with(&prefix) {
                        continuing.insert(b[prefix.len()..].to_vec(), id);
                    }
                }
                let longest = words.keys().map(Vec::len).max().unwrap_or(0);
                let longest_continuing = continuing.keys().map(Vec::len).max().unwrap_or(0);
                let wp = WordPiece { vocab: words, continuing, unk, max_chars, longest, longest_continuing };
                (Model::WordPiece(wp), "saekit WordPiece")
            }
            _ => return None,
        };

        let skip_special = t.get_encode_special_tokens();
        let (mut raw, mut normalized) = (Vec::new(), Vec::new());
        for (id, token) in t.get_added_tokens_decoder() {
            let mut content = token.content.clone();
            if token.normalized
                && let Some(n) = t.get_normalizer()
            {
                let mut s = NormalizedString::from(content.as_str());
                n.normalize(&mut s).ok()?;
                content = s.get().to_string();
            }
            if content.is_empty() {
                continue;
            }
            let added = Added {
                content: content.into_bytes(),
                id,
                single_word: token.single_word,
                lstrip: token.lstrip,
                rstrip: token.rstrip,
                skip: token.special && skip_special,
            };
            if token.normalized { normalized.push(added) } else { raw.push(added) }
        }
        let chunked = pre.drops_whitespace_first()
            && normalizer.chunk_local()
            && normalized.iter().all(|a: &Added| !a.content.contains(&b' '));
        Some(Pipeline {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            normalizer,
            pre,
            model,
            chunked,
            added_raw: AddedSet::new(raw),
            added_normalized: AddedSet::new(normalized),
        })
    }

    fn bpe_model(model: &Value, vocab: &HashMap<String, u32>, pre: &PreTokenizer) -> Option<Bpe> {
        let byte_level = pre.byte_level();
        let unk = match model.get("unk_token").and_then(Value::as_str) {
            Some(u) => Some(*vocab.get(u)?),
            None => None,
        };
        let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool).unwrap_or(false);
        let fuse_unk = model.get("fuse_unk").and_then(Value::as_bool).unwrap_or(false);
        let ignore_merges = model.get("ignore_merges").and_then(Value::as_bool).unwrap_or(false);
        let chars = byte_chars();
        let mut byte_ids = [NO_ID; 256];
        if byte_level {
            for (b, c) in chars.iter().enumerate() {
                if let Some(&id) = vocab.get(c.to_string().as_str()) {
                    byte_ids[b] = id;
                }
            }
            if byte_ids.contains(&NO_ID) && (unk.is_some() || byte_fallback) {
                return None;
            }
        }
        let mut char_ids = FxHashMap::default();
        let mut ascii_ids = [NO_ID; 128];
        for (token, &id) in vocab {
            let mut cs = token.chars();
            if let (Some(c), None) = (cs.next(), cs.next()) {
                if (c as u32) < 128 {
                    ascii_ids[c as usize] = id;
                }
                char_ids.insert(c, id);
            }
        }
        let fallback = byte_fallback.then(|| {
            let mut fb = [NO_ID; 256];
            for (b, slot) in fb.iter_mut().enumerate() {
                if let Some(&id) = vocab.get(format!("<0x{b:02X}>").as_str()) {
                    *slot = id;
                }
            }
            fb
        });

        let merges = merges_of(model)?;
        let mut pairs: HashMap<(u32, u32), (u32, u32)> = HashMap::with_capacity(merges.len());
        let mut rank_new = Vec::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let new_id = *vocab.get(format!("{a}{b}").as_str())?;
            pairs.insert((*vocab.get(a.as_str())?, *vocab.get(b.as_str())?), (rank as u32, new_id));
            rank_new.push(new_id);
        }
        let injective = pairs.values().map(|&(_, new_id)| new_id).collect::<HashSet<_>>().len() == pairs.len();

        let char_bytes: HashMap<char, u8> = chars.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let whole = ignore_merges.then(|| {
            vocab
                .iter()
                .filter_map(|(token, &id)| {
                    if byte_level {
                        token.chars().map(|c| char_bytes.get(&c).copied()).collect::<Option<Vec<u8>>>().map(|b| (b, id))
                    } else {
                        Some((token.as_bytes().to_vec(), id))
                    }
                })
                .collect()
        });

        // Cuts need the whole word to go through merges (not `ignore_merges`).
        let cuts = (!byte_level && whole.is_none()).then(|| {
            let parts: HashSet<u32> = pairs.keys().flat_map(|&(a, b)| [a, b]).collect();
            let mut inert: Vec<u32> = fallback.iter().flatten().copied().filter(|&id| id != NO_ID).collect();
            inert.extend(unk);
            let complete = fallback.is_some_and(|fb| !fb.contains(&NO_ID));
            Cuts::new(vocab, &parts, &inert, unk.is_some() && fuse_unk && !complete)
        });

        Some(Bpe {
            byte_level,
            byte_ids,
            char_ids,
            ascii_ids,
            fallback,
            unk,
            fuse_unk,
            merges: Merges { pairs: PairMap::new(&pairs), rank_new, injective },
            whole,
            cuts,
        })
    }

    /// What this encoder is, in words (`saekit WordPiece`, `saekit character BPE`, …).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The ids of `text`, as `tokenizer.encode_fast(text, false)` gives them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 4);
        self.encode_into(text, &mut out);
        out
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        self.with_cache(|(cache, chunks)| {
            let mut state = State { cache, chunks, scratch: Vec::new(), norm: String::new() };
            match &self.added_raw {
                None => self.normalized_piece(text, true, &mut state, out),
                Some(set) => {
                    let mut pieces = Vec::new();
                    split_added(set, text, &mut pieces);
                    for (start, end, id) in pieces {
                        match id {
                            Some(id) => out.push(id),
                            None => self.normalized_piece(&text[start..end], start == 0, &mut state, out),
                        }
                    }
                }
            }
        })
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut (WordCache, WordCache)) -> R) -> R {
        CACHES.with(|c| {
            let mut caches = c.borrow_mut();
            let i = match caches.iter().position(|(owner, _)| *owner == self.id) {
                Some(i) => i,
                None => {
                    if caches.len() >= CACHES_PER_THREAD {
                        caches.remove(0);
                    }
                    caches.push((self.id, Box::new((WordCache::new(), WordCache::new()))));
                    caches.len() - 1
                }
            };
            f(&mut caches[i].1)
        })
    }

    /// A piece with no raw added token: normalized, then split around the normalized added tokens; when
    /// the pipeline is [`Pipeline::chunked`], chunk by chunk, each chunk's ids cached.
    fn normalized_piece(&self, piece: &str, first: bool, state: &mut State, out: &mut Vec<u32>) {
        if !self.chunked {
            return self.normalized_chunk(piece, first, state, out);
        }
        for chunk in piece.split(' ') {
            if chunk.is_empty() {
                continue;
            }
            if chunk.len() > MAX_CACHED_LEN {
                self.normalized_chunk(chunk, false, state, out);
                continue;
            }
            let hash = hash_bytes(chunk.as_bytes());
            if let Some(ids) = state.chunks.get(chunk.as_bytes(), hash) {
                out.extend_from_slice(ids);
                continue;
            }
            let start = out.len();
            self.normalized_chunk(chunk, false, state, out);
            state.chunks.insert(chunk.as_bytes(), hash, &out[start..]);
        }
    }

    fn normalized_chunk(&self, piece: &str, first: bool, state: &mut State, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        let mut norm = std::mem::take(&mut state.norm);
        let text: &str = if self.normalizer.is_identity() {
            piece
        } else {
            self.normalizer.normalize(piece, &mut norm);
            &norm
        };
        match &self.added_normalized {
            None => self.words(text, first, state, out),
            Some(set) => {
                let mut pieces = Vec::new();
                split_added(set, text, &mut pieces);
                for (start, end, id) in pieces {
                    match id {
                        Some(id) => out.push(id),
                        None => self.words(&text[start..end], first && start == 0, state, out),
                    }
                }
            }
        }
        state.norm = norm;
    }

    fn words(&self, text: &str, first: bool, state: &mut State, out: &mut Vec<u32>) {
        self.pre.run(text, first, &mut |w| self.word(w, state, out));
    }

    /// Appends the ids of one pre-tokenized word.
    fn word(&self, w: &str, state: &mut State, out: &mut Vec<u32>) {
        if w.is_empty() {
            return;
        }
        match &self.model {
            Model::WordPiece(wp) => {
                if w.len() > MAX_CACHED_LEN {
                    return wp.tokenize(w, out);
                }
                self.cached(w, state.cache, out, |w, out| wp.tokenize(w, out));
            }
            Model::Bpe(bpe) => {
                if let Some(whole) = &bpe.whole
                    && let Some(&id) = whole.get(w.as_bytes())
                {
                    out.push(id);
                    return;
                }
                let Some(cuts) = &bpe.cuts else {
                    if w.len() > MAX_CACHED_LEN {
                        return bpe.bpe(w, &mut state.scratch, out);
                    }
                    let scratch = &mut state.scratch;
                    return self.cached(w, state.cache, out, |w, out| bpe.bpe(w, scratch, out));
                };
                if w.len() > MAX_CACHED_LEN {
                    return self.cut_pieces(bpe, cuts, w, state, out);
                }
                let hash = hash_bytes(w.as_bytes());
                if let Some(ids) = state.cache.get(w.as_bytes(), hash) {
                    out.extend_from_slice(ids);
                    return;
                }
                let start = out.len();
                self.cut_pieces(bpe, cuts, w, state, out);
                state.cache.insert(w.as_bytes(), hash, &out[start..]);
            }
        }
    }

    /// Merges `w` piece by piece, cut wherever [`Cuts::between`] allows (pieces cached).
    fn cut_pieces(&self, bpe: &Bpe, cuts: &Cuts, w: &str, state: &mut State, out: &mut Vec<u32>) {
        let mut start = 0;
        let mut prev: Option<char> = None;
        for (i, c) in w.char_indices() {
            if let Some(p) = prev
                && cuts.between(bpe, p, c)
            {
                self.bpe_piece(bpe, &w[start..i], state, out);
                start = i;
            }
            prev = Some(c);
        }
        if start == 0 {
            // Not cut: `w` itself, which the caller caches when it can.
            bpe.bpe(w, &mut state.scratch, out)
        } else {
            self.bpe_piece(bpe, &w[start..], state, out)
        }
    }

    fn bpe_piece(&self, bpe: &Bpe, w: &str, state: &mut State, out: &mut Vec<u32>) {
        if w.len() > MAX_CACHED_LEN {
            return bpe.bpe(w, &mut state.scratch, out);
        }
        let scratch = &mut state.scratch;
        self.cached(w, state.cache, out, |w, out| bpe.bpe(w, scratch, out));
    }

    #[inline]
    fn cached(&self, w: &str, cache: &mut WordCache, out: &mut Vec<u32>, mut f: impl FnMut(&str, &mut Vec<u32>)) {
        let hash = hash_bytes(w.as_bytes());
        if let Some(ids) = cache.get(w.as_bytes(), hash) {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        f(w, out);
        cache.insert(w.as_bytes(), hash, &out[start..]);
    }
}

struct State<'a> {
    cache: &'a mut WordCache,
    /// Raw chunk → ids, when the pipeline is [`Pipeline::chunked`].
    chunks: &'a mut WordCache,
    scratch: Vec<u32>,
    norm: String,
}
