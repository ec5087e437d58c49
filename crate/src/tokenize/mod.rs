//! Tokenization: tokenizers (HF `tokenizer.json` files, and GPT-2's byte-level BPE built from the
//! vocabulary and merges shipped in [`crate::data`], so it works offline), the parameters that turn
//! documents into training sequences, the parallel pass that writes a token store, and its statistics.

pub mod bpe;
pub(crate) mod charprops;
pub mod engine;
pub(crate) mod fxhash;
pub(crate) mod normalize;
pub mod params;
pub mod pipeline;
pub(crate) mod pretokenize;
pub mod sequences;
pub mod stats;
pub mod stopwords;
pub mod store;
pub mod table;
pub mod tokenization;

pub use params::{Packing, Separator, TokenizeParams};
pub use stats::TokenStats;
pub use stopwords::Language;
pub use store::{StoreMeta, TokenStore, TokenStoreWriter};
pub use table::{NewTokenization, TOKENIZATION_KIND, TokenizationParams, TokenizationRow, TokenizerRef};
pub use tokenization::{Provenance, SequencePage, Tokenization, Tokenize};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::data::{GPT2_MERGES_TXT, GPT2_VOCAB_JSON};
use crate::error::{Error, Result};

/// A tokenizer with the name it is known by. Its identity (the hash of its definition) is computed once.
#[derive(Clone)]
pub struct Tokenizer {
    name: String,
    inner: HfTokenizer,
    hash: OnceLock<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({}, vocab {})", self.name, self.vocab_size())
    }
}

fn tokenizer_error(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { name: name.to_string(), message: e.to_string() }
}

impl Tokenizer {
    /// GPT-2's tokenizer, from the embedded vocabulary and merges: byte-level BPE, 50,257 tokens,
    /// `<|endoftext|>` = 50256.
    pub fn gpt2() -> Result<Tokenizer> {
        let name = "gpt2";
        let vocab: HashMap<String, u32> =
            serde_json::from_slice(GPT2_VOCAB_JSON).map_err(|e| tokenizer_error(name, e))?;
        let merges_text = std::str::from_utf8(GPT2_MERGES_TXT).map_err(|e| tokenizer_error(name, e))?;
        let merges = merges_text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tokenizer_error(name, format!("merges line without a space: {l:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab: tokenizers::models::bpe::Vocab = vocab.into_iter().collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| tokenizer_error(name, e))?;
        let mut inner = HfTokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevelDecoder::default()))
            .with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
        inner.add_special_tokens([AddedToken::from("<|endoftext|>", true)]).map_err(|e| tokenizer_error(name, e))?;
        Ok(Tokenizer { name: name.into(), inner, hash: OnceLock::new() })
    }

    /// Loads an HF `tokenizer.json`. Truncation and padding set in the file are turned off: saekit cuts and
    /// packs sequences itself (MiniLM's file pads every text to 128 tokens).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let mut inner = HfTokenizer::from_file(path).map_err(|e| tokenizer_error(&name, e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tokenizer_error(&name, e))?;
        Ok(Tokenizer { name, inner, hash: OnceLock::new() })
    }

    /// The `tokenizer.json` of a model repository on the Hugging Face Hub (e.g. `gpt2`,
    /// `EleutherAI/pythia-70m`), fetched into (or found in) the HF cache; see [`crate::hub::Hub::from_env`]
    /// for the endpoint, token, cache and offline mode it uses.
    pub fn from_hub(repo: &str) -> Result<Tokenizer> {
        Tokenizer::from_hub_with(&crate::hub::Hub::from_env()?, repo)
    }

    /// [`Tokenizer::from_hub`] through a given Hub connection. The tokenizer is named after the repository.
    pub fn from_hub_with(hub: &crate::hub::Hub, repo: &str) -> Result<Tokenizer> {
        let path = hub.model(repo).file("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_file(path)?;
        tokenizer.rename(repo);
        Ok(tokenizer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Changes the name the tokenizer is known by (its hash stays what its definition makes it).
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_string();
    }

    /// Saves the tokenizer as an HF `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(false).map_err(|e| tokenizer_error(&self.name, e))?;
        crate::files::write_atomically(path, json.as_bytes())
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text`, special tokens in the text recognised as such.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| tokenizer_error(&self.name, e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of `text` with the special tokens the tokenizer's post-processor adds (BERT's
    /// `[CLS] … [SEP]`, a BOS token), as the model it belongs to expects them.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, true).map_err(|e| tokenizer_error(&self.name, e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| tokenizer_error(&self.name, e))
    }

    /// The underlying HF tokenizer.
    pub fn hf(&self) -> &HfTokenizer {
        &self.inner
    }

    /// Adds a special token (a new id at the end of the vocabulary, unless it exists) and returns its id.
    /// The tokenizer's hash changes with it.
    pub fn add_special_token(&mut self, token: &str) -> Result<u32> {
        self.inner
            .add_special_tokens([AddedToken::from(token.to_string(), true)])
            .map_err(|e| tokenizer_error(&self.name, e))?;
        self.hash = OnceLock::new();
        self.token_id_or_error(token)
    }

    /// The id of `token`, or an error saying the tokenizer has no such token.
    pub fn token_id_or_error(&self, token: &str) -> Result<u32> {
        self.token_to_id(token)
            .ok_or_else(|| tokenizer_error(&self.name, format!("no token {token:?} in the vocabulary")))
    }

    /// A token's text (bytes that do not form whole UTF-8 characters show as `�`).
    pub fn token_text(&self, id: u32) -> String {
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    /// The tokenizer's identity: sha256 of a canonical form of what decides the ids it gives (model with its
    /// vocabulary and merges, normalizer, pre-tokenizer, added and special tokens), not of the file's bytes.
    /// Two files that encode alike (GPT-2 built from its vocabulary and merges, and the Hub's `gpt2`
    /// `tokenizer.json` with its other merges format, offsets settings and post-processor) have one identity.
    pub fn hash(&self) -> String {
        self.hash.get_or_init(|| canonical_identity(&self.inner)).clone()
    }

    /// Name, hash, size and special tokens.
    pub fn info(&self) -> TokenizerInfo {
        let added = self.inner.get_added_tokens_decoder();
        let mut special: Vec<u32> = added.iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        special.sort_unstable();
        let find = |candidates: &[&str]| candidates.iter().find_map(|c| self.token_to_id(c));
        TokenizerInfo {
            name: self.name.clone(),
            hash: self.hash(),
            vocab_size: self.vocab_size(),
            bos: find(&["<|begin_of_text|>", "<s>", "<|startoftext|>", "[CLS]", "<bos>", "<|endoftext|>"]),
            eos: find(&["<|end_of_text|>", "</s>", "<|endoftext|>", "[SEP]", "<eos>"]),
            special,
        }
    }

    /// For each id, whether its token is a stop word of `language`.
    pub fn stop_word_mask(&self, language: Language) -> Vec<bool> {
        (0..self.vocab_size() as u32).map(|id| language.is_stop_word(&self.token_text(id))).collect()
    }

    /// The fastest exact encoder for this tokenizer: saekit's own byte-level BPE ([`bpe::FastBpe`], tens of
    /// times faster) when it reproduces this tokenizer exactly, else saekit's general pipeline
    /// ([`pipeline::Pipeline`]: BPE with any supported normalizer and pre-tokenizer, WordPiece), else the
    /// `tokenizers` crate. With `SAEKIT_REQUIRE_FAST_ENCODER=1` in the environment, a tokenizer that would
    /// fall back to the `tokenizers` crate fails to encode instead (tests use it to prove the fast path).
    pub fn encoder(&self) -> Arc<dyn Encode> {
        if let Some(fast) = bpe::FastBpe::from_tokenizer(&self.inner) {
            return Arc::new(fast);
        }
        if let Some(pipeline) = pipeline::Pipeline::from_tokenizer(&self.inner) {
            return Arc::new(pipeline);
        }
        if std::env::var("SAEKIT_REQUIRE_FAST_ENCODER").is_ok_and(|v| !v.is_empty() && v != "0") {
            return Arc::new(Refused(self.name.clone()));
        }
        Arc::new(HfEncoder(self.inner.clone()))
    }

    /// Which encoder [`Tokenizer::encoder`] picks, in words: `saekit byte-level BPE` (GPT-2's kind),
    /// `saekit byte-level BPE pipeline`, `saekit character BPE`, `saekit WordPiece`, or `tokenizers`
    /// (the exact but slow fallback).
    pub fn encoder_kind(&self) -> &'static str {
        if bpe::FastBpe::from_tokenizer(&self.inner).is_some() {
            "saekit byte-level BPE"
        } else if let Some(p) = pipeline::Pipeline::from_tokenizer(&self.inner) {
            p.kind()
        } else {
            "tokenizers"
        }
    }
}

/// See [`Tokenizer::hash`]. Left out on purpose: the decoder, the post-processor (it decides which special
/// tokens [`Tokenizer::encode_with_special_tokens`] adds around a text, not what any id means; token stores
/// record their own BOS/EOS choices), truncation and padding, and `trim_offsets` (offsets only); BPE's empty affixes are
/// the same as none.
fn canonical_identity(tokenizer: &HfTokenizer) -> String {
    use serde_json::Value;
    let mut model = serde_json::to_value(tokenizer.get_model()).unwrap_or_default();
    if let Some(fields) = model.as_object_mut() {
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if fields.get(key).and_then(Value::as_str) == Some("") {
                fields.insert(key.to_string(), Value::Null);
            }
        }
    }
    fn drop_offsets(v: &mut Value) {
        match v {
            Value::Object(fields) => {
                fields.remove("trim_offsets");
                fields.values_mut().for_each(drop_offsets);
            }
            Value::Array(items) => items.iter_mut().for_each(drop_offsets),
            _ => {}
        }
    }
    let normalizer = serde_json::to_value(tokenizer.get_normalizer()).unwrap_or_default();
    let mut pre_tokenizer = serde_json::to_value(tokenizer.get_pre_tokenizer()).unwrap_or_default();
    drop_offsets(&mut pre_tokenizer);
    let has_normalizer = !normalizer.is_null();
    let mut added: Vec<(u32, Value)> = tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .map(|(id, t)| {
            let mut token = serde_json::json!({
                "id": id, "content": t.content, "special": t.special, "single_word": t.single_word,
                "lstrip": t.lstrip, "rstrip": t.rstrip,
            });
            // Whether an added token is matched before or after normalisation matters only with a normalizer.
            if has_normalizer {
                token["normalized"] = Value::Bool(t.normalized);
            }
            (id, token)
        })
        .collect();
    added.sort_by_key(|(id, _)| *id);
    let canonical = serde_json::json!({
        "model": model,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "added_tokens": added.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string(&canonical).unwrap_or_default();
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What identifies a tokenizer in a token store's provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    pub name: String,
    pub hash: String,
    pub vocab_size: usize,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub special: Vec<u32>,
}

impl crate::display::Render for TokenizerInfo {
    fn bundle(&self) -> crate::display::MimeBundle {
        let token = |id: Option<u32>| id.map_or_else(|| "–".to_string(), |id| id.to_string());
        let special: Vec<String> = self.special.iter().take(12).map(u32::to_string).collect();
        let mut special = special.join(", ");
        if self.special.len() > 12 {
            special.push_str(&format!(", … ({} in all)", self.special.len()));
        }
        crate::display::Card::new(format!("Tokenizer {}", self.name))
            .fact("vocabulary", crate::error::count(self.vocab_size as u64))
            .fact("BOS id", token(self.bos))
            .fact("EOS id", token(self.eos))
            .fact("special ids", if special.is_empty() { "none".into() } else { special })
            .fact("identity", self.hash.clone())
            .bundle()
    }
}

impl crate::display::Render for Tokenizer {
    fn bundle(&self) -> crate::display::MimeBundle {
        self.info().bundle()
    }
}

/// Text to token ids, callable from several threads at once.
pub trait Encode: Send + Sync {
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Appends the ids of `text` to `out`.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        out.extend(self.encode(text)?);
        Ok(())
    }
}

impl Encode for bpe::FastBpe {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(bpe::FastBpe::encode(self, text))
    }

    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        bpe::FastBpe::encode_into(self, text, out);
        Ok(())
    }
}

impl Encode for pipeline::Pipeline {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(pipeline::Pipeline::encode(self, text))
    }

    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        pipeline::Pipeline::encode_into(self, text, out);
        Ok(())
    }
}

/// What [`Tokenizer::encoder`] gives under `SAEKIT_REQUIRE_FAST_ENCODER` when only `tokenizers` would do.
struct Refused(String);

impl Encode for Refused {
    fn encode(&self, _text: &str) -> Result<Vec<u32>> {
        Err(tokenizer_error(
            &self.0,
            "saekit has no fast encoder for this tokenizer and SAEKIT_REQUIRE_FAST_ENCODER is set \
             (unset it to encode with the tokenizers crate)",
        ))
    }
}

struct HfEncoder(HfTokenizer);

impl Encode for HfEncoder {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.0.encode_fast(text, false).map_err(|e| tokenizer_error("tokenizer", e))?;
        Ok(encoding.get_ids().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_gives_the_published_ids() {
        let tok = Tokenizer::gpt2().unwrap();
        assert_eq!(tok.vocab_size(), 50257);
        assert_eq!(tok.encode("Hello world").unwrap(), vec![15496, 995]);
        assert_eq!(tok.encode(" the").unwrap(), vec![262]);
        assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![50256]);
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(50256));
    }

    #[test]
    fn gpt2_info_names_its_special_token() {
        let info = Tokenizer::gpt2().unwrap().info();
        assert_eq!((info.bos, info.eos, info.special.as_slice()), (Some(50256), Some(50256), &[50256][..]));
        assert_eq!(info.hash.len(), 64);
        assert_eq!(info.hash, Tokenizer::gpt2().unwrap().hash(), "the hash is stable");
    }

    #[test]
    fn gpt2_round_trips_non_ascii() {
        let tok = Tokenizer::gpt2().unwrap();
        let text = "Café naïve — 日本語 🙂 <b>";
        let ids = tok.encode(text).unwrap();
        assert!(ids.len() > 5);
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}
