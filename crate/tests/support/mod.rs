//! Shared by the integration tests: the mock Hub server, fixture builders and tiny models.

#![allow(dead_code)]

pub mod austen;
pub mod mock_hub;
pub mod tiny_models;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

/// A Parquet file with columns `text` and `id`: rows `"{prefix} row {i}"` for i in `ids`.
pub fn parquet_bytes(prefix: &str, ids: std::ops::Range<i64>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("text", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
    ]));
    let texts: Vec<String> = ids.clone().map(|i| format!("{prefix} row {i}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(texts)), Arc::new(Int64Array::from(ids.collect::<Vec<_>>()))],
    )
    .unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// JSONL with a `text` field: `"{prefix} line {i}"`.
pub fn jsonl_bytes(prefix: &str, n: usize) -> Vec<u8> {
    (0..n).map(|i| format!("{{\"text\": \"{prefix} line {i}\", \"n\": {i}}}\n")).collect::<String>().into_bytes()
}

/// `n` bytes of deterministic, incompressible-looking data.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}
