//! Tables and cards: the two shapes most saekit values take, rendered to aligned plain text and to HTML
//! with every cell escaped.

use super::{MimeBundle, Render, STYLE, escape};

/// A table with a caption; cells are plain strings, right-aligned when numeric.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// A line under the table (e.g. "3 of 1,200 rows").
    pub footer: Option<String>,
}

fn is_numeric(cell: &str) -> bool {
    !cell.is_empty() && cell.chars().all(|c| c.is_ascii_digit() || ",.-%".contains(c))
}

impl Table {
    pub fn new(caption: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            caption: caption.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A two-column table (`parameter`, `value`) of a serde struct's fields, nested fields as
    /// `outer.inner`, unset options as `–`: how parameters and configs show in a card.
    pub fn fields(caption: impl Into<String>, value: &impl serde::Serialize) -> Table {
        fn walk(prefix: &str, value: &serde_json::Value, table: &mut Table) {
            match value {
                serde_json::Value::Object(map) if !map.is_empty() => {
                    for (key, inner) in map {
                        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                        walk(&name, inner, table);
                    }
                }
                serde_json::Value::Null => table.row(vec![prefix.to_string(), "–".into()]),
                serde_json::Value::String(s) => table.row(vec![prefix.to_string(), s.clone()]),
                serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    let items: Vec<String> =
                        items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect();
                    table.row(vec![prefix.to_string(), items.join(", ")]);
                }
                other => table.row(vec![prefix.to_string(), other.to_string()]),
            }
        }
        let mut table = Table::new(caption, &["parameter", "value"]);
        walk("", &serde_json::to_value(value).unwrap_or_default(), &mut table);
        table
    }

    /// Aligned columns for a terminal; cells cut to 60 characters, newlines shown as `⏎`.
    pub fn plain(&self) -> String {
        let clean = |s: &str| {
            let visible: String = s
                .chars()
                .map(|c| match c {
                    '\n' => "⏎".to_string(),
                    c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
                    c => c.to_string(),
                })
                .collect();
            super::truncate(&visible, 60)
        };
        let rows: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                    if is_numeric(c) { format!("{}{c}", " ".repeat(pad)) } else { format!("{c}{}", " ".repeat(pad)) }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = String::new();
        if !self.caption.is_empty() {
            out.push_str(&self.caption);
            out.push('\n');
        }
        out.push_str(&line(&self.columns));
        out.push('\n');
        out.push_str(&widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("  "));
        for row in &rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        if let Some(footer) = &self.footer {
            out.push('\n');
            out.push_str(footer);
        }
        out
    }

    /// An HTML fragment (no stylesheet).
    pub fn html_fragment(&self) -> String {
        let mut out = String::new();
        if !self.caption.is_empty() {
            out.push_str(&format!("<div class=\"title\">{}</div>", escape(&self.caption)));
        }
        out.push_str("<table><thead><tr>");
        for c in &self.columns {
            out.push_str(&format!("<th>{}</th>", escape(c)));
        }
        out.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for cell in row {
                let class = if is_numeric(cell) { " class=\"num\"" } else { "" };
                out.push_str(&format!("<td{class}>{}</td>", escape(cell)));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        if let Some(footer) = &self.footer {
            out.push_str(&format!("<div class=\"muted\">{}</div>", escape(footer)));
        }
        out
    }
}

impl Render for Table {
    fn bundle(&self) -> MimeBundle {
        MimeBundle::new(self.plain())
            .with("text/html", format!("{STYLE}<div class=\"saekit\">{}</div>", self.html_fragment()))
    }
}

/// A card: a title, key/value facts, then any number of HTML sections (tables, charts) below.
#[derive(Debug, Clone, Default)]
pub struct Card {
    pub title: String,
    pub badge: Option<String>,
    pub facts: Vec<(String, String)>,
    /// (plain text, HTML) of each section.
    pub sections: Vec<(String, String)>,
}

impl Card {
    pub fn new(title: impl Into<String>) -> Self {
        Card { title: title.into(), ..Default::default() }
    }

    pub fn badge(mut self, badge: impl Into<String>) -> Self {
        self.badge = Some(badge.into());
        self
    }

    pub fn fact(mut self, key: &str, value: impl Into<String>) -> Self {
        self.facts.push((key.into(), value.into()));
        self
    }

    /// Adds a section from another bundle (its plain text and its HTML or SVG).
    pub fn section(mut self, bundle: &MimeBundle) -> Self {
        let html = bundle.get("text/html").or(bundle.get("image/svg+xml")).map(str::to_string);
        let html = html.unwrap_or_else(|| format!("<pre>{}</pre>", escape(bundle.plain())));
        self.sections.push((bundle.plain().to_string(), html.replace(STYLE, "")));
        self
    }
}

impl Render for Card {
    fn bundle(&self) -> MimeBundle {
        let mut plain = self.title.clone();
        if let Some(badge) = &self.badge {
            plain.push_str(&format!(" [{badge}]"));
        }
        let width = self.facts.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (k, v) in &self.facts {
            plain.push_str(&format!("\n  {k:<width$}  {}", v.replace('\n', " ")));
        }
        for (text, _) in &self.sections {
            plain.push_str("\n\n");
            plain.push_str(text);
        }
        let mut html = format!("{STYLE}<div class=\"saekit\"><div class=\"title\">{}", escape(&self.title));
        if let Some(badge) = &self.badge {
            html.push_str(&format!(" <span class=\"badge\">{}</span>", escape(badge)));
        }
        html.push_str("</div><table>");
        for (k, v) in &self.facts {
            html.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v)));
        }
        html.push_str("</table>");
        for (_, section) in &self.sections {
            html.push_str(&format!("<div>{section}</div>"));
        }
        html.push_str("</div>");
        MimeBundle::new(plain).with("text/html", html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_escapes_cells_and_aligns_numbers() {
        let mut t = Table::new("t", &["name", "rows"]);
        t.row(vec!["<script>x</script>".into(), "1,024".into()]);
        t.row(vec!["b".into(), "7".into()]);
        let html = t.bundle().get("text/html").unwrap().to_string();
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<td class=\"num\">1,024</td>"));
        let plain = t.plain();
        assert_eq!(plain.lines().nth(4).unwrap(), "b                       7");
    }

    #[test]
    fn fields_flatten_nested_structs() {
        let value =
            serde_json::json!({"max_length": 256, "packing": {"bos_first": true}, "eos_token": null, "name": "<b>"});
        let t = Table::fields("params", &value);
        let rows: Vec<String> = t.rows.iter().map(|r| r.join("=")).collect();
        assert_eq!(rows, ["max_length=256", "packing.bos_first=true", "eos_token=–", "name=<b>"]);
    }

    #[test]
    fn card_lists_facts_in_both_forms() {
        let b = Card::new("austen").badge("ready").fact("rows", "269").bundle();
        assert_eq!(b.plain(), "austen [ready]\n  rows  269");
        assert!(b.get("text/html").unwrap().contains("<th>rows</th><td>269</td>"));
    }
}
