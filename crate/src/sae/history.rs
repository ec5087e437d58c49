//! A run's metrics history: a row per SAE every `metrics_every` steps (and at the last step), kept in the
//! checkpoint while the run goes and written with the run as `history.parquet` (one column per metric;
//! polars, pandas and DuckDB read it).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::train::StepMetrics;
use crate::error::{Error, Result};

/// The file a run's history is written to.
pub const HISTORY_FILE: &str = "history.parquet";

/// One SAE's metrics at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub sae: String,
    /// Training tokens seen by the end of the step.
    pub tokens: u64,
    /// Seconds of training by the end of the step (over every attempt, for a resumed run).
    pub elapsed_seconds: f64,
    #[serde(flatten)]
    pub metrics: StepMetrics,
}

type F64Column = (&'static str, fn(&HistoryRow) -> f64);
type U64Column = (&'static str, fn(&HistoryRow) -> u64);

const F64_COLUMNS: [F64Column; 9] = [
    ("loss", |r| r.metrics.loss),
    ("mse", |r| r.metrics.mse),
    ("sparsity_loss", |r| r.metrics.sparsity_loss),
    ("l0", |r| r.metrics.l0),
    ("explained_variance", |r| r.metrics.explained_variance),
    ("lr", |r| r.metrics.lr),
    ("grad_norm", |r| r.metrics.grad_norm),
    ("mean_log10_density", |r| r.metrics.mean_log10_density),
    ("elapsed_seconds", |r| r.elapsed_seconds),
];
const U64_COLUMNS: [U64Column; 5] = [
    ("step", |r| r.metrics.step),
    ("tokens", |r| r.tokens),
    ("dead", |r| r.metrics.dead as u64),
    ("density_below_1e_5", |r| r.metrics.density_below_1e_5 as u64),
    ("density_below_1e_6", |r| r.metrics.density_below_1e_6 as u64),
];

/// Writes `rows` to `path` as one Parquet file (under a temporary name, renamed when complete).
pub fn write_history(rows: &[HistoryRow], path: &Path) -> Result<()> {
    let mut fields = vec![Field::new("sae", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.sae)))];
    for (name, get) in U64_COLUMNS {
        fields.push(Field::new(name, DataType::UInt64, false));
        columns.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(get))));
    }
    for (name, get) in F64_COLUMNS {
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(get))));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::format(path, e))?;
    let tmp = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| Error::format(&tmp, e))?;
    writer.write(&batch).map_err(|e| Error::format(&tmp, e))?;
    writer.close().map_err(|e| Error::format(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads a history written by [`write_history`].
pub fn read_history(path: &Path) -> Result<Vec<HistoryRow>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::format(path, format!("not a run history: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::format(path, e))?;
        let column =
            |name: &str| batch.column_by_name(name).ok_or_else(|| Error::format(path, format!("no column `{name}`")));
        let sae = column("sae")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::format(path, "column `sae` is not text"))?;
        let u64s = |name: &str| -> Result<Vec<u64>> {
            let c = column(name)?;
            let c = c.as_any().downcast_ref::<UInt64Array>().ok_or_else(|| Error::format(path, format!("`{name}`")))?;
            Ok(c.values().to_vec())
        };
        let f64s = |name: &str| -> Result<Vec<f64>> {
            let c = column(name)?;
            let c =
                c.as_any().downcast_ref::<Float64Array>().ok_or_else(|| Error::format(path, format!("`{name}`")))?;
            Ok(c.values().to_vec())
        };
        let (step, tokens, dead) = (u64s("step")?, u64s("tokens")?, u64s("dead")?);
        let (below_5, below_6) = (u64s("density_below_1e_5")?, u64s("density_below_1e_6")?);
        let (loss, mse, sparsity, l0) = (f64s("loss")?, f64s("mse")?, f64s("sparsity_loss")?, f64s("l0")?);
        let (ev, lr, grad_norm) = (f64s("explained_variance")?, f64s("lr")?, f64s("grad_norm")?);
        let (density, elapsed) = (f64s("mean_log10_density")?, f64s("elapsed_seconds")?);
        for i in 0..sae.len() {
            rows.push(HistoryRow {
                sae: sae.value(i).to_string(),
                tokens: tokens[i],
                elapsed_seconds: elapsed[i],
                metrics: StepMetrics {
                    step: step[i],
                    loss: loss[i],
                    mse: mse[i],
                    sparsity_loss: sparsity[i],
                    l0: l0[i],
                    explained_variance: ev[i],
                    dead: dead[i] as usize,
                    lr: lr[i],
                    grad_norm: grad_norm[i],
                    mean_log10_density: density[i],
                    density_below_1e_5: below_5[i] as usize,
                    density_below_1e_6: below_6[i] as usize,
                },
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_round_trips_through_parquet() {
        let rows: Vec<HistoryRow> = (0..5u64)
            .map(|i| HistoryRow {
                sae: format!("sae{}", i % 2),
                tokens: 64 * (i + 1),
                elapsed_seconds: 0.5 * i as f64,
                metrics: StepMetrics {
                    step: i + 1,
                    loss: 1.0 / (i + 1) as f64,
                    mse: 0.9 / (i + 1) as f64,
                    sparsity_loss: 0.1,
                    l0: 3.0 + i as f64,
                    explained_variance: 0.1 * i as f64,
                    dead: i as usize,
                    lr: 1e-3,
                    grad_norm: 2.0,
                    mean_log10_density: -1.5,
                    density_below_1e_5: 7,
                    density_below_1e_6: 2,
                },
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        write_history(&rows, &path).unwrap();
        assert_eq!(read_history(&path).unwrap(), rows);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [HISTORY_FILE], "no partial left");
    }
}
