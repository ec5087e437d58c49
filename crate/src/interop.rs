//! Interoperability with polars (cargo feature `polars`, off by default because polars doubles the build):
//! record batches move into polars DataFrames through the Arrow C data interface, without copying
//! fixed-width buffers.

use arrow::array::{Array, RecordBatch};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, to_ffi};
use polars::prelude::{Column, DataFrame, IntoColumn, PlSmallStr, Series};
use polars_arrow::ffi::{ArrowArray, ArrowSchema, import_array_from_c, import_field_from_c};

use crate::error::{Error, Result};

/// Conversion into a polars DataFrame.
pub trait ToPolars {
    fn to_polars(&self) -> Result<DataFrame>;
}

fn interop_error(column: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("column `{column}`: {what}: {e}"))
}

impl ToPolars for RecordBatch {
    fn to_polars(&self) -> Result<DataFrame> {
        let mut columns: Vec<Column> = Vec::with_capacity(self.num_columns());
        for (field, array) in self.schema_ref().fields().iter().zip(self.columns()) {
            let name = field.name();
            let (c_array, c_schema): (FFI_ArrowArray, FFI_ArrowSchema) =
                to_ffi(&array.to_data()).map_err(|e| interop_error(name, "Arrow export", e))?;
            // SAFETY: arrow-rs's FFI_ArrowSchema and polars-arrow's ArrowSchema are both #[repr(C)]
            // definitions of the C data interface's ArrowSchema. The schema is only borrowed: polars
            // copies what it needs into an owned Field, and arrow-rs releases it when `c_schema` drops.
            let pl_field =
                unsafe { import_field_from_c(&*(&c_schema as *const FFI_ArrowSchema).cast::<ArrowSchema>()) }
                    .map_err(|e| interop_error(name, "polars schema import", e))?;
            // SAFETY: same layout argument for ArrowArray. The struct is moved by value (the C interface
            // allows a bitwise move of the base structure); arrow-rs's copy is consumed by transmute, so
            // its release callback runs exactly once, when polars drops the last buffer it imported.
            let pl_array = unsafe { std::mem::transmute::<FFI_ArrowArray, ArrowArray>(c_array) };
            let imported = unsafe { import_array_from_c(pl_array, pl_field.dtype.clone()) }
                .map_err(|e| interop_error(name, "polars array import", e))?;
            drop(c_schema);
            let series = Series::from_arrow(PlSmallStr::from_str(name), imported)
                .map_err(|e| interop_error(name, "polars", e))?;
            columns.push(series.into_column());
        }
        DataFrame::new(self.num_rows(), columns).map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn batch_becomes_dataframe_with_same_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["a", "héllo"])), Arc::new(Int64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        let df = batch.to_polars().unwrap();
        assert_eq!(df.shape(), (2, 2));
        assert_eq!(df.column("text").unwrap().str().unwrap().get(1), Some("héllo"));
        assert_eq!(df.column("n").unwrap().i64().unwrap().get(0), Some(1));
        assert_eq!(df.column("n").unwrap().null_count(), 1);
    }
}
