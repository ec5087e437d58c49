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
