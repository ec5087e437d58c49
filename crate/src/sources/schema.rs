//! Schemas of sources: merging the schemas of several files into one, conforming each file's batches to it,
//! and the [`SchemaView`] a researcher looks at before choosing a text column.

use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use crate::error::{Error, Result};

/// Merges per-file schemas into one: columns in order of first appearance, all nullable. A column that is
/// an integer in one file and a float in another becomes a float; any other disagreement is an error
/// naming both files.
pub fn merge_schemas(schemas: &[(PathBuf, Schema)]) -> Result<Schema> {
    let mut fields: Vec<(Field, &Path)> = Vec::new();
    for (path, schema) in schemas {
        for field in schema.fields() {
            match fields.iter_mut().find(|(f, _)| f.name() == field.name()) {
                None => fields.push((field.as_ref().clone().with_nullable(true), path)),
                Some((existing, first)) => {
                    let merged =
                        merge_types(existing.data_type(), field.data_type()).ok_or_else(|| Error::SchemaConflict {
                            column: field.name().clone(),
                            first: first.to_path_buf(),
                            first_type: existing.data_type().to_string(),
                            second: path.clone(),
                            second_type: field.data_type().to_string(),
                        })?;
                    *existing = existing.clone().with_data_type(merged);
                }
            }
        }
    }
    Ok(Schema::new(fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>()))
}

fn merge_types(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    Some(match (a, b) {
        _ if a == b => a.clone(),
        (Null, t) | (t, Null) => t.clone(),
        (Int64, Float64) | (Float64, Int64) => Float64,
        (Utf8, LargeUtf8) | (LargeUtf8, Utf8) => LargeUtf8,
        _ => return None,
    })
}

/// Reorders, null-fills and widens `batch`'s columns to match `target` (columns the file lacks become
/// nulls).
pub fn conform(batch: RecordBatch, target: &SchemaRef, path: &Path) -> Result<RecordBatch> {
    if batch.schema().as_ref() == target.as_ref() {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef> {
            match batch.column_by_name(field.name()) {
                None => Ok(new_null_array(field.data_type(), rows)),
                Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
                Some(col) => arrow::compute::cast(col, field.data_type()).map_err(|e| Error::format(path, e)),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| Error::format(path, e))
}

/// One column as seen on a sample of a source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnView {
    pub name: String,
    /// The Arrow type, as Arrow prints it (`Utf8`, `Int64`, `List(Int64)`, ...).
    pub data_type: String,
    /// Nulls among the sampled rows.
    pub nulls: u64,
    /// True for the column that holds the documents' text (or that a template reads).
    pub is_text: bool,
}

/// The schema of a source, with null counts over a sample of its rows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SchemaView {
    pub columns: Vec<ColumnView>,
    /// Rows the null counts were taken over.
    pub sample_rows: u64,
    /// Files in the source.
    pub files: usize,
    /// The format of the files (`jsonl`, `csv`, `parquet`, `text`).
    pub format: String,
}

impl SchemaView {
    /// Builds a view from a schema and sample batches.
    pub fn new(schema: &Schema, sample: &[RecordBatch], text_columns: &[String], files: usize, format: String) -> Self {
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| ColumnView {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nulls: sample.iter().map(|b| b.column(i).null_count() as u64).sum(),
                is_text: text_columns.iter().any(|t| t == f.name()),
            })
            .collect();
        SchemaView { columns, sample_rows: sample.iter().map(|b| b.num_rows() as u64).sum(), files, format }
    }

    /// The column names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}
