//! Tokenizers: HF `tokenizer.json` files, and GPT-2's byte-level BPE built from the vocabulary and merges
//! shipped in [`crate::data`], so tokenization works offline.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::data::{GPT2_MERGES_TXT, GPT2_VOCAB_JSON};
use crate::error::{Error, Result};

/// A tokenizer with the name it is known by.
#[derive(Clone)]
pub struct Tokenizer {
    name: String,
    inner: HfTokenizer,
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
        Ok(Tokenizer { name: name.into(), inner })
    }

    /// Loads an HF `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let inner = HfTokenizer::from_file(path).map_err(|e| tokenizer_error(&name, e))?;
        Ok(Tokenizer { name, inner })
    }

    pub fn name(&self) -> &str {
        &self.name
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

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| tokenizer_error(&self.name, e))
    }

    /// The underlying HF tokenizer.
    pub fn hf(&self) -> &HfTokenizer {
        &self.inner
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
    fn gpt2_round_trips_non_ascii() {
        let tok = Tokenizer::gpt2().unwrap();
        let text = "Café naïve — 日本語 🙂 <b>";
        let ids = tok.encode(text).unwrap();
        assert!(ids.len() > 5);
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}
