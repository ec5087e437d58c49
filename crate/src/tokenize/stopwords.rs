//! Stop words: the function words of a language (articles, pronouns, auxiliaries, prepositions,
//! conjunctions), which dominate every frequency table and say little about a corpus. saekit's lists
//! are short and conservative: only words that are function words in every context. A token is a stop
//! word when its text, trimmed and lower-cased, is in the list.

use serde::{Deserialize, Serialize};

/// Languages with a stop-word list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    English,
    French,
    German,
    Spanish,
}

const ENGLISH: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "unto",
    "thee",
    "thou",
    "thy",
    "shall",
    "hath",
    "ye",
];

const FRENCH: &[&str] = &[
    "au", "aux", "avec", "ce", "ces", "dans", "de", "des", "du", "elle", "en", "et", "eux", "il", "ils", "je", "la",
    "le", "les", "leur", "lui", "ma", "mais", "me", "même", "mes", "moi", "mon", "ne", "nos", "notre", "nous", "on",
    "ou", "par", "pas", "pour", "qu", "que", "qui", "sa", "se", "ses", "son", "sur", "ta", "te", "tes", "toi", "ton",
    "tu", "un", "une", "vos", "votre", "vous", "est", "sont", "été", "être",
];

const GERMAN: &[&str] = &[
    "aber", "als", "am", "an", "auch", "auf", "aus", "bei", "bin", "bis", "da", "das", "dass", "dem", "den", "der",
    "des", "die", "dies", "du", "ein", "eine", "einem", "einen", "einer", "eines", "er", "es", "für", "hat", "ich",
    "ihr", "im", "in", "ist", "mit", "nach", "nicht", "noch", "nur", "oder", "sie", "sind", "so", "über", "um", "und",
    "uns", "von", "vor", "war", "was", "wie", "wir", "wird", "zu", "zum", "zur",
];

const SPANISH: &[&str] = &[
    "a", "al", "algo", "como", "con", "de", "del", "el", "ella", "ellos", "en", "entre", "era", "es", "esa", "ese",
    "eso", "esta", "este", "fue", "ha", "hay", "la", "las", "le", "les", "lo", "los", "más", "me", "mi", "muy", "no",
    "nos", "o", "para", "pero", "por", "que", "se", "si", "sin", "son", "su", "sus", "también", "te", "tu", "un",
    "una", "uno", "y", "ya", "yo",
];

impl Language {
    /// The language's stop words, lower-case.
    pub fn stop_words(self) -> &'static [&'static str] {
        match self {
            Language::English => ENGLISH,
            Language::French => FRENCH,
            Language::German => GERMAN,
            Language::Spanish => SPANISH,
        }
    }

    /// True when `token_text` (a token's decoded text, leading space and all) is a stop word.
    pub fn is_stop_word(self, token_text: &str) -> bool {
        let word = token_text.trim().to_lowercase();
        !word.is_empty() && self.stop_words().contains(&word.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_match_trimmed_lowercase_token_text() {
        assert!(Language::English.is_stop_word(" The"));
        assert!(Language::English.is_stop_word("and"));
        assert!(!Language::English.is_stop_word(" sparse"));
        assert!(!Language::English.is_stop_word(" "));
        assert!(Language::German.is_stop_word(" für"));
    }

    #[test]
    fn lists_are_lowercase_and_unique() {
        for lang in [Language::English, Language::French, Language::German, Language::Spanish] {
            let words = lang.stop_words();
            let mut sorted = words.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), words.len(), "{lang:?} has duplicates");
            assert!(words.iter().all(|w| w.to_lowercase() == *w));
        }
    }
}
