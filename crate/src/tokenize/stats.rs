//! Statistics of a tokenization, counted during the pass itself (no second read of the store): totals,
//! what each filter dropped, the vocabulary distribution with decoded tokens, and sequence- and
//! document-length distributions.

use serde::{Deserialize, Serialize};

use super::Tokenizer;
use super::stopwords::Language;
use crate::display::{Card, Histogram, LineChart, MimeBundle, Render, Table};
use crate::error::count;

/// Tokens kept in the frequency table.
const TOP_TOKENS: usize = 200;

/// One row of the vocabulary table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCount {
    pub id: u32,
    /// The token's text (bytes that are not whole UTF-8 characters show as `�`).
    pub text: String,
    pub count: u64,
    /// True when the token is an English stop word (left out of the default view).
    pub stop_word: bool,
}

/// What a tokenization produced and dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenStats {
    pub documents: u64,
    /// Tokens of the documents as encoded, before any filter.
    pub document_tokens: u64,
    pub sequences: u64,
    /// Tokens in the stored sequences (windows overlap, so this can exceed `document_tokens`).
    pub tokens: u64,
    /// Distinct token ids in the stored sequences.
    pub unique_tokens: u64,
    pub dropped_short_sequences: u64,
    pub dropped_special_tokens: u64,
    pub dropped_stop_words: u64,
    /// Records the reader skipped as unreadable.
    pub skipped_records: u64,
    /// The most frequent tokens in the stored sequences, stop words included (and flagged).
    pub top_tokens: Vec<TokenCount>,
    /// (rank, count) points of the rank/frequency curve, log-spaced ranks.
    pub rank_frequency: Vec<(u64, u64)>,
    /// Sequences per length, 0..=max_length.
    pub sequence_lengths: Vec<u64>,
    /// Documents per token-length bin `[2^k, 2^(k+1))` (bin 0 holds 0 and 1).
    pub document_length_bins: Vec<u64>,
}

/// Counts statistics as documents and sequences go by.
pub struct TokenStatsBuilder {
    counts: Vec<u64>,
    documents: u64,
    document_tokens: u64,
    sequences: u64,
    tokens: u64,
    sequence_lengths: Vec<u64>,
    document_length_bins: Vec<u64>,
    pub dropped_short_sequences: u64,
    pub dropped_special_tokens: u64,
    pub dropped_stop_words: u64,
}

fn bin_of(n: u64) -> usize {
    if n <= 1 { 0 } else { (63 - n.leading_zeros()) as usize }
}

impl TokenStatsBuilder {
    pub fn new(vocab_size: usize, max_length: usize) -> Self {
        TokenStatsBuilder {
            counts: vec![0; vocab_size],
            documents: 0,
            document_tokens: 0,
            sequences: 0,
            tokens: 0,
            sequence_lengths: vec![0; max_length + 1],
            document_length_bins: Vec::new(),
            dropped_short_sequences: 0,
            dropped_special_tokens: 0,
            dropped_stop_words: 0,
        }
    }

    /// A document as encoded.
    pub fn document(&mut self, ids: &[u32]) {
        self.documents += 1;
        self.document_tokens += ids.len() as u64;
        let bin = bin_of(ids.len() as u64);
        if self.document_length_bins.len() <= bin {
            self.document_length_bins.resize(bin + 1, 0);
        }
        self.document_length_bins[bin] += 1;
    }

    /// A sequence as stored.
    pub fn sequence(&mut self, seq: &[u32]) {
        self.sequences += 1;
        self.tokens += seq.len() as u64;
        if let Some(n) = self.sequence_lengths.get_mut(seq.len()) {
            *n += 1;
        }
        for &id in seq {
            if let Some(n) = self.counts.get_mut(id as usize) {
                *n += 1;
            }
        }
    }

    /// Documents seen so far.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Tokens stored so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Per-id counts of the stored tokens.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn finish(self, tokenizer: &Tokenizer, skipped_records: u64) -> TokenStats {
        let mut ranked: Vec<(u32, u64)> =
            self.counts.iter().enumerate().filter(|&(_, &n)| n > 0).map(|(id, &n)| (id as u32, n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_tokens = ranked
            .iter()
            .take(TOP_TOKENS)
            .map(|&(id, count)| {
                let text = tokenizer.token_text(id);
                TokenCount { id, stop_word: Language::English.is_stop_word(&text), text, count }
            })
            .collect();
        let mut rank_frequency = Vec::new();
        let mut rank = 1usize;
        while rank <= ranked.len() {
            rank_frequency.push((rank as u64, ranked[rank - 1].1));
            rank = (rank as f64 * 1.25).ceil() as usize;
        }
        if let Some(last) = ranked.last()
            && rank_frequency.last().map(|p| p.0) != Some(ranked.len() as u64)
        {
            rank_frequency.push((ranked.len() as u64, last.1));
        }
        TokenStats {
            documents: self.documents,
            document_tokens: self.document_tokens,
            sequences: self.sequences,
            tokens: self.tokens,
            unique_tokens: ranked.len() as u64,
            dropped_short_sequences: self.dropped_short_sequences,
            dropped_special_tokens: self.dropped_special_tokens,
            dropped_stop_words: self.dropped_stop_words,
            skipped_records,
            top_tokens,
            rank_frequency,
            sequence_lengths: self.sequence_lengths,
            document_length_bins: self.document_length_bins,
        }
    }
}

/// Shows a token's text with its spaces and newlines visible.
pub fn visible(text: &str) -> String {
    text.replace(' ', "␣").replace('\n', "⏎").replace('\t', "⇥")
}

impl TokenStats {
    /// The `n` most frequent tokens, stop words left out unless `include_stop_words`.
    pub fn top(&self, n: usize, include_stop_words: bool) -> Vec<&TokenCount> {
        self.top_tokens.iter().filter(|t| include_stop_words || !t.stop_word).take(n).collect()
    }

    /// The top tokens as a table.
    pub fn vocabulary_table(&self, n: usize, include_stop_words: bool) -> Table {
        let caption = if include_stop_words {
            format!("Top {n} tokens")
        } else {
            format!("Top {n} tokens (English stop words left out)")
        };
        let mut table = Table::new(caption, &["rank", "id", "token", "count", "share"]);
        for (i, t) in self.top(n, include_stop_words).into_iter().enumerate() {
            let share = if self.tokens > 0 { t.count as f64 / self.tokens as f64 * 100.0 } else { 0.0 };
            table.row(vec![
                (i + 1).to_string(),
                t.id.to_string(),
                visible(&t.text),
                count(t.count),
                format!("{share:.2}%"),
            ]);
        }
        table
    }

    /// Sequence lengths, in (up to) 16 equal-width bins.
    pub fn sequence_length_histogram(&self) -> Histogram {
        let max = self.sequence_lengths.iter().rposition(|&n| n > 0).unwrap_or(0);
        let width = (max / 16).max(1) + usize::from(max >= 16 && max % 16 != 0);
        let bins = (0..=max / width)
            .map(|b| {
                let lo = b * width;
                let n = self.sequence_lengths.iter().skip(lo).take(width).sum();
                (lo.to_string(), n)
            })
            .collect();
        Histogram::new("Sequence length in tokens", "bin start", bins)
    }

    /// Document lengths in tokens (power-of-two bins).
    pub fn document_length_histogram(&self) -> Histogram {
        let first = self.document_length_bins.iter().position(|&n| n > 0).unwrap_or(0);
        let bins = self
            .document_length_bins
            .iter()
            .enumerate()
            .skip(first)
            .map(|(k, &n)| (if k == 0 { "0".to_string() } else { (1u64 << k).to_string() }, n))
            .collect();
        Histogram::new("Document length in tokens", "bin start (bins double in width)", bins)
    }

    /// Rank against frequency, both on log scales (Zipf's law is a straight line).
    pub fn rank_frequency_chart(&self) -> LineChart {
        let points = self.rank_frequency.iter().map(|&(r, n)| (r as f64, n as f64)).collect();
        LineChart::new("Rank / frequency", "rank", "count").series("tokens", points).log_x(true).log_y(true)
    }
}

impl Render for TokenStats {
    fn bundle(&self) -> MimeBundle {
        let mut card = Card::new("Tokenization statistics")
            .fact("documents", count(self.documents))
            .fact("sequences", count(self.sequences))
            .fact(
                "tokens",
                format!("{} in sequences ({} in the documents)", count(self.tokens), count(self.document_tokens)),
            )
            .fact("unique tokens", count(self.unique_tokens));
        let drops = [
            ("dropped: short sequences", self.dropped_short_sequences),
            ("dropped: special tokens", self.dropped_special_tokens),
            ("dropped: stop words", self.dropped_stop_words),
            ("skipped records", self.skipped_records),
        ];
        for (what, n) in drops {
            card = card.fact(what, count(n));
        }
        card.section(&self.vocabulary_table(20, false).bundle())
            .section(&self.rank_frequency_chart().bundle())
            .section(&self.sequence_length_histogram().bundle())
            .section(&self.document_length_histogram().bundle())
            .bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_documents_sequences_and_tokens() {
        let tok = Tokenizer::gpt2().unwrap();
        let mut b = TokenStatsBuilder::new(tok.vocab_size(), 8);
        b.document(&[1, 2, 3]);
        b.sequence(&[1, 2, 3]);
        b.document(&[262; 5]);
        b.sequence(&[262; 5]);
        b.sequence(&[262, 1]);
        let s = b.finish(&tok, 0);
        assert_eq!((s.documents, s.document_tokens, s.sequences, s.tokens, s.unique_tokens), (2, 8, 3, 10, 4));
        assert_eq!(s.sequence_lengths[2..6], [1, 1, 0, 1]);
        assert_eq!(s.document_length_bins, vec![0, 1, 1]);
        assert_eq!(s.top_tokens[0], TokenCount { id: 262, text: " the".into(), count: 6, stop_word: true });
        assert_eq!(s.top(5, false).len(), 3, "the stop word ` the` is left out by default");
        assert_eq!(s.top(5, true).len(), 4);
        assert_eq!(s.rank_frequency, vec![(1, 6), (2, 2), (3, 1), (4, 1)]);
    }

    #[test]
    fn tables_show_visible_whitespace_and_escape_tokens() {
        let tok = Tokenizer::gpt2().unwrap();
        let mut b = TokenStatsBuilder::new(tok.vocab_size(), 8);
        let ids = tok.encode("<script> hello\n").unwrap();
        b.document(&ids);
        b.sequence(&ids);
        let s = b.finish(&tok, 0);
        let html = s.bundle().get("text/html").unwrap().to_string();
        assert!(html.contains("&lt;") && !html.contains("<script>"));
        assert!(s.vocabulary_table(10, true).plain().contains("␣hello"));
    }
}
