//! How source values look: the schema view as a table.

use super::SchemaView;
use crate::display::{MimeBundle, Render, Table, escape};
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

/// A page of a source's documents, shown like a dataframe's head: shape, column types, long text cut
/// short in the table with the full text one click away (and always in [`Sample::batch`]).
#[derive(Debug, Clone)]
pub struct Sample {
    pub batch: arrow::array::RecordBatch,
    /// Index of the page's first row in the source.
    pub first_row: u64,
    /// Rows in the source, when known.
    pub total_rows: Option<u64>,
}

/// Characters of a cell shown before it is cut.
const CELL_CHARS: usize = 160;

impl Sample {
    fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let schema = self.batch.schema();
        let headers = schema.fields().iter().map(|f| format!("{} ({})", f.name(), f.data_type())).collect();
        let options = FormatOptions::default().with_null("null");
        let formatters: Vec<_> =
            self.batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
        let rows = (0..self.batch.num_rows())
            .map(|row| {
                formatters
                    .iter()
                    .map(|f| f.as_ref().map(|f| f.value(row).to_string()).unwrap_or_else(|| "?".into()))
                    .collect()
            })
            .collect();
        (headers, rows)
    }

    fn caption(&self) -> String {
        let n = self.batch.num_rows() as u64;
        let range = if n == 0 {
            "no rows".to_string()
        } else {
            format!("rows {}–{}", count(self.first_row + 1), count(self.first_row + n))
        };
        let of = self.total_rows.map(|t| format!(" of {}", count(t))).unwrap_or_default();
        format!("{range}{of} × {} columns", self.batch.num_columns())
    }
}

impl Render for Sample {
    fn bundle(&self) -> MimeBundle {
        let (headers, rows) = self.cells();
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut table = Table::new(self.caption(), &header_refs);
        for row in &rows {
            table.row(row.iter().map(|c| crate::display::truncate(c, CELL_CHARS)).collect());
        }
        let mut html = format!(
            "{}<div class=\"saekit\"><div class=\"title\">{}</div><table><thead><tr>",
            crate::display::STYLE,
            escape(&self.caption())
        );
        for h in &headers {
            html.push_str(&format!("<th>{}</th>", escape(h)));
        }
        html.push_str("</tr></thead><tbody>");
        for row in &rows {
            html.push_str("<tr>");
            for cell in row {
                if cell.chars().count() > CELL_CHARS {
                    html.push_str(&format!(
                        "<td><details><summary class=\"text\">{}</summary><div class=\"text\">{}</div></details></td>",
                        escape(&crate::display::truncate(cell, CELL_CHARS)),
                        escape(cell)
                    ));
                } else {
                    html.push_str(&format!("<td class=\"text\">{}</td>", escape(cell)));
                }
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table></div>");
        MimeBundle::new(table.plain()).with("text/html", html)
    }
}

#[cfg(test)]
mod sample_tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn sample_escapes_hostile_text_and_keeps_full_text() {
        let hostile = ["<script>alert(1)</script>", "</table><b>", "say \"hi\" & 'bye'", "bell\u{7}\u{1b}[31m"];
        let long = "word ".repeat(100);
        let texts: Vec<&str> = hostile.iter().copied().chain([long.as_str()]).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(texts)),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4), Some(5)])),
            ],
        )
        .unwrap();
        let sample = Sample { batch, first_row: 20, total_rows: Some(1189) };
        let bundle = sample.bundle();
        let html = bundle.get("text/html").unwrap();
        assert!(!html.contains("<script>") && !html.contains("</table><b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;/table&gt;&lt;b&gt;"));
        assert!(html.contains("say &quot;hi&quot; &amp; &#39;bye&#39;"));
        assert!(html.contains("bell\\u{7}\\u{1b}[31m"), "control characters are shown, not passed through");
        assert!(
            html.contains("<details>") && html.contains(&long.trim_end().to_string()),
            "the full text is one click away"
        );
        assert_eq!(html.matches("<tr>").count(), 6);
        assert!(bundle.plain().starts_with("rows 21–25 of 1,189 × 2 columns\ntext (Utf8)"));
        assert!(bundle.plain().contains("null"));
    }
}
