//! What a tokenization does: windows over long documents or packing into fixed-size sequences, special
//! tokens, minimum length, stop words. Every field has a default and is recorded beside the tokens.

use serde::{Deserialize, Serialize};

use super::stopwords::Language;
use crate::error::{Error, Result};

/// How documents become sequences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct TokenizeParams {
    /// The longest sequence, in tokens (with packing: every sequence's length, the context size).
    pub max_length: usize,
    /// Tokens between the starts of consecutive windows over a document longer than `max_length`
    /// (windows overlap by `max_length - stride`). Ignored when packing.
    pub stride: usize,
    /// Sequences shorter than this are dropped (and counted).
    pub min_length: usize,
    /// Start each document with the BOS token (GPT-2: `<|endoftext|>`).
    pub add_bos: bool,
    /// End each document with the EOS token (GPT-2: `<|endoftext|>`).
    pub add_eos: bool,
    /// Drop special tokens that occur in the text itself.
    pub drop_special_tokens: bool,
    /// Remove this language's stop words from the sequences. (Statistics views leave stop words out of
    /// their vocabulary tables regardless, unless asked.)
    pub remove_stop_words: Option<Language>,
    /// Concatenate documents into sequences of exactly `max_length` tokens instead of windowing each.
    pub packing: Option<Packing>,
    /// The BOS token's text, when the tokenizer's own cannot be recognised.
    pub bos_token: Option<String>,
    /// The EOS token's text, when the tokenizer's own cannot be recognised.
    pub eos_token: Option<String>,
}

impl Default for TokenizeParams {
    fn default() -> Self {
        TokenizeParams {
            max_length: 1024,
            stride: 512,
            min_length: 1,
            add_bos: false,
            add_eos: false,
            drop_special_tokens: false,
            remove_stop_words: None,
            packing: None,
            bos_token: None,
            eos_token: None,
        }
    }
}

/// Packing documents into fixed-size sequences, SAELens-style, with explicit boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Packing {
    /// What goes between two documents in a sequence.
    pub separator: Separator,
    /// Start every sequence with BOS (its first token is then never the middle of a document without
    /// the model knowing a sequence starts there).
    pub bos_first: bool,
    /// Keep the last, shorter sequence (if at least `min_length`); by default it is dropped so every
    /// sequence has exactly `max_length` tokens.
    pub keep_remainder: bool,
}

impl Default for Packing {
    fn default() -> Self {
        Packing { separator: Separator::Eos, bos_first: true, keep_remainder: false }
    }
}

/// A token put between packed documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Separator {
    /// The tokenizer's EOS token.
    Eos,
    /// The tokenizer's BOS token.
    Bos,
    /// A token given by its text.
    Token(String),
    /// Nothing: allowed only with `bos_first`, so sequence starts are still marked.
    None,
}

impl TokenizeParams {
    /// Packs documents into `context_size`-token sequences, EOS between documents, BOS first.
    pub fn packed(context_size: usize) -> Self {
        TokenizeParams { max_length: context_size, packing: Some(Packing::default()), ..Default::default() }
    }

    /// Checks the parameters make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidArgument(format!("tokenization parameters: {why}")));
        if self.max_length == 0 {
            return bad("max_length must be at least 1".into());
        }
        if self.packing.is_none() && (self.stride == 0 || self.stride > self.max_length) {
            return bad(format!("stride must be between 1 and max_length ({}), not {}", self.max_length, self.stride));
        }
        if self.min_length > self.max_length {
            return bad(format!("min_length ({}) is longer than max_length ({})", self.min_length, self.max_length));
        }
        if let Some(packing) = &self.packing {
            if packing.separator == Separator::None && !packing.bos_first {
                return bad("packing with no separator and no BOS at each sequence start would run documents \
                     together unmarked; set a separator or bos_first"
                    .into());
            }
            if packing.bos_first && self.max_length < 2 {
                return bad("packing with bos_first needs max_length of at least 2".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = TokenizeParams::default();
        assert_eq!((p.max_length, p.stride, p.min_length), (1024, 512, 1));
        assert!(p.validate().is_ok());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(serde_json::from_value::<TokenizeParams>(serde_json::json!({})).unwrap(), p);
        assert_eq!(json["max_length"], 1024);
    }

    #[test]
    fn packing_without_any_boundary_is_refused() {
        let mut p = TokenizeParams::packed(128);
        p.packing = Some(Packing { separator: Separator::None, bos_first: false, keep_remainder: false });
        assert!(p.validate().unwrap_err().to_string().contains("unmarked"));
        p.packing = Some(Packing { separator: Separator::None, bos_first: true, keep_remainder: false });
        assert!(p.validate().is_ok());
    }

    #[test]
    fn nonsense_lengths_are_refused() {
        let p = TokenizeParams { stride: 2000, ..Default::default() };
        assert!(p.validate().unwrap_err().to_string().contains("stride"));
        let p = TokenizeParams { min_length: 2000, ..Default::default() };
        assert!(p.validate().unwrap_err().to_string().contains("min_length"));
    }
}
