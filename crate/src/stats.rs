//! Statistics of a dataset's documents, computed in one streaming pass: counts of documents, bytes,
//! characters and words, the document-length distribution, and a summary of each metadata column.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::display::{Card, Histogram, MimeBundle, Render, Table};
use crate::error::{Error, Result, count};
use crate::sources::{Documents, ReadReport};

/// Distinct values tracked per metadata column before giving up on a top-values view.
const MAX_DISTINCT: usize = 10_000;
/// Top values kept per column.
const TOP_VALUES: usize = 8;

/// A summary of one metadata column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    pub data_type: String,
    pub nulls: u64,
    /// Distinct values, when there are at most 10,000 of them.
    pub distinct: Option<u64>,
    /// The most frequent values with their counts (text and integer columns with few distinct values).
    pub top_values: Vec<(String, u64)>,
}

/// What is in a dataset's documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub documents: u64,
    /// UTF-8 bytes of text.
    pub bytes: u64,
    pub chars: u64,
    /// Whitespace-separated words.
    pub words: u64,
    /// Documents whose text is empty or only whitespace.
    pub empty_documents: u64,
    pub min_chars: u64,
    pub max_chars: u64,
    /// Document length in characters: count per power-of-two bin `[2^k, 2^(k+1))`, bin 0 holding 0 and 1.
    pub length_bins: Vec<u64>,
    pub columns: Vec<ColumnStats>,
    /// Records skipped as unreadable while computing.
    pub skipped: u64,
}

struct ColumnAcc {
    name: String,
    data_type: DataType,
    nulls: u64,
    values: Option<HashMap<String, u64>>,
}

fn bin_of(chars: u64) -> usize {
    if chars <= 1 { 0 } else { (63 - chars.leading_zeros()) as usize }
}

/// Builds [`DatasetStats`] batch by batch, for work that reads documents for another purpose too.
pub struct StatsAccumulator {
    stats: DatasetStats,
    columns: Vec<ColumnAcc>,
}

impl StatsAccumulator {
    /// An accumulator for document batches of `schema` (text first, then metadata).
    pub fn new(schema: &arrow::datatypes::Schema) -> Self {
        let columns = schema
            .fields()
            .iter()
            .skip(1)
            .map(|f| ColumnAcc {
                name: f.name().clone(),
                data_type: f.data_type().clone(),
                nulls: 0,
                values: matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Int64 | DataType::Int32 | DataType::Boolean
                )
                .then(HashMap::new),
            })
            .collect();
        let stats = DatasetStats {
            documents: 0,
            bytes: 0,
            chars: 0,
            words: 0,
            empty_documents: 0,
            min_chars: u64::MAX,
            max_chars: 0,
            length_bins: Vec::new(),
            columns: Vec::new(),
            skipped: 0,
        };
        StatsAccumulator { stats, columns }
    }

    /// Adds one batch of documents.
    pub fn add(&mut self, batch: &arrow::array::RecordBatch) -> Result<()> {
        use rayon::prelude::*;
        let stats = &mut self.stats;
        let text = batch.column(0).as_string::<i32>();
        let docs: Vec<&str> = text.iter().flatten().collect();
        // Per chunk in parallel (every figure is a sum, a minimum or a maximum: the order does not matter).
        let parts: Vec<DatasetStats> = docs
            .par_chunks(2048)
            .map(|chunk| {
                let mut part = DatasetStats { min_chars: u64::MAX, ..Default::default() };
                for doc in chunk {
                    let chars = doc.chars().count() as u64;
                    part.documents += 1;
                    part.bytes += doc.len() as u64;
                    part.chars += chars;
                    let words = doc.split_whitespace().count() as u64;
                    part.words += words;
                    if words == 0 {
                        part.empty_documents += 1;
                    }
                    part.min_chars = part.min_chars.min(chars);
                    part.max_chars = part.max_chars.max(chars);
                    let bin = bin_of(chars);
                    if part.length_bins.len() <= bin {
                        part.length_bins.resize(bin + 1, 0);
                    }
                    part.length_bins[bin] += 1;
                }
                part
            })
            .collect();
        for part in parts {
            stats.documents += part.documents;
            stats.bytes += part.bytes;
            stats.chars += part.chars;
            stats.words += part.words;
            stats.empty_documents += part.empty_documents;
            stats.min_chars = stats.min_chars.min(part.min_chars);
            stats.max_chars = stats.max_chars.max(part.max_chars);
            if stats.length_bins.len() < part.length_bins.len() {
                stats.length_bins.resize(part.length_bins.len(), 0);
            }
            for (total, n) in stats.length_bins.iter_mut().zip(&part.length_bins) {
                *total += n;
            }
        }
        for (i, acc) in self.columns.iter_mut().enumerate() {
            let col = batch.column(i + 1);
            acc.nulls += col.null_count() as u64;
            if let Some(values) = acc.values.as_mut() {
                let formatter = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                for row in (0..col.len()).filter(|&r| col.is_valid(r)) {
                    let value = formatter.value(row).to_string();
                    if let Some(n) = values.get_mut(&value) {
                        *n += 1;
                    } else if values.len() < MAX_DISTINCT {
                        values.insert(value, 1);
                    } else {
                        acc.values = None;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The statistics, with the count of records skipped while reading.
    pub fn finish(self, skipped: u64) -> DatasetStats {
        let mut stats = self.stats;
        if stats.documents == 0 {
            stats.min_chars = 0;
        }
        stats.skipped = skipped;
        stats.columns = self
            .columns
            .into_iter()
            .map(|acc| {
                let (distinct, top_values) = match acc.values {
                    None => (None, Vec::new()),
                    Some(values) => {
                        let mut top: Vec<(String, u64)> = values.into_iter().collect();
                        let distinct = top.len() as u64;
                        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                        top.truncate(TOP_VALUES);
                        (Some(distinct), top)
                    }
                };
                ColumnStats {
                    name: acc.name,
                    data_type: acc.data_type.to_string(),
                    nulls: acc.nulls,
                    distinct,
                    top_values,
                }
            })
            .collect();
        stats
    }
}

impl DatasetStats {
    /// Reads every document once.
    pub fn compute(documents: Documents) -> Result<DatasetStats> {
        Self::compute_with(documents, |_| true)
    }

    /// Reads every document once, calling `progress` after each batch; it returns false to stop the
    /// computation, which then ends with [`Error::Cancelled`].
    pub fn compute_with(
        mut documents: Documents,
        mut progress: impl FnMut(&ReadReport) -> bool,
    ) -> Result<DatasetStats> {
        let mut acc = StatsAccumulator::new(&documents.schema());
        while let Some(batch) = documents.next() {
            acc.add(&batch?)?;
            if !progress(&documents.report()) {
                return Err(Error::Cancelled);
            }
        }
        Ok(acc.finish(documents.report().skipped))
    }

    /// Mean document length in characters.
    pub fn mean_chars(&self) -> f64 {
        if self.documents == 0 { 0.0 } else { self.chars as f64 / self.documents as f64 }
    }

    /// The document-length histogram (power-of-two bins of characters).
    pub fn length_histogram(&self) -> Histogram {
        let label = |k: usize| -> String {
            let lo = if k == 0 { 0 } else { 1u64 << k };
            match lo {
                n if n >= 1 << 20 => format!("{}M", n >> 20),
                n if n >= 1 << 10 => format!("{}k", n >> 10),
                n => n.to_string(),
            }
        };
        let first = self.length_bins.iter().position(|&n| n > 0).unwrap_or(0);
        let bins = self.length_bins.iter().enumerate().skip(first).map(|(k, n)| (label(k), *n)).collect();
        Histogram::new("Document length in characters", "bin start (bins double in width)", bins)
    }
}

impl Render for DatasetStats {
    fn bundle(&self) -> MimeBundle {
        let mut columns = Table::new("Metadata columns", &["column", "type", "nulls", "distinct", "most common"]);
        for c in &self.columns {
            let top = c
                .top_values
                .iter()
                .take(4)
                .map(|(v, n)| format!("{} ({})", crate::display::truncate(v, 24), count(*n)));
            columns.row(vec![
                c.name.clone(),
                c.data_type.clone(),
                count(c.nulls),
                c.distinct.map(count).unwrap_or_else(|| format!(">{}", count(MAX_DISTINCT as u64))),
                top.collect::<Vec<_>>().join(", "),
            ]);
        }
        let mut card = Card::new("Dataset statistics")
            .fact("documents", count(self.documents))
            .fact(
                "text",
                format!(
                    "{} ({} characters, {} words)",
                    crate::display::bytes(self.bytes),
                    count(self.chars),
                    count(self.words)
                ),
            )
            .fact(
                "document length",
                format!(
                    "{} to {} characters, mean {}",
                    count(self.min_chars),
                    count(self.max_chars),
                    count(self.mean_chars().round() as u64)
                ),
            )
            .fact("empty documents", count(self.empty_documents));
        if self.skipped > 0 {
            card = card.fact("skipped records", count(self.skipped));
        }
        card = card.section(&self.length_histogram().bundle());
        if !self.columns.is_empty() {
            card = card.section(&columns.bundle());
        }
        card.bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_powers_of_two() {
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(1), 0);
        assert_eq!(bin_of(2), 1);
        assert_eq!(bin_of(3), 1);
        assert_eq!(bin_of(1024), 10);
        assert_eq!(bin_of(2047), 10);
    }
}
