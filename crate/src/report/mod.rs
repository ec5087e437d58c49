//! Self-contained HTML reports: a title, the facts the caller adds (inputs, settings), one section per
//! rendered value, and at the end the session's [`Provenance`] (build, machine, every artifact touched,
//! seeds), which no caller assembles by hand. Charts are inline SVG and the stylesheet is inline, so the
//! file opens anywhere with no network and no JavaScript. A notebook exported by `saekit report` ends in
//! the same provenance footer.

mod provenance;

use std::path::Path;

pub use provenance::{Provenance, Seed, WorkspaceProvenance, provenance};

use crate::display::{MimeBundle, Render, STYLE, escape};
use crate::error::Result;

/// A report being assembled.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub provenance: Vec<(String, String)>,
    pub sections: Vec<(String, MimeBundle)>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        let mut report = Report { title: title.into(), ..Default::default() };
        report.provenance("saekit", crate::VERSION);
        report.provenance("platform", format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS));
        report
    }

    /// Records a fact about how the report was made (never a secret).
    pub fn provenance(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.provenance.push((key.into(), value.into()));
        self
    }

    /// Adds a section showing a value.
    pub fn section(&mut self, heading: impl Into<String>, value: &dyn Render) -> &mut Self {
        self.sections.push((heading.into(), value.bundle()));
        self
    }

    /// The report as plain text.
    pub fn to_text(&self) -> String {
        self.to_text_with(&Provenance::current())
    }

    fn to_text_with(&self, provenance: &Provenance) -> String {
        let mut out = format!("{}\n{}\n", self.title, "=".repeat(self.title.chars().count()));
        for (k, v) in &self.provenance {
            out.push_str(&format!("{k}: {v}\n"));
        }
        for (heading, bundle) in &self.sections {
            out.push_str(&format!("\n## {heading}\n{}\n", bundle.plain()));
        }
        out.push('\n');
        out.push_str(&provenance.to_text());
        out
    }

    /// The report as one HTML document, ending in this session's provenance.
    pub fn to_html(&self) -> String {
        self.to_html_with(&Provenance::current())
    }

    fn to_html_with(&self, provenance: &Provenance) -> String {
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>{STYLE}\
             <style>body {{ max-width: 70em; margin: 2em auto; padding: 0 1em; }} h1, h2 {{ font-family: system-ui, sans-serif; }}\
             section {{ margin: 1.5em 0; }}</style></head><body><div class=\"saekit\">\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        html.push_str("<section><h2>About this run</h2><table>");
        for (k, v) in &self.provenance {
            html.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v)));
        }
        html.push_str("</table></section>\n");
        for (heading, bundle) in &self.sections {
            html.push_str(&format!(
                "<section><h2>{}</h2>{}</section>\n",
                escape(heading),
                bundle.html_or_fallback().replace(STYLE, "")
            ));
        }
        html.push_str(&provenance.to_html());
        html.push_str("</div></body></html>\n");
        html
    }

    /// Writes the HTML to `path`, under a temporary name first so a reader never sees half a report.
    pub fn write_html(&self, path: &Path) -> Result<()> {
        crate::files::write_atomically(path, self.to_html().as_bytes())
    }

    /// Writes the HTML and returns the text form, both with the same provenance (read once).
    pub fn write_html_and_text(&self, path: &Path) -> Result<String> {
        let provenance = Provenance::current();
        crate::files::write_atomically(path, self.to_html_with(&provenance).as_bytes())?;
        Ok(self.to_text_with(&provenance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::Table;

    struct Sample;
    impl Render for Sample {
        fn bundle(&self) -> MimeBundle {
            let mut t = Table::new("", &["text"]);
            t.row(vec!["</table><script>alert(1)</script>".into()]);
            t.bundle()
        }
    }

    #[test]
    fn report_is_one_escaped_html_document() {
        let mut r = Report::new("Run <1>");
        r.provenance("seed", "42").section("Samples", &Sample);
        let html = r.to_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>Run &lt;1&gt;</title>"));
        assert!(html.contains("<th>seed</th><td>42</td>"));
        assert!(!html.contains("<script>"));
        assert_eq!(html.matches("<style>").count(), 2, "one shared stylesheet plus the page's own");
        assert!(r.to_text().contains("## Samples"));
        assert!(html.contains("<footer class=\"saekit-provenance\">"), "the session's provenance ends every report");
        assert!(
            html.contains(crate::VERSION) && html.contains(&crate::session::BuildInfo::current().cargo_lock_sha256)
        );
    }
}
