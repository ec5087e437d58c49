//! How source values look: the schema view as a table.

use super::SchemaView;
use crate::display::{MimeBundle, Render, Table};
use crate::error::count;

impl Render for SchemaView {
    fn bundle(&self) -> MimeBundle {
        let caption = format!(
            "{} columns · {} {} file{} · null counts over the first {} rows",
            self.columns.len(),
            self.files,
            self.format,
            if self.files == 1 { "" } else { "s" },
            count(self.sample_rows)
        );
        let mut table = Table::new(caption, &["column", "type", "nulls", "role"]);
        for c in &self.columns {
            let role = if c.is_text { "text" } else { "metadata" };
            table.row(vec![c.name.clone(), c.data_type.clone(), count(c.nulls), role.into()]);
        }
        table.bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ColumnView;

    #[test]
    fn schema_view_renders_columns_and_roles() {
        let view = SchemaView {
            columns: vec![
                ColumnView { name: "text".into(), data_type: "Utf8".into(), nulls: 0, is_text: true },
                ColumnView { name: "<id>".into(), data_type: "Int64".into(), nulls: 1200, is_text: false },
            ],
            sample_rows: 5000,
            files: 2,
            format: "jsonl".into(),
        };
        let b = view.bundle();
        assert!(b.plain().starts_with("2 columns · 2 jsonl files · null counts over the first 5,000 rows"));
        assert!(b.plain().contains("\ntext    Utf8       0  text\n"), "{}", b.plain());
        let html = b.get("text/html").unwrap();
        assert!(html.contains("&lt;id&gt;") && html.contains("<td class=\"num\">1,200</td>"));
    }
}

/// The first documents of a source, shown like a dataframe's head: shape, column types, long text cut
/// short (the full text stays in [`Sample::batch`]).
#[derive(Debug, Clone)]
pub struct Sample {
    pub batch: arrow::array::RecordBatch,
}

/// Characters of a cell shown before it is cut.
const CELL_CHARS: usize = 160;

impl Render for Sample {
    fn bundle(&self) -> MimeBundle {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let schema = self.batch.schema();
        let headers: Vec<String> =
            schema.fields().iter().map(|f| format!("{} ({})", f.name(), f.data_type())).collect();
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let caption = format!("first {} documents × {} columns", count(self.batch.num_rows() as u64), headers.len());
        let mut table = Table::new(caption, &header_refs);
        let options = FormatOptions::default().with_null("null");
        let formatters: Vec<_> =
            self.batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
        for row in 0..self.batch.num_rows() {
            let cells = formatters
                .iter()
                .map(|f| {
                    let value = f.as_ref().map(|f| f.value(row).to_string()).unwrap_or_else(|| "?".into());
                    crate::display::truncate(&value, CELL_CHARS)
                })
                .collect();
            table.row(cells);
        }
        table.bundle()
    }
}
