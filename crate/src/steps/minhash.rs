//! Near-duplicate detection: MinHash signatures over word n-grams, and LSH banding (`bands` bands of
//! `rows` hashes; two documents are candidates when any band is equal). The probability that documents
//! of Jaccard similarity `J` become candidates is `1 − (1 − J^rows)^bands` (the S-curve,
//! [`MinHash::s_curve`]), steepest near the threshold `(1/bands)^(1/rows)`. Defaults are datatrove's:
//! 5-grams, 14 × 8 (threshold ≈ 0.72; J = 0.8 is caught with probability ≈ 0.92).
//!
//! A shingle's hash goes through `bands × rows` permutations of 64-bit integers (`a·h + b` with odd `a`,
//! then a bijective mix), so a seed fixes everything. Signatures are computed in parallel per batch;
//! the band index is updated in order, so the first of a group of near-duplicates is the one kept.

use std::collections::HashMap;

use rayon::prelude::*;

use super::text::{hash64, mix64, words};
use super::{Doc, Step, Verdict};
use crate::display::LineChart;

pub(crate) fn default_ngram() -> usize {
    5
}
pub(crate) fn default_bands() -> usize {
    14
}
pub(crate) fn default_rows() -> usize {
    8
}
pub(crate) fn default_seed() -> u64 {
    1
}

/// MinHash with LSH banding: its parameters and the permutations they make.
#[derive(Debug, Clone)]
pub struct MinHash {
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    pub seed: u64,
    /// (a, b) per hash function; `a` odd.
    perms: Vec<(u64, u64)>,
}

impl MinHash {
    pub fn new(ngram: usize, bands: usize, rows: usize, seed: u64) -> MinHash {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(x)
        };
        let perms = (0..bands * rows).map(|_| (next() | 1, next())).collect();
        MinHash { ngram: ngram.max(1), bands: bands.max(1), rows: rows.max(1), seed, perms }
    }

    /// Datatrove's defaults: 5-grams, 14 bands of 8.
    pub fn datatrove() -> MinHash {
        MinHash::new(default_ngram(), default_bands(), default_rows(), default_seed())
    }

    /// The similarity at which the S-curve is steepest: `(1/bands)^(1/rows)`.
    pub fn threshold(&self) -> f64 {
        (1.0 / self.bands as f64).powf(1.0 / self.rows as f64)
    }

    /// The probability that two documents of Jaccard similarity `j` share a band.
    pub fn candidate_probability(&self, j: f64) -> f64 {
        1.0 - (1.0 - j.powi(self.rows as i32)).powi(self.bands as i32)
    }

    /// The S-curve: P(candidate) against Jaccard similarity, 0 to 1.
    pub fn s_curve(&self) -> LineChart {
        let points = (0..=100).map(|i| i as f64 / 100.0).map(|j| (j, self.candidate_probability(j))).collect();
        LineChart::new(
            format!(
                "near dedup: {}-grams, {} bands × {} rows (threshold ≈ {:.2})",
                self.ngram,
                self.bands,
                self.rows,
                self.threshold()
            ),
            "Jaccard similarity",
            "P(dropped as a near-duplicate)",
        )
        .series("1 − (1 − J^r)^b", points)
    }

    /// The hashes of a text's word n-grams (one shingle of all its words when it has fewer than `ngram`;
    /// none when it has no words).
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let words: Vec<u64> = words(text).map(|w| hash64(w.as_bytes(), 0x5111_9e1e)).collect();
        if words.is_empty() {
            return Vec::new();
        }
        let n = self.ngram.min(words.len());
        words.windows(n).map(|gram| gram.iter().fold(n as u64, |h, w| mix64(h.rotate_left(17) ^ *w))).collect()
    }

    /// The signature: per hash function, the minimum over the shingles (`u64::MAX` for no shingles).
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let mut sig = vec![u64::MAX; self.perms.len()];
        for s in self.shingles(text) {
            for (slot, (a, b)) in sig.iter_mut().zip(&self.perms) {
                let v = mix64(a.wrapping_mul(s).wrapping_add(*b));
                if v < *slot {
                    *slot = v;
                }
            }
        }
        sig
    }

    /// One key per band of a signature.
    pub fn band_keys(&self, signature: &[u64]) -> Vec<u64> {
        signature
            .chunks(self.rows)
            .enumerate()
            .map(|(band, rows)| rows.iter().fold(mix64(band as u64 + 1), |h, v| mix64(h ^ v).rotate_left(29)))
            .collect()
    }

    /// The fraction of equal signature slots: an estimate of the Jaccard similarity.
    pub fn estimate(a: &[u64], b: &[u64]) -> f64 {
        let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
        same as f64 / a.len().max(1) as f64
    }
}

/// The near-dedup step: a document sharing a band with an earlier kept one is dropped.
#[derive(Debug)]
pub struct NearDedup {
    minhash: MinHash,
    /// Per band: key → (source, row) of the first document with it.
    bands: Vec<HashMap<u64, (u32, u64)>>,
    sources: Vec<String>,
}

impl NearDedup {
    pub fn new(minhash: MinHash) -> NearDedup {
        let bands = (0..minhash.bands).map(|_| HashMap::new()).collect();
        NearDedup { minhash, bands, sources: Vec::new() }
    }

    fn source_index(&mut self, source: &str) -> u32 {
        match self.sources.iter().position(|s| s == source) {
            Some(i) => i as u32,
            None => {
                self.sources.push(source.to_string());
                (self.sources.len() - 1) as u32
            }
        }
    }

    fn decide(&mut self, doc: &Doc, keys: &[u64]) -> Verdict {
        if keys.is_empty() {
            return Verdict::Keep;
        }
        for (band, key) in keys.iter().enumerate() {
            if let Some(&(source, row)) = self.bands[band].get(key) {
                return Verdict::Drop(
                    "near-duplicate",
                    format!("near-duplicate of {} row {row} (band {band})", self.sources[source as usize]),
                );
            }
        }
        let source = self.source_index(doc.source);
        for (band, key) in keys.iter().enumerate() {
            self.bands[band].insert(*key, (source, doc.row));
        }
        Verdict::Keep
    }

    fn keys(&self, text: &str) -> Vec<u64> {
        let signature = self.minhash.signature(text);
        if signature.iter().all(|v| *v == u64::MAX) {
            return Vec::new(); // no words: nothing to compare
        }
        self.minhash.band_keys(&signature)
    }
}

impl Step for NearDedup {
    fn name(&self) -> &str {
        "near_dedup"
    }

    fn check(&mut self, doc: &Doc) -> Verdict {
        let keys = self.keys(doc.text);
        self.decide(doc, &keys)
    }

    fn check_batch(&mut self, docs: &[Doc]) -> Vec<Verdict> {
        let keys: Vec<Vec<u64>> = docs.par_iter().map(|d| self.keys(d.text)).collect();
        docs.iter().zip(&keys).map(|(d, k)| self.decide(d, k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s_curve_and_threshold_are_datatroves() {
        let m = MinHash::datatrove();
        assert!((m.threshold() - (1.0f64 / 14.0).powf(1.0 / 8.0)).abs() < 1e-12);
        assert!((m.threshold() - 0.719).abs() < 0.001);
        assert!((m.candidate_probability(0.8) - 0.924).abs() < 0.001, "{}", m.candidate_probability(0.8));
        assert_eq!(m.s_curve().series[0].1.len(), 101);
    }

    #[test]
    fn signatures_estimate_jaccard_similarity() {
        let m = MinHash::new(1, 32, 8, 3); // 256 hashes over single words: estimates within a few points
        let a: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
        let b: Vec<String> = (20..120).map(|i| format!("w{i}")).collect(); // J = 80 / 120
        let (sa, sb) = (m.signature(&a.join(" ")), m.signature(&b.join(" ")));
        let est = MinHash::estimate(&sa, &sb);
        assert!((est - 80.0 / 120.0).abs() < 0.08, "{est}");
        assert_eq!(m.signature(&a.join(" ")), sa, "the same text, the same signature");
        assert!(m.shingles("  ,, ").is_empty());
    }
}
